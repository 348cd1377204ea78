//! The one shape of every answer a filter sends itself: a `google.rpc.Status`, the HTTP status
//! for JSON clients, and extra headers. How it goes on the wire for each kind of client is the
//! same for every host ([`wire`]); how a host hands it to its proxy is the host's.

use crate::{GrpcCode, Status};

/// The `content-type` a request came with, before Envoy's `grpc_web` or `connect_grpc_bridge`
/// filter made it gRPC: written by the edge's first filters (clients cannot set it). Envoy
/// decides whether to render a local reply as gRPC from the content type a request came with,
/// so such a call needs its gRPC refusals written whole by the filter.
pub const CLIENT_CONTENT_TYPE_HEADER: &str = "x-edge-client-content-type";

/// Set on a request the transcoder sent on through Envoy's router as a gRPC call: Envoy's own
/// replies to it are rendered as the transcoder's JSON errors by the connection manager's
/// `local_reply_config` (Envoy renders them for the request as it came, JSON, not as gRPC).
pub const TRANSCODED_HEADER: &str = "x-edge-transcoded";

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

/// A [`LocalReply`] as it goes on the wire to one kind of client: what a host hands its
/// proxy's local-reply call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireReply {
    pub http_status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The gRPC status for gRPC clients, for a host whose proxy renders the trailers-only
    /// answer itself (proxy-wasm's `send_local_response`); `None` when the headers say it all.
    pub grpc_status: Option<GrpcCode>,
}

/// `bridged`: a gRPC client whose call Envoy's `grpc_web` or `connect_grpc_bridge` made gRPC
/// (see [`edge_core::CLIENT_CONTENT_TYPE_HEADER`]). Envoy renders no gRPC local reply for it,
/// so the whole trailers-only answer is written here: HTTP 200, `application/grpc`, the status
/// in headers and no body, which those filters turn into their protocol's error.
pub fn wire(reply: &LocalReply, client: Client, bridged: bool) -> WireReply {
    match client {
        Client::Grpc if bridged => {
            let mut headers = vec![
                ("content-type".to_string(), "application/grpc".to_string()),
                (
                    "grpc-status".to_string(),
                    reply.status.code.number().to_string(),
                ),
                (
                    "grpc-message".to_string(),
                    grpc_message(&reply.status.message),
                ),
            ];
            headers.extend(reply.headers.iter().cloned());
            WireReply {
                http_status: 200,
                headers,
                body: Vec::new(),
                grpc_status: None,
            }
        }
        Client::Http => {
            let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
            headers.extend(reply.headers.iter().cloned());
            WireReply {
                http_status: reply.http_status,
                headers,
                body: reply.status.to_json().into_bytes(),
                grpc_status: None,
            }
        }
        // No content-type: Envoy sets application/grpc, and ours would replace it.
        Client::Grpc => WireReply {
            http_status: reply.http_status,
            headers: reply.headers.clone(),
            body: reply.status.message.clone().into_bytes(),
            grpc_status: Some(reply.status.code),
        },
    }
}

/// `grpc-message` as the gRPC spec writes it: percent-encoded outside printable ASCII and `%`.
fn grpc_message(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
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
        let wire = wire(&reply, Client::Http, false);
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
        let wire = wire(&reply, Client::Grpc, false);
        assert_eq!(wire.grpc_status, Some(GrpcCode::Unauthenticated));
        assert_eq!(wire.body, b"a bearer token is required");
        assert!(wire.headers.iter().all(|(name, _)| *name != "content-type"));
    }

    #[test]
    fn bridged_grpc_clients_get_the_whole_trailers_only_answer() {
        let reply = LocalReply::error(GrpcCode::PermissionDenied, "restricted: buy 100%")
            .with_header("www-authenticate", "Bearer");
        let bridged = wire(&reply, Client::Grpc, true);
        assert_eq!(bridged.http_status, 200);
        assert_eq!(bridged.grpc_status, None, "not Envoy's rendering");
        assert!(bridged.body.is_empty());
        assert_eq!(
            bridged.headers,
            vec![
                ("content-type".to_string(), "application/grpc".to_string()),
                ("grpc-status".to_string(), "7".to_string()),
                (
                    "grpc-message".to_string(),
                    "restricted: buy 100%25".to_string()
                ),
                ("www-authenticate".to_string(), "Bearer".to_string()),
            ]
        );
        assert_eq!(grpc_message("café\n"), "caf%C3%A9%0A");
        let http = wire(&reply, Client::Http, true);
        assert_eq!(http.http_status, 403, "JSON clients are never bridged");
    }
}
