//! The transcoder's configuration, as JSON in the Wasm plugin's `configuration`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscoderConfig {
    /// A serialized `google.protobuf.FileDescriptorSet`, base64: the services, their messages
    /// and their `google.api.http` annotations.
    pub descriptor_set: String,
    /// Services exposed over HTTP, by full name, with the Envoy cluster (HTTP/2) serving each.
    /// Annotated services not listed here get no route, so internal services never leak.
    pub services: BTreeMap<String, String>,
    /// Deadline for each backend call (a client's shorter `grpc-timeout` wins).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Larger request bodies are refused with 413 before reaching a backend.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// A server stream is held (until it ends) up to this many bytes of messages; past it the
    /// stream is cancelled and answered with what came and a RESOURCE_EXHAUSTED entry.
    #[serde(default = "default_max_stream_bytes")]
    pub max_stream_bytes: usize,
    /// Envoy's per-connection buffer limit on the listener (`per_connection_buffer_limit_bytes`,
    /// 1 MiB by default), which is also the most of a response body Envoy holds for a filter:
    /// a live stream keeps what it holds between two flushes under it, and ends with
    /// RESOURCE_EXHAUSTED past it. `edgectl` sets it from `limits.connection_buffer_bytes`.
    #[serde(default = "default_buffer_limit_bytes")]
    pub buffer_limit_bytes: usize,
    /// Request headers passed to the backend as gRPC metadata.
    #[serde(default = "default_forward_headers")]
    pub forward_headers: Vec<String>,
    /// gRPC response metadata (initial or trailing) returned to HTTP clients as headers.
    #[serde(default)]
    pub response_headers: Vec<String>,
    /// `+` in a query string is a space, as in HTML forms and grpc-gateway (Envoy's
    /// `query_param_unescape_plus`).
    #[serde(default = "enabled")]
    pub query_plus_as_space: bool,
    /// A query parameter naming no field is refused with 400 instead of ignored (grpc-gateway
    /// ignores it; Envoy's native filter refuses it unless `ignore_unknown_query_parameters`).
    #[serde(default)]
    pub reject_unknown_query_parameters: bool,
    /// A JSON body field naming no field is refused with 400 instead of dropped (Mercari's
    /// gateway and grpc-gateway drop it, so clients and servers evolve independently).
    #[serde(default)]
    pub reject_unknown_json_fields: bool,
    #[serde(default)]
    pub print: PrintOptions,
    /// Let CORS preflights through to Envoy's CORS filter after this one (Istio places it
    /// after every WasmPlugin). `edgectl` sets it when `cors` is configured; otherwise a
    /// preflight is answered 404/405 like any request no route serves.
    #[serde(default)]
    pub pass_cors_preflights: bool,
    /// The origins a browser's WebSocket may come from (its `Origin`; `*`: any). CORS does not
    /// guard a WebSocket, so a page of any origin could otherwise open one with the user's
    /// cookies. Empty: not checked. `edgectl` sets it to `cors.allow_origins`. A client that
    /// sends no `Origin` (not a browser) is not checked.
    #[serde(default)]
    pub socket_origins: Vec<String>,
    /// Services moving to a new deployment: service → the new deployment's cluster. A request
    /// whose `backend_header` (set by auth, never by clients) names that cluster is sent there.
    #[serde(default)]
    pub rollouts: BTreeMap<String, String>,
    #[serde(default = "default_backend_header")]
    pub backend_header: String,
    /// The API's description, served to `GET path` (`edgectl` renders the document from the
    /// same bindings and the auth policy, so a policy change changes it too).
    #[serde(default)]
    pub openapi: Option<ApiDescription>,
}

/// A document served as it is, `application/json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDescription {
    pub path: String,
    #[serde(default)]
    pub document: String,
}

/// How responses are rendered (the names of Envoy's `print_options`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrintOptions {
    /// `customer_id` rather than `customerId`.
    pub preserve_proto_field_names: bool,
    /// Print fields that hold their default value (0, "", false) instead of omitting them.
    pub always_print_primitive_fields: bool,
    pub always_print_enums_as_ints: bool,
    /// Indented, multi-line JSON.
    pub add_whitespace: bool,
}

impl Default for PrintOptions {
    fn default() -> Self {
        Self {
            preserve_proto_field_names: true,
            always_print_primitive_fields: false,
            always_print_enums_as_ints: false,
            add_whitespace: false,
        }
    }
}

/// Headers that describe one HTTP hop, never the call: forwarding them as gRPC metadata would
/// confuse the backend's HTTP/2 stack (RFC 9110 §7.6.1, and gRPC's own reserved names).
const NOT_METADATA: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-type",
];

impl TranscoderConfig {
    /// Refuses header lists that cannot work, naming the offending entry.
    pub fn check_headers(&self) -> Result<(), String> {
        for (list, names) in [
            ("forward_headers", &self.forward_headers),
            ("response_headers", &self.response_headers),
        ] {
            for name in names {
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !valid {
                    return Err(format!("{list}: {name:?} is not a lowercase header name"));
                }
                if NOT_METADATA.contains(&name.as_str()) || name.starts_with("grpc-") {
                    return Err(format!(
                        "{list}: {name:?} is hop-by-hop or reserved by gRPC and is never forwarded"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn default_backend_header() -> String {
    edge_core::BACKEND_HEADER.to_string()
}

fn enabled() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_max_stream_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_buffer_limit_bytes() -> usize {
    1024 * 1024
}
fn default_forward_headers() -> Vec<String> {
    [
        edge_core::USER_ID_HEADER,
        "x-request-id",
        "traceparent",
        "tracestate",
    ]
    .map(String::from)
    .to_vec()
}
