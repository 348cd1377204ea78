//! The one shape of every answer a filter sends itself: a `google.rpc.Status`, the HTTP status
//! for JSON clients, and extra headers. How it goes on the wire for each kind of client is the
//! host's (`edge-host` for proxy-wasm).

use crate::{GrpcCode, Status};

/// The `content-type` a request came with, before Envoy's `grpc_web` or `connect_grpc_bridge`
/// filter made it gRPC: written by the edge's first filters (clients cannot set it). Envoy
/// decides whether to render a local reply as gRPC from the content type a request came with,
/// so such a call needs its gRPC refusals written whole by the filter.
pub const CLIENT_CONTENT_TYPE_HEADER: &str = "x-edge-client-content-type";

/// Who is asking, from the request's `content-type`: gRPC clients cannot read JSON errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Http,
    Grpc,
}

impl Client {
    /// `application/grpc` and `application/grpc+…` are gRPC, exactly as Envoy decides when it
    /// renders a local reply (`Grpc::Common::hasGrpcContentType`); `application/grpc-web` is not.
    pub fn of_content_type(content_type: Option<&str>) -> Self {
        let Some(rest) = content_type.and_then(|ct| ct.strip_prefix("application/grpc")) else {
            return Client::Http;
        };
        if rest.is_empty() || rest.starts_with('+') {
            Client::Grpc
        } else {
            Client::Http
        }
    }
}

/// A local reply: an error status, the HTTP status that goes with it (usually the code's own,
/// 405/413/415 where HTTP says more), and extra headers (`Allow`, `WWW-Authenticate`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub http_status: u16,
    pub status: Status,
    pub headers: Vec<(String, String)>,
}

impl LocalReply {
    pub fn new(status: Status) -> Self {
        Self {
            http_status: status.http_status(),
            status,
            headers: Vec::new(),
        }
    }

    pub fn error(code: GrpcCode, message: impl Into<String>) -> Self {
        Self::new(Status::new(code, message))
    }

    /// The same reply with an HTTP status the gRPC code does not imply.
    pub fn with_http_status(mut self, http_status: u16) -> Self {
        self.http_status = http_status;
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_clients_are_told_by_content_type() {
        for grpc in ["application/grpc", "application/grpc+proto"] {
            assert_eq!(Client::of_content_type(Some(grpc)), Client::Grpc, "{grpc}");
        }
        for http in [
            None,
            Some(""),
            Some("application/json"),
            Some("application/grpc-web"),
            Some("application/grpcx"),
            Some("application/grpc;charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
        ] {
            assert_eq!(Client::of_content_type(http), Client::Http, "{http:?}");
        }
    }
}
