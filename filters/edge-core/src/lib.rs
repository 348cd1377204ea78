//! Pure logic shared by the edge filters. Nothing here touches proxy-wasm, so all of it is
//! unit-tested on the host.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod path_template;
mod percent;
mod reply;
mod rollout;
mod routes;
mod status;
pub mod trace;
mod upstream;

pub use path_template::PathTemplate;
pub use percent::percent_decode;
pub use reply::{Client, LocalReply, WireReply};
pub use rollout::Rollout;
pub use routes::{match_route, RouteMatch};
pub use status::{GrpcCode, Status};
pub use upstream::grpc_upstream;

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`. It carries
/// no credentials by design, and Envoy's CORS filter answers it.
pub fn is_cors_preflight(method: &str, origin: Option<&str>, request_method: Option<&str>) -> bool {
    method == "OPTIONS" && origin.is_some() && request_method.is_some()
}

/// The request header carrying a rollout's choice of backend cluster from auth to the
/// transcoder and the router. Auth removes any client-sent copy on every request.
pub const BACKEND_HEADER: &str = "x-edge-backend";

/// Metadata/header carrying the verified subject from the auth filter to the backends.
/// Clients can never set it: the auth filter removes any client-sent copy on every request.
pub const USER_ID_HEADER: &str = "x-user-id";

/// Filter-state properties one edge filter records for another (`set_property` /
/// `get_property` with the same one-element path): mostly for the access log.
pub mod properties {
    /// The matched route template, e.g. `/catalog/items/{id}`.
    pub const ROUTE: &str = "edge_route";
    /// The gRPC method called, e.g. `/catalog.CatalogService/GetItem`.
    pub const GRPC_METHOD: &str = "edge_grpc_method";
    /// The gRPC status the backend answered a transcoded call with.
    pub const GRPC_STATUS: &str = "edge_grpc_status";
    /// The subject auth verified (only ever set by auth).
    pub const SUBJECT: &str = "edge_subject";
    /// What went wrong when the transcoder answered with an error of its own (e.g. `no_route`).
    pub const TRANSCODE_ERROR: &str = "edge_transcode_error";
    /// The cluster a transcoded call went to (the router's `xds.cluster_name` is unset then).
    pub const UPSTREAM_CLUSTER: &str = "edge_upstream_cluster";
    /// Milliseconds between dispatching a transcoded call and its response.
    pub const UPSTREAM_MS: &str = "edge_upstream_ms";
    /// Why auth refused a request (e.g. `token_rejected`).
    pub const AUTH_REASON: &str = "edge_auth_reason";
    /// The cluster a rollout chose for the request (absent: the stable deployment).
    pub const BACKEND: &str = "edge_backend";
}
