//! The edge's configuration has one source, `envoy/edge.json`: the services, the auth policy,
//! the transcoder and access-log settings. This crate renders from it everything that runs:
//! the local Envoy bootstrap (`envoy/envoy.yaml`, used by `make run`) and the configurations
//! the end-to-end tests start Envoy with, so they cannot drift apart. Each filter's
//! configuration is checked with that filter's own parser before anything is written.

mod yaml;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

pub use yaml::to_yaml;

mod cors;
mod istio;
mod live;
pub use cors::CorsSettings;
pub use istio::{Digests, Files, IstioSettings, Objects, FILTERS, WASM_MOUNT};
pub use live::apply_policy;

/// `envoy/edge.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Backend services by short name (also their Envoy cluster name locally).
    pub services: BTreeMap<String, Service>,
    /// The auth filter's configuration; `authority.cluster` names a service above.
    pub auth: Value,
    /// The transcoder's configuration without `descriptor_set` and `services`, which are
    /// derived: every public service, and the platform's descriptor set unless
    /// `descriptor_set_file` names a `FileDescriptorSet` file (relative to the working
    /// directory), e.g. one that `buf build` or `protoc --include_imports` wrote for new APIs.
    pub transcoder: Map<String, Value>,
    pub access_log: Value,
    /// Browser origins allowed to call the edge; none when absent.
    #[serde(default)]
    pub cors: Option<CorsSettings>,
    /// Where the Istio manifests put images and filters (see `istio/`).
    #[serde(default)]
    pub istio: Option<IstioSettings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Full gRPC service name, e.g. `catalog.CatalogService`.
    pub grpc_service: String,
    /// The port it listens on by default (local runs, Kubernetes Services).
    pub port: u16,
    /// Reachable from the edge (HTTP routes and gRPC pass-through); internal otherwise.
    pub public: bool,
    /// Services it calls (each gets `<NAME>_ADDR` in the cluster).
    #[serde(default)]
    pub calls: Vec<String>,
    /// Owns a database (`DATABASE_URL`: a SQLite file on its volume, or PostgreSQL).
    #[serde(default)]
    pub database: bool,
    /// Has a persistent volume at /data (implied by `database`).
    #[serde(default)]
    pub volume: bool,
    /// Further environment in the cluster.
    #[serde(default)]
    pub cluster_env: BTreeMap<String, String>,
}

/// Where things are for one running edge.
#[derive(Debug, Clone)]
pub struct Topology {
    pub listen_port: u16,
    pub admin_port: u16,
    /// Directory holding auth.wasm, transcoder.wasm and access-log.wasm.
    pub wasm_dir: String,
    /// `host:port` of each service by short name.
    pub service_addrs: BTreeMap<String, String>,
    /// Where Envoy watches the filters' configurations (ECDS files, see [`xds_files`]); `None`
    /// puts them inline in the bootstrap, fixed for the life of the process.
    ///
    /// [`xds_files`]: EdgeConfig::xds_files
    pub xds_dir: Option<String>,
}

impl Topology {
    /// `make run`: fixed, documented ports on loopback.
    pub fn local(config: &EdgeConfig) -> Self {
        Self {
            listen_port: 8080,
            admin_port: 9901,
            wasm_dir: "target/filters".into(),
            xds_dir: Some(LOCAL_XDS_DIR.into()),
            service_addrs: config
                .services
                .iter()
                .map(|(name, service)| (name.clone(), format!("127.0.0.1:{}", service.port)))
                .collect(),
        }
    }
}

/// The three filters' configurations, ready for Envoy.
#[derive(Debug, Clone)]
pub struct FilterConfigs {
    pub auth: Value,
    pub transcoder: Value,
    pub access_log: Value,
}

impl EdgeConfig {
    /// The service the catch-all route of transcoded requests names: nothing is sent there
    /// (the transcoder answers every such request), but Envoy and Istio want a destination.
    pub fn transcoded_route_service(&self) -> Option<&str> {
        let public = || self.services.iter().filter(|(_, s)| s.public);
        public()
            .find(|(name, _)| name.as_str() == "catalog")
            .or_else(|| public().next())
            .map(|(name, _)| name.as_str())
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let config: Self =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(cors) = &config.cors {
            cors.check()?;
        }
        Ok(config)
    }

    /// Renders each filter's configuration with `cluster_name` naming a service's cluster,
    /// and checks it with the filter's own parser.
    pub fn filter_configs(
        &self,
        cluster_name: impl Fn(&str) -> String,
    ) -> Result<FilterConfigs, String> {
        let mut auth = self.auth.clone();
        let key_source = auth
            .pointer("/authority/cluster")
            .and_then(Value::as_str)
            .ok_or("auth.authority.cluster must name a service")?
            .to_string();
        if !self.services.contains_key(&key_source) {
            return Err(format!("auth.authority.cluster: no service {key_source:?}"));
        }
        auth["authority"]["cluster"] = json!(cluster_name(&key_source));

        let mut transcoder = self.transcoder.clone();
        let descriptor_set = match transcoder.remove("descriptor_set_file") {
            None => platform_proto::FILE_DESCRIPTOR_SET.to_vec(),
            Some(Value::String(path)) => std::fs::read(&path)
                .map_err(|e| format!("transcoder.descriptor_set_file {path}: {e}"))?,
            Some(other) => {
                return Err(format!(
                    "transcoder.descriptor_set_file must be a path, not {other}"
                ))
            }
        };
        transcoder.insert(
            "descriptor_set".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(descriptor_set)),
        );
        let exposed: Map<String, Value> = self
            .services
            .iter()
            .filter(|(_, service)| service.public)
            .map(|(name, service)| (service.grpc_service.clone(), json!(cluster_name(name))))
            .collect();
        transcoder.insert("services".into(), Value::Object(exposed));
        if self.cors.is_some() {
            // In Istio the CORS filter runs after the Wasm filters: preflights must reach it.
            transcoder.insert("pass_cors_preflights".into(), json!(true));
        }
        let transcoder = Value::Object(transcoder);
        let parsed: edge_transcoder::TranscoderConfig =
            serde_json::from_value(transcoder.clone()).map_err(|e| format!("transcoder: {e}"))?;
        let served = edge_transcoder::Transcoder::new(parsed)?.served_routes();
        // Auth answers 404/405 for what no route serves: the table comes from the same
        // descriptor set and services as the transcoder's, so the two cannot disagree.
        if auth.get("routes").is_none() {
            auth["routes"] = served
                .into_iter()
                .map(|(method, path)| json!({ "method": method, "path": path }))
                .collect();
        }
        edge_auth::AuthConfig::from_json(auth.to_string().as_bytes())?;

        let mut access_log = self.access_log.clone();
        if let Some(service) = access_log
            .pointer("/collector/cluster")
            .and_then(Value::as_str)
        {
            if !self.services.contains_key(service) {
                return Err(format!(
                    "access_log.collector.cluster: no service {service:?}"
                ));
            }
            access_log["collector"]["cluster"] = json!(cluster_name(service));
        }
        edge_access_log::AccessLogConfig::from_json(access_log.to_string().as_bytes())?;
        Ok(FilterConfigs {
            auth,
            transcoder,
            access_log,
        })
    }

    /// The Envoy bootstrap for a local (non-mesh) edge.
    pub fn envoy_bootstrap(&self, topology: &Topology) -> Result<Value, String> {
        let filters = self.filter_configs(str::to_string)?;
        let wasm = |name: &str, config: &Value| match &topology.xds_dir {
            Some(dir) => discovered_filter(name, dir),
            None => wasm_filter(name, &topology.wasm_dir, config),
        };
        let mut routes: Vec<Value> = self
            .services
            .iter()
            .filter(|(_, service)| service.public)
            .map(|(name, service)| {
                json!({
                    "match": { "prefix": format!("/{}/", service.grpc_service), "grpc": {} },
                    "route": { "cluster": name, "timeout": "30s" },
                    // gRPC streams straight through; only transcoded requests are held.
                    "typed_per_filter_config": {
                        "envoy.filters.http.buffer": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
                            "disabled": true
                        }
                    }
                })
            })
            .collect();
        // JSON requests are answered by the filters, but need a route for them to run on: a
        // real one (Envoy's CORS filter ignores direct responses), to the same service as the
        // Istio VirtualService's catch-all.
        if let Some(name) = self.transcoded_route_service() {
            routes.push(json!({
                "match": { "prefix": "/" },
                "route": { "cluster": name, "timeout": "30s" }
            }));
        }
        // Every stream to a backend ends within the transcoder's deadline (plus a second for
        // the backend's own DEADLINE_EXCEEDED to arrive first): gRPC streams opened by a Wasm
        // filter carry grpc-timeout but have no deadline of Envoy's own.
        let timeout_ms = self
            .transcoder
            .get("timeout_ms")
            .and_then(Value::as_u64)
            .unwrap_or(10_000);
        let max_stream_duration = format!("{}s", timeout_ms.div_ceil(1000) + 1);
        let mut clusters = Vec::new();
        for name in self.services.keys() {
            let addr = topology
                .service_addrs
                .get(name)
                .ok_or_else(|| format!("no address for service {name}"))?;
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| format!("bad address {addr}"))?;
            let port: u16 = port.parse().map_err(|_| format!("bad port in {addr}"))?;
            clusters.push(json!({
                "name": name,
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} },
                        "common_http_protocol_options": { "max_stream_duration": max_stream_duration }
                    }
                },
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                        "socket_address": { "address": host, "port_value": port }
                    } } }] }]
                }
            }));
        }
        let mut virtual_host = json!({ "name": "edge", "domains": ["*"], "routes": routes });
        let mut http_filters = vec![wasm("access-log", &filters.access_log)];
        if let Some(cors) = &self.cors {
            // Before auth and the transcoder: Envoy's CORS filter answers preflights itself,
            // and only adds its headers to replies of filters after it.
            http_filters.push(json!({
                "name": "envoy.filters.http.cors",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors" }
            }));
            virtual_host["typed_per_filter_config"] =
                json!({ "envoy.filters.http.cors": cors.envoy_policy() });
        }
        http_filters.extend([
            wasm("auth", &filters.auth),
            wasm("transcoder", &filters.transcoder),
            buffer_filter(),
            router_filter(),
        ]);
        Ok(json!({
            // xDS (the filters' ECDS files) needs the node named.
            "node": { "id": "edge", "cluster": "edge" },
            "stats_config": stats_config(),
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": topology.admin_port } } },
            "static_resources": {
                "listeners": [{
                    "name": "ingress",
                    "address": { "socket_address": { "address": "127.0.0.1", "port_value": topology.listen_port } },
                    "filter_chains": [{ "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "ingress",
                            "codec_type": "AUTO",
                            // Policies match normalized paths: /a/./b, /a//b and %-escape case
                            // tricks cannot slip past a rule.
                            "normalize_path": true,
                            "merge_slashes": true,
                            // Envoy makes an x-request-id when the client sent none; clients
                            // get it back, backends get it as metadata, logs carry it.
                            "always_set_request_id_in_response": true,
                            "route_config": {
                                "name": "edge",
                                "virtual_hosts": [virtual_host]
                            },
                            "http_filters": http_filters
                        }
                    }] }]
                }],
                "clusters": clusters
            }
        }))
    }
}

impl EdgeConfig {
    /// The same edge built from Envoy's native filters instead of ours, for benchmarks:
    /// `jwt_authn` (the authority's JWKS inline, verified tokens cached; `sub` forwarded as the
    /// subject header), `grpc_json_transcoder` (same descriptor, services and print options)
    /// and a JSON file access log. Routes that our policy makes `authenticated` require a JWT.
    /// It rewrites `bootstrap`, a rendering of [`EdgeConfig::envoy_bootstrap`], so both run with
    /// the same listener, clusters and ports. Rule paths must be exact or end in `/*`/`/**`
    /// (a prefix): jwt_authn has no segment wildcards.
    pub fn native_bootstrap(
        &self,
        mut bootstrap: Value,
        jwks: &str,
        access_log_path: &str,
    ) -> Result<Value, String> {
        let auth: edge_auth::AuthConfig =
            edge_auth::AuthConfig::from_json(self.auth.to_string().as_bytes())?;
        let public: Vec<String> = self
            .services
            .values()
            .filter(|service| service.public)
            .map(|service| service.grpc_service.clone())
            .collect();
        let requirement_rules: Vec<Value> = auth
            .rules
            .iter()
            .filter(|rule| rule.policy == edge_auth::config::Policy::Authenticated)
            .map(|rule| {
                let pattern = rule.path.as_str();
                let path_match = match pattern
                    .strip_suffix("/**")
                    .or_else(|| pattern.strip_suffix("/*"))
                {
                    Some(prefix) if !prefix.contains('*') => {
                        json!({ "prefix": format!("{prefix}/") })
                    }
                    None if !pattern.contains('*') => json!({ "path": pattern }),
                    _ => return Err(format!("rule path {pattern:?} has no jwt_authn equivalent")),
                };
                Ok((path_match, rule.methods.clone()))
            })
            .collect::<Result<Vec<_>, String>>()?
            .into_iter()
            .flat_map(|(path_match, methods)| {
                let methods = if methods.is_empty() {
                    vec![String::new()]
                } else {
                    methods
                };
                methods.into_iter().map(move |method| {
                    let mut matcher = path_match.clone();
                    if !method.is_empty() {
                        matcher["headers"] =
                            json!([{ "name": ":method", "string_match": { "exact": method } }]);
                    }
                    json!({ "match": matcher, "requires": { "provider_name": "authority" } })
                })
            })
            .collect();
        let jwt_authn = json!({
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": { "authority": {
                    "issuer": auth.issuer.clone().unwrap_or_default(),
                    "audiences": auth.audiences.clone(),
                    "local_jwks": { "inline_string": jwks },
                    "forward": false,
                    "claim_to_headers": [{ "header_name": auth.subject_header.clone(), "claim_name": "sub" }],
                    "clock_skew_seconds": auth.clock_skew_seconds,
                    "jwt_cache_config": { "jwt_cache_size": 1000 }
                } },
                "rules": requirement_rules
            }
        });
        let transcoder = json!({
            "name": "envoy.filters.http.grpc_json_transcoder",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
                "proto_descriptor_bin": base64::engine::general_purpose::STANDARD.encode(platform_proto::FILE_DESCRIPTOR_SET),
                "services": public,
                "convert_grpc_status": true,
                "print_options": { "preserve_proto_field_names": true }
            }
        });
        let router = json!({
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
        });
        let manager = bootstrap
            .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
            .ok_or("bootstrap has no connection manager")?;
        manager["http_filters"] = json!([jwt_authn, transcoder, router]);
        manager["access_log"] = json!([{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": access_log_path,
                "log_format": { "json_format": {
                    "time": "%START_TIME%", "request_id": "%REQ(X-REQUEST-ID)%", "method": "%REQ(:METHOD)%",
                    "path": "%REQ(:PATH)%", "status": "%RESPONSE_CODE%", "grpc_status": "%GRPC_STATUS_NUMBER%",
                    "duration_ms": "%DURATION%", "bytes_in": "%BYTES_RECEIVED%", "bytes_out": "%BYTES_SENT%",
                    "subject": "%REQ(X-USER-ID)%", "user_agent": "%REQ(USER-AGENT)%"
                } }
            }
        }]);
        // The native transcoder rewrites the request to gRPC and lets the router send it, so
        // the HTTP paths need routes to the services (ours answer locally instead).
        let routes = manager
            .pointer_mut("/route_config/virtual_hosts/0/routes")
            .and_then(Value::as_array_mut)
            .ok_or("bootstrap has no routes")?;
        for (name, service) in self.services.iter().filter(|(_, s)| s.public) {
            routes.insert(
                0,
                json!({
                    "match": { "prefix": format!("/{}/", service.grpc_service) },
                    "route": { "cluster": name, "timeout": "30s" }
                }),
            );
        }
        Ok(bootstrap)
    }
}

/// Turns the labels the access-log filter encodes in its metric names (`.edge_<label>.<value>`)
/// into Prometheus labels.
/// Where `make run`'s Envoy watches the filters' configurations (relative to the repository).
pub const LOCAL_XDS_DIR: &str = ".run/xds";

impl EdgeConfig {
    /// The filters' configurations as ECDS files (`DiscoveryResponse`s with one
    /// `TypedExtensionConfig` each), by file name: what a bootstrap with `xds_dir` watches.
    pub fn xds_files(&self, wasm_dir: &str) -> Result<Vec<(String, String)>, String> {
        let filters = self.filter_configs(str::to_string)?;
        Ok([
            ("access-log", &filters.access_log),
            ("auth", &filters.auth),
            ("transcoder", &filters.transcoder),
        ]
        .into_iter()
        .map(|(name, config)| {
            let filter = wasm_filter(name, wasm_dir, config);
            let response = json!({
                "resources": [{
                    "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                    "name": filter["name"],
                    "typed_config": filter["typed_config"]
                }]
            });
            (format!("{name}.json"), response.to_string())
        })
        .collect())
    }
}

/// Writes ECDS files so that Envoy sees each change whole: into a temporary file, then renamed
/// over the watched one (Envoy reloads on moves into the watched directory).
pub fn write_xds(dir: &Path, files: &[(String, String)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, content) in files {
        let staged = dir.join(format!(".{name}.new"));
        std::fs::write(&staged, content)
            .map_err(|e| format!("cannot write {}: {e}", staged.display()))?;
        std::fs::rename(&staged, dir.join(name))
            .map_err(|e| format!("cannot replace {name} in {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// One of our filters, its configuration discovered from `<dir>/<name>.json` (ECDS over a
/// watched file): changing the file reconfigures the running Envoy.
pub fn discovered_filter(name: &str, dir: &str) -> Value {
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
            "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]
        }
    })
}

/// One of our filters as an Envoy HTTP filter: `<wasm_dir>/<name>.wasm` with its JSON
/// configuration, in the V8 runtime.
pub fn wasm_filter(name: &str, wasm_dir: &str, config: &Value) -> Value {
    json!({
        "name": format!("edge.{name}"),
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": format!("{wasm_dir}/{name}.wasm") } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config.to_string()
                },
                // A crashed VM is replaced (after a 1 s backoff) instead of failing every
                // later request on the worker, and never fails open.
                "failure_policy": "FAIL_RELOAD"
            }
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

pub fn router_filter() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    })
}

pub fn stats_config() -> Value {
    let tags: Vec<Value> = edge_access_log::metrics::LABELS
        .iter()
        .map(|label| json!({ "tag_name": label, "regex": format!("(\\.edge_{label}\\.([^.]+))") }))
        .collect();
    json!({ "stats_tags": tags })
}

/// The header of every rendered file.
pub const GENERATED_NOTICE: &str =
    "# Generated by `make config` (edgectl) from envoy/edge.json. Do not edit: edit envoy/edge.json.\n";

/// `istio/base/wasm-digests.json`: the sha256 of each filter's .wasm, as `make images` built them.
pub fn load_digests(path: &Path) -> Result<Digests, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (make digests writes it)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The sha256 of each filter's .wasm in `dir`, as WasmPlugins pin them.
pub fn wasm_digests(dir: &Path) -> Result<Digests, String> {
    use sha2::Digest;
    FILTERS
        .iter()
        .map(|(name, _)| {
            let path = dir.join(format!("{name}.wasm"));
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("{}: {e} (make wasm builds it)", path.display()))?;
            let digest = sha2::Sha256::digest(&bytes);
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            Ok((name.to_string(), hex))
        })
        .collect()
}

/// The committed `envoy/envoy.yaml` for `make run`.
pub fn render_local_envoy(config: &EdgeConfig) -> Result<String, String> {
    let bootstrap = config.envoy_bootstrap(&Topology::local(config))?;
    Ok(format!("{GENERATED_NOTICE}{}", to_yaml(&bootstrap)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_file(relative: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(relative)
    }

    #[test]
    fn committed_envoy_yaml_is_fresh() {
        let config = EdgeConfig::load(&repo_file("envoy/edge.json")).unwrap();
        let rendered = render_local_envoy(&config).unwrap();
        let committed = std::fs::read_to_string(repo_file("envoy/envoy.yaml")).unwrap_or_default();
        assert!(
            rendered == committed,
            "envoy/envoy.yaml is stale: run `make config` and commit the result"
        );
    }

    #[test]
    fn committed_istio_manifests_are_fresh() {
        let config = EdgeConfig::load(&repo_file("envoy/edge.json")).unwrap();
        let digests = load_digests(&repo_file("istio/base/wasm-digests.json")).unwrap();
        for (file, rendered) in config.render_istio(&digests).unwrap() {
            let committed = std::fs::read_to_string(repo_file(&format!("istio/base/{file}")))
                .unwrap_or_default();
            assert!(
                rendered == committed,
                "istio/base/{file} is stale: run `make config` and commit the result"
            );
        }
    }

    #[test]
    fn istio_filters_call_istio_cluster_names() {
        let config = EdgeConfig::load(&repo_file("envoy/edge.json")).unwrap();
        let filters = config.istio_filter_configs().unwrap();
        assert_eq!(
            filters.auth["authority"]["cluster"],
            json!("outbound|50051||authority.authority.svc.cluster.local")
        );
        assert_eq!(
            filters.transcoder["services"]["catalog.CatalogService"],
            json!("outbound|50052||catalog.catalog.svc.cluster.local")
        );
    }

    #[test]
    fn bad_policy_is_refused_at_render_time() {
        let mut config = EdgeConfig::load(&repo_file("envoy/edge.json")).unwrap();
        config.auth["rules"][0]["policy"] = json!("wide-open");
        let error = config.filter_configs(str::to_string).unwrap_err();
        assert!(error.contains("wide-open"), "{error}");
        config.auth["authority"]["cluster"] = json!("nobody");
        assert!(config
            .filter_configs(str::to_string)
            .unwrap_err()
            .contains("nobody"));
    }

    #[test]
    fn descriptor_set_can_come_from_a_file() {
        let mut config = EdgeConfig::load(&repo_file("envoy/edge.json")).unwrap();
        let file = std::env::temp_dir().join(format!("edgectl-fds-{}.bin", std::process::id()));
        std::fs::write(&file, platform_proto::FILE_DESCRIPTOR_SET).unwrap();
        config.transcoder.insert(
            "descriptor_set_file".into(),
            json!(file.display().to_string()),
        );
        let filters = config.filter_configs(str::to_string).unwrap();
        assert!(filters.transcoder.get("descriptor_set_file").is_none());
        assert_eq!(
            filters.transcoder["descriptor_set"],
            json!(base64::engine::general_purpose::STANDARD
                .encode(platform_proto::FILE_DESCRIPTOR_SET))
        );
        std::fs::write(&file, b"not a descriptor set").unwrap();
        let error = config.filter_configs(str::to_string).unwrap_err();
        assert!(error.contains("FileDescriptorSet"), "{error}");
        std::fs::remove_file(&file).unwrap();
        let error = config.filter_configs(str::to_string).unwrap_err();
        assert!(error.contains("descriptor_set_file"), "{error}");
    }
}
