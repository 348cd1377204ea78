//! The edge's configuration has one source, `envoy/edge.json`: the services, the auth policy,
//! the transcoder and access-log settings. This crate renders from it everything that runs:
//! the local Envoy bootstrap (`envoy/envoy.yaml`, used by `make run`) and the configurations
//! the end-to-end tests start Envoy with, so they cannot drift apart. Each filter's
//! configuration is checked with that filter's own parser before anything is written.

mod yaml;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

pub use yaml::to_yaml;

mod cors;
mod envoy_gateway;
mod filters;
mod istio;
mod istiod;
mod limits;
mod live;
mod local;
mod local_reply;
mod mesh;
mod module;
mod native;
mod openapi;
mod ratelimit;
mod rbac;
mod slo;
mod traces;
mod web;
mod xds;
pub use cors::CorsSettings;
pub use envoy_gateway::{ENVOY_GATEWAY_FILE, ENVOY_GATEWAY_NAMESPACE, MODULE_ENTRY, MODULE_MOUNT};
pub use filters::FilterConfigs;
pub use istio::{Digests, Files, IstioSettings, Objects, WASM_MOUNT};
pub use istiod::{
    istiod_command, write_istiod_file, write_mesh, IstiodPorts, MeshTopology, MeshVariant,
    ACCESS_LOG_FLUSH_FLAGS, GATEWAY_ENVOY_FLAGS, ISTIO_VERSION, OVERLAY,
};
pub use limits::Limits;
pub use live::apply_policy;
pub use local::{
    buffer_disabled, buffer_filter, cors_filter, discovered_filter, render_local_envoy,
    router_filter, stats_config,
};
pub use local_reply::local_reply_config;
pub use mesh::{chain, ChainFeatures, Filter, Patch, Plugin, Slot, FILTERS};
pub use module::{
    configuration_mut, native_config, wasm_filter, FilterModule, Target, LINE_FILTER_STATE_KEY,
    NATIVE_ENVOY_VERSION, NATIVE_MODULE, TARGET_ENV, WASM_MODULE,
};
pub use openapi::OpenApiSettings;
pub use ratelimit::{rate_limit_filters, RateLimit};
pub use rbac::rbac_filter;
pub use slo::{record_name, rule_groups, Slo};
pub use traces::{trace_context_filter, Tracing, COLLECTOR_CLUSTER, EDGE_ONLY_HEADERS};
pub use web::{web_protocol_filters, WebProtocol};
pub use xds::{write_xds, LOCAL_XDS_DIR};

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
    /// gRPC-Web and Connect clients (`grpc-web`, `connect`), turned into gRPC calls first.
    #[serde(default)]
    pub web_protocols: Vec<WebProtocol>,
    /// Mesh-level policy: Istio AuthorizationPolicies for the gateway (`name`, `action`,
    /// `rules` as in Istio). Rendered into `istio/base/authorization.yaml`, and run locally as
    /// the RBAC filters Istio makes of them, where Istio puts them in the chain.
    #[serde(default)]
    pub authorization: Vec<AuthorizationPolicy>,
    /// Objectives measured at the edge, rendered as Prometheus rules (recording + burn-rate
    /// alerts) for a plain Prometheus and as a PrometheusRule in `istio/`.
    #[serde(default)]
    pub slos: Vec<Slo>,
    /// Backends moving from one deployment to another, per user, reads and writes apart.
    #[serde(default)]
    pub rollouts: Vec<RolloutSettings>,
    /// The edge's connection and request limits and timeouts (Envoy's edge-proxy practice).
    #[serde(default)]
    pub limits: Limits,
    /// Per-user request limits by route group (Envoy's `local_ratelimit`, keyed on the
    /// verified subject, or the client address for anonymous requests).
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
    /// Traces over OTLP from the edge (Envoy's tracer) and the services; none when absent.
    #[serde(default)]
    pub tracing: Option<Tracing>,
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
    /// The program (and image) it runs, when not its name: a second deployment of a service
    /// (`catalog-v2` runs `catalog`).
    #[serde(default)]
    pub binary: Option<String>,
    /// Answers gRPC reflection for the edge (at most one service, a public one): the edge
    /// routes reflection to it, and it describes every public service (`REFLECTION_SERVICES`),
    /// so `grpcurl localhost:8080 list` shows what the edge serves.
    #[serde(default)]
    pub reflection: bool,
}

impl Service {
    pub fn binary<'s>(&'s self, name: &'s str) -> &'s str {
        self.binary.as_deref().unwrap_or(name)
    }
}

/// The gRPC reflection services (both versions) the edge routes to the service answering them.
pub const REFLECTION_SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The variable telling the service that answers reflection for the edge what to describe
/// (`services/kit`): the public services' names, comma-separated.
pub const REFLECTION_ENV: &str = "REFLECTION_SERVICES";

/// The environment variable that tells a service where `dependency` (one of its `calls`) is.
pub fn address_variable(dependency: &str) -> String {
    format!("{}_ADDR", dependency.to_ascii_uppercase().replace('-', "_"))
}

/// `rollouts` in edge.json: `service` (the deployment in use) moving to `to` (another
/// deployment of the same gRPC service), for `reads_percent` / `writes_percent` of the users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSettings {
    pub service: String,
    pub to: String,
    #[serde(default)]
    pub reads_percent: f64,
    #[serde(default)]
    pub writes_percent: f64,
    /// Places users on the line; changing it deals everyone a new place (default: `to`).
    #[serde(default)]
    pub salt: Option<String>,
    /// gRPC methods that only read; JSON GET and HEAD read.
    #[serde(default)]
    pub read_methods: Vec<String>,
}

impl RolloutSettings {
    /// The salt that places users on the rollout's line (`to` unless set).
    pub fn salt(&self) -> &str {
        self.salt.as_deref().unwrap_or(&self.to)
    }
}

/// One AuthorizationPolicy of the gateway, in Istio's own terms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationPolicy {
    pub name: String,
    /// `DENY` or `ALLOW` (`CUSTOM` and `AUDIT` are not translated for the local chain).
    pub action: String,
    pub rules: Vec<Value>,
}

/// Where things are for one running edge.
#[derive(Debug, Clone)]
pub struct Topology {
    pub listen_port: u16,
    pub admin_port: u16,
    /// The filters' module: which build, and where.
    pub module: FilterModule,
    /// `host:port` of each service by short name.
    pub service_addrs: BTreeMap<String, String>,
    /// Where Envoy watches the filters' configurations (ECDS files, see [`xds_files`]); `None`
    /// puts them inline in the bootstrap, fixed for the life of the process.
    ///
    /// [`xds_files`]: EdgeConfig::xds_files
    pub xds_dir: Option<String>,
}

impl Topology {
    /// `make run`: fixed, documented ports on loopback, the filters built for `target`.
    pub fn local(config: &EdgeConfig, target: Target) -> Self {
        Self {
            listen_port: 8080,
            admin_port: 9901,
            module: FilterModule::new(target, "target/filters"),
            xds_dir: Some(LOCAL_XDS_DIR.into()),
            service_addrs: config
                .services
                .iter()
                .map(|(name, service)| (name.clone(), format!("127.0.0.1:{}", service.port)))
                .collect(),
        }
    }
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

    /// The service that answers gRPC reflection for the edge, if one does, and what it is to
    /// describe: the public services, as [`REFLECTION_ENV`]'s value.
    pub fn reflection(&self) -> Result<Option<(&str, String)>, String> {
        let mut answering = self.services.iter().filter(|(_, s)| s.reflection);
        let Some((name, service)) = answering.next() else {
            return Ok(None);
        };
        if let Some((other, _)) = answering.next() {
            return Err(format!(
                "services: reflection is answered by one service, not both {name} and {other}"
            ));
        }
        if !service.public {
            return Err(format!(
                "services.{name}.reflection: the edge routes only to public services"
            ));
        }
        let public: std::collections::BTreeSet<&str> = self
            .services
            .values()
            .filter(|s| s.public)
            .map(|s| s.grpc_service.as_str())
            .collect();
        let list = public.into_iter().collect::<Vec<_>>().join(",");
        Ok(Some((name.as_str(), list)))
    }

    /// What edge.json gives service `name` alone, locally as in the cluster (besides its
    /// `cluster_env`, which is the cluster's): the reflection answerer's [`REFLECTION_ENV`].
    pub fn own_env(&self, name: &str) -> Result<Vec<(String, String)>, String> {
        Ok(self
            .reflection()?
            .filter(|(answering, _)| *answering == name)
            .map(|(_, described)| (REFLECTION_ENV.to_string(), described))
            .into_iter()
            .collect())
    }

    /// The header auth puts a rollout's choice in (`auth.backend_header`, or the default).
    pub fn backend_header(&self) -> &str {
        self.auth["backend_header"]
            .as_str()
            .unwrap_or(edge_core::BACKEND_HEADER)
    }

    /// Each rollout with the gRPC service it moves; both deployments must serve that service.
    pub fn checked_rollouts(&self) -> Result<Vec<(&RolloutSettings, &str)>, String> {
        self.rollouts
            .iter()
            .map(|rollout| {
                let from = self
                    .services
                    .get(&rollout.service)
                    .ok_or_else(|| format!("rollouts: no service {:?}", rollout.service))?;
                let to = self
                    .services
                    .get(&rollout.to)
                    .ok_or_else(|| format!("rollouts: no service {:?}", rollout.to))?;
                if from.grpc_service != to.grpc_service || !from.public {
                    return Err(format!(
                        "rollouts: {} and {} must serve the same public gRPC service",
                        rollout.service, rollout.to
                    ));
                }
                Ok((rollout, from.grpc_service.as_str()))
            })
            .collect()
    }

    /// The services in an order they can start in: each after the services it calls.
    pub fn start_order(&self) -> Result<Vec<&str>, String> {
        let mut order: Vec<&str> = Vec::new();
        while order.len() < self.services.len() {
            let ready = self.services.iter().find(|(name, service)| {
                !order.contains(&name.as_str())
                    && service.calls.iter().all(|c| order.contains(&c.as_str()))
            });
            match ready {
                Some((name, _)) => order.push(name),
                None => return Err("services: their `calls` form a cycle".into()),
            }
        }
        Ok(order)
    }

    /// The header auth sets to the verified subject (what rate limits key on).
    pub fn subject_header(&self) -> &str {
        self.auth
            .get("subject_header")
            .and_then(Value::as_str)
            .unwrap_or(edge_core::USER_ID_HEADER)
    }

    /// The rate limits' filters, checked.
    pub fn rate_limit_filters(&self) -> Result<Vec<Value>, String> {
        rate_limit_filters(&self.rate_limits, self.subject_header())
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let config: Self =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let in_file = |e: String| format!("{}: {e}", path.display());
        if let Some(cors) = &config.cors {
            cors.check().map_err(in_file)?;
        }
        web::check_cors(&config.web_protocols, config.cors.as_ref()).map_err(in_file)?;
        config.limits.check().map_err(in_file)?;
        Ok(config)
    }
}

/// Prometheus scraping the edge's Envoy at `admin` (`host:port`), with the SLO rules of
/// `rules.yaml` beside it: `make observe`'s, and the SLO test's at its own intervals.
pub fn prometheus_config(admin: &str, scrape_interval: &str, evaluation_interval: &str) -> Value {
    json!({
        "global": { "scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval },
        "rule_files": ["rules.yaml"],
        "scrape_configs": [{
            "job_name": "edge",
            "metrics_path": "/stats/prometheus",
            "static_configs": [{ "targets": [admin] }],
            // Envoy strips a Wasm filter's `wasmcustom` namespace from Prometheus names but
            // not a dynamic module's: the rules see the same names from either build.
            "metric_relabel_configs": [{
                "source_labels": ["__name__"],
                "regex": format!("envoy_{}_(.+)", module::METRICS_NAMESPACE),
                "target_label": "__name__",
                "replacement": "$1"
            }]
        }]
    })
}

/// The header of every rendered file.
pub const GENERATED_NOTICE: &str =
    "# Generated by `make config` (edgectl) from envoy/edge.json. Do not edit: edit envoy/edge.json.\n";

impl EdgeConfig {
    /// Every file rendered outside `istio/`, by path from the repository root: the local
    /// Envoy's bootstrap, and the SLO rules with a Prometheus configuration for `make observe`.
    pub fn local_files(&self) -> Result<Vec<(&'static str, String)>, String> {
        let admin = Topology::local(self, Target::Wasm).admin_port;
        let prometheus = prometheus_config(&format!("127.0.0.1:{admin}"), "5s", "30s");
        Ok(vec![
            ("envoy/envoy.yaml", render_local_envoy(self, Target::Wasm)?),
            (
                "envoy/prometheus/rules.yaml",
                format!("{GENERATED_NOTICE}{}", to_yaml(&rule_groups(&self.slos)?)),
            ),
            (
                "envoy/prometheus/prometheus.yml",
                format!("{GENERATED_NOTICE}{}", to_yaml(&prometheus)),
            ),
        ])
    }
}

/// `istio/base/wasm-digests.json`: the sha256 of the filters' module, as `make images` built it.
pub fn load_digests(path: &Path) -> Result<Digests, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (make digests writes it)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The sha256 of the filters' module in `dir`, as WasmPlugins pin it.
pub fn wasm_digests(dir: &Path) -> Result<Digests, String> {
    use sha2::Digest;
    let path = dir.join(format!("{WASM_MODULE}.wasm"));
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("{}: {e} (make wasm builds it)", path.display()))?;
    let digest = sha2::Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Digests::from([(WASM_MODULE.to_string(), hex)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn repo_file(relative: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(relative)
    }

    #[test]
    fn committed_local_files_are_fresh() {
        let config = EdgeConfig::load(&repo_file("envoy/edge.json")).unwrap();
        for (file, rendered) in config.local_files().unwrap() {
            let committed = std::fs::read_to_string(repo_file(file)).unwrap_or_default();
            assert!(
                rendered == committed,
                "{file} is stale: run `make config` and commit the result"
            );
        }
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
    fn committed_envoy_gateway_manifest_is_fresh() {
        let config = EdgeConfig::load(&repo_file("envoy/edge.json")).unwrap();
        let rendered = config.render_envoy_gateway().unwrap();
        let committed = std::fs::read_to_string(repo_file(ENVOY_GATEWAY_FILE)).unwrap_or_default();
        assert!(
            rendered == committed,
            "{ENVOY_GATEWAY_FILE} is stale: run `make config` and commit the result"
        );
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
