//! The edge on Envoy Gateway (≥ 1.8) instead of Istio: `istio/envoy-gateway/edge.yaml`, the
//! native module (`libedge_native.so`) run by an Envoy Gateway proxy. Not applied by
//! `kubectl apply -k istio/` (an Istio cluster); field names are those of Envoy Gateway
//! v1.8.0's CRDs, which `make istio-check` validates the file against.
//!
//! - an `EnvoyProxy` registering the module (`spec.dynamicModules`, a `Local` source: the file
//!   must be in the proxy's container), pinning the Envoy image the module is built for, and
//!   merging into the proxy's bootstrap one cluster per service under Istio's cluster names
//!   and the edge's `stats_tags`: so the filters' configuration is exactly the Istio
//!   variants' ([`EdgeConfig::istio_filter_configs`]);
//! - a `GatewayClass` and a `Gateway` (port 80) whose `infrastructure.parametersRef` is that
//!   EnvoyProxy;
//! - an `HTTPRoute` with the VirtualService's routes, and a `ReferenceGrant` in each service's
//!   namespace letting it route there: Envoy Gateway enables a policy's filters per route, so
//!   without routes they would run on nothing;
//! - one `EnvoyExtensionPolicy` on the Gateway with the three filters in the edge's order
//!   (`spec.dynamicModule`, kept in list order by Envoy Gateway).
//!
//! Envoy Gateway places dynamic-module filters after its own CORS, auth, Lua, ext_proc and
//! Wasm filters and before its RBAC, rate limit, gRPC-Web and router filters
//! (`newOrderedHTTPFilter`, internal/xds/translator/httpfilters.go), and sets no
//! `metrics_namespace`: the filters' metrics are `dynamicmodulescustom.*`, not `wasmcustom.*`.
//! Not carried over from the Istio variants: the CORS policy, the web protocols' filters, the
//! rate limits, the trace context, the AuthorizationPolicies, the buffer filter before the
//! router (Envoy Gateway has no place for one after a dynamic module, and the native
//! transcoder holds a request's headers until their body is in), and the connection manager's
//! settings (Envoy Gateway's own policies would).

use crate::istio::{documents_under, fqdn};
use crate::{
    native_config, EdgeConfig, FilterModule, Slot, Target, GENERATED_NOTICE, NATIVE_ENVOY_VERSION,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The rendered file, from the repository root.
pub const ENVOY_GATEWAY_FILE: &str = "istio/envoy-gateway/edge.yaml";
/// Where the EnvoyProxy expects `libedge_native.so` in the Envoy container.
pub const MODULE_MOUNT: &str = "/etc/envoy/modules";
/// The namespace of the Gateway, its EnvoyProxy, route and policy.
pub const ENVOY_GATEWAY_NAMESPACE: &str = "edge-gateway";
/// The module's name in `EnvoyProxy.spec.dynamicModules` (the policy refers to it).
pub const MODULE_ENTRY: &str = "edge-native";
/// The name of the GatewayClass, Gateway, EnvoyProxy and HTTPRoute.
const NAME: &str = "edge";
const CONTROLLER: &str = "gateway.envoyproxy.io/gatewayclass-controller";
const GATEWAY_API: &str = "gateway.networking.k8s.io";
const ENVOY_GATEWAY_API: &str = "gateway.envoyproxy.io/v1alpha1";

impl EdgeConfig {
    /// `istio/envoy-gateway/edge.yaml`.
    pub fn render_envoy_gateway(&self) -> Result<String, String> {
        Ok(documents_under(
            GENERATED_NOTICE,
            &self.envoy_gateway_objects()?,
        ))
    }

    /// The objects of `istio/envoy-gateway/edge.yaml`.
    pub fn envoy_gateway_objects(&self) -> Result<Vec<Value>, String> {
        let istio = self.istio()?;
        let metadata = |name: &str| json!({ "name": name, "namespace": ENVOY_GATEWAY_NAMESPACE });
        let (route, namespaces) = self.envoy_gateway_route()?;
        let mut objects = vec![
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": { "name": ENVOY_GATEWAY_NAMESPACE }
            }),
            json!({
                "apiVersion": format!("{GATEWAY_API}/v1"),
                "kind": "GatewayClass",
                "metadata": { "name": NAME },
                "spec": { "controllerName": CONTROLLER }
            }),
            json!({
                "apiVersion": ENVOY_GATEWAY_API,
                "kind": "EnvoyProxy",
                "metadata": metadata(NAME),
                "spec": self.envoy_proxy_spec()?
            }),
            json!({
                "apiVersion": format!("{GATEWAY_API}/v1"),
                "kind": "Gateway",
                "metadata": metadata(NAME),
                "spec": {
                    "gatewayClassName": NAME,
                    "infrastructure": { "parametersRef": {
                        "group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": NAME
                    } },
                    "listeners": [{
                        "name": "http",
                        "protocol": "HTTP",
                        "port": 80,
                        "allowedRoutes": { "namespaces": { "from": "Same" } }
                    }]
                }
            }),
        ];
        let mut http_route = json!({
            "apiVersion": format!("{GATEWAY_API}/v1"),
            "kind": "HTTPRoute",
            "metadata": metadata(NAME),
            "spec": {
                "parentRefs": [{ "name": NAME, "sectionName": "http" }],
                "rules": route
            }
        });
        // A listener or route hostname cannot be "*": no hostnames is every host.
        if !istio.hosts.iter().any(|host| host == "*") {
            http_route["spec"]["hostnames"] = json!(istio.hosts);
        }
        objects.push(http_route);
        objects.extend(namespaces.into_iter().map(|namespace| {
            json!({
                "apiVersion": format!("{GATEWAY_API}/v1beta1"),
                "kind": "ReferenceGrant",
                "metadata": { "name": format!("{ENVOY_GATEWAY_NAMESPACE}-routes"), "namespace": namespace },
                "spec": {
                    "from": [{ "group": GATEWAY_API, "kind": "HTTPRoute", "namespace": ENVOY_GATEWAY_NAMESPACE }],
                    "to": [{ "group": "", "kind": "Service" }]
                }
            })
        }));
        objects.push(json!({
            "apiVersion": ENVOY_GATEWAY_API,
            "kind": "EnvoyExtensionPolicy",
            "metadata": metadata("edge-filters"),
            "spec": {
                "targetRefs": [{ "group": GATEWAY_API, "kind": "Gateway", "name": NAME }],
                "dynamicModule": self.envoy_gateway_filters()?
            }
        }));
        Ok(objects)
    }

    /// Our filters as the policy's `dynamicModule` entries, as the native build runs them (the
    /// access log and auth as one), in the edge's order, each with the configuration the
    /// Istio variants give it.
    fn envoy_gateway_filters(&self) -> Result<Vec<Value>, String> {
        let filters = self.istio_filter_configs()?;
        Ok(Target::Native
            .chain(crate::ChainFeatures::default())
            .into_iter()
            .filter_map(|slot| match slot {
                Slot::Plugin(plugin) => Some(json!({
                    "name": MODULE_ENTRY,
                    "filterName": plugin.name(),
                    "config": native_config(plugin.name(), &filters.of(plugin.filter))
                })),
                _ => None,
            })
            .collect())
    }

    /// The EnvoyProxy: the module, the Envoy it is built for, and the bootstrap additions.
    fn envoy_proxy_spec(&self) -> Result<Value, String> {
        let filters = self.istio_filter_configs()?;
        // The filters call services by cluster name (the auth filter's keys, the transcoder's
        // backends); Envoy Gateway names its clusters after routes, so the services' clusters
        // are the bootstrap's, named as Istio names them.
        let clusters = self.service_clusters(
            &filters,
            |service| self.istio_cluster(service),
            |service| Ok(format!("{}:{}", fqdn(service), self.services[service].port)),
        )?;
        let bootstrap = json!({
            "stats_config": crate::stats_config(),
            "static_resources": { "clusters": clusters }
        });
        let module = FilterModule::new(Target::Native, MODULE_MOUNT);
        Ok(json!({
            "provider": {
                "type": "Kubernetes",
                "kubernetes": { "envoyDeployment": { "container": {
                    "image": format!("docker.io/envoyproxy/envoy:distroless-v{NATIVE_ENVOY_VERSION}")
                } } }
            },
            "bootstrap": { "type": "Merge", "value": bootstrap.to_string() },
            // The access log's lines, through Envoy's access log (in place of Envoy Gateway's
            // default one, which a setting replaces).
            "telemetry": { "accessLog": { "settings": [{
                "format": { "type": "Text", "text": crate::module::line_format() },
                "sinks": [{ "type": "File", "file": { "path": "/dev/stdout" } }]
            }] } },
            "dynamicModules": [{
                "name": MODULE_ENTRY,
                "source": { "type": "Local", "local": { "path": module.path() } }
            }]
        }))
    }

    /// The VirtualService's routes as HTTPRoute rules, and the namespaces they route to.
    fn envoy_gateway_route(&self) -> Result<(Vec<Value>, BTreeSet<String>), String> {
        let mut namespaces = BTreeSet::new();
        let mut rules = Vec::new();
        for route in self.virtual_service_routes()? {
            let name = route["name"].as_str().unwrap_or_default();
            let matches = route["match"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|condition| http_route_match(name, condition))
                .collect::<Result<Vec<_>, _>>()?;
            let mut backends = Vec::new();
            for destination in route["route"].as_array().into_iter().flatten() {
                let host = destination["destination"]["host"]
                    .as_str()
                    .unwrap_or_default();
                let (service, namespace) = host
                    .strip_suffix(".svc.cluster.local")
                    .and_then(|name| name.split_once('.'))
                    .ok_or_else(|| format!("route {name}: {host:?} is not a Service's name"))?;
                namespaces.insert(namespace.to_string());
                backends.push(json!({
                    "name": service,
                    "namespace": namespace,
                    "port": destination["destination"]["port"]["number"]
                }));
            }
            // The route's CORS policy is not translated (see the module's documentation).
            let mut rule = json!({ "matches": matches, "backendRefs": backends });
            if let Some(remove) = route.pointer("/headers/request/remove") {
                rule["filters"] = json!([{
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": { "remove": remove }
                }]);
            }
            rules.push(rule);
        }
        Ok((rules, namespaces))
    }
}

/// One VirtualService match (a path prefix, exact headers) as an HTTPRoute match. Gateway API
/// prefixes match whole path segments: `/catalog.CatalogService` matches what Istio's
/// `/catalog.CatalogService/` does.
fn http_route_match(route: &str, condition: &Value) -> Result<Value, String> {
    let prefix = condition["uri"]["prefix"]
        .as_str()
        .ok_or_else(|| format!("route {route}: only path prefixes are translated"))?;
    let prefix = match prefix.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    let mut matched = json!({ "path": { "type": "PathPrefix", "value": prefix } });
    if let Some(headers) = condition["headers"].as_object() {
        let headers = headers
            .iter()
            .map(|(header, value)| {
                let exact = value["exact"].as_str().ok_or_else(|| {
                    format!("route {route}: header {header}: only exact matches are translated")
                })?;
                Ok(json!({ "type": "Exact", "name": header, "value": exact }))
            })
            .collect::<Result<Vec<_>, String>>()?;
        matched["headers"] = json!(headers);
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> EdgeConfig {
        EdgeConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge.json")).unwrap()
    }

    #[test]
    fn the_policy_runs_the_istio_variants_filters_in_their_order_from_the_module() {
        let config = config();
        let objects = config.envoy_gateway_objects().unwrap();
        let of_kind = |kind: &str| {
            objects
                .iter()
                .find(|object| object["kind"] == kind)
                .unwrap_or_else(|| panic!("no {kind}"))
        };
        let policy = &of_kind("EnvoyExtensionPolicy")["spec"];
        let names: Vec<&str> = policy["dynamicModule"]
            .as_array()
            .unwrap()
            .iter()
            .map(|filter| filter["filterName"].as_str().unwrap())
            .collect();
        // The access log and auth as one filter, as the native build runs them.
        assert_eq!(names, ["access-log+auth", "transcoder"]);
        let istio = config.istio_filter_configs().unwrap();
        assert_eq!(policy["dynamicModule"][0]["config"]["auth"], istio.auth);
        assert_eq!(policy["targetRefs"][0]["kind"], "Gateway");
        assert_eq!(
            policy["targetRefs"][0]["name"],
            of_kind("Gateway")["metadata"]["name"]
        );
        // Every entry names the module the EnvoyProxy registers, at the mount.
        let proxy = &of_kind("EnvoyProxy")["spec"];
        assert_eq!(proxy["dynamicModules"][0]["name"], MODULE_ENTRY);
        assert!(policy["dynamicModule"]
            .as_array()
            .unwrap()
            .iter()
            .all(|filter| filter["name"] == MODULE_ENTRY));
        assert_eq!(
            proxy["dynamicModules"][0]["source"]["local"]["path"],
            "/etc/envoy/modules/libedge_native.so"
        );
        assert_eq!(
            proxy["provider"]["kubernetes"]["envoyDeployment"]["container"]["image"],
            "docker.io/envoyproxy/envoy:distroless-v1.40.0"
        );
        // The clusters the filters call are the bootstrap's.
        let bootstrap: Value =
            serde_json::from_str(proxy["bootstrap"]["value"].as_str().unwrap()).unwrap();
        let clusters: Vec<&str> = bootstrap["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|cluster| cluster["name"].as_str().unwrap())
            .collect();
        let authority = istio.auth["authority"]["cluster"].as_str().unwrap();
        assert!(
            clusters.contains(&authority),
            "{authority} not in {clusters:?}"
        );
        for cluster in istio.transcoder["services"].as_object().unwrap().values() {
            assert!(clusters.contains(&cluster.as_str().unwrap()), "{cluster}");
        }
    }

    #[test]
    fn the_route_has_the_virtual_services_routes_with_a_grant_for_each_namespace() {
        let config = config();
        let objects = config.envoy_gateway_objects().unwrap();
        let route = objects
            .iter()
            .find(|object| object["kind"] == "HTTPRoute")
            .unwrap();
        let rules = route["spec"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), config.virtual_service_routes().unwrap().len());
        let catch_all = rules.last().unwrap();
        assert_eq!(catch_all["matches"][0]["path"]["value"], "/");
        let catalog = rules
            .iter()
            .find(|rule| {
                rule["matches"][0]["path"]["value"] == "/catalog.CatalogService"
                    && rule["matches"][0].get("headers").is_none()
            })
            .expect("the catalog's gRPC route");
        assert_eq!(catalog["backendRefs"][0]["namespace"], "catalog");
        assert_eq!(
            catalog["filters"][0]["requestHeaderModifier"]["remove"],
            json!(crate::EDGE_ONLY_HEADERS)
        );
        let granted: BTreeSet<&str> = objects
            .iter()
            .filter(|object| object["kind"] == "ReferenceGrant")
            .map(|grant| grant["metadata"]["namespace"].as_str().unwrap())
            .collect();
        let routed: BTreeSet<&str> = rules
            .iter()
            .flat_map(|rule| rule["backendRefs"].as_array().unwrap())
            .map(|backend| backend["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(granted, routed);
    }

    #[test]
    fn only_prefixes_and_exact_headers_are_translated() {
        let regex = json!({ "uri": { "regex": "/a.*" } });
        assert!(http_route_match("r", &regex).is_err());
        let header = json!({ "uri": { "prefix": "/a/" }, "headers": { "h": { "prefix": "x" } } });
        assert!(http_route_match("r", &header)
            .unwrap_err()
            .contains("exact"));
        let ok = json!({ "uri": { "prefix": "/a/" }, "headers": { "h": { "exact": "x" } } });
        assert_eq!(
            http_route_match("r", &ok).unwrap(),
            json!({
                "path": { "type": "PathPrefix", "value": "/a" },
                "headers": [{ "type": "Exact", "name": "h", "value": "x" }]
            })
        );
    }
}
