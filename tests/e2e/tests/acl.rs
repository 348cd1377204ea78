//! Trust and safety end to end: buying items, restrictions as data (the acl service, followed
//! by the auth filter), through the real Envoy and services. Figures are printed for the
//! closing note and README; the assertions are the behaviour the issue asks for.

use edge_e2e::{json_of, Edge, Options, MOBILE_PHONE_ID};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// An edge without rate limits: these tests send more than a user's allowance on purpose
/// (the limits have their own test).
async fn edge() -> Edge {
    Edge::start_with(Options {
        customize: Box::new(|config| config.rate_limits.clear()),
        ..Options::default()
    })
    .await
}

async fn purchase(edge: &Edge, token: &str, item: &str) -> (u16, Value) {
    json_of(
        edge.http
            .post(edge.url(&format!("/catalog/items/{item}:purchase")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn restrict(edge: &Edge, admin: &str, subject: &str, action: &str, ttl: Option<&str>) {
    let mut body = json!({ "subject": subject, "action": action, "reason": "spam reports #4711" });
    if let Some(ttl) = ttl {
        body["ttl"] = json!(ttl);
    }
    let (status, restriction) = json_of(
        edge.http
            .post(edge.url("/acl/restrictions"))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{restriction}");
    assert_eq!(restriction["subject"], subject);
}

async fn lift(edge: &Edge, admin: &str, subject: &str, action: &str) -> u16 {
    edge.http
        .delete(edge.url(&format!("/acl/subjects/{subject}/restrictions/{action}")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls `create` every 10 ms until it answers `wanted`; the time it took.
async fn until_listing_is(edge: &Edge, token: &str, wanted: u16) -> Duration {
    let start = Instant::now();
    loop {
        let (status, body) = edge.create_item(token, "Probe", 1200).await;
        if status == wanted {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still {status} {body} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One of Envoy's stats by exact name, from the admin API.
async fn stat(edge: &Edge, name: &str) -> i64 {
    edge.stat(name)
        .await
        .unwrap_or_else(|| panic!("Envoy has no stat {name}"))
}

#[tokio::test]
async fn buying_an_item() {
    let edge = edge().await;
    let (_, seller) = edge.signup("seller").await;
    let (buyer_id, buyer) = edge.signup("buyer").await;
    let (status, created) = edge.create_item(&seller, "Desk", 1200).await;
    assert_eq!(status, 200, "{created}");
    let item = created["item"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["item"]["sold"],
        Value::Null,
        "false is omitted in proto3 JSON"
    );

    assert_eq!(purchase(&edge, &seller, &item).await.0, 400, "own item");
    let (status, bought) = purchase(&edge, &buyer, &item).await;
    assert_eq!(status, 200, "{bought}");
    assert_eq!(bought["item"]["sold"], true);
    let (status, again) = purchase(&edge, &buyer, &item).await;
    assert_eq!(
        (status, again["code"].as_i64()),
        (400, Some(9)),
        "FAILED_PRECONDITION: {again}"
    );
    assert_eq!(again["message"], "the item is already sold");
    let (status, missing) = purchase(&edge, &buyer, "no-such-item").await;
    assert_eq!((status, missing["code"].as_i64()), (404, Some(5)));
    let (status, anonymous) = json_of(
        edge.http
            .post(edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}:purchase")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{anonymous}");
    let (_, got) = json_of(
        edge.http
            .get(edge.url(&format!("/catalog/items/{item}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got["item"]["sold"], true);

    // The race: 16 buyers at once for one item; exactly one wins, and the row names them.
    let (_, created) = edge.create_item(&seller, "Only one", 1200).await;
    let item = created["item"]["id"].as_str().unwrap().to_string();
    let mut buyers = Vec::new();
    for n in 0..16 {
        buyers.push(edge.signup(&format!("racer{n}")).await);
    }
    let mut attempts = tokio::task::JoinSet::new();
    for (id, token) in buyers {
        let http = edge.http.clone();
        let url = edge.url(&format!("/catalog/items/{item}:purchase"));
        attempts.spawn(async move {
            let response = http.post(url).bearer_auth(token).send().await.unwrap();
            (id, json_of(response).await)
        });
    }
    let results = attempts.join_all().await;
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, (status, _))| *status == 200)
        .map(|(id, _)| id)
        .collect();
    let losers = results
        .iter()
        .filter(|(_, (status, body))| *status == 400 && body["code"] == 9)
        .count();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(losers, 15, "{results:?}");
    let rows = edge_e2e::sqlite_strings(
        &edge.dir.join("item.db"),
        &format!("SELECT buyer_id FROM items WHERE id = '{item}'"),
    )
    .await;
    assert_eq!(
        rows,
        vec![winners[0].clone()],
        "the committed buyer is the one told 200"
    );
    assert_ne!(&buyer_id, winners[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restriction_applies_within_two_seconds_without_a_push_and_lifts() {
    let edge = edge().await;
    let (_, admin) = edge.signup("admin").await;
    let (spammer_id, spammer) = edge.signup("spammer").await;
    let (_, honest) = edge.signup("honest").await;
    let envoy_pid = edge.envoy_pid();
    assert_eq!(edge.create_item(&spammer, "First", 1200).await.0, 200);

    // Background load: anonymous reads and another user's listings, all the while.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let http = edge.http.clone();
        let reads = edge.url("/catalog/items?page_size=5");
        let writes = edge.url("/catalog/items");
        let honest = honest.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let read = http.get(&reads).send().await.unwrap().status().as_u16();
                let write = http
                    .post(&writes)
                    .bearer_auth(&honest)
                    .json(&json!({ "title": "Honest", "price": 1 }))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                *statuses.entry(read).or_default() += 1;
                *statuses.entry(write).or_default() += 1;
            }
            statuses
        })
    };

    tokio::time::sleep(Duration::from_millis(500)).await;
    restrict(&edge, &admin, &spammer_id, "list", None).await;
    let applied = until_listing_is(&edge, &spammer, 403).await;
    let (status, refused) = edge.create_item(&spammer, "Again", 1200).await;
    assert_eq!(status, 403);
    assert_eq!(refused["code"], 7);
    assert_eq!(refused["details"][0]["reason"], "RESTRICTED");
    assert_eq!(refused["details"][0]["metadata"]["action"], "list");
    assert!(
        !refused.to_string().contains("spam reports"),
        "the internal reason must not leak: {refused}"
    );
    // Reads and buying are other actions.
    let read = edge
        .http
        .get(edge.url("/catalog/items"))
        .bearer_auth(&spammer)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);
    assert_eq!(lift(&edge, &admin, &spammer_id, "list").await, 200);
    let lifted = until_listing_is(&edge, &spammer, 200).await;
    assert_eq!(
        lift(&edge, &admin, &spammer_id, "list").await,
        404,
        "lifted already"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = load.await.unwrap();
    println!(
        "restriction enforced {} ms after the acl answered; lift {} ms; background {statuses:?}",
        applied.as_millis(),
        lifted.as_millis()
    );
    assert!(applied < Duration::from_secs(2), "took {applied:?}");
    assert!(lifted < Duration::from_secs(2), "took {lifted:?}");
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "other users and reads stay 200"
    );
    assert_eq!(edge.envoy_pid(), envoy_pid, "no restart");
}

#[tokio::test]
async fn restrictions_outlive_an_acl_outage_and_expire_by_themselves() {
    let mut edge = edge().await;
    let (_, admin) = edge.signup("admin").await;
    let (banned_id, banned) = edge.signup("banned").await;
    let (brief_id, brief) = edge.signup("brief").await;
    restrict(&edge, &admin, &banned_id, "list", None).await;
    until_listing_is(&edge, &banned, 403).await;

    // acl down: the edge keeps enforcing its copy, and says how stale it is.
    edge.kill_service("acl");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(edge.create_item(&banned, "While down", 1200).await.0, 403);
    assert_eq!(edge.create_item(&brief, "Fine", 1200).await.0, 200);
    let age = stat(&edge, "wasmcustom.edge_acl_sync_age_seconds").await;
    assert!(age >= 2, "sync age {age} s while the acl is down");
    // The admin routes say the acl is down, as any backend would.
    let down = edge
        .http
        .get(edge.url(&format!("/acl/subjects/{banned_id}/restrictions")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(down.status().as_u16(), 503);

    // Back up with the same database: the restriction is data, and the feed resumes.
    edge.restart_service("acl");
    let (status, listed) = json_of(
        edge.http
            .get(edge.url(&format!("/acl/subjects/{banned_id}/restrictions")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["restrictions"][0]["action"], "list");
    assert_eq!(listed["restrictions"][0]["reason"], "spam reports #4711");
    restrict(&edge, &admin, &brief_id, "list", Some("4s")).await;
    until_listing_is(&edge, &brief, 403).await;
    let start = Instant::now();
    // The gauge is refreshed once a second: current again within a tick or two.
    while stat(&edge, "wasmcustom.edge_acl_sync_age_seconds").await != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the sync age stays up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Expiry lifts by itself, with no change on the feed.
    until_listing_is(&edge, &brief, 200).await;
    assert!(start.elapsed() < Duration::from_secs(6));
    assert_eq!(edge.create_item(&banned, "Still banned", 1200).await.0, 403);
}

#[tokio::test]
async fn only_administrators_change_restrictions() {
    let edge = edge().await;
    let (user_id, user) = edge.signup("someone").await;
    let (status, body) = json_of(
        edge.http
            .post(edge.url("/acl/restrictions"))
            .bearer_auth(&user)
            .json(&json!({ "subject": user_id, "action": "list" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        edge.http
            .get(edge.url(&format!("/acl/subjects/{user_id}/restrictions")))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let (_, admin) = edge.signup("admin").await;
    let (status, body) = json_of(
        edge.http
            .post(edge.url("/acl/restrictions"))
            .bearer_auth(&admin)
            .json(&json!({ "subject": user_id, "action": "List Things" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(3)), "{body}");
}

/// Envoy CPU per refused listing (auth looks the subject up, answers 403 itself).
async fn refusal_cost(edge: &Edge, token: &str, requests: u32) -> Duration {
    let pid = edge.envoy_pid();
    let before = edge_e2e::process_cpu_ticks(pid);
    for _ in 0..requests {
        let status = edge
            .http
            .post(edge.url("/catalog/items"))
            .bearer_auth(token)
            .body("{}")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 403);
    }
    Duration::from_millis((edge_e2e::process_cpu_ticks(pid) - before) * 10) / requests
}

/// The least of two runs of 2000 refusals: Envoy's CPU includes its background work (the acl
/// feed, key refresh, the module's ticks), which only ever adds to a run, never takes away.
async fn least_refusal_cost(edge: &Edge, token: &str) -> Duration {
    let first = refusal_cost(edge, token, 2000).await;
    first.min(refusal_cost(edge, token, 2000).await)
}

#[tokio::test]
async fn ten_thousand_restrictions_cost_no_more_per_request() {
    let edge = edge().await;
    let (_, admin) = edge.signup("admin").await;
    let (banned_id, banned) = edge.signup("banned").await;
    restrict(&edge, &admin, &banned_id, "list", None).await;
    until_listing_is(&edge, &banned, 403).await;
    refusal_cost(&edge, &banned, 200).await; // warm up
    let small = least_refusal_cost(&edge, &banned).await;
    let rss_before = edge_e2e::process_rss_kib(edge.envoy_pid());

    // 10,000 more, through the acl's own API (straight to the service: the edge is not the
    // bottleneck being measured here).
    let acl = edge.service_url("acl");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let acl = acl.clone();
        tasks.push(tokio::spawn(async move {
            let mut client =
                platform_proto::acl::acl_service_client::AclServiceClient::connect(acl)
                    .await
                    .expect("acl");
            for n in (worker..10_000).step_by(8) {
                let request = platform_proto::acl::RestrictRequest {
                    subject: format!("bulk-{n}"),
                    action: "list".into(),
                    reason: "bulk".into(),
                    ttl: None,
                };
                // As a client should: UNAVAILABLE (the database busy with the other seven
                // writers) is tried again after a pause; anything else fails the test.
                let mut tries = 0u64;
                loop {
                    match client.restrict(request.clone()).await {
                        Ok(_) => break,
                        Err(status) if status.code() == tonic::Code::Unavailable && tries < 5 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                        }
                        Err(status) => panic!("restrict: {status:?}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let written = start.elapsed();
    let version = loop {
        let version = stat(&edge, "wasmcustom.edge_acl_version").await;
        if version >= 10_001 {
            break version;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "edge at version {version}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let synced = start.elapsed();
    let subjects = stat(&edge, "wasmcustom.edge_acl_subjects").await;
    let rss_after = edge_e2e::process_rss_kib(edge.envoy_pid());
    refusal_cost(&edge, &banned, 200).await;
    let large = least_refusal_cost(&edge, &banned).await;
    println!(
        "10k restrictions: written in {written:?}, at the edge (version {version}, {subjects} subjects) after {synced:?}; \
         Envoy RSS {rss_before} → {rss_after} KiB ({:+} KiB); Envoy CPU per refused listing {small:?} with 1 restriction, {large:?} with 10,001",
        rss_after as i64 - rss_before as i64
    );
    assert!(subjects >= 10_001);
    // The lookup is one shared-data read by key; allow the noise of a shared VM.
    assert!(
        large < small * 2 + Duration::from_micros(100),
        "per-request cost grew with the list: {small:?} → {large:?}"
    );
}
