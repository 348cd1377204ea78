//! How a [`LocalReply`] goes on the wire through proxy-wasm's `send_local_response`: JSON
//! clients get the HTTP status and a `google.rpc.Status` JSON body; gRPC clients get a
//! trailers-only gRPC response with `grpc-status` and the plain message in `grpc-message`
//! (Envoy's Wasm host renders that from the local reply's body and gRPC status, and
//! percent-encodes the message as the gRPC spec asks).

use edge_core::{Client, GrpcCode, LocalReply};

/// What the host call `send_local_response` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireReply {
    pub http_status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The gRPC status for gRPC clients (Envoy then answers trailers-only, HTTP 200).
    pub grpc_status: Option<GrpcCode>,
}

/// `bridged`: a gRPC client whose call Envoy's `grpc_web` or `connect_grpc_bridge` made gRPC
/// (see [`edge_core::CLIENT_CONTENT_TYPE_HEADER`]). Envoy renders no gRPC local reply for it,
/// so the whole trailers-only answer is written here: HTTP 200, `application/grpc`, the status
/// in headers and no body, which those filters turn into their protocol's error.
pub(crate) fn wire(reply: &LocalReply, client: Client, bridged: bool) -> WireReply {
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
