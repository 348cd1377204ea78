//! Pure logic shared by the edge filters. Nothing here touches proxy-wasm, so all of it is
//! unit-tested on the host.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod grpc;
mod headers;
pub mod host;
pub mod metrics;
pub mod notes;
mod path_template;
mod percent;
mod reply;
mod rollout;
mod routes;
mod status;
pub mod trace;

pub use headers::Headers;
pub use path_template::PathTemplate;
pub use percent::percent_decode;
pub use reply::{
    wire, Client, LocalReply, WireReply, CLIENT_CONTENT_TYPE_HEADER, TRANSCODED_HEADER,
};
pub use rollout::Rollout;
pub use routes::{match_route, path_only, RouteError, RouteMatch};
pub use status::{parse_grpc_timeout, GrpcCode, Status};

/// The `:authority` of a call to a cluster (a callout from a filter): `HOST:PORT` for Istio's `outbound|PORT|SUBSET|HOST`,
/// the name itself otherwise (a plain cluster name such as `authority` is a valid host).
pub fn cluster_authority(cluster: &str) -> String {
    let parts: Vec<&str> = cluster.split('|').collect();
    match parts.as_slice() {
        ["outbound", port, _subset, host] if !host.is_empty() && !port.is_empty() => {
            format!("{host}:{port}")
        }
        _ => cluster.to_string(),
    }
}

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
