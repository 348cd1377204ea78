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
    /// Deadline for each backend call.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Larger request bodies are refused with 413 before reaching a backend.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Request headers passed to the backend as gRPC metadata.
    #[serde(default = "default_forward_headers")]
    pub forward_headers: Vec<String>,
    #[serde(default)]
    pub print: PrintOptions,
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
}

impl Default for PrintOptions {
    fn default() -> Self {
        Self {
            preserve_proto_field_names: true,
            always_print_primitive_fields: false,
            always_print_enums_as_ints: false,
        }
    }
}

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_body_bytes() -> usize {
    64 * 1024
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
