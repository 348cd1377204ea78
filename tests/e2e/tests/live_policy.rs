//! Mesh-level policy changed live, under load: Envoy discovers the filters' configuration from
//! watched files (ECDS), and the test rewrites them twice while clients keep calling — the way
//! `make policy` does locally and `kubectl apply` of the WasmPlugin does in Istio. The new
//! policy must hold within 2 s, no request may fail for any other reason (no 5xx, no reset),
//! and neither Envoy nor any service restarts.

use edge_e2e::{Edge, Options};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one request saw, and when (since the start).
struct Seen {
    at: Duration,
    status: u16,
}

/// Sends `request` in a loop until `stop`, recording every answer (0: no HTTP answer).
async fn keep_calling(
    request: impl Fn() -> reqwest::RequestBuilder,
    started: Instant,
    stop: Arc<Mutex<bool>>,
) -> Vec<Seen> {
    let mut seen = Vec::new();
    while !*stop.lock().expect("stop flag") && seen.len() < 20_000 {
        let status = request().send().await.map_or(0, |r| r.status().as_u16());
        seen.push(Seen {
            at: started.elapsed(),
            status,
        });
    }
    seen
}

/// The first time from which `seen` only holds `status`, checking that every earlier answer
/// after `since` is `before` or `status` (the change in flight) and none is anything else.
fn switched(seen: &[Seen], since: Duration, before: u16, status: u16) -> Result<Duration, String> {
    let mut last_other = since;
    for answer in seen.iter().filter(|s| s.at >= since) {
        if answer.status != status {
            if answer.status != before {
                return Err(format!("unexpected {} at {:?}", answer.status, answer.at));
            }
            last_other = answer.at;
        }
    }
    Ok(last_other.saturating_sub(since))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_live_under_load_without_failures_or_restarts() {
    let edge = Edge::start_with(Options {
        live_config: true,
        workers: 2,
        // Thousands of writes by one user: beyond any rate limit, which is not under test.
        customize: Box::new(|config| config.rate_limits.clear()),
        ..Options::default()
    })
    .await;
    let token = edge.signin("goldie").await;
    let pids: Vec<u32> = ["authority", "catalog", "customer", "item"]
        .iter()
        .map(|name| edge.service_pid(name))
        .chain([edge.envoy_pid()])
        .collect();
    let mut config = edge_e2e::edge_json();

    let started = Instant::now();
    let stop = Arc::new(Mutex::new(false));
    let (http, base) = (edge.http.clone(), edge.base_url.clone());
    let anonymous_reads = tokio::spawn(keep_calling(
        {
            let (http, base) = (http.clone(), base.clone());
            move || http.get(format!("{base}/catalog/items"))
        },
        started,
        stop.clone(),
    ));
    let goldie_writes = tokio::spawn(keep_calling(
        {
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            move || {
                http.post(format!("{base}/catalog/items"))
                    .bearer_auth(&token)
                    .json(&json!({"title": "Live", "price": 1}))
            }
        },
        started,
        stop.clone(),
    ));

    // Change 1: reading the catalog now needs a token.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first_change = started.elapsed();
    let rules = config.auth["rules"].as_array_mut().expect("rules");
    for rule in rules.iter_mut() {
        if rule["path"] == "/catalog/items" && rule["methods"] == json!(["GET"]) {
            rule["policy"] = json!("authenticated");
        }
    }
    edge.apply(&config);

    // Change 2: creating items needs the items:write scope, which goldie's token lacks. (A ban
    // of one user is data, not policy: see the acl test.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second_change = started.elapsed();
    let rules = config.auth["rules"].as_array_mut().expect("rules");
    for rule in rules.iter_mut() {
        if rule["path"] == "/catalog/items" && rule["methods"] == json!(["POST"]) {
            rule["require_claims"] = json!({"scope": "items:write"});
        }
    }
    edge.apply(&config);

    // A broken configuration (the filter refuses it in on_configure) is rejected by Envoy,
    // which keeps the last good one: the policy above stays, and nothing fails.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut broken = config.xds_files(&edge.module).expect("ECDS");
    let broken_auth = json!({"rules": "not a list"});
    for (name, content) in broken.iter_mut() {
        // Auth's own file, or (native build) the one it shares with the access log.
        let paired = name == "access-log+auth.json";
        if name == "auth.json" || paired {
            let mut response: serde_json::Value = serde_json::from_str(content).expect("ECDS JSON");
            let configuration =
                edgectl::configuration_mut(&mut response["resources"][0]["typed_config"])
                    .expect("auth's configuration");
            let auth = if paired {
                let mut parts: serde_json::Value =
                    serde_json::from_str(configuration.as_str().expect("a JSON string"))
                        .expect("JSON");
                parts["auth"] = broken_auth.clone();
                parts
            } else {
                broken_auth.clone()
            };
            *configuration = json!(auth.to_string());
            *content = response.to_string();
        }
    }
    edgectl::write_xds(&edge.dir.join("xds"), &broken).expect("write broken ECDS");

    tokio::time::sleep(Duration::from_secs(2)).await;
    *stop.lock().expect("stop flag") = true;
    let reads = anonymous_reads.await.expect("reads");
    let writes = goldie_writes.await.expect("writes");

    let before_first: Vec<&Seen> = reads.iter().filter(|s| s.at < first_change).collect();
    assert!(
        before_first.len() > 10,
        "load before the change: {}",
        before_first.len()
    );
    assert!(
        before_first.iter().all(|s| s.status == 200),
        "reads were public before"
    );
    let reads_switched =
        switched(&reads, first_change, 200, 401).expect("reads: 200 then 401 only");
    assert!(
        reads_switched <= Duration::from_secs(2),
        "reads needed a token after {reads_switched:?}"
    );
    assert!(
        writes
            .iter()
            .filter(|s| s.at < second_change)
            .all(|s| s.status == 200),
        "goldie could write until the ban"
    );
    let writes_switched =
        switched(&writes, second_change, 200, 403).expect("writes: 200 then 403 only");
    assert!(
        writes_switched <= Duration::from_secs(2),
        "the ban held after {writes_switched:?}"
    );
    assert!(
        reads.len() + writes.len() > 200,
        "enough load: {} requests",
        reads.len() + writes.len()
    );

    let stats = edge.stats("config_fail").await;
    let rejected: i64 = stats
        .iter()
        // `edge.auth`, or the native build's `edge.access-log+auth`.
        .filter(|(name, _)| name.ends_with("auth.config_fail"))
        .map(|(_, value)| value)
        .sum();
    assert!(
        rejected >= 1,
        "Envoy rejected the broken configuration: {stats:?}"
    );

    // Nothing restarted.
    let after: Vec<u32> = ["authority", "catalog", "customer", "item"]
        .iter()
        .map(|name| edge.service_pid(name))
        .chain([edge.envoy_pid()])
        .collect();
    assert_eq!(pids, after);
    let envoy_alive = std::process::Command::new("kill")
        .args(["-0", &edge.envoy_pid().to_string()])
        .status()
        .expect("kill -0");
    assert!(envoy_alive.success(), "Envoy still running");
    eprintln!(
        "{} reads, {} writes; reads switched in {reads_switched:?}, writes in {writes_switched:?}",
        reads.len(),
        writes.len()
    );
}
