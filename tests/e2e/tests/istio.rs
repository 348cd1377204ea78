//! The Istio manifests, proven without a cluster: every EnvoyFilter patch value (the filters
//! and the buffer filter as Istio would insert them before the router) is embedded in an Envoy
//! bootstrap and must pass `envoy --mode validate` in the real Envoy 1.40; a broken patch must
//! not. This chain is Istio ≤ 1.30's (WasmPlugin filters named `…/wasmplugin/NS.NAME`); a
//! real istiod (1.31) builds the gateway in `istiod.rs`, and `make test` runs most of the
//! end-to-end suite through it (`EDGE_MESH=istiod`). The Envoy Gateway deployment is run as
//! Envoy Gateway's own translator builds it in `envoy_gateway.rs`.

use edge_e2e::{envoy_binary, test_dir, workspace_root, Edge};
use edgectl::WASM_MOUNT;
use serde_json::{json, Value};

/// Every EnvoyFilter in the rendered manifests, by file.
fn envoy_filters() -> Vec<(String, Value)> {
    let root = workspace_root();
    let config = edge_e2e::edge_json();
    let digests =
        edgectl::load_digests(&root.join("istio/base/wasm-digests.json")).expect("digests");
    let objects = config.istio_objects(&digests).expect("render istio/");
    objects
        .into_iter()
        .flat_map(|(file, objects)| {
            objects
                .into_iter()
                .filter(|o| o["kind"] == "EnvoyFilter")
                .map(move |o| (file.to_string(), o))
        })
        .collect()
}

/// The chain Istio builds before EnvoyFilters apply, for the patches of `file`: the
/// WasmPlugins' filters (named as Istio names them, `extensions.istio.io/wasmplugin/NS.NAME`)
/// and the router for `wasmplugins.yaml`; only the router for the EnvoyFilter variant.
fn istio_chain(file: &str) -> Vec<Value> {
    let mut chain = Vec::new();
    if file == "wasmplugins.yaml" {
        let config = edge_e2e::edge_json();
        let filters = config.istio_filter_configs().expect("filter configs");
        let namespace = config
            .istio
            .as_ref()
            .expect("istio")
            .gateway_namespace
            .clone();
        let wasm_dir = Edge::wasm_dir().display().to_string();
        for plugin in edgectl::FILTERS {
            let mut filter =
                edgectl::wasm_filter(plugin.name(), &wasm_dir, &filters.of(plugin.filter));
            filter["name"] = json!(format!(
                "extensions.istio.io/wasmplugin/{namespace}.edge-{}",
                plugin.name()
            ));
            chain.push(filter);
        }
    }
    chain.push(edgectl::router_filter());
    chain
}

/// What the patches make of a gateway: its HTTP filters (from `chain`), the fields merged
/// into its connection manager, its listeners and its clusters, and the routes they patch
/// (each with the merged fields, named as the VirtualService's).
struct Patched {
    filters: Vec<Value>,
    connection_manager: Value,
    listener: Value,
    cluster: Value,
    routes: Vec<Value>,
}

/// Applies the patches in order as Istio applies them: `INSERT_FIRST` at the front,
/// `INSERT_BEFORE` right before the named filter, `MERGE` into the connection manager, the
/// listeners or the clusters.
fn patched_chain(mut filters: Vec<Value>, patches: &[Value]) -> Patched {
    let wasm_dir = Edge::wasm_dir().display().to_string();
    let mut merged = json!({});
    let mut listener = json!({});
    let mut cluster = json!({});
    let mut routes = Vec::new();
    for patch in patches {
        assert_eq!(patch["match"]["context"], "GATEWAY");
        // The gateway mounts the .wasm files at WASM_MOUNT; here they are in target/.
        let text = patch["patch"]["value"]
            .to_string()
            .replace(WASM_MOUNT, &wasm_dir);
        let value: Value = serde_json::from_str(&text).expect("patch value");
        match (
            patch["applyTo"].as_str(),
            patch["patch"]["operation"].as_str(),
        ) {
            (Some("HTTP_FILTER"), Some("INSERT_FIRST")) => filters.insert(0, value),
            (Some("HTTP_FILTER"), Some("INSERT_BEFORE")) => {
                let name =
                    &patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"];
                // Istio skips a patch whose filter is not there: each rate limit is placed by
                // the transcoder's name in every Istio version, and one of them matches (the
                // tests below check what the chain ends up with).
                if let Some(at) = filters.iter().position(|filter| &filter["name"] == name) {
                    filters.insert(at, value);
                }
            }
            (Some("NETWORK_FILTER"), Some("MERGE")) => {
                for (key, field) in value["typed_config"].as_object().expect("typed_config") {
                    if key != "@type" {
                        merged[key] = field.clone();
                    }
                }
            }
            (Some(target @ ("LISTENER" | "CLUSTER")), Some("MERGE")) => {
                let into = if target == "LISTENER" {
                    &mut listener
                } else {
                    &mut cluster
                };
                for (key, field) in value.as_object().expect("fields") {
                    into[key] = field.clone();
                }
            }
            (Some("HTTP_ROUTE"), Some("MERGE")) => {
                let name = &patch["match"]["routeConfiguration"]["vhost"]["route"]["name"];
                let mut route = json!({
                    "name": name,
                    "match": { "prefix": format!("/{}/", name.as_str().expect("a route name")) },
                    "route": { "cluster": edge_e2e::edge_json().istio_cluster("catalog") }
                });
                for (key, field) in value.as_object().expect("route fields") {
                    route[key] = field.clone();
                }
                routes.push(route);
            }
            other => panic!("unexpected patch {other:?}"),
        }
    }
    Patched {
        filters,
        connection_manager: merged,
        listener,
        cluster,
        routes,
    }
}

/// A gateway-like bootstrap: one HTTP listener with the patched chain, and a stub cluster for
/// every service under its Istio name.
fn bootstrap_with(file: &str, patches: &[Value]) -> Value {
    let config = edge_e2e::edge_json();
    let patched = patched_chain(istio_chain(file), patches);
    let clusters: Vec<Value> = config
        .services
        .keys()
        .map(|service| {
            let name = config.istio_cluster(service);
            let mut cluster = json!({
                "name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                    "socket_address": { "address": "127.0.0.1", "port_value": 9 } } } }] }] }
            });
            for (key, field) in patched.cluster.as_object().expect("cluster fields") {
                cluster[key] = field.clone();
            }
            cluster
        })
        .collect();
    let mut connection_manager = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": patched.routes }] },
        "http_filters": patched.filters
    });
    for (key, field) in patched
        .connection_manager
        .as_object()
        .expect("merged fields")
    {
        connection_manager[key] = field.clone();
    }
    let mut listener = json!({
        "name": "gateway",
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": connection_manager
        }] }]
    });
    for (key, field) in patched.listener.as_object().expect("listener fields") {
        listener[key] = field.clone();
    }
    json!({ "static_resources": { "listeners": [listener], "clusters": clusters } })
}

/// Runs `envoy --mode validate` on a bootstrap; returns whether it passed, and its output.
fn validate(bootstrap: &Value, name: &str) -> (bool, String) {
    validate_with(bootstrap, name, &[])
}

/// `envoy --mode validate` with extra arguments (e.g. `--config-yaml`, as Istio's agent
/// passes the bootstrap override).
fn validate_with(bootstrap: &Value, name: &str, extra: &[&str]) -> (bool, String) {
    let dir = test_dir("istio-validate");
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, edgectl::to_yaml(bootstrap)).expect("write bootstrap");
    let output = std::process::Command::new(envoy_binary())
        .args([
            "--mode",
            "validate",
            "--use-dynamic-base-id",
            "-l",
            "warning",
            "-c",
        ])
        .arg(&path)
        .args(extra)
        .output()
        .expect("run envoy --mode validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
    (output.status.success(), text)
}

#[test]
fn every_envoy_filter_patch_passes_envoy_validate() {
    let filters = envoy_filters();
    let names: Vec<(&str, &str)> = filters
        .iter()
        .map(|(file, f)| {
            (
                file.as_str(),
                f["metadata"]["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("envoyfilter-native.yaml", "edge-filters"),
            ("envoyfilter.yaml", "edge-filters"),
            ("wasmplugins.yaml", "edge-buffer"),
            ("wasmplugins.yaml", "edge-first"),
            ("wasmplugins.yaml", "edge-rate-limits"),
            ("wasmplugins.yaml", "edge-gateway")
        ],
        "the rendered EnvoyFilters"
    );
    for (file, filter) in &filters {
        let patches = filter["spec"]["configPatches"].as_array().expect("patches");
        let (ok, output) = validate(&bootstrap_with(file, patches), "patches");
        assert!(
            ok,
            "istio/base/{file}: Envoy refused the patches:\n{output}"
        );
    }
}

#[test]
fn the_envoy_filter_variant_keeps_the_wasm_plugins_order() {
    let (_, filter) = envoy_filters()
        .into_iter()
        .find(|(file, _)| file == "envoyfilter.yaml")
        .expect("envoyfilter.yaml");
    let patched = patched_chain(
        istio_chain("envoyfilter.yaml"),
        filter["spec"]["configPatches"].as_array().expect("patches"),
    );
    let merged = &patched.connection_manager;
    let names: Vec<&str> = patched
        .filters
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default())
        .collect();
    // The web protocols' filters right after CORS; Istio's own filters (RBAC among them) sit
    // between auth and the rate limits.
    assert_eq!(
        names,
        [
            "edge.trace-context",
            "envoy.filters.http.cors",
            "edge.client-content-type",
            "envoy.filters.http.grpc_web",
            "envoy.filters.http.connect_grpc_bridge",
            "edge.access-log",
            "edge.auth",
            "edge.rate-limit.listings",
            "edge.rate-limit.purchases",
            "edge.transcoder",
            "envoy.filters.http.buffer",
            "envoy.filters.http.router"
        ]
    );
    assert_eq!(
        merged["local_reply_config"],
        edgectl::local_reply_config(true)
    );
    assert_eq!(merged["use_remote_address"], true);
    assert_eq!(merged["request_headers_timeout"], "10s");
    assert_eq!(patched.listener["per_connection_buffer_limit_bytes"], 32768);
    assert_eq!(patched.cluster["per_connection_buffer_limit_bytes"], 32768);
}

#[test]
fn the_wasm_plugin_variant_puts_the_rate_limits_between_auth_and_the_transcoder() {
    let patches: Vec<Value> = envoy_filters()
        .into_iter()
        .filter(|(file, _)| file == "wasmplugins.yaml")
        .flat_map(|(_, filter)| {
            filter["spec"]["configPatches"]
                .as_array()
                .expect("patches")
                .clone()
        })
        .collect();
    let patched = patched_chain(istio_chain("wasmplugins.yaml"), &patches);
    let merged = &patched.connection_manager;
    let names: Vec<&str> = patched
        .filters
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "edge.trace-context",
            "envoy.filters.http.cors",
            "edge.client-content-type",
            "envoy.filters.http.grpc_web",
            "envoy.filters.http.connect_grpc_bridge",
            "extensions.istio.io/wasmplugin/istio-system.edge-access-log",
            "extensions.istio.io/wasmplugin/istio-system.edge-auth",
            "edge.rate-limit.listings",
            "edge.rate-limit.purchases",
            "extensions.istio.io/wasmplugin/istio-system.edge-transcoder",
            "envoy.filters.http.buffer",
            "envoy.filters.http.router"
        ]
    );
    assert_eq!(
        merged["local_reply_config"],
        edgectl::local_reply_config(true)
    );
    let (ok, output) = validate(&bootstrap_with("wasmplugins.yaml", &patches), "all-patches");
    assert!(
        ok,
        "Envoy refused the WasmPlugin variant's patches:\n{output}"
    );
}

#[test]
fn a_broken_patch_fails_envoy_validate() {
    // The check can fail: a filter with a misspelt field is refused.
    let (_, filter) = envoy_filters()
        .into_iter()
        .find(|(file, _)| file == "envoyfilter.yaml")
        .expect("envoyfilter.yaml");
    let mut patches = filter["spec"]["configPatches"]
        .as_array()
        .expect("patches")
        .clone();
    patches[0]["patch"]["value"]["typed_config"]["config"]["vm_config"]["runtimee"] = json!("v8");
    let (ok, output) = validate(&bootstrap_with("envoyfilter.yaml", &patches), "broken");
    assert!(!ok, "Envoy accepted a broken patch:\n{output}");
}

#[test]
fn the_bootstrap_override_adds_the_heap_limits_to_istios_bootstrap() {
    // What matters of the gateway's own bootstrap (tools/packaging/common/envoy_bootstrap.json):
    // it declares the connection monitor; the override must add to it, not repeat it.
    let istio_like = json!({
        "overload_manager": { "resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": 2147483647u64
            }
        }] },
        "static_resources": {}
    });
    let root = workspace_root();
    let config = edge_e2e::edge_json();
    let digests =
        edgectl::load_digests(&root.join("istio/base/wasm-digests.json")).expect("digests");
    let objects = config.istio_objects(&digests).expect("render istio/");
    let override_json = objects["stats.yaml"][0]["data"]["custom_bootstrap.json"]
        .as_str()
        .expect("custom_bootstrap.json")
        .to_string();
    let (ok, output) = validate_with(&istio_like, "override", &["--config-yaml", &override_json]);
    assert!(ok, "Envoy refused the bootstrap override:\n{output}");
    // The check can fail: repeating Istio's connection monitor is refused.
    let mut repeated: Value = serde_json::from_str(&override_json).expect("JSON");
    repeated["overload_manager"]["resource_monitors"]
        .as_array_mut()
        .expect("monitors")
        .push(istio_like["overload_manager"]["resource_monitors"][0].clone());
    let (ok, _) = validate_with(
        &istio_like,
        "repeated",
        &["--config-yaml", &repeated.to_string()],
    );
    assert!(!ok, "a repeated monitor must be refused");
}
