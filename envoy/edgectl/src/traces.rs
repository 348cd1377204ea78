//! Traces: the edge span comes from Envoy's own OpenTelemetry tracer (locally the connection
//! manager's `tracing`; in Istio a Telemetry resource and a mesh `extensionProviders` entry),
//! exported over OTLP/gRPC. A native `header_mutation` filter hands the span's ids to the
//! transcoder, whose backend calls Envoy does not trace (`edge_core::trace`); the services export
//! their own spans to the same collector (`OTEL_EXPORTER_OTLP_ENDPOINT`).

use edge_core::trace::{AUTH_REASON_HEADER, EDGE_SPAN_HEADER, ROUTE_HEADER, SPAN_TAGS};
use serde::Deserialize;
use serde_json::{json, Value};

/// `tracing` in `envoy/edge.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// `host:port` of the OTLP/gRPC collector that the local Envoy and services export to.
    pub collector: String,
    /// The collector in the cluster: `host:port` of its Kubernetes Service.
    pub cluster_collector: String,
    /// The edge spans' `service.name`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_service_name() -> String {
    "edge".into()
}

/// The local Envoy's cluster for the collector.
pub const COLLECTOR_CLUSTER: &str = "opentelemetry-collector";

/// The mesh's name for the tracing provider (`extensionProviders`).
pub const PROVIDER: &str = "edge-opentelemetry";

/// Headers only the edge's filters set, for Envoy's tracer: never sent to a backend. Not
/// [`ROUTE_HEADER`]: the router removes these from the request itself, before the edge span
/// reads its tags, and a call transcoded in place goes through the router; the route template
/// it carries is the public API's.
pub const EDGE_ONLY_HEADERS: [&str; 3] = [
    EDGE_SPAN_HEADER,
    AUTH_REASON_HEADER,
    edge_core::CLIENT_CONTENT_TYPE_HEADER,
];

fn host_port(address: &str, field: &str) -> Result<(String, u16), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("tracing.{field}: {address:?} is not host:port"))?;
    let port = port
        .parse()
        .map_err(|_| format!("tracing.{field}: bad port in {address:?}"))?;
    Ok((host.to_string(), port))
}

impl Tracing {
    /// The local connection manager's `tracing`: every request the edge starts a trace for is
    /// sampled (sample in the collector, which sees whole traces); a client's `traceparent`
    /// and its sampling decision are kept, the edge span being its child.
    pub fn connection_manager(&self) -> Value {
        json!({
            "random_sampling": { "value": 100 },
            // A span of its own for each call the router makes, as Istio's gateways have
            // (`spawn_upstream_span` on every router proxy): a gRPC client's call through the
            // router is the edge's server span, then its client span, then the backend's.
            "spawn_upstream_span": true,
            "custom_tags": SPAN_TAGS
                .iter()
                .map(|(tag, header)| json!({ "tag": tag, "request_header": { "name": header } }))
                .collect::<Vec<_>>(),
            "provider": {
                "name": "envoy.tracers.opentelemetry",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                    "grpc_service": {
                        "envoy_grpc": { "cluster_name": COLLECTOR_CLUSTER },
                        "timeout": "1s"
                    },
                    "service_name": self.service_name
                }
            }
        })
    }

    /// The local Envoy's cluster for [`Self::collector`].
    pub fn collector_cluster(&self) -> Result<Value, String> {
        let (host, port) = host_port(&self.collector, "collector")?;
        Ok(json!({
            "name": COLLECTOR_CLUSTER,
            "type": "STRICT_DNS",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": { "http2_protocol_options": {} }
                }
            },
            "load_assignment": {
                "cluster_name": COLLECTOR_CLUSTER,
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                    "socket_address": { "address": host, "port_value": port }
                } } }] }]
            }
        }))
    }

    /// The mesh's `extensionProviders` entry for the collector.
    pub fn istio_provider(&self) -> Result<Value, String> {
        let (service, port) = host_port(&self.cluster_collector, "cluster_collector")?;
        Ok(json!({
            "name": PROVIDER,
            "opentelemetry": { "service": service, "port": port }
        }))
    }

    /// Istio's Telemetry for the gateway: the same sampling and span attributes as locally.
    pub fn istio_telemetry(&self, namespace: &str, selector: &str) -> Value {
        let tags: serde_json::Map<String, Value> = SPAN_TAGS
            .iter()
            .map(|(tag, header)| (tag.to_string(), json!({ "header": { "name": header } })))
            .collect();
        json!({
            "apiVersion": "telemetry.istio.io/v1",
            "kind": "Telemetry",
            "metadata": { "name": "edge-tracing", "namespace": namespace },
            "spec": {
                "selector": { "matchLabels": { "istio": selector } },
                "tracing": [{
                    "providers": [{ "name": PROVIDER }],
                    "randomSamplingPercentage": 100,
                    "customTags": tags
                }]
            }
        })
    }
}

/// Envoy's `header_mutation` filter, first in the chain: writes the active (edge) span's ids
/// into [`EDGE_SPAN_HEADER`] (a client's copy is overwritten), and removes client-sent copies
/// of the other edge-only headers before the filters that set them.
pub fn trace_context_filter() -> Value {
    let mut mutations = vec![json!({
        "append": {
            "header": { "key": EDGE_SPAN_HEADER, "value": "%TRACE_ID%-%SPAN_ID%" },
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
        }
    })];
    mutations.extend([ROUTE_HEADER, AUTH_REASON_HEADER].map(|h| json!({ "remove": h })));
    json!({
        "name": "edge.trace-context",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": { "request_mutations": mutations }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_addresses_must_be_host_and_port() {
        let tracing = Tracing {
            collector: "127.0.0.1".into(),
            cluster_collector: "otel.observability.svc.cluster.local:4317".into(),
            service_name: "edge".into(),
        };
        assert!(tracing.collector_cluster().is_err());
        assert_eq!(
            tracing.istio_provider().unwrap()["opentelemetry"]["port"],
            4317
        );
    }
}
