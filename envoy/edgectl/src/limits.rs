//! The edge's limits and timeouts (`limits` in edge.json), after Envoy's "Configuring Envoy as
//! an edge proxy" page, rendered for the local bootstrap and for Istio's gateway (whose own
//! defaults are looser: no header or stream-idle timeout, 1 MiB connection buffers, 1024 HTTP/2
//! streams with 16 MiB windows, no heap limit).

use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open client connections at most; more are closed as soon as accepted.
    pub max_connections: u64,
    /// Envoy's heap: past 95% it returns free memory to the OS, past 85–95% it resets the
    /// streams buffering most, past 98% it answers new requests 503.
    pub max_heap_bytes: u64,
    /// Bytes buffered per connection, client side and backend side, before Envoy stops reading.
    pub connection_buffer_bytes: u32,
    /// A client must send its whole header block within this (408 otherwise): slowloris.
    pub request_headers_timeout_seconds: u64,
    /// A stream with no activity for this long is reset (a client that stops reading, or
    /// declares a body it never sends).
    pub stream_idle_timeout_seconds: u64,
    /// A whole request, headers to last byte, within this.
    pub request_timeout_seconds: u64,
    /// A connection with no stream for this long is closed.
    pub idle_timeout_seconds: u64,
    /// Request header block, and number of headers: 431 beyond (HTTP/2: the stream is reset).
    pub max_request_headers_kb: u32,
    pub max_headers_count: u32,
    /// HTTP/2 streams per connection; more are refused (REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// HTTP/2 flow-control windows: how much a client may send before Envoy's go-ahead.
    pub initial_stream_window_bytes: u32,
    pub initial_connection_window_bytes: u32,
    /// Headers with `_` in their names are refused with 400: some backends read `x_user_id`
    /// as `x-user-id`, and auth only strips the latter.
    pub reject_headers_with_underscores: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_heap_bytes: 1 << 30,
            connection_buffer_bytes: 32 * 1024,
            request_headers_timeout_seconds: 10,
            stream_idle_timeout_seconds: 300,
            request_timeout_seconds: 300,
            idle_timeout_seconds: 3600,
            max_request_headers_kb: 60,
            max_headers_count: 100,
            max_concurrent_streams: 100,
            initial_stream_window_bytes: 64 * 1024,
            initial_connection_window_bytes: 1024 * 1024,
            reject_headers_with_underscores: true,
        }
    }
}

fn seconds(value: u64) -> Value {
    json!(format!("{value}s"))
}

impl Limits {
    pub fn check(&self) -> Result<(), String> {
        let windows = 65_535..=(1 << 31) - 1;
        if !windows.contains(&self.initial_stream_window_bytes)
            || !windows.contains(&self.initial_connection_window_bytes)
        {
            return Err("limits: HTTP/2 windows must be 65535 ..= 2^31-1 bytes".into());
        }
        if self.max_connections == 0
            || self.max_heap_bytes == 0
            || self.connection_buffer_bytes == 0
        {
            return Err("limits: connections, heap and buffers must be above zero".into());
        }
        Ok(())
    }

    /// Fields of the HTTP connection manager.
    pub fn connection_manager(&self) -> Vec<(&'static str, Value)> {
        vec![
            (
                "request_headers_timeout",
                seconds(self.request_headers_timeout_seconds),
            ),
            (
                "stream_idle_timeout",
                seconds(self.stream_idle_timeout_seconds),
            ),
            ("request_timeout", seconds(self.request_timeout_seconds)),
            ("max_request_headers_kb", json!(self.max_request_headers_kb)),
            (
                "common_http_protocol_options",
                json!({
                    "idle_timeout": seconds(self.idle_timeout_seconds),
                    "max_headers_count": self.max_headers_count,
                    "headers_with_underscores_action":
                        if self.reject_headers_with_underscores { "REJECT_REQUEST" } else { "ALLOW" }
                }),
            ),
            (
                "http2_protocol_options",
                json!({
                    "max_concurrent_streams": self.max_concurrent_streams,
                    "initial_stream_window_size": self.initial_stream_window_bytes,
                    "initial_connection_window_size": self.initial_connection_window_bytes
                }),
            ),
        ]
    }

    /// The heap monitor and what Envoy does under memory pressure; both the local bootstrap
    /// and Istio's gateway (through its bootstrap override) carry it.
    pub fn heap_overload(&self) -> (Value, Vec<Value>) {
        let monitor = json!({
            "name": "envoy.resource_monitors.fixed_heap",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig",
                "max_heap_size_bytes": self.max_heap_bytes
            }
        });
        let heap = "envoy.resource_monitors.fixed_heap";
        let actions = vec![
            json!({ "name": "envoy.overload_actions.shrink_heap",
                    "triggers": [{ "name": heap, "threshold": { "value": 0.95 } }] }),
            json!({ "name": "envoy.overload_actions.stop_accepting_requests",
                    "triggers": [{ "name": heap, "threshold": { "value": 0.98 } }] }),
            json!({ "name": "envoy.overload_actions.reset_high_memory_stream",
                    "triggers": [{ "name": heap, "scaled": {
                        "scaling_threshold": 0.85, "saturation_threshold": 0.95 } }] }),
        ];
        (monitor, actions)
    }

    /// The local bootstrap's `overload_manager`: the heap, and the connection cap (Istio's
    /// gateway declares its own connection monitor, set from `proxyMetadata`).
    pub fn overload_manager(&self) -> Value {
        let (heap, actions) = self.heap_overload();
        json!({
            "refresh_interval": "0.25s",
            "resource_monitors": [
                heap,
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": self.max_connections
                    }
                }
            ],
            "actions": actions,
            // Streams are accounted from 1 MiB of buffered data: the ones reset first.
            "buffer_factory_config": { "minimum_account_to_track_power_of_two": 20 }
        })
    }
}
