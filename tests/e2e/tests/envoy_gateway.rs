//! The Envoy Gateway deployment (`istio/envoy-gateway/edge.yaml`) as Envoy Gateway v1.8
//! itself builds it: `egctl x translate` runs the translators its controller runs (Gateway
//! API to its IR, IR to xDS), and Envoy 1.40 then serves that listener, those routes and
//! clusters with the native module and the real services. Only what a cluster would supply
//! is filled in: the Services' addresses (loopback here, in place of endpoints) and the
//! module's path (in place of the image's mount).

use edge_e2e::{json_of, test_dir, workspace_root, Edge, Options, GOLDIE_ID};
use edgectl::Target;
use futures_util::SinkExt;
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio_tungstenite::tungstenite::Message;

fn egctl() -> PathBuf {
    std::env::var_os("EGCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/tools/egctl-v1.8.0/egctl"))
}

/// What egctl translated, and which Service each made-up cluster IP stands for.
struct Translation {
    gateway_api: Value,
    xds: Value,
    service_of_ip: BTreeMap<String, String>,
}

/// The rendered Envoy Gateway objects and the Services they route to (each given a cluster
/// IP, as Kubernetes would), through `egctl x translate` to Gateway API statuses and xDS.
fn translate() -> Translation {
    translate_with(|_| {})
}

/// [`translate`], the rendered objects changed by `edit` first.
fn translate_with(edit: impl FnOnce(&mut Vec<Value>)) -> Translation {
    let config = edge_e2e::edge_json();
    let mut objects = config
        .envoy_gateway_objects()
        .expect("render istio/envoy-gateway");
    edit(&mut objects);
    let digests = edgectl::load_digests(&workspace_root().join("istio/base/wasm-digests.json"))
        .expect("digests");
    let istio = config.istio_objects(&digests).expect("render istio/");
    let mut service_of_ip = BTreeMap::new();
    let services = istio["services.yaml"]
        .iter()
        .filter(|object| object["kind"] == "Service");
    for (index, service) in services.enumerate() {
        let ip = format!("10.96.0.{}", index + 1);
        let mut service = service.clone();
        service["spec"]["clusterIP"] = json!(ip);
        let name = service["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        service_of_ip.insert(ip, name);
        objects.push(service);
    }
    let dir = test_dir("egctl");
    let input = dir.join("input.yaml");
    // JSON documents are YAML documents.
    let documents: Vec<String> = objects.iter().map(Value::to_string).collect();
    std::fs::write(&input, documents.join("\n---\n")).expect("write egctl's input");
    let output = std::process::Command::new(egctl())
        .args([
            "x",
            "translate",
            "--from",
            "gateway-api",
            "--to",
            "gateway-api,xds",
        ])
        .args(["--type", "all", "--output", "json", "--file"])
        .arg(&input)
        .output()
        .expect("run egctl (make egctl builds it)");
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        output.status.success(),
        "egctl refused istio/envoy-gateway/edge.yaml: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The Gateway API objects with their statuses, and the xDS under `xds`.
    let mut gateway_api: Value = serde_json::from_slice(&output.stdout).expect("egctl's JSON");
    let xds = gateway_api["xds"]["edge-gateway/edge"].take();
    Translation {
        gateway_api,
        xds,
        service_of_ip,
    }
}

impl Translation {
    /// The config dump section of `kind` (e.g. `ListenersConfigDump`).
    fn section(&self, kind: &str) -> &Value {
        self.xds["configs"]
            .as_array()
            .expect("configs")
            .iter()
            .find(|config| config["@type"].as_str().is_some_and(|t| t.ends_with(kind)))
            .unwrap_or_else(|| panic!("no {kind} in egctl's xDS"))
    }

    /// The Gateway's HTTP listener.
    fn listener(&self) -> Value {
        self.section("ListenersConfigDump")["dynamicListeners"]
            .as_array()
            .expect("listeners")
            .iter()
            .map(|listener| &listener["activeState"]["listener"])
            .find(|listener| listener["name"] == "edge-gateway/edge/http")
            .expect("the Gateway's listener")
            .clone()
    }

    fn connection_manager(&self) -> Value {
        let listener = self.listener();
        let chain = listener
            .get("defaultFilterChain")
            .unwrap_or(&listener["filterChains"][0]);
        chain["filters"][0]["typedConfig"].clone()
    }

    fn route_config(&self) -> Value {
        let mut config =
            self.section("RoutesConfigDump")["dynamicRouteConfigs"][0]["routeConfig"].clone();
        // A dump's resources are typed; a bootstrap's are not.
        config.as_object_mut().map(|config| config.remove("@type"));
        config
    }

    /// The route clusters, each with the Service its endpoints point at.
    fn clusters(&self) -> Vec<(Value, String)> {
        let endpoints = self.section("EndpointsConfigDump")["dynamicEndpointConfigs"]
            .as_array()
            .expect("endpoints");
        self.section("ClustersConfigDump")["dynamicActiveClusters"]
            .as_array()
            .expect("clusters")
            .iter()
            .map(|cluster| {
                let cluster = cluster["cluster"].clone();
                let assignment = endpoints
                    .iter()
                    .map(|endpoint| &endpoint["endpointConfig"])
                    .find(|assignment| assignment["clusterName"] == cluster["name"])
                    .expect("the cluster's endpoints");
                let ip = assignment["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]
                    ["socketAddress"]["address"]
                    .as_str()
                    .expect("an endpoint address");
                (cluster, self.service_of_ip[ip].clone())
            })
            .collect()
    }
}

impl Translation {
    /// Every condition Envoy Gateway set on the policy and the route that is not `True`.
    fn unmet_conditions(&self) -> Vec<String> {
        let mut unmet = Vec::new();
        for (kind, statuses) in [
            ("envoyExtensionPolicies", "ancestors"),
            ("httpRoutes", "parents"),
        ] {
            for object in self.gateway_api[kind].as_array().expect(kind) {
                for status in object["status"][statuses].as_array().expect(statuses) {
                    for condition in status["conditions"].as_array().expect("conditions") {
                        if condition["status"] != "True" {
                            unmet.push(format!(
                                "{kind} {}: {condition}",
                                object["metadata"]["name"]
                            ));
                        }
                    }
                }
            }
        }
        unmet
    }
}

#[test]
fn envoy_gateway_accepts_the_policy_and_routes_and_runs_the_filters_in_order() {
    let translation = translate();
    assert_eq!(translation.unmet_conditions(), Vec::<String>::new());
    let filters: Vec<String> = translation.connection_manager()["httpFilters"]
        .as_array()
        .expect("filters")
        .iter()
        .map(|filter| {
            filter["typedConfig"]["filterName"]
                .as_str()
                .or(filter["name"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        filters,
        ["access-log+auth", "transcoder", "envoy.filters.http.router"]
    );
    // The EnvoyProxy's access log prints the access log filter's line, and only that.
    let logs = translation.connection_manager()["accessLog"].to_string();
    assert!(
        logs.contains(r#"%FILTER_STATE(edge.access_log:PLAIN)%\n"#),
        "{logs}"
    );
}

/// Envoy's own bootstrap for `make run` with the Gateway's listener, routes and clusters as
/// egctl built them in place of its own.
fn serve_translation(bootstrap: &mut Value, translation: &Translation) {
    let module = Edge::wasm_dir().display().to_string();
    let local_cluster = |service: &str| -> Value {
        bootstrap["static_resources"]["clusters"]
            .as_array()
            .expect("clusters")
            .iter()
            .find(|cluster| cluster["name"] == service)
            .unwrap_or_else(|| panic!("no local cluster {service}"))
            .clone()
    };
    let endpoints_of = |service: &str, name: &Value| {
        let mut assignment = local_cluster(service)["load_assignment"].clone();
        assignment["cluster_name"] = name.clone();
        assignment
    };
    let mut clusters = Vec::new();
    for (mut cluster, service) in translation.clusters() {
        let object = cluster.as_object_mut().expect("a cluster");
        object.remove("@type");
        object.remove("edsClusterConfig");
        object.insert("type".into(), json!("STATIC"));
        let assignment = endpoints_of(&service, &cluster["name"]);
        cluster["load_assignment"] = assignment;
        clusters.push(cluster);
    }
    // The module's own clusters, merged into the bootstrap by the EnvoyProxy: the Services'
    // DNS names, here their loopback addresses.
    let objects = edge_e2e::edge_json()
        .envoy_gateway_objects()
        .expect("render istio/envoy-gateway");
    let proxy = objects
        .iter()
        .find(|object| object["kind"] == "EnvoyProxy")
        .expect("the EnvoyProxy");
    let merged: Value = serde_json::from_str(
        proxy["spec"]["bootstrap"]["value"]
            .as_str()
            .expect("a bootstrap to merge"),
    )
    .expect("JSON");
    for cluster in merged["static_resources"]["clusters"]
        .as_array()
        .expect("merged clusters")
    {
        let mut cluster = cluster.clone();
        let host = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"]["address"]
            .as_str()
            .expect("a Service's name")
            .to_string();
        let service = host.split('.').next().unwrap_or_default();
        cluster["type"] = json!("STATIC");
        cluster["load_assignment"] = endpoints_of(service, &cluster["name"]);
        clusters.push(cluster);
    }
    bootstrap["static_resources"]["clusters"] = json!(clusters);
    let mut manager = translation.connection_manager();
    let text = manager.to_string().replace(edgectl::MODULE_MOUNT, &module);
    manager = serde_json::from_str(&text).expect("JSON");
    let object = manager.as_object_mut().expect("the connection manager");
    object.remove("rds");
    object.insert("route_config".into(), translation.route_config());
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"] = manager;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_envoy_gateway_listener_serves_reads_and_refusals_with_the_native_module() {
    let translation = translate();
    let edge = Edge::start_with(Options {
        target: Target::Native,
        bootstrap: Box::new(move |bootstrap, _dir| serve_translation(bootstrap, &translation)),
        ..Options::default()
    })
    .await;
    // A public read, transcoded in place through the routes Envoy Gateway built.
    let (status, list) = json_of(
        edge.http
            .get(edge.url("/catalog/items?page_size=1"))
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let listed = &list["items"][0];
    let id = listed["id"].as_str().expect("an item").to_string();
    // A read with a token the authority's key signed, checked by auth.
    let mut claims = Claims::create(jwt_simple::prelude::Duration::from_hours(1))
        .with_issuer("authority")
        .with_audience("edge")
        .with_subject(GOLDIE_ID);
    claims.issued_at = Some(Clock::now_since_epoch());
    let token = edge.signing_key().sign(claims).expect("a token");
    let (status, item) = json_of(
        edge.http
            .get(edge.url(&format!("/catalog/items/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("read"),
    )
    .await;
    assert_eq!(
        (status, &item["item"]["title"]),
        (200, &listed["title"]),
        "{item}"
    );
    // Writes with a JSON body, which the transcoder holds until it is in: Envoy Gateway has
    // no buffer filter to put after it. (The second finds the backend's connection open: no
    // connect delays the router's start meanwhile.)
    for title in ["lamp", "desk"] {
        let (status, created) = json_of(
            edge.http
                .post(edge.url("/catalog/items"))
                .bearer_auth(&token)
                .json(&json!({"title": title, "price": 1200}))
                .send()
                .await
                .expect("write"),
        )
        .await;
        assert_eq!(
            (status, &created["item"]["title"]),
            (200, &json!(title)),
            "{created}"
        );
    }
    // A write without a token: auth's 401, a google.rpc.Status.
    let (status, refusal) = json_of(
        edge.http
            .post(edge.url("/catalog/items"))
            .json(&json!({"title": "x", "price": 1}))
            .send()
            .await
            .expect("write"),
    )
    .await;
    assert_eq!((status, &refusal["code"]), (401, &json!(16)), "{refusal}");
    // A stream over a WebSocket: Envoy Gateway's connection manager lets the upgrade through
    // to the module (else Envoy would answer 403 itself).
    let url = edge
        .url("/catalog/items:batchCreate")
        .replacen("http", "ws", 1);
    let bearer = format!("Bearer {token}");
    let mut socket = edge_e2e::connect_websocket(&url, &[("authorization", &bearer)])
        .await
        .expect("the upgrade");
    socket
        .send(Message::text(r#"{"title":"Socket lamp","price":12}"#))
        .await
        .expect("send");
    let answer = edge_e2e::next_websocket_text(&mut socket).await;
    assert!(answer.contains("Socket lamp"), "{answer}");
    // The access log wrote both reads' lines.
    let lines = edge.access_log();
    assert!(
        lines
            .iter()
            .any(|line| line["path"] == format!("/catalog/items/{id}") && line["status"] == 200),
        "{lines:?}"
    );
}
