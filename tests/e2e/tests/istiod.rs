//! What a real istiod builds from `istio/`, read back from Envoy's `/config_dump`: the chain
//! `make run` runs (edgectl's `mesh` module) must be the chain istiod pushes, every EnvoyFilter
//! patch must have taken effect (one that matched nothing is skipped by Istio without a word),
//! the rollout's header route and the RBAC rules must be istiod's, and the bootstrap keeps the
//! edge's metrics. Both ways of installing the filters are checked: WasmPlugins and the single
//! EnvoyFilter. (`make test` also runs most suites through istiod: `EDGE_MESH=istiod`.)

use edge_e2e::{Edge, Options, MOBILE_PHONE_ID};
use edgectl::{EdgeConfig, MeshVariant};
use serde_json::Value;
use std::collections::BTreeMap;

/// Istio's own filters on a gateway that the local chain leaves out: they do not change what
/// the edge's requests meet (`edgectl::Slot`). Istio's CORS filter comes after every
/// WasmPlugin; the edge's own, first in the chain, answers preflights before it.
const ISTIO_ONLY: [&str; 3] = [
    "envoy.filters.http.grpc_stats",
    "envoy.filters.http.fault",
    "envoy.filters.http.cors",
];

fn config() -> EdgeConfig {
    edge_e2e::edge_json()
}

async fn config_dump(edge: &Edge) -> Value {
    edge.http
        .get(format!("{}/config_dump?include_eds", edge.admin_url))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("config dump")
}

/// One section of the dump by its type's last name (`ListenersConfigDump`, …).
fn section<'a>(dump: &'a Value, kind: &str) -> &'a Value {
    dump["configs"]
        .as_array()
        .and_then(|configs| {
            configs.iter().find(|c| {
                c["@type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(&format!(".{kind}")))
            })
        })
        .unwrap_or_else(|| panic!("no {kind} in the config dump"))
}

/// The gateway listener's connection manager.
fn connection_manager(dump: &Value) -> &Value {
    let listeners = section(dump, "ListenersConfigDump")["dynamic_listeners"]
        .as_array()
        .expect("listeners");
    assert_eq!(listeners.len(), 1, "one gateway listener");
    &listeners[0]["active_state"]["listener"]["filter_chains"][0]["filters"][0]["typed_config"]
}

/// A filter's name as the local chain names it: Istio names a WasmPlugin's filter after its
/// ECDS resource (`extensions.istio.io/wasmplugin/<ns>.edge-auth` up to Istio 1.30,
/// `…/trafficextension/<ns>.edge-auth~istio-translated-wasmplugin` from 1.31).
fn local_name(name: &str) -> String {
    for prefix in [
        "extensions.istio.io/wasmplugin/",
        "extensions.istio.io/trafficextension/",
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let plugin = rest.split('.').nth(1).unwrap_or(rest);
            let plugin = plugin.trim_end_matches("~istio-translated-wasmplugin");
            return plugin.replacen("edge-", "edge.", 1);
        }
    }
    name.to_string()
}

/// The chain of the local edge (`make run`'s, from the same edge.json), as Envoy dumps it.
fn local_chain(local_dump: &Value) -> Vec<Value> {
    section(local_dump, "ListenersConfigDump")["static_listeners"][0]["listener"]["filter_chains"]
        [0]["filters"][0]["typed_config"]["http_filters"]
        .as_array()
        .expect("local http_filters")
        .clone()
}

/// Checks the chain istiod built against the local one: the same filters in the same order
/// (Istio's own left aside, and only those), the same native filters' configurations, and
/// each Wasm filter with the configuration the local tests run (Istio's cluster names).
fn assert_same_chain(dump: &Value, local_dump: &Value, config: &EdgeConfig) {
    let real = connection_manager(dump)["http_filters"]
        .as_array()
        .expect("http_filters");
    let mut istio_only = Vec::new();
    let mut first_cors_seen = false;
    let mut chain: Vec<(String, &Value)> = Vec::new();
    for filter in real {
        let name = filter["name"].as_str().expect("a filter name");
        // The first CORS filter is the edge's (our EnvoyFilter puts it first); a later one is
        // Istio's.
        let is_cors = name == "envoy.filters.http.cors";
        if ISTIO_ONLY.contains(&name) && (!is_cors || first_cors_seen) {
            istio_only.push(name.to_string());
            continue;
        }
        first_cors_seen |= is_cors;
        chain.push((local_name(name), filter));
    }
    let mut expected_istio_only: Vec<String> = ISTIO_ONLY.map(String::from).to_vec();
    istio_only.sort();
    expected_istio_only.sort();
    assert_eq!(istio_only, expected_istio_only, "Istio's own filters");

    let local = local_chain(local_dump);
    let local_names: Vec<&str> = local.iter().map(|f| f["name"].as_str().unwrap()).collect();
    let real_names: Vec<&str> = chain.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(real_names, local_names, "istiod's chain against make run's");

    let ecds: BTreeMap<String, &Value> = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(".EcdsConfigDump"))
        })
        .flat_map(|c| c["ecds_filters"].as_array().into_iter().flatten())
        .map(|f| {
            let filter = &f["ecds_filter"];
            (
                local_name(filter["name"].as_str().unwrap()),
                &filter["typed_config"],
            )
        })
        .collect();
    let mesh_configs = config.istio_filter_configs().expect("filter configs");
    for ((name, real), local) in chain.iter().zip(&local) {
        if let Some(filter) = name
            .strip_prefix("edge.")
            .and_then(|n| edgectl::FILTERS.iter().find(|p| p.name() == n))
            .map(|plugin| plugin.filter)
        {
            let plugin = filter.name();
            // The Wasm filters: discovered from istiod (WasmPlugin) or inline (EnvoyFilter).
            let wasm = if real.get("config_discovery").is_some() {
                ecds.get(name.as_str())
                    .unwrap_or_else(|| panic!("{name} was never discovered"))
            } else {
                &real["typed_config"]
            };
            let wasm = &wasm["config"];
            let configuration: Value = serde_json::from_str(
                wasm["configuration"]["value"]
                    .as_str()
                    .expect("a JSON configuration"),
            )
            .expect("JSON");
            // istiod passes `pluginConfig` on as a protobuf Struct: every number a double.
            assert!(
                same_json(&configuration, &mesh_configs.of(filter)),
                "{name}'s configuration:\n{configuration}\nagainst\n{}",
                mesh_configs.of(filter)
            );
            assert_eq!(wasm["root_id"], plugin, "{name}");
            assert_eq!(wasm["failure_policy"], "FAIL_RELOAD", "{name}");
            let code = wasm["vm_config"]["code"]["local"]["filename"]
                .as_str()
                .expect("a local file");
            // One module for the three filters, no vm_id: one VM per worker.
            assert!(code.ends_with("/edge.wasm"), "{name}: {code}");
            assert_eq!(wasm["vm_config"].get("vm_id"), None, "{name}");
        } else if name != "envoy.filters.http.router" {
            // Native filters: exactly as the local Envoy has them (RBAC as istiod translates the
            // AuthorizationPolicies, the rate limits, CORS, the trace context, the buffer).
            assert_eq!(real["typed_config"], local["typed_config"], "{name}");
        }
    }
}

/// Equal JSON, numbers compared by value (`0` and `0.0` alike).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same_json(v, w)))
        }
        (a, b) => a == b,
    }
}

/// Each field a MERGE patch sets (its top-level keys) is on `real` as on `local`, the same
/// object in the local edge: both as Envoy dumps them, so defaults print alike.
fn merged(what: &str, patch: &Value, real: &Value, local: &Value) {
    for key in patch.as_object().expect("a patch object").keys() {
        if key == "@type" {
            continue;
        }
        assert!(!local[key].is_null(), "{what}: {key} is not set locally");
        assert_eq!(real[key], local[key], "{what}: {key}");
    }
}

/// Every patch of every EnvoyFilter given to istiod took effect, checked by what it does.
fn assert_every_patch_applied(dump: &Value, local_dump: &Value, files: &edgectl::Objects) {
    let hcm = connection_manager(dump);
    let local_listener =
        &section(local_dump, "ListenersConfigDump")["static_listeners"][0]["listener"];
    let local_hcm = &local_listener["filter_chains"][0]["filters"][0]["typed_config"];
    let local_cluster = &section(local_dump, "ClustersConfigDump")["static_clusters"][0]["cluster"];
    let names: Vec<&str> = hcm["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let listener =
        &section(dump, "ListenersConfigDump")["dynamic_listeners"][0]["active_state"]["listener"];
    let clusters = section(dump, "ClustersConfigDump")["dynamic_active_clusters"]
        .as_array()
        .expect("clusters");
    let routes_of = |dump: &Value, kind: &str| -> Vec<Value> {
        section(dump, "RoutesConfigDump")[kind][0]["route_config"]["virtual_hosts"][0]["routes"]
            .as_array()
            .expect("routes")
            .clone()
    };
    let routes = routes_of(dump, "dynamic_route_configs");
    let local_routes = routes_of(local_dump, "static_route_configs");
    let mut checked = 0;
    for filter in files
        .values()
        .flatten()
        .filter(|o| o["kind"] == "EnvoyFilter")
    {
        let filter_name = filter["metadata"]["name"].as_str().unwrap();
        for patch in filter["spec"]["configPatches"].as_array().unwrap() {
            let operation = patch["patch"]["operation"].as_str().unwrap();
            let value = &patch["patch"]["value"];
            let what = format!("EnvoyFilter {filter_name}: {operation} {}", value["name"]);
            match (patch["applyTo"].as_str().unwrap(), operation) {
                ("HTTP_FILTER", "INSERT_FIRST" | "INSERT_BEFORE") => {
                    let inserted = value["name"].as_str().unwrap();
                    let at: Vec<usize> =
                        (0..names.len()).filter(|i| names[*i] == inserted).collect();
                    // Istio has a CORS filter of its own, after every WasmPlugin.
                    let expected = if ISTIO_ONLY.contains(&inserted) { 2 } else { 1 };
                    assert_eq!(at.len(), expected, "{what}: in the chain: {names:?}");
                    if operation == "INSERT_BEFORE" {
                        // A limit is placed before the transcoder by each of its names in
                        // Istio's versions; the one that is there must come after it.
                        let anchor = local_name(
                            patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]
                                ["name"]
                                .as_str()
                                .unwrap(),
                        );
                        let anchors: Vec<usize> = (0..names.len())
                            .filter(|i| local_name(names[*i]) == anchor)
                            .collect();
                        assert_eq!(anchors.len(), 1, "{what}: its anchor {anchor}: {names:?}");
                        assert!(at[0] < anchors[0], "{what}: before {anchor}: {names:?}");
                    }
                }
                ("NETWORK_FILTER", "MERGE") => {
                    merged(&what, &value["typed_config"], hcm, local_hcm)
                }
                ("LISTENER", "MERGE") => merged(&what, value, listener, local_listener),
                ("CLUSTER", "MERGE") => {
                    for cluster in clusters {
                        merged(&what, value, &cluster["cluster"], local_cluster);
                    }
                }
                ("HTTP_ROUTE", "MERGE") => {
                    // Each Envoy route of that name (one per match) is as the local route of
                    // the same prefix.
                    let name = &patch["match"]["routeConfiguration"]["vhost"]["route"]["name"];
                    let patched: Vec<&Value> =
                        routes.iter().filter(|r| r["name"] == *name).collect();
                    assert!(!patched.is_empty(), "{what}: no route named {name}");
                    for route in patched {
                        let prefix = &route["match"]["prefix"];
                        let local = local_routes
                            .iter()
                            .find(|l| l["match"]["prefix"] == *prefix)
                            .unwrap_or_else(|| panic!("{what}: no local route for {prefix}"));
                        merged(
                            &format!("{what} {name} {prefix}"),
                            &value["typed_per_filter_config"],
                            &route["typed_per_filter_config"],
                            &local["typed_per_filter_config"],
                        );
                    }
                }
                (apply_to, _) => panic!("{what}: no check for {apply_to} {operation}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked} patches checked");
}

/// The rollout's gRPC route: clients auth assigns to `catalog-v2` (its header) reach it.
fn assert_rollout_route(dump: &Value, config: &EdgeConfig) {
    let routes = section(dump, "RoutesConfigDump")["dynamic_route_configs"][0]["route_config"]
        ["virtual_hosts"][0]["routes"]
        .as_array()
        .expect("routes");
    let v2 = config.istio_cluster("catalog-v2");
    let route = routes
        .iter()
        .find(|r| r["name"] == "catalog-v2-grpc")
        .expect("the rollout's route");
    assert_eq!(route["match"]["prefix"], "/catalog.CatalogService/");
    assert_eq!(route["match"]["headers"][0]["name"], "x-edge-backend");
    assert_eq!(
        route["match"]["headers"][0]["string_match"]["exact"],
        v2.as_str()
    );
    assert_eq!(route["route"]["cluster"], v2.as_str());
    let order: Vec<&str> = routes.iter().filter_map(|r| r["name"].as_str()).collect();
    let v2_at = order.iter().position(|n| *n == "catalog-v2-grpc");
    let v1_at = order.iter().position(|n| *n == "catalog-grpc");
    assert!(
        v2_at < v1_at,
        "the header route before the catch-all: {order:?}"
    );
    // Every route leads to a cluster istiod made, named as the filters' configuration names it.
    let clusters: Vec<&str> = section(dump, "ClustersConfigDump")["dynamic_active_clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["cluster"]["name"].as_str())
        .collect();
    for route in routes {
        let cluster = route["route"]["cluster"].as_str().expect("a cluster");
        assert!(clusters.contains(&cluster), "{cluster} in {clusters:?}");
    }
}

/// The bootstrap keeps and labels the edge's metrics, and they come out labelled.
async fn assert_metrics_kept(edge: &Edge, dump: &Value) {
    let bootstrap = &section(dump, "BootstrapConfigDump")["bootstrap"];
    let patterns = bootstrap["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"]
        .as_array()
        .expect("a stats matcher");
    for prefix in EdgeConfig::stats_inclusion_prefixes() {
        assert!(
            patterns.iter().any(|p| p["prefix"] == prefix.as_str()),
            "{prefix} kept: {patterns:?}"
        );
    }
    let tags: Vec<&str> = bootstrap["stats_config"]["stats_tags"]
        .as_array()
        .expect("stats tags")
        .iter()
        .filter_map(|t| t["tag_name"].as_str())
        .collect();
    assert!(
        tags.contains(&"route") && tags.contains(&"status_class"),
        "{tags:?}"
    );
    let response = edge
        .http
        .get(edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served = edge
        .counted_metric(
            "edge_requests_total",
            &[("route", "/catalog/items/{id}"), ("status_class", "2xx")],
        )
        .await;
    assert!(served >= 1.0, "the request is counted, labelled: {served}");
}

async fn edge_in(mesh: Option<MeshVariant>) -> Edge {
    Edge::start_with(Options {
        mesh,
        ..Options::default()
    })
    .await
}

/// The config dumps of the gateway istiod configures and of the local edge.
async fn dumps(variant: MeshVariant) -> (Edge, Value, Value) {
    let local = edge_in(None).await;
    let local_dump = config_dump(&local).await;
    drop(local);
    let edge = edge_in(Some(variant)).await;
    let dump = config_dump(&edge).await;
    (edge, dump, local_dump)
}

#[tokio::test]
async fn istiod_builds_make_runs_chain_from_the_wasmplugins() {
    let (edge, dump, local_dump) = dumps(MeshVariant::WasmPlugin).await;
    let config = config();
    assert_same_chain(&dump, &local_dump, &config);
    assert_every_patch_applied(&dump, &local_dump, &edge.istiod_files(&config));
    assert_rollout_route(&dump, &config);
    assert_metrics_kept(&edge, &dump).await;
}

#[tokio::test]
async fn istiod_builds_the_same_chain_from_the_envoyfilter_variant() {
    let (edge, dump, local_dump) = dumps(MeshVariant::EnvoyFilter).await;
    let config = config();
    assert_same_chain(&dump, &local_dump, &config);
    assert_every_patch_applied(&dump, &local_dump, &edge.istiod_files(&config));
    assert_rollout_route(&dump, &config);

    // And it serves: a public read, a refused write, an accepted one.
    let read = edge
        .http
        .get(edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}")))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let body = r#"{"title":"Through the EnvoyFilter variant","price":3}"#;
    let refused = edge
        .http
        .post(edge.url("/catalog/items"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let token = edge.signin("goldie").await;
    let created = edge
        .http
        .post(edge.url("/catalog/items"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
}
