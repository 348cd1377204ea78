//! Gradual migration at the edge: catalog v1 and v2 (two deployments of the same service, over
//! the same item and customer services), 200 signed-in users, and a rollout changed live under
//! continuous load — reads to 10%, then 50%, writes to 100%, back to 0 — with zero failed
//! requests and no process restarted. Which deployment served a request is read from the
//! access log (`upstream_cluster`), and must be exactly the deployment the rollout's own
//! function (`edge_core::Rollout::takes`, the one the auth filter runs) gives each user: the
//! users' ids are random, so a share within a band would fail now and then by chance alone
//! (the shares over many users are checked on the host, in edge-core).

use edge_e2e::{Edge, Options, MOBILE_PHONE_ID};
use edgectl::EdgeConfig;
use platform_proto::catalog::{catalog_service_client::CatalogServiceClient, GetItemRequest};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

const USERS: usize = 200;
const READS_PER_USER: usize = 20;

fn set_rollout(config: &mut EdgeConfig, reads: f64, writes: f64) {
    let rollout = &mut config.rollouts[0];
    rollout.reads_percent = reads;
    rollout.writes_percent = writes;
}

struct Users {
    /// (subject, bearer token)
    users: Vec<(String, String)>,
}

async fn sign_up_users(edge: &Edge) -> Users {
    let mut users = Vec::new();
    for index in 0..USERS {
        let name = format!("rollout-{index}-{}", std::process::id());
        let (subject, token) = edge.signup(&name).await;
        users.push((subject, format!("Bearer {token}")));
    }
    Users { users }
}

/// The deployment that served each request id, from the access log.
fn served_by(edge: &Edge) -> BTreeMap<String, String> {
    edge.access_log()
        .into_iter()
        .filter_map(|line| {
            Some((
                line["request_id"].as_str()?.to_string(),
                line["upstream_cluster"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Every user reads `READS_PER_USER` times (users in parallel, each user's reads in turn);
/// returns, per user, the deployments that served them.
async fn read_round(edge: &Edge, users: &Users, round: &str) -> Vec<Vec<String>> {
    let mut tasks = Vec::new();
    for (index, (_, bearer)) in users.users.iter().enumerate() {
        let (http, url, bearer) = (
            edge.http.clone(),
            edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}")),
            bearer.clone(),
        );
        let round = round.to_string();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for read in 0..READS_PER_USER {
                let id = format!("{round}-{index}-{read}");
                let response = http
                    .get(&url)
                    .header("authorization", &bearer)
                    .header("x-request-id", &id)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "{id}");
                mine.push(id);
            }
            mine
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("reads"));
    }
    let served = served_by(edge);
    ids.into_iter()
        .map(|mine| {
            let mut seen: Vec<String> = mine
                .iter()
                .map(|id| {
                    served
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| panic!("no line for {id}"))
                })
                .collect();
            seen.sort();
            seen.dedup();
            seen
        })
        .collect()
}

fn share_on_v2(seen: &[Vec<String>]) -> f64 {
    seen.iter()
        .filter(|s| s == &&vec!["catalog-v2".to_string()])
        .count() as f64
        / seen.len() as f64
}

/// Each user served by exactly the deployment the rollout, as `config` has it now, assigns them.
fn assert_assigned(config: &EdgeConfig, users: &Users, seen: &[Vec<String>]) {
    let rollouts = config.checked_rollouts().expect("edge.json's rollout");
    let (settings, grpc_service) = rollouts[0];
    let reads_percent = settings.reads_percent;
    // The assignment reads only the percentages and the salt; the other fields just name it.
    let rollout = edge_core::Rollout {
        service: grpc_service.to_string(),
        cluster: settings.to.clone(),
        reads_percent,
        writes_percent: settings.writes_percent,
        salt: settings.salt().to_string(),
        read_methods: settings.read_methods.clone(),
    };
    let mut on_v2 = 0;
    for ((subject, _), seen) in users.users.iter().zip(seen) {
        let expected = if rollout.takes(true, subject) {
            on_v2 += 1;
            "catalog-v2"
        } else {
            "catalog"
        };
        assert_eq!(
            seen,
            &vec![expected.to_string()],
            "user {subject} at {reads_percent}%"
        );
    }
    // Both sides must be exercised (with 200 random ids, ~1e-9 odds against at 10%).
    assert!(
        0 < on_v2 && on_v2 < users.users.len(),
        "{on_v2} of {} users on v2 at {reads_percent}%",
        users.users.len()
    );
}

async fn write_round(edge: &Edge, users: &Users, round: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (index, (_, bearer)) in users.users.iter().enumerate().step_by(4) {
        let id = format!("{round}-write-{index}");
        let response = edge
            .http
            .post(edge.url("/catalog/items"))
            .header("authorization", bearer)
            .header("x-request-id", &id)
            .json(&json!({ "title": "Rollout", "price": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{id}");
        ids.push(id);
    }
    let served = served_by(edge);
    ids.iter().map(|id| served[id].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_sticky_rollout_changed_live_without_failures() {
    let edge = Edge::start_with(Options {
        live_config: true,
        customize: Box::new(|config| set_rollout(config, 0.0, 0.0)),
        ..Options::default()
    })
    .await;
    let mut config = edge_e2e::edge_json();
    let pids: Vec<u32> = ["catalog", "catalog-v2", "item", "customer", "authority"]
        .iter()
        .map(|name| edge.service_pid(name))
        .chain([edge.envoy_pid()])
        .collect();
    let users = sign_up_users(&edge).await;

    // Load all along: reads and writes of random users; any non-200 is a failure.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let background = {
        let (http, url, stop, failures, sent) = (
            edge.http.clone(),
            edge.url(""),
            stop.clone(),
            failures.clone(),
            sent.clone(),
        );
        let bearers: Vec<String> = users.users.iter().map(|(_, b)| b.clone()).collect();
        tokio::spawn(async move {
            let mut index = 0;
            while !stop.load(Ordering::Relaxed) {
                let bearer = &bearers[index % bearers.len()];
                let request = if index % 5 == 0 {
                    http.post(format!("{url}/catalog/items"))
                        .json(&json!({ "title": "Load", "price": 2 }))
                } else {
                    http.get(format!("{url}/catalog/items/{MOBILE_PHONE_ID}"))
                };
                match request.header("authorization", bearer).send().await {
                    Ok(response) if response.status() == 200 => {}
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
                index += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };

    // Reads at 10%: ~10% of users on v2, each user always on one version; writes all on v1.
    let switched = Instant::now();
    set_rollout(&mut config, 10.0, 0.0);
    edge.apply(&config);
    let apply_10 = switched.elapsed();
    let at_10 = read_round(&edge, &users, "r10").await;
    assert_assigned(&config, &users, &at_10);
    let share_10 = share_on_v2(&at_10);
    assert!(write_round(&edge, &users, "w10")
        .await
        .iter()
        .all(|c| c == "catalog"));

    // gRPC clients follow the same assignment as JSON clients for the same user.
    let mut grpc = CatalogServiceClient::connect(edge.base_url.clone())
        .await
        .unwrap();
    for (index, (_, bearer)) in users.users.iter().enumerate().take(60) {
        let id = format!("grpc-{index}");
        let mut request = tonic::Request::new(GetItemRequest {
            id: MOBILE_PHONE_ID.into(),
        });
        request
            .metadata_mut()
            .insert("authorization", bearer.parse().unwrap());
        request
            .metadata_mut()
            .insert("x-request-id", id.parse().unwrap());
        grpc.get_item(request).await.expect("gRPC GetItem");
    }
    let served = served_by(&edge);
    for (index, seen) in at_10.iter().enumerate().take(60) {
        assert_eq!(
            served[&format!("grpc-{index}")],
            seen[0],
            "user {index}: gRPC and JSON disagree"
        );
    }

    // Reads at 50%: everyone who was on v2 stays there.
    set_rollout(&mut config, 50.0, 0.0);
    edge.apply(&config);
    let at_50 = read_round(&edge, &users, "r50").await;
    assert_assigned(&config, &users, &at_50);
    for (before, after) in at_10.iter().zip(&at_50) {
        if before[0] == "catalog-v2" {
            assert_eq!(after[0], "catalog-v2", "a v2 user went back");
        }
    }
    let share_50 = share_on_v2(&at_50);

    // Writes to 100%: every write lands on v2.
    set_rollout(&mut config, 50.0, 100.0);
    edge.apply(&config);
    assert!(write_round(&edge, &users, "w100")
        .await
        .iter()
        .all(|c| c == "catalog-v2"));

    // Back to 0: everyone on v1 at once.
    set_rollout(&mut config, 0.0, 0.0);
    edge.apply(&config);
    let at_0 = read_round(&edge, &users, "r0").await;
    assert!(at_0.iter().all(|seen| seen == &vec!["catalog".to_string()]));

    // A client cannot pick its backend.
    let response = edge
        .http
        .get(edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}")))
        .header("x-edge-backend", "catalog-v2")
        .header("x-request-id", "spoofed-backend")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(served_by(&edge)["spoofed-backend"], "catalog");

    stop.store(true, Ordering::Relaxed);
    background.await.unwrap();
    let failed = failures.load(Ordering::Relaxed);
    let total = sent.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} of {total} background requests failed");
    let after: Vec<u32> = ["catalog", "catalog-v2", "item", "customer", "authority"]
        .iter()
        .map(|name| edge.service_pid(name))
        .chain([edge.envoy_pid()])
        .collect();
    assert_eq!(pids, after, "a process restarted");
    println!(
        "rollout: {:.1}% of {USERS} users on v2 at 10%, {:.1}% at 50%; first apply took {apply_10:?}; {total} background requests, 0 failed",
        share_10 * 100.0,
        share_50 * 100.0
    );
}
