//! Mesh-level policy changed live through a real istiod, as an operator changes it in a cluster
//! (`kubectl apply` of one file), under a background load of JSON reads, JSON writes and gRPC
//! calls: (a) an AuthorizationPolicy denies a path, then is lifted; (b) the auth WasmPlugin's
//! `pluginConfig` makes a public route authenticated, then public again; (c) the
//! VirtualService sends header-matched gRPC calls to `catalog-v2`, then stops; (d) the
//! rate-limit EnvoyFilter lowers a limit. Each must hold within 5 s, no request may fail for
//! any reason but the policy in force, and Envoy must not restart. The same WasmPlugin change
//! through the local ECDS path (`make policy`) is timed alongside; the figures are printed.

use edge_e2e::{Edge, Options, MOBILE_PHONE_ID};
use edgectl::{EdgeConfig, MeshVariant};
use platform_proto::catalog::{catalog_service_client::CatalogServiceClient, GetItemRequest};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENFORCED_WITHIN: Duration = Duration::from_secs(5);
/// A limit no load here reaches, and the one change (d) sets.
const UNREACHED: u32 = 1_000_000;
const LOWERED: u32 = 1;

/// What one request of a load saw, and when (since the start).
struct Seen {
    at: Duration,
    /// The HTTP status; a gRPC call's is 200 for OK, 1000 + its code otherwise; 0: no answer.
    status: u16,
}

/// A stretch of time in which a load may also see `status` (a policy in force or in flight).
struct Window {
    load: &'static str,
    from: Duration,
    to: Duration,
    status: u16,
}

fn config() -> EdgeConfig {
    let mut config = edge_e2e::edge_json();
    for limit in &mut config.rate_limits {
        limit.requests = UNREACHED;
    }
    config
}

/// Sends requests in a loop until `stop`, recording every answer.
async fn keep_calling<F, Fut>(call: F, started: Instant, stop: Arc<AtomicBool>) -> Vec<Seen>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let mut seen = Vec::new();
    while !stop.load(Ordering::Relaxed) && seen.len() < 50_000 {
        let status = call().await;
        seen.push(Seen {
            at: started.elapsed(),
            status,
        });
    }
    seen
}

/// Calls `probe` every 20 ms until it answers as `wanted` says; how long that took.
async fn until<F, Fut>(what: &str, probe: F, wanted: impl Fn(&Fut::Output) -> bool) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future,
    Fut::Output: std::fmt::Debug,
{
    let start = Instant::now();
    loop {
        let answer = probe().await;
        if wanted(&answer) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < ENFORCED_WITHIN,
            "{what}: not in force after {ENFORCED_WITHIN:?} (last: {answer:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn item_path() -> String {
    format!("/catalog/items/{MOBILE_PHONE_ID}")
}

async fn read(edge_url: &str, http: &reqwest::Client) -> u16 {
    http.get(format!("{edge_url}{}", item_path()))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// A gRPC GetItem through the edge with `x-canary: 1`; 200 for OK.
///
/// A listener istiod replaces (an AuthorizationPolicy, an EnvoyFilter) is drained: Envoy tells
/// each client connection to go away. A call sent just then can find its connection closed
/// before any answer; grpc-go retries such a call by itself (transparent retry), tonic does
/// not, so this client retries it once, as grpc-go would, and counts it in `retried`.
async fn grpc_read(
    client: &mut CatalogServiceClient<tonic::transport::Channel>,
    retried: &AtomicUsize,
) -> u16 {
    let call = |client: &mut CatalogServiceClient<tonic::transport::Channel>| {
        let mut request = tonic::Request::new(GetItemRequest {
            id: MOBILE_PHONE_ID.into(),
        });
        request
            .metadata_mut()
            .insert("x-canary", "1".parse().expect("header"));
        let mut client = client.clone();
        async move { client.get_item(request).await }
    };
    let mut answer = call(client).await;
    if let Err(status) = &answer {
        let unanswered = matches!(
            status.code(),
            tonic::Code::Cancelled | tonic::Code::Unavailable
        ) && status.metadata().is_empty();
        if unanswered {
            retried.fetch_add(1, Ordering::Relaxed);
            answer = call(client).await;
        }
    }
    match answer {
        Ok(_) => 200,
        Err(status) => 1000 + status.code() as u16,
    }
}

/// Which cluster served the request with `request_id`, from the access log.
async fn served_by(edge: &Edge, request_id: &str) -> Option<String> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    edge.access_log()
        .iter()
        .rev()
        .find(|line| line["request_id"] == request_id)
        .and_then(|line| line["upstream_cluster"].as_str().map(String::from))
}

/// The VirtualService with a first route sending `x-canary: 1` gRPC calls to catalog-v2.
fn with_canary_route(objects: &[Value], config: &EdgeConfig) -> Vec<Value> {
    let mut objects = objects.to_vec();
    let service = objects
        .iter_mut()
        .find(|o| o["kind"] == "VirtualService")
        .expect("the VirtualService");
    let v2 = config.istio_cluster("catalog-v2");
    let host = v2.rsplit("||").next().expect("a host").to_string();
    let port = config.services["catalog-v2"].port;
    let routes = service["spec"]["http"].as_array_mut().expect("routes");
    routes.insert(
        0,
        json!({
            "name": "canary-grpc",
            "match": [{
                "uri": { "prefix": "/catalog.CatalogService/" },
                "headers": { "x-canary": { "exact": "1" } }
            }],
            "route": [{ "destination": { "host": host, "port": { "number": port } } }]
        }),
    );
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_policy_changes_live_through_istiod_under_load() {
    let edge = Edge::start_with(Options {
        mesh: Some(MeshVariant::WasmPlugin),
        workers: 2,
        customize: Box::new(|c| *c = config()),
        ..Options::default()
    })
    .await;
    let envoy_pid = edge.envoy_pid();
    let token = edge.signin("goldie").await;
    let base = edge.base_url.clone();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));

    let reads = tokio::spawn({
        let (http, base, stop) = (edge.http.clone(), base.clone(), stop.clone());
        async move { keep_calling(|| read(&base, &http), started, stop).await }
    });
    let writes = tokio::spawn({
        let (http, base, stop, token) =
            (edge.http.clone(), base.clone(), stop.clone(), token.clone());
        async move {
            let write = || async {
                http.post(format!("{base}/catalog/items"))
                    .bearer_auth(&token)
                    .body(r#"{"title":"Written under load","price":2}"#)
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16())
            };
            keep_calling(write, started, stop).await
        }
    });
    let retried = Arc::new(AtomicUsize::new(0));
    let grpc = tokio::spawn({
        let (base, stop, retried) = (base.clone(), stop.clone(), retried.clone());
        async move {
            let client = CatalogServiceClient::connect(base).await.expect("connect");
            let call = || {
                let mut client = client.clone();
                let retried = retried.clone();
                async move { grpc_read(&mut client, &retried).await }
            };
            keep_calling(call, started, stop).await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut windows = Vec::new();
    let mut figures = Vec::new();
    let http = edge.http.clone();
    let mut current = config();

    // (a) An AuthorizationPolicy denies the item's path; then it is lifted.
    let deny = json!({
        "name": "edge-live-deny-item",
        "action": "DENY",
        "rules": [{ "to": [{ "operation": { "paths": [item_path()] } }] }]
    });
    let from = started.elapsed();
    current
        .authorization
        .push(serde_json::from_value(deny).expect("a policy"));
    push(&edge, &current, "authorization.yaml");
    figures.push((
        "(a) AuthorizationPolicy: deny a path",
        until("deny", || read(&base, &http), |s| *s == 403).await,
    ));
    current.authorization.pop();
    push(&edge, &current, "authorization.yaml");
    figures.push((
        "(a) AuthorizationPolicy: lift it",
        until("lift", || read(&base, &http), |s| *s == 200).await,
    ));
    windows.push(Window {
        load: "reads",
        from,
        to: started.elapsed(),
        status: 403,
    });

    // (b) The auth WasmPlugin's pluginConfig: the item's route becomes authenticated.
    let from = started.elapsed();
    set_item_reads_policy(&mut current, "authenticated");
    push(&edge, &current, "wasmplugins.yaml");
    figures.push((
        "(b) WasmPlugin pluginConfig: route authenticated",
        until("authenticated", || read(&base, &http), |s| *s == 401).await,
    ));
    set_item_reads_policy(&mut current, "public");
    push(&edge, &current, "wasmplugins.yaml");
    figures.push((
        "(b) WasmPlugin pluginConfig: public again",
        until("public", || read(&base, &http), |s| *s == 200).await,
    ));
    windows.push(Window {
        load: "reads",
        from,
        to: started.elapsed(),
        status: 401,
    });

    // (c) The VirtualService sends x-canary gRPC calls to catalog-v2, then stops.
    let v1 = config().istio_cluster("catalog");
    let v2 = config().istio_cluster("catalog-v2");
    let gateway = edge.istiod_files(&current)["gateway.yaml"].clone();
    let probe_client = CatalogServiceClient::connect(base.clone())
        .await
        .expect("connect");
    let probes = std::sync::atomic::AtomicUsize::new(0);
    let routed = || {
        let mut client = probe_client.clone();
        let id = format!("canary-probe-{}", probes.fetch_add(1, Ordering::Relaxed));
        let edge = &edge;
        async move {
            let mut request = tonic::Request::new(GetItemRequest {
                id: MOBILE_PHONE_ID.into(),
            });
            request
                .metadata_mut()
                .insert("x-canary", "1".parse().expect("header"));
            request
                .metadata_mut()
                .insert("x-request-id", id.parse().expect("header"));
            client.get_item(request).await.expect("a canary probe");
            served_by(edge, &id).await
        }
    };
    edge.write_istiod_file("gateway.yaml", &with_canary_route(&gateway, &current));
    figures.push((
        "(c) VirtualService: header route to catalog-v2",
        until("canary", &routed, |c| c.as_deref() == Some(v2.as_str())).await,
    ));
    edge.write_istiod_file("gateway.yaml", &gateway);
    figures.push((
        "(c) VirtualService: route removed",
        until("no canary", &routed, |c| c.as_deref() == Some(v1.as_str())).await,
    ));

    // (d) The rate-limit EnvoyFilter lowers the listings limit: writes are refused.
    let from = started.elapsed();
    for limit in &mut current.rate_limits {
        limit.requests = LOWERED;
    }
    push(&edge, &current, "wasmplugins.yaml");
    let write_probe = || async {
        http.post(format!("{base}/catalog/items"))
            .bearer_auth(&token)
            .body(r#"{"title":"Probe","price":1}"#)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    };
    figures.push((
        "(d) rate-limit EnvoyFilter: limit lowered",
        until("limit", write_probe, |s| *s == 429).await,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The lowered limit stays in force to the end.
    windows.push(Window {
        load: "writes",
        from,
        to: Duration::MAX,
        status: 429,
    });

    stop.store(true, Ordering::Relaxed);
    let loads = [
        ("reads", reads.await.expect("reads")),
        ("writes", writes.await.expect("writes")),
        ("grpc", grpc.await.expect("grpc")),
    ];
    let mut failures = Vec::new();
    for (load, seen) in &loads {
        assert!(seen.len() > 50, "{load}: only {} requests", seen.len());
        for answer in seen {
            let allowed = answer.status == 200
                || windows.iter().any(|w| {
                    w.load == *load
                        && w.status == answer.status
                        && w.from <= answer.at
                        && answer.at <= w.to
                });
            if !allowed {
                failures.push(format!("{load}: {} at {:?}", answer.status, answer.at));
            }
        }
    }
    // Envoy took every change without restarting (same process, still serving).
    assert_eq!(edge.envoy_pid(), envoy_pid);
    assert!(
        std::path::Path::new(&format!("/proc/{envoy_pid}")).exists(),
        "Envoy is gone"
    );

    let local = local_ecds_figure().await;
    println!("time until Envoy enforced each change (istiod, file watch to Envoy):");
    for (what, took) in &figures {
        println!("  {what}: {took:?}");
    }
    println!("  local ECDS path (make policy): route authenticated: {local:?}");
    for (load, seen) in &loads {
        println!("  load {load}: {} requests", seen.len());
    }
    let retried = retried.load(Ordering::Relaxed);
    println!("  gRPC calls sent again after their connection went away unanswered: {retried}");
    // One per drained connection at most: the load's single gRPC connection meets three
    // listener changes.
    assert!(
        retried <= 3,
        "{retried} gRPC calls found their connection gone"
    );
    let windows: Vec<String> = windows
        .iter()
        .map(|w| format!("{} {} {:?}..{:?}", w.load, w.status, w.from, w.to))
        .collect();
    assert!(
        failures.is_empty(),
        "{} requests failed: {:?} (windows: {windows:?})",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
}

/// Hands istiod `file` as rendered from `config`, as `kubectl apply -f` of it would.
fn push(edge: &Edge, config: &EdgeConfig, file: &str) {
    edge.write_istiod_file(file, &edge.istiod_files(config)[file]);
}

/// Sets the policy of the rule that makes `GET /catalog/items/*` public.
fn set_item_reads_policy(config: &mut EdgeConfig, policy: &str) {
    let rule = config.auth["rules"]
        .as_array_mut()
        .expect("rules")
        .iter_mut()
        .find(|r| r["path"] == "/catalog/items/*" && r["methods"] == json!(["GET"]))
        .expect("the item read rule");
    rule["policy"] = json!(policy);
}

/// The same change (b) through the local ECDS files Envoy watches, timed the same way.
async fn local_ecds_figure() -> Duration {
    let edge = Edge::start_with(Options {
        mesh: None,
        live_config: true,
        ..Options::default()
    })
    .await;
    let mut changed = config();
    set_item_reads_policy(&mut changed, "authenticated");
    let base = edge.base_url.clone();
    let http = edge.http.clone();
    let start = Instant::now();
    edge.apply(&changed);
    until("local ECDS", || read(&base, &http), |s| *s == 401).await;
    start.elapsed()
}
