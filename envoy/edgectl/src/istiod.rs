//! The gateway run by a real istiod without Kubernetes (`make mesh`, and the istiod pass of
//! `make test`). istiod reads `istio/base` as `kubectl apply -k istio/` would apply it, plus an
//! overlay standing in for what a cluster provides and nothing else:
//! - a `ServiceEntry` per Kubernetes `Service` of `services.yaml` (same host, port and protocol)
//!   whose endpoint is the service's loopback address, so clusters carry istiod's own names
//!   (`outbound|PORT||HOST`), and one for the gateway's `Service` of `operator.yaml`
//!   (`80 → targetPort`), which is how istiod picks the port the gateway listens on;
//! - the WasmPlugins' `oci://` URLs as `file://` URLs of the built filters: without the gateway
//!   pod's agent (which pulls images and checks their sha256) nothing could fetch them;
//! - a `ServiceEntry` for the trace collector, when the edge traces.
//!
//! Envoy's bootstrap is what the gateway pod's agent (pilot-agent) would write, reduced to what
//! the edge depends on: ADS to istiod, the node identity and metadata istiod selects on, the
//! stats matcher of `proxyStatsMatcher`, the connection cap of `proxyMetadata`, and the
//! bootstrap override of `stats.yaml` merged in.

use crate::{EdgeConfig, Objects};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The files of `istio/base/kustomization.yaml`'s `resources`, in its order: what
/// `kubectl apply -k istio/` applies (a test keeps the two lists the same).
pub const KUSTOMIZE_RESOURCES: [&str; 6] = [
    "namespaces.yaml",
    "services.yaml",
    "gateway.yaml",
    "authorization.yaml",
    "stats.yaml",
    "telemetry.yaml",
];
/// The WasmPlugin variant's file; [`MeshVariant::EnvoyFilter`] swaps it for `envoyfilter.yaml`
/// as the kustomization's comment says.
const WASM_PLUGINS: &str = "wasmplugins.yaml";
const ENVOY_FILTER: &str = "envoyfilter.yaml";
const NATIVE_ENVOY_FILTER: &str = "envoyfilter-native.yaml";
/// The overlay's file name among istiod's files.
pub const OVERLAY: &str = "local-overlay.yaml";

/// Istio's version (the module snapshot `make istiod` builds), sent as the proxy's
/// `ISTIO_VERSION`: istiod enables features by the proxy's version.
pub const ISTIO_VERSION: &str = "1.31.0";
/// The gateway pod's name; node ids and metrics carry it.
const GATEWAY_POD: &str = "istio-ingressgateway-0";
const GATEWAY_WORKLOAD: &str = "istio-ingressgateway";
/// Where the gateway pod stands on the loopback network. Istio matches the gateway's
/// `Service` to the proxy by this address (and namespace), as it matches a pod by its IP.
pub const GATEWAY_IP: &str = "127.0.0.1";
/// The flags pilot-agent starts a gateway's Envoy with (`pkg/envoy/proxy.go`) that change how
/// it takes new configuration: a listener replaced by istiod (an AuthorizationPolicy, an
/// EnvoyFilter) tells its clients to reconnect at once (`immediate`), so they meet the new one,
/// and is closed after proxyConfig's default `drainDuration` (45 s).
pub const GATEWAY_ENVOY_FLAGS: [&str; 5] = [
    "--drain-time-s",
    "45",
    "--drain-strategy",
    "immediate",
    "--disable-hot-restart",
];
/// How pilot-agent has Envoy write its access logs (`pkg/envoy/proxy.go`): its file logs' flush
/// thread writes every second (Envoy's own default is 10 s), or sooner past 64 KB. Every local
/// Envoy is started so too.
pub const ACCESS_LOG_FLUSH_FLAGS: [&str; 2] = ["--file-flush-interval-msec", "1000"];
/// pilot-agent's cluster name for the control plane.
const XDS_CLUSTER: &str = "xds-grpc";

/// Which of `istio/base`'s two ways of installing the filters istiod is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshVariant {
    WasmPlugin,
    EnvoyFilter,
    /// The EnvoyFilter with the native module (Istio ≥ 1.31 proxies).
    NativeEnvoyFilter,
}

/// Where things are for a gateway run against a local istiod.
#[derive(Debug, Clone)]
pub struct MeshTopology {
    /// `host:port` of istiod's plaintext xDS (its `--grpcAddr`).
    pub istiod: String,
    /// The port the gateway's `Service` forwards port 80 to (8080 in a cluster, see
    /// `operator.yaml`).
    pub gateway_port: u16,
    pub admin_port: u16,
    /// Absolute directory holding the built `.wasm` files.
    pub wasm_dir: String,
    /// `host:port` of each service by short name.
    pub service_addrs: BTreeMap<String, String>,
    pub variant: MeshVariant,
}

impl EdgeConfig {
    /// The objects istiod reads, by file name: the kustomization's resources and the chosen
    /// filter variant, rendered from this configuration (the committed files are these, byte
    /// for byte), then the overlay.
    pub fn istiod_files(
        &self,
        digests: &crate::Digests,
        topology: &MeshTopology,
    ) -> Result<Objects, String> {
        let mut all = self.istio_objects(digests)?;
        let filters = match topology.variant {
            MeshVariant::WasmPlugin => WASM_PLUGINS,
            MeshVariant::EnvoyFilter => ENVOY_FILTER,
            MeshVariant::NativeEnvoyFilter => NATIVE_ENVOY_FILTER,
        };
        let mut files = Objects::new();
        for name in KUSTOMIZE_RESOURCES.into_iter().chain([filters]) {
            // telemetry.yaml exists only when the edge traces.
            if let Some(objects) = all.remove(name) {
                files.insert(name, objects);
            }
        }
        for plugin in files.values_mut().flatten() {
            if plugin["kind"] == "WasmPlugin" {
                let url = format!("file://{}/{}.wasm", topology.wasm_dir, crate::WASM_MODULE);
                plugin["spec"]["url"] = Value::String(url);
                // A local file is not checked against a digest (Envoy's local source has none).
                if let Some(spec) = plugin["spec"].as_object_mut() {
                    spec.remove("sha256");
                    spec.remove("imagePullPolicy");
                }
            }
        }
        if topology.variant != MeshVariant::WasmPlugin {
            // The EnvoyFilter variant loads the files from the gateway pod's mount.
            for filter in files.values_mut().flatten() {
                let text = filter.to_string().replace(
                    &format!("{}/", crate::WASM_MOUNT),
                    &format!("{}/", topology.wasm_dir),
                );
                *filter = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            }
        }
        let overlay = self.istiod_overlay(&files, topology)?;
        files.insert(OVERLAY, overlay);
        Ok(files)
    }

    fn istiod_overlay(
        &self,
        files: &Objects,
        topology: &MeshTopology,
    ) -> Result<Vec<Value>, String> {
        let mut entries = Vec::new();
        for service in files.values().flatten().filter(|o| o["kind"] == "Service") {
            let name = service["metadata"]["name"].as_str().unwrap_or_default();
            let addr = topology
                .service_addrs
                .get(name)
                .ok_or_else(|| format!("no address for service {name}"))?;
            let (ip, port) = split_addr(addr)?;
            let ports: Vec<Value> = json_array(&service["spec"]["ports"])
                .iter()
                .map(|p| {
                    let protocol = p["appProtocol"].as_str().unwrap_or("tcp").to_uppercase();
                    json!({ "number": p["port"], "name": p["name"], "protocol": protocol })
                })
                .collect();
            let endpoint_ports: serde_json::Map<String, Value> = ports
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().to_string(),
                        json!(port),
                    )
                })
                .collect();
            entries.push(service_entry(
                &service["metadata"],
                ports,
                json!({ "address": ip, "ports": endpoint_ports }),
            ));
        }
        // The gateway's Service (operator.yaml): port 80 forwarded to the gateway's port.
        let operator = self.operator()?;
        let gateway = &operator["spec"]["components"]["ingressGateways"][0];
        let labels = self.gateway_pod_labels()?;
        let ports: Vec<Value> = json_array(&gateway["k8s"]["service"]["ports"])
            .iter()
            .map(|p| json!({ "number": p["port"], "name": p["name"], "protocol": "HTTP2" }))
            .collect();
        let endpoint_ports: serde_json::Map<String, Value> = ports
            .iter()
            .map(|p| {
                let name = p["name"].as_str().unwrap_or_default().to_string();
                (name, json!(topology.gateway_port))
            })
            .collect();
        entries.push(service_entry(
            &json!({ "name": gateway["name"], "namespace": gateway["namespace"], "labels": labels }),
            ports,
            json!({ "address": GATEWAY_IP, "ports": endpoint_ports, "labels": labels }),
        ));
        if let Some(tracing) = &self.tracing {
            let (host, port) = split_addr(&tracing.cluster_collector)?;
            let (ip, local_port) = split_addr(&tracing.collector)?;
            let namespace = host.split('.').nth(1).unwrap_or("default");
            let name = host.split('.').next().unwrap_or(host);
            entries.push(service_entry(
                &json!({ "name": name, "namespace": namespace }),
                vec![json!({ "number": port, "name": "grpc-otlp", "protocol": "GRPC" })],
                json!({ "address": ip, "ports": { "grpc-otlp": local_port } }),
            ));
        }
        Ok(entries)
    }

    /// istiod's mesh configuration: `operator.yaml`'s `meshConfig`, plus reading the files of
    /// [`istiod_files`](Self::istiod_files) from `config_dir`, and the two settings an Envoy
    /// without Istio's own extensions needs: no automatic mTLS (its clusters would name the
    /// agent's `sds-grpc`, which there is none of) and no Istio metrics provider (its
    /// `istio.stats` filter is Istio's, not Envoy's).
    pub fn istiod_mesh_config(&self, config_dir: &str, istiod: &str) -> Result<Value, String> {
        let mut mesh = self.operator()?["spec"]["meshConfig"].take();
        mesh["configSources"] = json!([{ "address": format!("fs://{config_dir}") }]);
        mesh["enableAutoMtls"] = json!(false);
        mesh["defaultProviders"] = json!({ "metrics": [] });
        mesh["defaultConfig"]["discoveryAddress"] = json!(istiod);
        Ok(mesh)
    }

    /// The gateway pod's labels: `operator.yaml`'s, and the `app` label Istio's installer
    /// gives every gateway (its deployment's name).
    fn gateway_pod_labels(&self) -> Result<Value, String> {
        let mut labels =
            self.operator()?["spec"]["components"]["ingressGateways"][0]["label"].take();
        labels["app"] = json!(GATEWAY_WORKLOAD);
        Ok(labels)
    }

    /// The `service.name` of the edge spans in the mesh. Istio names a proxy's spans itself
    /// (`<app label>.<namespace>`, proxyConfig's default `tracingServiceName`), so
    /// edge.json's `tracing.service_name` names them only locally.
    pub fn gateway_trace_service(&self) -> Result<String, String> {
        Ok(format!(
            "{GATEWAY_WORKLOAD}.{}",
            self.istio()?.gateway_namespace
        ))
    }

    /// Envoy's bootstrap for the gateway pod: see the module's documentation.
    pub fn gateway_bootstrap(&self, topology: &MeshTopology) -> Result<Value, String> {
        let operator = &self.operator()?["spec"];
        let istio = self.istio()?;
        let namespace = &istio.gateway_namespace;
        let labels = self.gateway_pod_labels()?;
        let default_config = &operator["meshConfig"]["defaultConfig"];
        let max_connections = default_config["proxyMetadata"]
            ["ISTIO_META_GLOBAL_DOWNSTREAM_MAX_CONNECTIONS"]
            .as_str()
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or("operator.yaml sets no ISTIO_META_GLOBAL_DOWNSTREAM_MAX_CONNECTIONS")?;
        let (istiod_ip, istiod_port) = split_addr(&topology.istiod)?;
        let mut bootstrap = json!({
            "node": {
                "id": format!("router~{GATEWAY_IP}~{GATEWAY_POD}.{namespace}~{namespace}.svc.cluster.local"),
                "cluster": format!("{GATEWAY_WORKLOAD}.{namespace}"),
                "metadata": {
                    "NAMESPACE": namespace,
                    "LABELS": labels,
                    "ISTIO_VERSION": ISTIO_VERSION,
                    "CLUSTER_ID": "Kubernetes",
                    "MESH_ID": "cluster.local",
                    "INSTANCE_IPS": GATEWAY_IP,
                    "NAME": GATEWAY_POD,
                    "WORKLOAD_NAME": GATEWAY_WORKLOAD,
                    "SERVICE_ACCOUNT": format!("{GATEWAY_WORKLOAD}-service-account"),
                    "OWNER": format!("kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/{GATEWAY_WORKLOAD}"),
                    "PROXY_CONFIG": default_config,
                }
            },
            "dynamic_resources": {
                "ads_config": {
                    "api_type": "GRPC",
                    "transport_api_version": "V3",
                    "set_node_on_first_message_only": true,
                    "grpc_services": [{ "envoy_grpc": { "cluster_name": XDS_CLUSTER } }]
                },
                "lds_config": { "ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3" },
                "cds_config": { "ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3" }
            },
            "static_resources": { "clusters": [{
                "name": XDS_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": XDS_CLUSTER,
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                        "address": istiod_ip, "port_value": istiod_port
                    } } } }] }]
                },
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} }
                    }
                }
            }] },
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": topology.admin_port } } },
            "stats_config": {
                "use_all_default_tags": false,
                "stats_matcher": stats_matcher(&default_config["proxyStatsMatcher"])
            },
            "layered_runtime": { "layers": [
                { "name": "global config", "static_layer": {
                    "overload.global_downstream_max_connections": max_connections
                } },
                { "name": "admin", "admin_layer": {} }
            ] },
            "overload_manager": { "resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": max_connections
                }
            }] }
        });
        // The pod's `sidecar.istio.io/bootstrapOverride`, merged as protobuf merges: scalars
        // replace, lists append.
        let config_map = self.stats_bootstrap()?;
        let custom: Value = config_map["data"]["custom_bootstrap.json"]
            .as_str()
            .ok_or("stats.yaml has no custom_bootstrap.json")
            .and_then(|text| serde_json::from_str(text).map_err(|_| "bad custom_bootstrap.json"))?;
        proto_merge(&mut bootstrap, &custom);
        Ok(bootstrap)
    }
}

/// Writes what istiod and the gateway's Envoy start from under `dir`: `istio/` (the files
/// istiod watches), `mesh.yaml` (istiod's `--meshConfig`), `envoy.yaml` and `envoy.flags` (one
/// flag a line).
pub fn write_mesh(
    config: &EdgeConfig,
    digests: &crate::Digests,
    topology: &MeshTopology,
    dir: &Path,
) -> Result<(), String> {
    let istio = dir.join("istio");
    std::fs::create_dir_all(&istio)
        .map_err(|e| format!("cannot create {}: {e}", istio.display()))?;
    for (name, objects) in config.istiod_files(digests, topology)? {
        write_istiod_file(&istio, name, &objects)?;
    }
    let mesh = config.istiod_mesh_config(&istio.display().to_string(), &topology.istiod)?;
    write_file(&dir.join("mesh.yaml"), &crate::to_yaml(&mesh))?;
    let bootstrap = config.gateway_bootstrap(topology)?;
    write_file(&dir.join("envoy.yaml"), &crate::to_yaml(&bootstrap))?;
    write_file(
        &dir.join("envoy.flags"),
        &(GATEWAY_ENVOY_FLAGS
            .iter()
            .chain(&ACCESS_LOG_FLUSH_FLAGS)
            .map(|flag| format!("{flag}\n"))
            .collect::<String>()),
    )
}

/// The header of istiod's files: unlike `istio/base`, they are there to be edited.
const ISTIOD_FILE_NOTICE: &str =
    "# Written by `edgectl mesh` from envoy/edge.json for the running istiod, which watches\n\
# this directory: edit a file to change the mesh live, as kubectl apply would. Lost on restart.\n";

/// Replaces one of istiod's files whole: written beside it under a name istiod ignores, then
/// renamed, so istiod never reads half a file (it would keep its previous configuration).
pub fn write_istiod_file(dir: &Path, name: &str, objects: &[Value]) -> Result<(), String> {
    let staged = dir.join(format!("{name}.staged"));
    write_file(
        &staged,
        &crate::istio::documents_under(ISTIOD_FILE_NOTICE, objects),
    )?;
    std::fs::rename(&staged, dir.join(name))
        .map_err(|e| format!("cannot rename {}: {e}", staged.display()))
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// istiod's ports: plaintext xDS (`--grpcAddr`), debug and readiness (`--httpAddr`), metrics
/// (`--monitoringAddr`), all on loopback.
#[derive(Debug, Clone, Copy)]
pub struct IstiodPorts {
    pub xds: u16,
    pub http: u16,
    pub monitoring: u16,
}

impl IstiodPorts {
    /// `make mesh`'s: istiod's own defaults, but the debug port, whose default (8080) is the
    /// gateway's.
    pub const MESH: IstiodPorts = IstiodPorts {
        xds: 15010,
        http: 15080,
        monitoring: 15014,
    };

    pub fn xds_addr(&self) -> String {
        format!("127.0.0.1:{}", self.xds)
    }
}

/// istiod (`binary`, Istio's pilot-discovery) serving the files [`write_mesh`] wrote to `dir`,
/// without Kubernetes; `make mesh` and the tests start it with this same command.
pub fn istiod_command(binary: &Path, dir: &Path, ports: IstiodPorts) -> std::process::Command {
    let mut command = std::process::Command::new(binary);
    command
        .current_dir(dir)
        .arg("discovery")
        // No service registry, so no Kubernetes client at all: ServiceEntries stand in.
        .arg("--registries=")
        .arg("--meshConfig")
        .arg(dir.join("mesh.yaml"))
        .arg(format!("--grpcAddr={}", ports.xds_addr()))
        .arg(format!("--httpAddr=127.0.0.1:{}", ports.http))
        .arg(format!("--monitoringAddr=127.0.0.1:{}", ports.monitoring))
        // No TLS xDS and no webhooks: they need certificates a cluster would provide.
        .args(["--secureGRPCAddr=", "--httpsAddr=", "--ctrlz_port=0"])
        .args([
            "--domain",
            "cluster.local",
            "--log_output_level=default:info",
        ])
        // Istio's own filters, which upstream Envoy does not have.
        .env("PILOT_ENABLE_METADATA_EXCHANGE", "false")
        .env("PILOT_ENABLE_ALPN_FILTER", "false")
        .env("POD_NAMESPACE", "istio-system")
        .env("POD_NAME", "istiod-0")
        .env("KUBECONFIG", "/dev/null");
    command
}

/// pilot-agent's stats matcher (`pkg/bootstrap/config.go`, the bootstrap template): Istio's
/// required prefixes, suffixes and regexes, then the proxy config's.
fn stats_matcher(matcher: &Value) -> Value {
    let strings = |key: &str| -> Vec<Value> { json_array(&matcher[key]).to_vec() };
    let mut patterns = vec![json!({ "prefix": "reporter=" })];
    for prefix in [
        "cluster_manager",
        "listener_manager",
        "server",
        "cluster.xds-grpc",
        "wasm",
    ]
    .map(Value::from)
    .into_iter()
    .chain(strings("inclusionPrefixes"))
    {
        patterns.push(json!({ "prefix": prefix }));
    }
    for suffix in [
        "rbac.allowed",
        "rbac.denied",
        "shadow_allowed",
        "shadow_denied",
        "downstream_cx_active",
    ]
    .map(Value::from)
    .into_iter()
    .chain(strings("inclusionSuffixes"))
    {
        patterns.push(json!({ "suffix": suffix }));
    }
    for regex in [Value::from("vhost\\..*\\.route\\..*")]
        .into_iter()
        .chain(strings("inclusionRegexps"))
    {
        patterns.push(json!({ "safe_regex": { "regex": regex } }));
    }
    patterns.extend([
        json!({ "prefix": "component" }),
        json!({ "prefix": "istio" }),
    ]);
    json!({ "inclusion_list": { "patterns": patterns } })
}

/// Merges `from` into `into` as protobuf's JSON merge does: objects field by field, lists
/// appended, anything else replaced.
fn proto_merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                proto_merge(into.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (Value::Array(into), Value::Array(from)) => into.extend(from.iter().cloned()),
        (into, from) => *into = from.clone(),
    }
}

fn service_entry(metadata: &Value, ports: Vec<Value>, endpoint: Value) -> Value {
    let name = metadata["name"].as_str().unwrap_or_default();
    let namespace = metadata["namespace"].as_str().unwrap_or("default");
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "hosts": [format!("{name}.{namespace}.svc.cluster.local")],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": ports,
            "endpoints": [endpoint]
        }
    })
}

fn json_array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn split_addr(addr: &str) -> Result<(&str, u16), String> {
    addr.rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse().ok()?)))
        .ok_or_else(|| format!("{addr:?} is not host:port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resources_are_those_of_the_kustomization() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(root.join("istio/base/kustomization.yaml")).unwrap();
        let listed: Vec<&str> = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("- "))
            .collect();
        let mut expected: Vec<&str> = KUSTOMIZE_RESOURCES.to_vec();
        expected.push(WASM_PLUGINS);
        assert_eq!(listed, expected);
    }

    #[test]
    fn merging_appends_lists_and_replaces_scalars() {
        let mut into = json!({ "a": [1], "b": { "c": 1, "d": 2 } });
        proto_merge(&mut into, &json!({ "a": [2], "b": { "c": 3 }, "e": true }));
        assert_eq!(
            into,
            json!({ "a": [1, 2], "b": { "c": 3, "d": 2 }, "e": true })
        );
    }
}
