//! Per-user rate limits end to end: Envoy's `local_ratelimit` keyed on the subject the auth
//! filter verified (the client address for anonymous requests), with a short window so that
//! recovery is seen within the test.

use edge_e2e::{Edge, Options};
use edgectl::RateLimit;
use platform_proto::catalog::{catalog_service_client::CatalogServiceClient, CreateItemRequest};
use serde_json::{json, Value};
use std::time::Duration;

/// Three listings per subject, and three anonymous reads per address, every 3 s.
async fn edge() -> Edge {
    Edge::start_with(Options {
        customize: Box::new(|config| {
            config.rate_limits = serde_json::from_value::<Vec<RateLimit>>(json!([
                { "name": "listings", "requests": 3, "per_seconds": 3,
                  "routes": [ { "methods": ["POST"], "path": "/catalog/items" },
                              { "path": "/catalog.CatalogService/CreateItem" } ] },
                { "name": "reads", "requests": 3, "per_seconds": 3,
                  "routes": [ { "methods": ["GET"], "path": "/catalog/items" } ] }
            ]))
            .expect("rate limits");
        }),
        ..Options::default()
    })
    .await
}

/// `count` listings at once with these extra headers: the statuses, sorted, and one 429's
/// `retry-after` and body.
async fn burst(
    edge: &Edge,
    token: &str,
    count: usize,
    extra: &[(&str, &str)],
) -> (Vec<u16>, Option<(String, Value)>) {
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..count {
        let mut request = edge
            .http
            .post(edge.url("/catalog/items"))
            .bearer_auth(token)
            .json(&json!({ "title": "Burst", "price": 1 }));
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        requests.spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, retry_after.map(|r| (r, body)))
        });
    }
    let mut statuses = Vec::new();
    let mut limited = None;
    for (status, detail) in requests.join_all().await {
        statuses.push(status);
        if status == 429 {
            limited = detail;
        }
    }
    statuses.sort();
    (statuses, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_gets_the_allowance_then_429_then_recovers() {
    let edge = edge().await;
    let (_, alice) = edge.signup("alice").await;
    let (_, bob) = edge.signup("bob").await;

    let (statuses, limited) = burst(&edge, &alice, 6, &[]).await;
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let (retry_after, body) = limited.expect("a 429 with retry-after");
    assert_eq!(retry_after, "1", "a token comes back every 3 s / 3");
    assert_eq!(body["code"], 8, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("too many requests"));

    // Bob has his own bucket; Alice naming Bob (or anyone) in the subject header changes
    // nothing: auth removes the client's copy before the limit is keyed.
    let (statuses, _) = burst(&edge, &bob, 4, &[]).await;
    assert_eq!(statuses, [200, 200, 200, 429]);
    let (statuses, _) = burst(&edge, &alice, 2, &[("x-user-id", "someone-else")]).await;
    assert_eq!(
        statuses,
        [429, 429],
        "a spoofed subject header is not a new bucket"
    );

    // gRPC clients are told RESOURCE_EXHAUSTED.
    let mut client = CatalogServiceClient::connect(edge.base_url.clone())
        .await
        .expect("connect via Envoy");
    let mut request = tonic::Request::new(CreateItemRequest {
        title: "Via gRPC".into(),
        price: 1,
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {alice}").parse().unwrap());
    let status = client.create_item(request).await.expect_err("limited");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    // A full window later, the whole allowance again.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (statuses, _) = burst(&edge, &alice, 4, &[]).await;
    assert_eq!(statuses, [200, 200, 200, 429]);
}

#[tokio::test]
async fn anonymous_requests_are_limited_by_client_address() {
    let edge = edge().await;
    let read = |client: &reqwest::Client, forwarded: Option<&str>| {
        let mut request = client.get(edge.url("/catalog/items"));
        if let Some(address) = forwarded {
            request = request.header("x-forwarded-for", address);
        }
        request.send()
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(read(&edge.http, None).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let spoofed = read(&edge.http, Some("203.0.113.9")).await.unwrap();
    assert_eq!(
        spoofed.status().as_u16(),
        429,
        "X-Forwarded-For is not the key"
    );
    // Another client address has its own bucket.
    let elsewhere = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    assert_eq!(read(&elsewhere, None).await.unwrap().status().as_u16(), 200);
    // Reads are one group, listings another: a limited reader still lists.
    let (_, token) = edge.signup("lister").await;
    let (statuses, _) = burst(&edge, &token, 1, &[]).await;
    assert_eq!(statuses, [200]);
}
