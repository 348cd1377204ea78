//! The one shape of every answer a filter sends itself, and how it goes on the wire for each
//! kind of client: JSON clients get the HTTP status and a `google.rpc.Status` JSON body; gRPC
//! clients get a trailers-only gRPC response with `grpc-status` and the plain message in
//! `grpc-message` (Envoy renders that from the local reply's body and gRPC status, and
//! percent-encodes the message as the gRPC spec asks).

use crate::{GrpcCode, Status};

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

/// What the host call `send_local_response` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireReply {
    pub http_status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The gRPC status for gRPC clients (Envoy then answers trailers-only, HTTP 200).
    pub grpc_status: Option<GrpcCode>,
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

    pub fn to_wire(&self, client: Client) -> WireReply {
        match client {
            Client::Http => {
                let mut headers =
                    vec![("content-type".to_string(), "application/json".to_string())];
                headers.extend(self.headers.iter().cloned());
                WireReply {
                    http_status: self.http_status,
                    headers,
                    body: self.status.to_json().into_bytes(),
                    grpc_status: None,
                }
            }
            // No content-type: Envoy sets application/grpc, and ours would replace it.
            Client::Grpc => WireReply {
                http_status: self.http_status,
                headers: self.headers.clone(),
                body: self.status.message.clone().into_bytes(),
                grpc_status: Some(self.status.code),
            },
        }
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

    #[test]
    fn json_clients_get_status_json_and_the_headers() {
        let reply = LocalReply::error(GrpcCode::Unimplemented, "no such method")
            .with_http_status(405)
            .with_header("allow", "GET, POST");
        let wire = reply.to_wire(Client::Http);
        assert_eq!(wire.http_status, 405);
        assert_eq!(wire.grpc_status, None);
        assert_eq!(
            wire.headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("allow".to_string(), "GET, POST".to_string())
            ]
        );
        assert_eq!(
            String::from_utf8(wire.body).unwrap(),
            r#"{"code":12,"message":"no such method"}"#
        );
    }

    #[test]
    fn grpc_clients_get_the_plain_message_and_code() {
        let reply = LocalReply::error(GrpcCode::Unauthenticated, "a bearer token is required")
            .with_header("www-authenticate", "Bearer");
        let wire = reply.to_wire(Client::Grpc);
        assert_eq!(wire.grpc_status, Some(GrpcCode::Unauthenticated));
        assert_eq!(wire.body, b"a bearer token is required");
        assert!(wire.headers.iter().all(|(name, _)| *name != "content-type"));
    }
}
