//! What the auth and transcoder filters tell the access log about a request: one filter-state
//! record per filter, so that `on_log` reads two properties instead of one per field (each
//! `get_property` is a host call that builds its value and re-enters the VM to allocate it).
//! Protobuf-encoded: a value may hold any byte, and a missing field decodes as empty.

use prost::Message;

/// The property auth records its [`AuthNote`] under.
pub const AUTH: &str = "edge_auth";
/// The property the transcoder records its [`TranscodeNote`] under.
pub const TRANSCODE: &str = "edge_transcode";

/// Auth's verdict: the verified subject, or why the request was refused.
#[derive(Clone, PartialEq, Message)]
pub struct AuthNote {
    /// The subject auth verified; empty for anonymous requests and refusals.
    #[prost(string, tag = "1")]
    pub subject: String,
    /// Why auth refused the request (e.g. `token_rejected`); empty when it let it through.
    #[prost(string, tag = "2")]
    pub reason: String,
}

/// The transcoder's account of a request it translated (or refused to).
#[derive(Clone, PartialEq, Message)]
pub struct TranscodeNote {
    /// The matched route template, e.g. `/catalog/items/{id}`.
    #[prost(string, tag = "1")]
    pub route: String,
    /// The gRPC method called, e.g. `/catalog.CatalogService/GetItem`.
    #[prost(string, tag = "2")]
    pub grpc_method: String,
    /// The gRPC status the backend answered with (absent: no answer yet or no call made).
    #[prost(uint32, optional, tag = "3")]
    pub grpc_status: Option<u32>,
    /// Milliseconds between dispatching the call and its response.
    #[prost(double, optional, tag = "4")]
    pub upstream_ms: Option<f64>,
    /// The cluster the call went to (the router's `xds.cluster_name` does not apply to it).
    #[prost(string, tag = "5")]
    pub upstream_cluster: String,
    /// What went wrong when the transcoder answered with an error of its own (e.g. `no_route`).
    #[prost(string, tag = "6")]
    pub error: String,
}

/// A note's bytes, for `set_property`.
pub fn encode(note: &impl Message) -> Vec<u8> {
    note.encode_to_vec()
}

/// Decodes a note; an absent or unreadable record reads as an empty note (the access log
/// then logs what Envoy knows, never fails the line).
pub fn decode<T: Message + Default>(bytes: Option<&[u8]>) -> T {
    bytes
        .and_then(|bytes| T::decode(bytes).ok())
        .unwrap_or_default()
}

/// `Some` for a non-empty field: the access log omits what a filter did not say.
pub fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_absent_reads_empty() {
        let note = TranscodeNote {
            route: "/catalog/items/{id}".into(),
            grpc_method: "/catalog.CatalogService/GetItem".into(),
            grpc_status: Some(0),
            upstream_ms: Some(1.25),
            upstream_cluster: "catalog\n\u{0}odd".into(),
            error: String::new(),
        };
        let decoded: TranscodeNote = decode(Some(&note.encode_to_vec()));
        assert_eq!(decoded, note);
        let absent: AuthNote = decode(None);
        assert_eq!(absent, AuthNote::default());
        let garbage: TranscodeNote = decode(Some(b"\xff\xff\xff"));
        assert_eq!(garbage.grpc_status, None);
        assert_eq!(non_empty(""), None);
        assert_eq!(non_empty("x").as_deref(), Some("x"));
    }
}
