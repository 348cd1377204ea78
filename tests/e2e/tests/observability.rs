//! What the edge tells operators: metrics at Envoy's /stats/prometheus, the request id and
//! trace context carried to the backends and back, and log lines that cannot be forged.

use edge_e2e::{Edge, Options, MOBILE_PHONE_ID};
use serde_json::json;
use std::time::Duration;

const REQUESTS: &str = "edge_requests_total";

#[tokio::test]
async fn metrics_count_exactly_the_requests_sent() {
    let edge = Edge::start().await;
    let ok_list = [
        ("route", "/catalog/items"),
        ("method", "GET"),
        ("status_class", "2xx"),
    ];
    let missing = [
        ("route", "/catalog/items/{id}"),
        ("method", "GET"),
        ("status_class", "4xx"),
    ];
    let before_ok = edge.counted_metric(REQUESTS, &ok_list).await;
    let before_missing = edge.metric(REQUESTS, &missing).await;
    let before_denied = edge
        .metric("edge_auth_denials_total", &[("reason", "token_missing")])
        .await;
    let before_bad = edge
        .metric("edge_transcoder_errors_total", &[("kind", "bad_request")])
        .await;
    let before_latency = edge
        .metric(
            "edge_request_duration_milliseconds_count",
            &[("route", "/catalog/items")],
        )
        .await;

    for _ in 0..5 {
        assert_eq!(
            edge.http
                .get(edge.url("/catalog/items"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    for _ in 0..3 {
        assert_eq!(
            edge.http
                .get(edge.url("/catalog/items/nope"))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }
    for _ in 0..2 {
        let response = edge
            .http
            .post(edge.url("/catalog/items"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let token = edge.signin("goldie").await;
    let response = edge
        .http
        .post(edge.url("/catalog/items"))
        .bearer_auth(&token)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // on_log runs after the last byte is sent; give Envoy a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(
        edge.counted_metric(REQUESTS, &ok_list).await - before_ok,
        5.0
    );
    assert_eq!(edge.metric(REQUESTS, &missing).await - before_missing, 3.0);
    assert_eq!(
        edge.metric("edge_auth_denials_total", &[("reason", "token_missing")])
            .await
            - before_denied,
        2.0
    );
    assert_eq!(
        edge.metric("edge_transcoder_errors_total", &[("kind", "bad_request")])
            .await
            - before_bad,
        1.0
    );
    // Histograms reach the admin endpoint on Envoy's stats flush (every 5 s by default).
    let mut latency = 0.0;
    for _ in 0..40 {
        latency = edge
            .metric(
                "edge_request_duration_milliseconds_count",
                &[("route", "/catalog/items")],
            )
            .await
            - before_latency;
        if latency >= 6.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // By route: the five GETs and the malformed POST share the /catalog/items template.
    assert_eq!(latency, 6.0, "latency histogram by route");
}

/// catalog's log line for the call carrying `request_id`.
fn catalog_line(edge: &Edge, request_id: &str) -> String {
    let catalog = edge.service_log("catalog");
    catalog
        .lines()
        .find(|l| l.contains(request_id))
        .unwrap_or_else(|| panic!("no catalog line for {request_id}:\n{catalog}"))
        .to_string()
}

#[tokio::test]
async fn request_id_and_trace_reach_the_backend_and_come_back() {
    let edge = Edge::start().await;

    // Chosen by the client: its trace continues through the edge's span (Envoy's tracer,
    // edge.json's `tracing`) to catalog; its request id is returned and logged.
    let client_span = "00f067aa0ba902b7";
    let traceparent = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{client_span}-01");
    let response = edge
        .http
        .get(edge.url("/catalog/items"))
        .header("x-request-id", "req-observed-1")
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-observed-1");

    // Not chosen: Envoy makes a request id and starts a trace.
    let response = edge
        .http
        .get(edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}")))
        .send()
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = edge.access_log();
    let given = records
        .iter()
        .find(|r| r["request_id"] == "req-observed-1")
        .unwrap();
    assert_eq!(given["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(given["client_ip"], "127.0.0.1");
    assert_eq!(given["upstream_cluster"], edge_e2e::cluster_name("catalog"));
    assert!(
        given["upstream_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{given}"
    );
    let made = records
        .iter()
        .find(|r| r["request_id"] == generated.as_str())
        .unwrap();
    let made_trace = made["trace_id"].as_str().expect("a trace id");

    let line = catalog_line(&edge, "req-observed-1");
    assert!(
        line.contains("traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{line}"
    );
    // The parent is the edge's span, not the client's.
    assert!(!line.contains(client_span), "{line}");
    let line = catalog_line(&edge, &generated);
    assert!(
        line.contains(&format!("traceparent=00-{made_trace}-")),
        "{line}"
    );
}

#[tokio::test]
async fn without_envoy_tracing_the_access_log_starts_the_trace() {
    let edge = Edge::start_with(Options {
        customize: Box::new(|config| config.tracing = None),
        ..Options::default()
    })
    .await;
    let response = edge
        .http
        .get(edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}")))
        .send()
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    // Its trace id is the request id's hex, so the two are one search away.
    let generated_trace = generated.replace('-', "");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let made = edge
        .access_log()
        .into_iter()
        .find(|r| r["request_id"] == generated.as_str())
        .unwrap();
    assert_eq!(made["trace_id"], generated_trace.as_str());
    let line = catalog_line(&edge, &generated);
    assert!(
        line.contains(&format!("traceparent=00-{generated_trace}-")),
        "{line}"
    );
}

#[tokio::test]
async fn hostile_header_yields_one_well_formed_line() {
    let edge = Edge::start().await;
    let (status, _) = edge
        .raw_request(
            "GET",
            "/catalog/items",
            &[
                ("x-request-id", "hostile-1"),
                ("user-agent", "evil\",\"status\":500}\t{\"x\":\"\\\\"),
            ],
            "",
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines: Vec<String> = edge
        .envoy_log_text()
        .lines()
        .filter(|l| l.contains("hostile-1"))
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    // The native build hands its line to Envoy's access log, which writes it alone on its
    // line (its flush thread, not the worker); the Wasm build writes it in Envoy's own log.
    if edge.transcodes_in_place() {
        assert!(lines[0].starts_with("{\"time\":"), "{lines:#?}");
    } else {
        // `wasm log <plugin> access-log: `: under Istio the plugin is named by istiod.
        assert!(
            lines[0].contains("] wasm log ") && lines[0].contains(" access-log: {"),
            "{lines:#?}"
        );
    }
    let records = edge.access_log();
    let record = records
        .iter()
        .find(|r| r["request_id"] == "hostile-1")
        .unwrap();
    assert_eq!(record["status"], 200);
    assert!(record["user_agent"]
        .as_str()
        .unwrap()
        .starts_with("evil\",\"status\""));
}

fn with_collector() -> edge_e2e::Options {
    with_collector_every(100)
}

fn with_collector_every(flush_interval_ms: u64) -> edge_e2e::Options {
    edge_e2e::Options {
        customize: Box::new(move |config| add_collector(config, flush_interval_ms)),
        ..Default::default()
    }
}

fn add_collector(config: &mut edgectl::EdgeConfig, flush_interval_ms: u64) {
    config.services.insert(
        "log-collector".into(),
        edgectl::Service {
            grpc_service: "telemetry.LogCollector".into(),
            port: 50055,
            public: false,
            ..Default::default()
        },
    );
    config.access_log["collector"] = json!({"cluster": "log-collector", "flush_interval_ms": flush_interval_ms, "batch_lines": 50, "max_buffered_lines": 20});
}

/// Sends 10 reads with request ids `<prefix>-<n>`.
async fn ten_reads(edge: &Edge, prefix: &str) {
    for index in 0..10 {
        let response = edge
            .http
            .get(edge.url("/catalog/items"))
            .header("x-request-id", format!("{prefix}-{index}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// The collector's lines for request ids starting `<prefix>-`, once it has `expected` of them
/// (or after `patience`).
async fn collected(edge: &Edge, prefix: &str, expected: usize, patience: Duration) -> Vec<String> {
    let collected = edge.dir.join("collected.log");
    let started = std::time::Instant::now();
    loop {
        let lines: Vec<String> = std::fs::read_to_string(&collected)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("\"{prefix}-")))
            .map(str::to_string)
            .collect();
        if lines.len() >= expected || started.elapsed() > patience {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn lines_are_shipped_to_the_collector_in_batches() {
    let edge = Edge::start_with(with_collector()).await;
    ten_reads(&edge, "shipped").await;
    let lines = collected(&edge, "shipped", 10, Duration::from_secs(5)).await;
    assert_eq!(lines.len(), 10, "one line per request: {lines:#?}");
    for line in &lines {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["status"], 200);
    }
    assert!(
        !edge.envoy_log_text().contains("\"shipped-"),
        "shipped lines do not also go to Envoy's log"
    );
}

/// A policy change replaces auth's configuration, and in the native build the access log's with
/// it (one Envoy filter): the lines still waiting for the collector are shipped all the same.
#[tokio::test]
async fn lines_waiting_for_the_collector_outlive_a_policy_change() {
    // Long enough that the lines are still waiting when the policy changes.
    let flush_interval_ms = 3_000;
    let edge = Edge::start_with(edge_e2e::Options {
        live_config: true,
        ..with_collector_every(flush_interval_ms)
    })
    .await;
    // Right after a batch went, the next waits three seconds.
    edge.http
        .get(edge.url("/catalog/items"))
        .header("x-request-id", "warm-up-0")
        .send()
        .await
        .unwrap();
    let shipped = collected(&edge, "warm-up", 1, Duration::from_secs(5)).await;
    assert_eq!(shipped.len(), 1, "the first batch");
    ten_reads(&edge, "waiting").await;
    let mut config = edge_e2e::edge_json();
    add_collector(&mut config, flush_interval_ms);
    let rules = config.auth["rules"].as_array_mut().expect("rules");
    for rule in rules.iter_mut() {
        if rule["path"] == "/catalog/items" && rule["methods"] == json!(["POST"]) {
            rule["require_claims"] = json!({"scope": "items:write"});
        }
    }
    let early = collected(&edge, "waiting", 0, Duration::ZERO).await;
    assert!(early.is_empty(), "still waiting: {early:#?}");
    edge.apply(&config);
    let lines = collected(&edge, "waiting", 10, Duration::from_secs(8)).await;
    assert_eq!(lines.len(), 10, "every waiting line shipped: {lines:#?}");
}

#[tokio::test]
async fn a_down_collector_costs_lines_not_requests() {
    let mut edge = Edge::start_with(with_collector()).await;
    edge.kill_service("log-collector");
    let before = edge
        .metric("edge_access_log_dropped_lines_total", &[])
        .await;
    let started = std::time::Instant::now();
    for _ in 0..60 {
        let response = edge
            .http
            .get(edge.url("/catalog/items"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "requests never wait for the collector"
    );
    let mut dropped = 0.0;
    for _ in 0..50 {
        dropped = edge
            .metric("edge_access_log_dropped_lines_total", &[])
            .await
            - before;
        if dropped >= 40.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 20 lines of buffer at most: of 60 lines, at least 40 were dropped (more as batches fail).
    assert!(dropped >= 40.0, "dropped {dropped}");
}

/// Envoy logs a stream before it calls a Wasm filter's `on_log`: a line handed to its access
/// log from there would come too late, so the Wasm build refuses the setting, saying why.
#[tokio::test]
async fn the_wasm_access_log_refuses_to_hand_its_lines_to_envoys_access_log() {
    let dir = edge_e2e::test_dir("access-log-refused");
    let wasm_dir = Edge::wasm_dir().display().to_string();
    let handed = json!({ "filter_state_key": edgectl::LINE_FILTER_STATE_KEY });
    let bootstrap = json!({ "static_resources": { "listeners": [{
        "name": "refused",
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "refused",
                "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": [] }] },
                "http_filters": [
                    edgectl::wasm_filter("access-log", &wasm_dir, &handed),
                    edgectl::router_filter()
                ]
            }
        }] }]
    }] } });
    let log = edge_e2e::EnvoyProcess::refuses(&bootstrap, &dir).await;
    assert!(
        log.contains("filter_state_key needs the native module"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
