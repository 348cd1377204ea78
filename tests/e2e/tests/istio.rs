//! The Istio manifests, proven without a cluster: every EnvoyFilter patch value (the filters
//! and the buffer filter as Istio would insert them before the router) is embedded in an Envoy
//! bootstrap and must pass `envoy --mode validate` in the real Envoy 1.40; a broken patch must
//! not. (The WasmPlugins' pluginConfig runs through the end-to-end suite instead: `make test`
//! runs part of it with `EDGE_FILTER_CONFIG=istio`.)

use edge_e2e::{envoy_binary, test_dir, workspace_root, Edge};
use edgectl::{EdgeConfig, WASM_MOUNT};
use serde_json::{json, Value};

/// Every EnvoyFilter in the rendered manifests, by file.
fn envoy_filters() -> Vec<(String, Value)> {
    let root = workspace_root();
    let config = EdgeConfig::load(&root.join("envoy/edge.json")).expect("edge.json");
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

/// The HTTP filters the patches make of a chain holding only the router, applied in order as
/// Istio applies them (`INSERT_FIRST` at the front, `INSERT_BEFORE` right before the router).
fn patched_chain(patches: &[Value]) -> Vec<Value> {
    let wasm_dir = Edge::wasm_dir().display().to_string();
    let mut filters = vec![edgectl::router_filter()];
    for patch in patches {
        assert_eq!(patch["applyTo"], "HTTP_FILTER");
        assert_eq!(patch["match"]["context"], "GATEWAY");
        // The gateway mounts the .wasm files at WASM_MOUNT; here they are in target/.
        let text = patch["patch"]["value"]
            .to_string()
            .replace(WASM_MOUNT, &wasm_dir);
        let value: Value = serde_json::from_str(&text).expect("patch value");
        match patch["patch"]["operation"].as_str() {
            Some("INSERT_FIRST") => filters.insert(0, value),
            Some("INSERT_BEFORE") => {
                assert_eq!(
                    patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
                    "envoy.filters.http.router"
                );
                let router = filters.len() - 1;
                filters.insert(router, value);
            }
            other => panic!("unexpected patch operation {other:?}"),
        }
    }
    filters
}

/// A gateway-like bootstrap: one HTTP listener with the patched chain, and a stub cluster for
/// every service under its Istio name.
fn bootstrap_with(patches: &[Value]) -> Value {
    let root = workspace_root();
    let config = EdgeConfig::load(&root.join("envoy/edge.json")).expect("edge.json");
    let filters = patched_chain(patches);
    let clusters: Vec<Value> = config
        .services
        .keys()
        .map(|service| {
            let name = config.istio_cluster(service);
            json!({
                "name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                    "socket_address": { "address": "127.0.0.1", "port_value": 9 } } } }] }] }
            })
        })
        .collect();
    json!({
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "gateway",
                        "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": [] }] },
                        "http_filters": filters
                    }
                }] }]
            }],
            "clusters": clusters
        }
    })
}

/// Runs `envoy --mode validate` on a bootstrap; returns whether it passed, and its output.
fn validate(bootstrap: &Value, name: &str) -> (bool, String) {
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
    let names: Vec<&str> = filters
        .iter()
        .map(|(_, f)| f["metadata"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["edge-filters", "edge-buffer", "edge-cors-first"],
        "the rendered EnvoyFilters"
    );
    for (file, filter) in &filters {
        let patches = filter["spec"]["configPatches"].as_array().expect("patches");
        let (ok, output) = validate(&bootstrap_with(patches), "patches");
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
    let chain = patched_chain(filter["spec"]["configPatches"].as_array().expect("patches"));
    let names: Vec<&str> = chain
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default())
        .collect();
    // Istio's own filters (RBAC among them) sit between auth and the transcoder.
    assert_eq!(
        names,
        [
            "envoy.filters.http.cors",
            "edge.access-log",
            "edge.auth",
            "edge.transcoder",
            "envoy.filters.http.buffer",
            "envoy.filters.http.router"
        ]
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
    let (ok, output) = validate(&bootstrap_with(&patches), "broken");
    assert!(!ok, "Envoy accepted a broken patch:\n{output}");
}
