//! The local Envoy: the bootstrap `make run` and the end-to-end tests start, and the filter
//! entries it is made of.

use crate::{
    rbac_filter, to_yaml, ChainFeatures, EdgeConfig, FilterConfigs, FilterModule, Slot, Topology,
    GENERATED_NOTICE,
};
use serde_json::{json, Value};

impl EdgeConfig {
    /// The Envoy bootstrap for a local (non-mesh) edge.
    pub fn envoy_bootstrap(&self, topology: &Topology) -> Result<Value, String> {
        let filters = self.filter_configs(str::to_string)?;
        let mut virtual_host = json!({
            "name": "edge",
            "domains": ["*"],
            "routes": self.local_routes()?,
            "request_headers_to_remove": crate::EDGE_ONLY_HEADERS
        });
        if let Some(cors) = &self.cors {
            virtual_host["typed_per_filter_config"] =
                json!({ "envoy.filters.http.cors": cors.envoy_policy() });
        }
        let mut connection_manager = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress",
            "codec_type": "AUTO",
            // As on Istio's gateway (every connection manager istiod builds has it): WebSocket
            // upgrades go through the filters, where the native transcoder serves streams.
            "upgrade_configs": [{ "upgrade_type": "websocket" }],
            "route_config": {
                "name": "edge",
                "virtual_hosts": [virtual_host]
            },
            "http_filters": self.local_http_filters(&filters, topology)?
        });
        for (field, value) in self.connection_manager_settings()? {
            connection_manager[field] = value;
        }
        let access_logs = topology.module.access_logs();
        if !access_logs.is_empty() {
            connection_manager["access_log"] = json!(access_logs);
        }
        if let Some(tracing) = &self.tracing {
            connection_manager["tracing"] = tracing.connection_manager();
        }
        Ok(json!({
            // xDS (the filters' ECDS files) needs the node named.
            "node": { "id": "edge", "cluster": "edge" },
            "overload_manager": self.limits.overload_manager(),
            "stats_config": stats_config(),
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": topology.admin_port } } },
            "static_resources": {
                "listeners": [{
                    "name": "ingress",
                    "address": { "socket_address": { "address": "127.0.0.1", "port_value": topology.listen_port } },
                    "per_connection_buffer_limit_bytes": self.limits.connection_buffer_bytes,
                    "filter_chains": [{ "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": connection_manager
                    }] }]
                }],
                "clusters": self.local_clusters(&filters, topology)?
            }
        }))
    }

    /// gRPC clients' routes (a rollout's first, matched on auth's choice), then the catch-all
    /// JSON requests run their filters on. Matched on the path alone, as Istio's VirtualService
    /// routes are: a gRPC-Web or Connect call is routed (by the CORS filter, first to ask)
    /// before Envoy's filters make it gRPC, and must land on its service all the same.
    fn local_routes(&self) -> Result<Vec<Value>, String> {
        let grpc_route = |grpc_service: &str, cluster: &str, backend: Option<&str>| {
            let mut route = json!({
                "match": { "prefix": format!("/{grpc_service}/") },
                "route": { "cluster": cluster, "timeout": "30s" },
                // gRPC streams straight through; only transcoded requests are held.
                "typed_per_filter_config": { "envoy.filters.http.buffer": buffer_disabled() }
            });
            // A rollout's choice, made by auth: gRPC clients follow it as JSON clients do.
            if let Some(backend) = backend {
                route["match"]["headers"] = json!([{
                    "name": self.backend_header(),
                    "string_match": { "exact": backend }
                }]);
            }
            route
        };
        let mut routes: Vec<Value> = Vec::new();
        for (rollout, _) in self.checked_rollouts()? {
            let service = &self.services[&rollout.service];
            routes.push(grpc_route(
                &service.grpc_service,
                &rollout.to,
                Some(&rollout.to),
            ));
        }
        routes.extend(
            self.services
                .iter()
                .filter(|(_, service)| service.public)
                .map(|(name, service)| grpc_route(&service.grpc_service, name, None)),
        );
        if let Some((name, _)) = self.reflection()? {
            routes.extend(
                crate::REFLECTION_SERVICES
                    .iter()
                    .map(|reflection| grpc_route(reflection, name, None)),
            );
        }
        // JSON requests are answered by the filters, but need a route for them to run on: a
        // real one (Envoy's CORS filter ignores direct responses), to the same service as the
        // Istio VirtualService's catch-all.
        if let Some(name) = self.transcoded_route_service() {
            routes.push(json!({
                "match": { "prefix": "/" },
                "route": { "cluster": name, "timeout": "30s" }
            }));
        }
        Ok(routes)
    }

    /// A cluster per service at its address in `topology` (and the trace collector's).
    fn local_clusters(
        &self,
        filters: &FilterConfigs,
        topology: &Topology,
    ) -> Result<Vec<Value>, String> {
        let mut clusters = self.service_clusters(filters, str::to_string, |name| {
            topology
                .service_addrs
                .get(name)
                .cloned()
                .ok_or_else(|| format!("no address for service {name}"))
        })?;
        if let Some(tracing) = &self.tracing {
            clusters.push(tracing.collector_cluster()?);
        }
        Ok(clusters)
    }

    /// A cluster per service, named `cluster_name(service)`, at `address(service)`
    /// (`host:port`: an IP address as is, a DNS name resolved by Envoy), over HTTP/2.
    pub(crate) fn service_clusters(
        &self,
        filters: &FilterConfigs,
        cluster_name: impl Fn(&str) -> String,
        address: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Vec<Value>, String> {
        // Every stream to a backend ends within the transcoder's deadline (plus a second for
        // the backend's own DEADLINE_EXCEEDED to arrive first): gRPC streams opened by a Wasm
        // filter carry grpc-timeout but have no deadline of Envoy's own.
        let timeout_ms =
            serde_json::from_value::<edge_transcoder::TranscoderConfig>(filters.transcoder.clone())
                .map_err(|e| format!("transcoder: {e}"))?
                .timeout_ms;
        let max_stream_duration = format!("{}s", timeout_ms.div_ceil(1000) + 1);
        let mut clusters = Vec::new();
        for name in self.services.keys() {
            let addr = address(name)?;
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| format!("bad address {addr}"))?;
            let port: u16 = port.parse().map_err(|_| format!("bad port in {addr}"))?;
            let discovery = if host.parse::<std::net::IpAddr>().is_ok() {
                "STATIC"
            } else {
                "STRICT_DNS"
            };
            let cluster = cluster_name(name);
            clusters.push(json!({
                "name": cluster,
                "type": discovery,
                "connect_timeout": "1s",
                "per_connection_buffer_limit_bytes": self.limits.connection_buffer_bytes,
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} },
                        "common_http_protocol_options": { "max_stream_duration": max_stream_duration }
                    }
                },
                "load_assignment": {
                    "cluster_name": cluster,
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                        "socket_address": { "address": host, "port_value": port }
                    } } }] }]
                }
            }));
        }
        Ok(clusters)
    }

    /// The chain Istio builds (see `mesh`), with the AuthorizationPolicies of the topology.
    fn local_http_filters(
        &self,
        filters: &FilterConfigs,
        topology: &Topology,
    ) -> Result<Vec<Value>, String> {
        let plugin = |name: &str, config: &Value| match &topology.xds_dir {
            Some(dir) => discovered_filter(name, dir, &topology.module),
            None => topology.module.filter(name, config),
        };
        let policies = self.authorization_policies()?;
        let deny = rbac_filter(&policies, "DENY")?;
        let allow = rbac_filter(&policies, "ALLOW")?;
        let rate_limits = self.rate_limit_filters()?;
        Ok(topology
            .module
            .target
            .chain(ChainFeatures {
                cors: self.cors.is_some(),
                deny: deny.is_some(),
                allow: allow.is_some(),
                rate_limits: !rate_limits.is_empty(),
                trace_context: self.tracing.is_some(),
                web_protocols: !self.web_protocols.is_empty(),
            })
            .into_iter()
            .flat_map(|slot| match slot {
                Slot::CorsFirst => vec![cors_filter()],
                Slot::WebProtocols => crate::web_protocol_filters(&self.web_protocols),
                Slot::Plugin(slot) => vec![plugin(slot.name(), &filters.of(slot.filter))],
                Slot::RbacDeny => deny.clone().into_iter().collect(),
                Slot::RbacAllow => allow.clone().into_iter().collect(),
                Slot::RateLimits => rate_limits.clone(),
                Slot::TraceContext => vec![crate::trace_context_filter()],
                Slot::Buffer => vec![buffer_filter()],
                Slot::Router => vec![router_filter()],
            })
            .collect())
    }
}

impl EdgeConfig {
    /// What the edge sets on the connection manager, locally and (merged by an EnvoyFilter) in
    /// Istio's gateway.
    pub fn connection_manager_settings(&self) -> Result<Vec<(&'static str, Value)>, String> {
        let mut settings = vec![
            // The edge is the first proxy: the client address is the peer's, never what a client
            // writes in X-Forwarded-For (Istio's gateway does the same with no trusted hops). Rate
            // limits and RBAC key on it.
            ("use_remote_address", json!(true)),
            // ...but a client's own x-request-id is kept (Envoy replaces an external client's by
            // default): clients correlate their calls with the access log by it.
            ("preserve_external_request_id", json!(true)),
            // Policies match normalized paths: /a/./b, /a//b and %-escape case tricks cannot
            // slip past a rule. Istio's gateway normalizes (`pathNormalization: BASE`) but
            // keeps double slashes unless told here.
            ("normalize_path", json!(true)),
            ("merge_slashes", json!(true)),
            // Envoy makes an x-request-id when the client sent none; clients get it back,
            // backends get it as metadata, logs carry it. (Istio's gateway does not return it
            // unless told here.)
            ("always_set_request_id_in_response", json!(true)),
        ];
        let rate_limited = !self.rate_limit_filters()?.is_empty();
        settings.push((
            "local_reply_config",
            crate::local_reply_config(rate_limited),
        ));
        if self.tracing.is_some() {
            // Sample by chance, not by request id: a client's own id need not be a UUID (Envoy
            // would not trace it), and it stays as the client wrote it.
            settings.push((
                "request_id_extension",
                json!({ "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
                    "pack_trace_reason": false,
                    "use_request_id_for_trace_sampling": false
                } }),
            ));
        }
        settings.extend(self.limits.connection_manager());
        Ok(settings)
    }
}

/// One of our filters, its configuration discovered from `<dir>/<name>.json` (ECDS over a
/// watched file): changing the file reconfigures the running Envoy.
pub fn discovered_filter(name: &str, dir: &str, module: &FilterModule) -> Value {
    json!({
        "name": format!("edge.{name}"),
        "config_discovery": {
            "config_source": {
                "path_config_source": {
                    "path": format!("{dir}/{name}.json"),
                    "watched_directory": { "path": dir }
                },
                "resource_api_version": "V3"
            },
            "type_urls": [module.type_url()]
        }
    })
}

/// Holds request headers until the transcoder, which keeps the body and answers locally, is
/// done (proxy-wasm cannot pause headers and still see the body). Its limit is a backstop
/// only: the transcoder refuses large bodies first.
pub fn buffer_filter() -> Value {
    json!({
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 1048576
        }
    })
}

/// The buffer filter's per-route switch, off: on gRPC routes, which stream straight through.
pub fn buffer_disabled() -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
        "disabled": true
    })
}

/// Envoy's CORS filter; its policy is the virtual host's (`cors` in edge.json).
pub fn cors_filter() -> Value {
    json!({
        "name": "envoy.filters.http.cors",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors" }
    })
}

pub fn router_filter() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    })
}

/// Turns the labels the access-log filter encodes in its metric names (`.edge_<label>.<value>`)
/// into Prometheus labels.
pub fn stats_config() -> Value {
    let tags: Vec<Value> = edge_access_log::metrics::LABELS
        .iter()
        .map(|label| json!({ "tag_name": label, "regex": format!("(\\.edge_{label}\\.([^.]+))") }))
        .collect();
    json!({ "stats_tags": tags })
}

/// The committed `envoy/envoy.yaml` for `make run`.
pub fn render_local_envoy(config: &EdgeConfig, target: crate::Target) -> Result<String, String> {
    let bootstrap = config.envoy_bootstrap(&Topology::local(config, target))?;
    Ok(format!("{GENERATED_NOTICE}{}", to_yaml(&bootstrap)))
}
