//! `web_protocols` in `envoy/edge.json`: the gRPC protocols browsers can speak, gRPC-Web and
//! Connect. Envoy's own filters (`grpc_web`, `connect_grpc_bridge`) turn such a request into a
//! gRPC call right after CORS, before anything else reads it, so that auth, the mesh policy,
//! the rate limits, the access log and routing treat it exactly as a gRPC client's, and turn
//! every answer (a refusal too) back on the way out. Istio places `grpc_web` itself only on a
//! `GRPC-WEB` port and after every WasmPlugin, where auth would see gRPC-Web; our EnvoyFilter
//! puts both first, as locally.

use crate::CorsSettings;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebProtocol {
    /// gRPC-Web (`application/grpc-web`, `+proto`, and `-text`, base64).
    GrpcWeb,
    /// Connect (`application/proto`, `application/json`, `application/connect+…` streams,
    /// unary GETs).
    Connect,
}

impl WebProtocol {
    /// The request headers its browser clients send, which CORS must allow.
    fn request_headers(self) -> &'static [&'static str] {
        match self {
            WebProtocol::GrpcWeb => &["x-grpc-web", "grpc-timeout"],
            WebProtocol::Connect => &["connect-protocol-version", "connect-timeout-ms"],
        }
    }

    /// The response headers its browser clients read, which CORS must expose.
    fn response_headers(self) -> &'static [&'static str] {
        match self {
            // A trailers-only answer (every refusal) carries its status in headers.
            WebProtocol::GrpcWeb => &["grpc-status", "grpc-message"],
            WebProtocol::Connect => &[],
        }
    }

    fn filter(self) -> Value {
        match self {
            WebProtocol::GrpcWeb => json!({
                "name": "envoy.filters.http.grpc_web",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"
                }
            }),
            WebProtocol::Connect => json!({
                "name": "envoy.filters.http.connect_grpc_bridge",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.connect_grpc_bridge.v3.FilterConfig"
                }
            }),
        }
    }
}

/// Envoy's filters for `protocols`, in the chain's order: first the request's own content type
/// kept for our filters (Envoy renders a local reply as gRPC only for a request that came as
/// gRPC, so theirs write such a call's refusals whole; see `edge_core::CLIENT_CONTENT_TYPE_HEADER`),
/// then the protocols' filters.
pub fn web_protocol_filters(protocols: &[WebProtocol]) -> Vec<Value> {
    if protocols.is_empty() {
        return Vec::new();
    }
    let marker = json!({
        "name": "edge.client-content-type",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": { "request_mutations": [{
                "append": {
                    "header": {
                        "key": edge_core::CLIENT_CONTENT_TYPE_HEADER,
                        "value": "%REQ(content-type)%"
                    },
                    // Whatever a client sent under this name is replaced.
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
                }
            }] }
        }
    });
    std::iter::once(marker)
        .chain(protocols.iter().map(|protocol| protocol.filter()))
        .collect()
}

/// Browsers can use `protocols` only if CORS lets their headers through: refused at render
/// time otherwise, naming what is missing.
pub fn check_cors(protocols: &[WebProtocol], cors: Option<&CorsSettings>) -> Result<(), String> {
    let Some(cors) = cors else {
        return Ok(());
    };
    let has = |list: &[String], name: &str| list.iter().any(|h| h.eq_ignore_ascii_case(name));
    for protocol in protocols {
        let missing: Vec<&str> = protocol
            .request_headers()
            .iter()
            .filter(|h| !has(&cors.allow_headers, h))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "web_protocols: cors.allow_headers lacks {}, which {protocol:?} clients send",
                missing.join(", ")
            ));
        }
        let hidden: Vec<&str> = protocol
            .response_headers()
            .iter()
            .filter(|h| !has(&cors.expose_headers, h))
            .copied()
            .collect();
        if !hidden.is_empty() {
            return Err(format!(
                "web_protocols: cors.expose_headers lacks {}, which {protocol:?} clients read",
                hidden.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(allow: &[&str], expose: &[&str]) -> CorsSettings {
        serde_json::from_value(json!({
            "allow_origins": ["http://localhost:3000"],
            "allow_headers": allow,
            "expose_headers": expose
        }))
        .unwrap()
    }

    #[test]
    fn cors_must_let_the_protocols_headers_through() {
        let both = [WebProtocol::GrpcWeb, WebProtocol::Connect];
        let error = check_cors(&both, Some(&cors(&["content-type"], &[]))).unwrap_err();
        assert!(error.contains("x-grpc-web, grpc-timeout"), "{error}");
        let error = check_cors(
            &both,
            Some(&cors(&["content-type", "X-Grpc-Web", "grpc-timeout"], &[])),
        )
        .unwrap_err();
        assert!(
            error.contains("expose_headers lacks grpc-status"),
            "{error}"
        );
        let allow = [
            "x-grpc-web",
            "grpc-timeout",
            "connect-protocol-version",
            "connect-timeout-ms",
        ];
        assert!(check_cors(&both, Some(&cors(&allow, &["grpc-status", "grpc-message"]))).is_ok());
        assert!(check_cors(&both, None).is_ok(), "no browser origin allowed");
    }
}
