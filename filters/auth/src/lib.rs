//! The auth filter's logic, free of proxy-wasm so that it is tested on the host:
//! which policy a request falls under ([`policy`]), the keys tokens are verified with
//! ([`keys`]), and the decision for one request ([`authorize`]).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod acl;

/// The metrics auth records itself (the access log records the refusals).
pub mod metrics {
    /// ES256 signatures checked (valid or not), by the host's crypto or the VM's: with the
    /// shared verified tokens, about one per distinct token per proxy.
    pub const SIGNATURE_CHECKS: &str = "edge_auth_signature_checks_total";
    pub const NAMES: &[&str] = &[SIGNATURE_CHECKS];
}
pub mod config;
pub mod es256;
pub mod keys;
pub mod policy;
pub mod refresh;
pub mod request;
pub mod root;
pub mod token_cache;

pub use acl::{FeedPoll, NoRestrictions, Restrictions, SubjectRestrictions};
pub use config::{AuthConfig, Policy};
pub use edge_core::Client;
pub use keys::{KeySet, TokenError};
/// The authority's answer with its JWKS, generated from `proto/platform/authority.proto`.
pub use platform_proto::authority::ListPublicKeysResponse;
pub use policy::{authorize, Outcome, Reason, Rejection, Request};
pub use refresh::KeyRefresh;
