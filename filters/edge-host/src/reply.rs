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

pub(crate) fn wire(reply: &LocalReply, client: Client) -> WireReply {
    match client {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_clients_get_status_json_and_the_headers() {
        let reply = LocalReply::error(GrpcCode::Unimplemented, "no such method")
            .with_http_status(405)
            .with_header("allow", "GET, POST");
        let wire = wire(&reply, Client::Http);
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
        let wire = wire(&reply, Client::Grpc);
        assert_eq!(wire.grpc_status, Some(GrpcCode::Unauthenticated));
        assert_eq!(wire.body, b"a bearer token is required");
        assert!(wire.headers.iter().all(|(name, _)| *name != "content-type"));
    }
}
