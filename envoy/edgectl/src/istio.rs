//! The Istio manifests under `istio/`, rendered from the same `envoy/edge.json` as the local
//! Envoy: one namespace per service (ambient mode, no sidecars), each service's Deployment and
//! Service, the ingress Gateway and VirtualService, and the three filters both as WasmPlugins
//! and as an EnvoyFilter alternative. Filter configurations are [`EdgeConfig::filter_configs`]
//! with Istio's cluster names, so the mesh runs exactly what the local tests run.

use crate::{EdgeConfig, FilterConfigs, FilterModule, Patch, Plugin, Slot, Target, FILTERS};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `istio` in `envoy/edge.json`: where images live and which gateway runs the filters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IstioSettings {
    /// Image registry and repository prefix, e.g. `localhost:5001/edge` (kind's local registry).
    pub registry: String,
    /// Tag of the service images and the filters' OCI images.
    pub tag: String,
    /// Namespace and `istio` label of the ingress gateway.
    pub gateway_namespace: String,
    pub gateway_selector: String,
    /// Hosts the Gateway accepts.
    pub hosts: Vec<String>,
}

/// The sha256 of the filters' module (`istio/base/wasm-digests.json`, written by
/// `make images`), by module name: WasmPlugins pin it.
pub type Digests = BTreeMap<String, String>;

/// Rendered files, by path under `istio/`.
pub type Files = BTreeMap<&'static str, String>;

/// The objects of each rendered file.
pub type Objects = BTreeMap<&'static str, Vec<Value>>;

/// A service's Kubernetes DNS name: each service has a namespace of its own name.
pub(crate) fn fqdn(name: &str) -> String {
    format!("{name}.{name}.svc.cluster.local")
}

impl EdgeConfig {
    pub(crate) fn istio(&self) -> Result<&IstioSettings, String> {
        self.istio
            .as_ref()
            .ok_or_else(|| "no \"istio\" section".to_string())
    }

    /// Istio's name for the cluster of a service: `outbound|PORT||HOST`.
    pub fn istio_cluster(&self, service: &str) -> String {
        let port = self.services.get(service).map_or(0, |s| s.port);
        format!("outbound|{port}||{}", fqdn(service))
    }

    /// The filters' configurations as they run in the mesh.
    pub fn istio_filter_configs(&self) -> Result<FilterConfigs, String> {
        self.filter_configs(|service| self.istio_cluster(service))
    }

    /// Every file under `istio/` that edgectl owns.
    pub fn render_istio(&self, digests: &Digests) -> Result<Files, String> {
        Ok(self
            .istio_objects(digests)?
            .into_iter()
            .map(|(file, objects)| (file, documents(&objects)))
            .collect())
    }

    /// The Kubernetes objects of each file under `istio/`.
    pub fn istio_objects(&self, digests: &Digests) -> Result<Objects, String> {
        let filters = self.istio_filter_configs()?;
        let mut files = Objects::new();
        files.insert("namespaces.yaml", self.namespaces());
        files.insert("services.yaml", self.workloads()?);
        files.insert("gateway.yaml", self.gateway()?);
        files.insert("wasmplugins.yaml", self.wasm_plugins(&filters, digests)?);
        let wasm = FilterModule::new(Target::Wasm, WASM_MOUNT);
        let native = FilterModule::new(Target::Native, WASM_MOUNT);
        files.insert(
            "envoyfilter.yaml",
            vec![self.envoy_filter(&filters, &wasm)?],
        );
        files.insert(
            "envoyfilter-native.yaml",
            vec![self.envoy_filter(&filters, &native)?],
        );
        files.insert("authorization.yaml", self.authorization_policies()?);
        files.insert("stats.yaml", vec![self.stats_bootstrap()?]);
        files.insert("operator.yaml", vec![self.operator()?]);
        if !self.slos.is_empty() {
            files.insert("slo-rules.yaml", vec![self.prometheus_rule()?]);
        }
        if let Some(tracing) = &self.tracing {
            let istio = self.istio()?;
            files.insert(
                "telemetry.yaml",
                vec![tracing.istio_telemetry(&istio.gateway_namespace, &istio.gateway_selector)],
            );
        }
        Ok(files)
    }

    fn namespaces(&self) -> Vec<Value> {
        self.services
            .keys()
            .map(|name| {
                json!({
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": name,
                        // ztunnel carries the traffic (mTLS, L4 policy); no sidecars.
                        "labels": { "istio.io/dataplane-mode": "ambient" }
                    }
                })
            })
            .collect()
    }

    fn workloads(&self) -> Result<Vec<Value>, String> {
        let istio = self.istio()?;
        let mut objects = Vec::new();
        for (name, service) in &self.services {
            let port = service.port;
            let mut env =
                vec![json!({ "name": "LISTEN_ADDR", "value": format!("0.0.0.0:{port}") })];
            for dependency in &service.calls {
                let called = self
                    .services
                    .get(dependency)
                    .ok_or_else(|| format!("services.{name}.calls: no service {dependency:?}"))?;
                env.push(json!({
                    "name": crate::address_variable(dependency),
                    "value": format!("http://{}:{}", fqdn(dependency), called.port)
                }));
            }
            if service.database {
                // SQLite on the volume; the postgres overlay replaces it.
                env.push(
                    json!({ "name": "DATABASE_URL", "value": format!("sqlite:///data/{name}.db") }),
                );
            }
            if let Some(tracing) = &self.tracing {
                env.push(json!({
                    "name": "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "value": format!("http://{}", tracing.cluster_collector)
                }));
            }
            for (variable, value) in &service.cluster_env {
                env.push(json!({ "name": variable, "value": value }));
            }
            for (variable, value) in self.own_env(name)? {
                env.push(json!({ "name": variable, "value": value }));
            }
            let volume = service.volume || service.database;
            let labels = json!({ "app": name });
            if volume {
                objects.push(json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": { "name": "data", "namespace": name },
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": { "requests": { "storage": "1Gi" } }
                    }
                }));
            }
            let probe = |initial: u32| {
                json!({
                    "grpc": { "port": port, "service": service.grpc_service },
                    "initialDelaySeconds": initial,
                    "periodSeconds": 10
                })
            };
            objects.push(json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": { "name": name, "namespace": name, "labels": labels },
                "spec": {
                    // One writer per SQLite file; scale out on PostgreSQL (the postgres overlay).
                    "replicas": 1,
                    "strategy": { "type": "Recreate" },
                    "selector": { "matchLabels": labels },
                    "template": {
                        "metadata": { "labels": labels },
                        "spec": {
                            "securityContext": {
                                "runAsNonRoot": true,
                                "runAsUser": 65532,
                                "runAsGroup": 65532,
                                "fsGroup": 65532,
                                "seccompProfile": { "type": "RuntimeDefault" }
                            },
                            "containers": [{
                                "name": name,
                                "image": format!("{}/{}:{}", istio.registry, service.binary(name), istio.tag),
                                "ports": [{ "name": "grpc", "containerPort": port, "protocol": "TCP" }],
                                "env": env,
                                "readinessProbe": probe(1),
                                "livenessProbe": probe(10),
                                "resources": {
                                    "requests": { "cpu": "50m", "memory": "64Mi" },
                                    "limits": { "memory": "256Mi" }
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "readOnlyRootFilesystem": true,
                                    "capabilities": { "drop": ["ALL"] }
                                },
                                "volumeMounts": if volume { json!([{ "name": "data", "mountPath": "/data" }]) } else { json!([]) }
                            }],
                            "volumes": if volume { json!([{ "name": "data", "persistentVolumeClaim": { "claimName": "data" } }]) } else { json!([]) }
                        }
                    }
                }
            }));
            objects.push(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": { "name": name, "namespace": name, "labels": labels },
                "spec": {
                    "selector": labels,
                    "ports": [{ "name": "grpc", "port": port, "targetPort": "grpc", "appProtocol": "grpc" }]
                }
            }));
        }
        Ok(objects)
    }

    /// The VirtualService's gRPC routes: straight to their service — to the new deployment
    /// when auth's rollout chose it (the backend header) — and reflection to the service that
    /// answers it for the edge.
    fn grpc_routes(&self) -> Result<Vec<Value>, String> {
        let mut routes: Vec<Value> = Vec::new();
        for (rollout, grpc_service) in self.checked_rollouts()? {
            let port = self.services[&rollout.to].port;
            routes.push(json!({
                "name": format!("{}-grpc", rollout.to),
                "match": [{
                    "uri": { "prefix": format!("/{grpc_service}/") },
                    "headers": { self.backend_header(): { "exact": self.istio_cluster(&rollout.to) } }
                }],
                "route": [{ "destination": { "host": fqdn(&rollout.to), "port": { "number": port } } }]
            }));
        }
        routes.extend(self.services.iter().filter(|(_, s)| s.public).map(|(name, service)| {
            json!({
                "name": format!("{name}-grpc"),
                "match": [{ "uri": { "prefix": format!("/{}/", service.grpc_service) } }],
                "route": [{ "destination": { "host": fqdn(name), "port": { "number": service.port } } }]
            })
        }));
        if let Some((name, _)) = self.reflection()? {
            let port = self.services[name].port;
            routes.push(json!({
                "name": "reflection-grpc",
                "match": crate::REFLECTION_SERVICES
                    .iter()
                    .map(|reflection| json!({ "uri": { "prefix": format!("/{reflection}/") } }))
                    .collect::<Vec<_>>(),
                "route": [{ "destination": { "host": fqdn(name), "port": { "number": port } } }]
            }));
        }
        Ok(routes)
    }

    /// The VirtualService's HTTP routes: the gRPC routes, then the catch-all JSON requests run
    /// the filters on, each with the edge's CORS policy and without the edge-only headers.
    pub(crate) fn virtual_service_routes(&self) -> Result<Vec<Value>, String> {
        let public: Vec<(&String, &crate::Service)> =
            self.services.iter().filter(|(_, s)| s.public).collect();
        // JSON routes are answered by the transcoder at the gateway, and only need a route for
        // the filters to run on.
        let mut routes = self.grpc_routes()?;
        if let Some((name, service)) = self
            .transcoded_route_service()
            .and_then(|name| public.iter().find(|(n, _)| n.as_str() == name))
        {
            routes.push(json!({
                "name": "transcoded",
                "match": [{ "uri": { "prefix": "/" } }],
                "route": [{ "destination": { "host": fqdn(name), "port": { "number": service.port } } }]
            }));
        }
        for route in &mut routes {
            if let Some(cors) = &self.cors {
                route["corsPolicy"] = cors.istio_policy();
            }
            // What the edge's filters tell Envoy's tracer stays at the edge.
            route["headers"] = json!({ "request": { "remove": crate::EDGE_ONLY_HEADERS } });
        }
        Ok(routes)
    }

    fn gateway(&self) -> Result<Vec<Value>, String> {
        let istio = self.istio()?;
        let routes = self.virtual_service_routes()?;
        Ok(vec![
            json!({
                "apiVersion": "networking.istio.io/v1beta1",
                "kind": "Gateway",
                "metadata": { "name": "edge", "namespace": istio.gateway_namespace },
                "spec": {
                    "selector": { "istio": istio.gateway_selector },
                    "servers": [{
                        "port": { "number": 80, "name": "http", "protocol": "HTTP" },
                        "hosts": istio.hosts
                    }]
                }
            }),
            json!({
                "apiVersion": "networking.istio.io/v1beta1",
                "kind": "VirtualService",
                "metadata": { "name": "edge", "namespace": istio.gateway_namespace },
                "spec": {
                    "hosts": istio.hosts,
                    "gateways": ["edge"],
                    "http": routes
                }
            }),
        ])
    }

    /// The edge's metrics, as Istio would otherwise drop them: every name the access-log filter
    /// defines, as Envoy files it (`wasmcustom.<name>…`), for `proxyStatsMatcher`.
    pub fn stats_inclusion_prefixes() -> Vec<String> {
        use edge_access_log::metrics::{ENVOY_NAMESPACE, NAMES};
        NAMES
            .iter()
            .chain(edge_auth::acl::metrics::NAMES)
            .chain(edge_auth::metrics::NAMES)
            .map(|name| format!("{ENVOY_NAMESPACE}.{name}"))
            .collect()
    }

    /// A ConfigMap the gateway merges into its Envoy bootstrap
    /// (`sidecar.istio.io/bootstrapOverride`): the `stats_tags` that turn the labels the
    /// filter encodes in its metric names into Prometheus labels, as in the local bootstrap.
    pub(crate) fn stats_bootstrap(&self) -> Result<Value, String> {
        let istio = self.istio()?;
        // Istio's bootstrap declares the connection monitor itself (set from proxyMetadata in
        // operator.yaml; declaring it again stops Envoy); the heap monitor and its actions are
        // added here, as EnvoyFilter can no longer patch the bootstrap.
        let (heap, actions) = self.limits.heap_overload();
        let bootstrap = json!({
            "stats_config": crate::stats_config(),
            "overload_manager": {
                "refresh_interval": "0.25s",
                "resource_monitors": [heap],
                "actions": actions,
                "buffer_factory_config": { "minimum_account_to_track_power_of_two": 20 }
            }
        });
        Ok(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": STATS_BOOTSTRAP, "namespace": istio.gateway_namespace },
            "data": { "custom_bootstrap.json": bootstrap.to_string() }
        }))
    }

    /// What `make cluster` installs Istio with (`istioctl install -f`): ambient mode, the
    /// ingress gateway on NodePort 30080, and the gateway's proxy configured to keep the edge's
    /// metrics (`proxyStatsMatcher`) and label them (the bootstrap override above; the
    /// `gateway` injection template is what honours that annotation).
    pub(crate) fn operator(&self) -> Result<Value, String> {
        let istio = self.istio()?;
        // The collector the gateway's tracer exports to (`telemetry.yaml` selects it).
        let providers: Vec<Value> = self
            .tracing
            .iter()
            .map(crate::Tracing::istio_provider)
            .collect::<Result<_, _>>()?;
        Ok(json!({
            "apiVersion": "install.istio.io/v1alpha1",
            "kind": "IstioOperator",
            "metadata": { "name": "edge", "namespace": istio.gateway_namespace },
            "spec": {
                "profile": "ambient",
                "meshConfig": {
                    "extensionProviders": providers,
                    "defaultConfig": {
                        "proxyStatsMatcher": {
                            "inclusionPrefixes": Self::stats_inclusion_prefixes(),
                            // The rate limits' counters (`<group>.http_local_rate_limit.*`).
                            "inclusionRegexps": [".*http_local_rate_limit.*"]
                        },
                        // The gateway's connection cap (Istio ≥ 1.29 reads it from here).
                        "proxyMetadata": {
                            "ISTIO_META_GLOBAL_DOWNSTREAM_MAX_CONNECTIONS": self.limits.max_connections.to_string()
                        }
                    }
                },
                "components": { "ingressGateways": [{
                    "name": "istio-ingressgateway",
                    "namespace": istio.gateway_namespace,
                    "enabled": true,
                    "label": { "istio": istio.gateway_selector },
                    "k8s": {
                        "podAnnotations": { "sidecar.istio.io/bootstrapOverride": STATS_BOOTSTRAP },
                        "service": {
                            "type": "NodePort",
                            "ports": [{ "name": "http2", "port": 80, "targetPort": 8080, "nodePort": 30080 }]
                        }
                    }
                }] },
                "values": { "gateways": { "istio-ingressgateway": { "injectionTemplate": "gateway" } } }
            }
        }))
    }

    /// The SLO rules for prometheus-operator users (`kubectl apply -f`; not in the
    /// kustomization, which must apply on clusters without the operator's CRDs).
    fn prometheus_rule(&self) -> Result<Value, String> {
        let istio = self.istio()?;
        let groups = crate::rule_groups(&self.slos)?;
        Ok(json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": { "name": "edge-slos", "namespace": istio.gateway_namespace },
            "spec": groups
        }))
    }

    /// `authorization` of edge.json as Istio objects on the gateway.
    pub fn authorization_policies(&self) -> Result<Vec<Value>, String> {
        let (namespace, selector) = match &self.istio {
            Some(istio) => (
                istio.gateway_namespace.as_str(),
                istio.gateway_selector.as_str(),
            ),
            None if self.authorization.is_empty() => return Ok(Vec::new()),
            None => return Err("authorization needs the \"istio\" section (the gateway)".into()),
        };
        self.authorization
            .iter()
            .map(|policy| {
                if !matches!(policy.action.as_str(), "DENY" | "ALLOW") {
                    return Err(format!(
                        "authorization {}: action {} is not supported (DENY or ALLOW)",
                        policy.name, policy.action
                    ));
                }
                Ok(json!({
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": { "name": policy.name, "namespace": namespace },
                    "spec": {
                        "selector": { "matchLabels": { "istio": selector } },
                        "action": policy.action,
                        "rules": policy.rules
                    }
                }))
            })
            .collect()
    }

    fn wasm_plugins(
        &self,
        filters: &FilterConfigs,
        digests: &Digests,
    ) -> Result<Vec<Value>, String> {
        let istio = self.istio()?;
        let module = crate::WASM_MODULE;
        let digest = digests
            .get(module)
            .ok_or_else(|| format!("istio/base/wasm-digests.json has no digest for {module}"))?;
        let mut objects = Vec::new();
        // Three plugins, one module (one URL and digest): Envoy runs the three in one VM per
        // worker, as istiod sets no vm_id; `pluginName` (the root id) picks each one's filter.
        for plugin in FILTERS {
            let Plugin {
                filter,
                phase,
                priority,
            } = plugin;
            let name = filter.name();
            let spec = json!({
                "selector": { "matchLabels": { "istio": istio.gateway_selector } },
                "url": format!("oci://{}/{module}-filters:{}", istio.registry, istio.tag),
                "sha256": digest,
                "phase": phase,
                "priority": priority,
                "imagePullPolicy": "IfNotPresent",
                "pluginName": name,
                "pluginConfig": filters.of(filter),
                // A crashed VM costs the request it crashed on; the next one gets a fresh VM
                // (Istio ≥ 1.27). Never FAIL_OPEN: auth must not be skipped.
                "failStrategy": "FAIL_RELOAD"
            });
            objects.push(json!({
                "apiVersion": "extensions.istio.io/v1alpha1",
                "kind": "WasmPlugin",
                "metadata": { "name": format!("edge-{name}"), "namespace": istio.gateway_namespace },
                "spec": spec
            }));
        }
        // What WasmPlugins cannot add: Envoy's buffer filter right before the router (the
        // transcoder needs it: proxy-wasm cannot pause headers and read a body), and the
        // filters that go first (`first_filter_patches`).
        objects.push(
            self.envoy_filter_of("edge-buffer", vec![before_router(crate::buffer_filter())])?,
        );
        let first_filters = self.first_filter_patches();
        if !first_filters.is_empty() {
            objects.push(self.envoy_filter_of("edge-first", first_filters)?);
        }
        // The rate limits right before the transcoder's WasmPlugin, so after auth and Istio's
        // RBAC. Istio names that filter after the plugin's ECDS resource, and the name
        // changed: up to 1.30 `extensions.istio.io/wasmplugin/<ns>.<name>`; from 1.31 (which
        // translates WasmPlugins into its TrafficExtension API) `extensions.istio.io/
        // trafficextension/<ns>.<name>~istio-translated-wasmplugin`. A patch whose filter is
        // not there is skipped without a word, so each limit is placed by both names: exactly
        // one matches on any Istio (the istiod test checks each limit is there once).
        let transcoder_names = [
            format!(
                "extensions.istio.io/wasmplugin/{}.edge-transcoder",
                istio.gateway_namespace
            ),
            format!(
                "extensions.istio.io/trafficextension/{}.edge-transcoder~istio-translated-wasmplugin",
                istio.gateway_namespace
            ),
        ];
        let rate_limits = self.rate_limit_filters()?;
        let rate_limited = !rate_limits.is_empty();
        let patches: Vec<Value> = rate_limits
            .iter()
            .flat_map(|filter| {
                transcoder_names
                    .iter()
                    .map(|name| before(name, filter.clone()))
            })
            .collect();
        if rate_limited {
            objects.push(self.envoy_filter_of("edge-rate-limits", patches)?);
        }
        objects.push(self.envoy_filter_of("edge-gateway", self.gateway_patches()?)?);
        Ok(objects)
    }

    /// The alternative to the WasmPlugins: the same filters as one EnvoyFilter, with the
    /// filters' `module` (the .wasm file, or the native module for Istio ≥ 1.31 proxies)
    /// mounted into the gateway, in the same order around Istio's filters: the CORS filter,
    /// the access log and auth first; the transcoder and the buffer filter before the router
    /// (after Istio's RBAC).
    fn envoy_filter(
        &self,
        filters: &FilterConfigs,
        module: &FilterModule,
    ) -> Result<Value, String> {
        let rate_limits = self.rate_limit_filters()?;
        let slots = self.patched_slots(module.target, !rate_limits.is_empty());
        let filters_of = |slot: &Slot| -> Vec<Value> {
            match slot {
                Slot::Plugin(plugin) => {
                    vec![module.filter(plugin.name(), &filters.of(plugin.filter))]
                }
                Slot::RateLimits => rate_limits.clone(),
                other => self.envoy_filters(*other),
            }
        };
        let placed = |patch: Patch| -> Vec<Value> {
            slots
                .iter()
                .filter(|slot| slot.patch() == patch)
                .flat_map(filters_of)
                .collect()
        };
        // Each INSERT_FIRST lands before the ones applied earlier: apply in reverse order.
        let mut patches: Vec<Value> = placed(Patch::First).into_iter().rev().map(first).collect();
        patches.extend(placed(Patch::BeforeRouter).into_iter().map(before_router));
        patches.extend(self.gateway_patches()?);
        let access_logs = module.access_logs();
        if !access_logs.is_empty() {
            // Beside Istio's own access log (meshConfig.accessLogFile), if it has one.
            patches.push(json!({
                "applyTo": "NETWORK_FILTER",
                "match": {
                    "context": "GATEWAY",
                    "listener": { "filterChain": { "filter": {
                        "name": "envoy.filters.network.http_connection_manager"
                    } } }
                },
                "patch": { "operation": "MERGE", "value": { "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "access_log": access_logs
                } } }
            }));
        }
        self.envoy_filter_of("edge-filters", patches)
    }

    /// The chain in Istio's order (`mesh::chain`), as `target` runs it, with the slots
    /// EnvoyFilters add; Istio's RBAC comes from the AuthorizationPolicies themselves.
    fn patched_slots(&self, target: Target, rate_limits: bool) -> Vec<Slot> {
        target.chain(crate::ChainFeatures {
            cors: self.cors.is_some(),
            deny: false,
            allow: false,
            rate_limits,
            trace_context: self.tracing.is_some(),
            web_protocols: !self.web_protocols.is_empty(),
        })
    }

    /// Envoy's filters that go before every filter of Istio's and every WasmPlugin: the trace
    /// context (when the edge traces), then CORS (Istio's own CORS filter runs after every
    /// WasmPlugin, too late to put its headers on the transcoder's replies), then the web
    /// protocols' filters. Each INSERT_FIRST lands before the ones applied earlier, hence the
    /// reverse order, filter by filter.
    fn first_filter_patches(&self) -> Vec<Value> {
        let slots = self.patched_slots(Target::Wasm, false);
        let firsts = slots
            .iter()
            .filter(|slot| slot.patch() == Patch::First && !matches!(slot, Slot::Plugin(_)));
        let filters: Vec<Value> = firsts.flat_map(|slot| self.envoy_filters(*slot)).collect();
        filters.into_iter().rev().map(first).collect()
    }

    /// The gateway's connection manager, listeners and clusters set as the local Envoy's:
    /// client address and request ids, the JSON 429, and the limits and timeouts.
    fn gateway_patches(&self) -> Result<Vec<Value>, String> {
        let mut typed_config = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
        });
        for (field, value) in self.connection_manager_settings()? {
            typed_config[field] = value;
        }
        let buffers =
            json!({ "per_connection_buffer_limit_bytes": self.limits.connection_buffer_bytes });
        // gRPC streams straight through, as in the local chain: the buffer filter (there for
        // the transcoder) would hold a client or bidi stream's messages until it ends — for
        // grpcurl's reflection stream, forever. A VirtualService cannot say so; a route patch
        // can, by the route's name (one Envoy route per match, each with the same name).
        let unbuffered = self.grpc_routes()?.into_iter().map(|route| {
            json!({
                "applyTo": "HTTP_ROUTE",
                "match": {
                    "context": "GATEWAY",
                    "routeConfiguration": { "vhost": { "route": { "name": route["name"] } } }
                },
                "patch": { "operation": "MERGE", "value": { "typed_per_filter_config": {
                    "envoy.filters.http.buffer": crate::buffer_disabled()
                } } }
            })
        });
        Ok([
            json!({
                "applyTo": "NETWORK_FILTER",
                "match": {
                    "context": "GATEWAY",
                    "listener": { "filterChain": { "filter": {
                        "name": "envoy.filters.network.http_connection_manager"
                    } } }
                },
                "patch": { "operation": "MERGE", "value": { "typed_config": typed_config } }
            }),
            json!({
                "applyTo": "LISTENER",
                "match": { "context": "GATEWAY" },
                "patch": { "operation": "MERGE", "value": buffers }
            }),
            json!({
                "applyTo": "CLUSTER",
                "match": { "context": "GATEWAY" },
                "patch": { "operation": "MERGE", "value": buffers }
            }),
        ]
        .into_iter()
        .chain(unbuffered)
        .collect())
    }

    fn envoy_filter_of(&self, name: &str, patches: Vec<Value>) -> Result<Value, String> {
        let istio = self.istio()?;
        let mut filter = json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": { "name": name, "namespace": istio.gateway_namespace },
            "spec": {
                "workloadSelector": { "labels": { "istio": istio.gateway_selector } },
                "configPatches": patches
            }
        });
        // A patch placed relative to another filter must come after any EnvoyFilter of the
        // default priority (0) that could move or remove that filter (istioctl analyze,
        // IST0151): Istio applies EnvoyFilters by ascending priority.
        let relative = filter["spec"]["configPatches"]
            .as_array()
            .is_some_and(|patches| {
                patches.iter().any(|patch| {
                    matches!(
                        patch["patch"]["operation"].as_str(),
                        Some("INSERT_BEFORE" | "INSERT_AFTER" | "REPLACE" | "REMOVE")
                    )
                })
            });
        if relative {
            filter["spec"]["priority"] = json!(RELATIVE_PATCH_PRIORITY);
        }
        Ok(filter)
    }
}

/// The priority of our EnvoyFilters that place a filter relative to another.
const RELATIVE_PATCH_PRIORITY: i64 = 10;

/// The ConfigMap holding the gateway's bootstrap additions (metric labels).
const STATS_BOOTSTRAP: &str = "edge-bootstrap";

/// Where the EnvoyFilter variant expects the .wasm files inside the gateway pod.
pub const WASM_MOUNT: &str = "/etc/istio/extensions";

impl EdgeConfig {
    /// Envoy's own filters for a slot; our plugins and the rate limits are rendered by the
    /// caller.
    fn envoy_filters(&self, slot: Slot) -> Vec<Value> {
        match slot {
            Slot::TraceContext => vec![crate::trace_context_filter()],
            Slot::CorsFirst => vec![crate::cors_filter()],
            Slot::WebProtocols => crate::web_protocol_filters(&self.web_protocols),
            Slot::Buffer => vec![crate::buffer_filter()],
            Slot::Plugin(_)
            | Slot::RateLimits
            | Slot::RbacDeny
            | Slot::RbacAllow
            | Slot::Router => Vec::new(),
        }
    }
}

fn before_router(value: Value) -> Value {
    before("envoy.filters.http.router", value)
}

/// An HTTP filter inserted right before the filter named `name`.
fn before(name: &str, value: Value) -> Value {
    let mut patch = first(value);
    patch["match"]["listener"]["filterChain"]["filter"]["subFilter"] = json!({ "name": name });
    patch["patch"]["operation"] = json!("INSERT_BEFORE");
    patch
}

/// An HTTP filter inserted first, before every filter of Istio's and every WasmPlugin.
fn first(value: Value) -> Value {
    json!({
        "applyTo": "HTTP_FILTER",
        "match": {
            "context": "GATEWAY",
            "listener": { "filterChain": { "filter": {
                "name": "envoy.filters.network.http_connection_manager"
            } } }
        },
        "patch": { "operation": "INSERT_FIRST", "value": value }
    })
}

fn documents(objects: &[Value]) -> String {
    documents_under(crate::GENERATED_NOTICE, objects)
}

/// YAML documents under a header comment.
pub(crate) fn documents_under(header: &str, objects: &[Value]) -> String {
    let mut text = String::from(header);
    for object in objects {
        text.push_str("---\n");
        text.push_str(&crate::to_yaml(object));
    }
    text
}
