//! The chain Istio builds, run locally: the access log first, auth, Istio's RBAC filter made of
//! edge.json's AuthorizationPolicies, and the transcoder last (edgectl's `mesh` module). Mesh
//! policy must hold for JSON clients as for gRPC clients — with the transcoder before RBAC, as
//! the first Istio manifests had it, a JSON request answered by the transcoder never met RBAC —
//! and every request, RBAC's denials included, gets a complete access-log line.

use edge_e2e::{Edge, Options, MOBILE_PHONE_ID};
use platform_proto::catalog::{catalog_service_client::CatalogServiceClient, ListItemsRequest};
use serde_json::Value;

const BAD_BOT: &str = "BadBot/2.1";

/// Kubernetes allows 63-character Service names and namespaces (edgectl gives each service its
/// own namespace). Istio's cluster for such a service is 161 bytes: the filters' callouts name it
/// in a serialized `GrpcService` whose lengths no longer fit one varint byte.
#[tokio::test]
async fn filters_reach_a_service_with_the_longest_name_kubernetes_allows() {
    const LONG: &str = "authority-with-the-longest-service-name-that-kubernetes-allows1";
    assert_eq!(LONG.len(), 63);
    let edge = Edge::start_with(Options {
        customize: Box::new(|config| {
            let mut authority = config.services.remove("authority").expect("authority");
            authority.binary = Some("authority".into());
            config.services.insert(LONG.into(), authority);
            config.auth["authority"]["cluster"] = LONG.into();
        }),
        ..Options::default()
    })
    .await;
    // Started means the auth filter fetched its keys over a callout to that cluster (a bad token
    // is a 401, not a 503); signing in is the transcoder's call to it; the token it returns is
    // then accepted by those keys.
    let token = edge.signin("goldie").await;
    let listed = edge
        .http
        .post(edge.url("/catalog/items"))
        .bearer_auth(&token)
        .body(r#"{"title":"Long names","price":63}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200, "{}", listed.text().await.unwrap());
}

#[tokio::test]
async fn mesh_policy_holds_for_json_and_grpc_clients_alike() {
    let edge = Edge::start().await;
    let token = edge.signin("goldie").await;
    let bearer = format!("Bearer {token}");
    let item = format!("/catalog/items/{MOBILE_PHONE_ID}");

    // edge-deny-bad-bots: a user agent, on every route, for every kind of client.
    let get = |agent: &'static str, id: &'static str| {
        edge.http
            .get(edge.url(&item))
            .header("user-agent", agent)
            .header("x-request-id", id)
    };
    let allowed = get("curl/8", "mesh-get-ok").send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    // The API description is served through the gateway as configured, too.
    let description: Value = edge
        .http
        .get(edge.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(description["openapi"], "3.1.0");
    assert!(description["paths"]["/catalog/items"]["get"].is_object());
    let denied = get(BAD_BOT, "mesh-get-bot").send().await.unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(denied.text().await.unwrap(), "RBAC: access denied");

    let post = edge
        .http
        .post(edge.url("/catalog/items"))
        .header("authorization", &bearer)
        .header("user-agent", BAD_BOT)
        .header("x-request-id", "mesh-post-bot")
        .body(r#"{"title":"Denied","price":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403, "a JSON write from the bot");

    let channel = tonic::transport::Endpoint::from_shared(edge.base_url.clone())
        .unwrap()
        .user_agent(BAD_BOT)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = CatalogServiceClient::new(channel)
        .list_items(ListItemsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // edge-partner-writes-need-a-key: writes to the partner host need x-partner-key.
    let partner = |id: &'static str, key: Option<&'static str>| {
        let mut headers = vec![
            ("host", "partner.example.com"),
            ("authorization", bearer.as_str()),
            ("x-request-id", id),
        ];
        headers.extend(key.map(|key| ("x-partner-key", key)));
        headers
    };
    let body = r#"{"title":"From a partner","price":5}"#;
    let (status, text) = edge
        .raw_request(
            "POST",
            "/catalog/items",
            &partner("mesh-partner-nokey", None),
            body,
        )
        .await;
    assert_eq!(status, 403, "a partner write without its key: {text}");
    let (status, text) = edge
        .raw_request(
            "POST",
            "/catalog/items",
            &partner("mesh-partner-key", Some("k-1")),
            body,
        )
        .await;
    assert_eq!(status, 200, "a partner write with its key: {text}");
    let (status, _) = edge
        .raw_request("GET", &item, &partner("mesh-partner-read", None), "")
        .await;
    assert_eq!(status, 200, "partner reads need no key");

    // Every request, RBAC's denials included, has a complete line; the access log ran first.
    let log = edge.access_log();
    let line = |id: &str| -> Value {
        log.iter()
            .find(|line| line["request_id"] == id)
            .unwrap_or_else(|| panic!("no access-log line for {id}"))
            .clone()
    };
    for (id, status) in [
        ("mesh-get-ok", 200),
        ("mesh-get-bot", 403),
        ("mesh-post-bot", 403),
        ("mesh-partner-nokey", 403),
        ("mesh-partner-key", 200),
    ] {
        let line = line(id);
        assert_eq!(line["status"], status, "{line}");
        for field in [
            "time",
            "method",
            "path",
            "duration_ms",
            "trace_id",
            "client_ip",
        ] {
            assert!(line.get(field).is_some(), "{id}: no {field} in {line}");
        }
    }
    // Auth ran before RBAC: the denied write still names who sent it; nothing went upstream.
    assert!(line("mesh-partner-nokey")["subject"].is_string());
    assert!(line("mesh-partner-nokey").get("upstream_cluster").is_none());
    assert_eq!(line("mesh-get-bot")["user_agent"], BAD_BOT);

    // The transcoded call carried the trace the access log started.
    let trace = line("mesh-get-ok")["trace_id"]
        .as_str()
        .expect("trace id")
        .to_string();
    let catalog = edge.service_log("catalog");
    assert!(
        catalog.contains(&format!("traceparent=00-{trace}-")),
        "catalog did not get the edge's trace {trace}"
    );
}

/// A WebSocket upgrade passes the gateway's connection manager to the filters, as istiod builds
/// it (every connection manager istiod writes lets WebSocket upgrades through) and as the local
/// chain has it: the native build serves the stream, the Wasm build refuses it with 501, after
/// auth as for any request. Were the upgrade not let through, Envoy itself would answer 403.
#[tokio::test]
async fn a_websocket_upgrade_reaches_the_filters_through_the_gateway() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let edge = Edge::start().await;
    let token = edge.signin("goldie").await;
    let bearer = format!("Bearer {token}");
    let url = edge
        .url("/catalog/items:batchCreate")
        .replacen("http", "ws", 1);
    let (status, _) = edge_e2e::websocket_refusal(edge_e2e::connect_websocket(&url, &[]).await);
    assert_eq!(status, 401, "auth first");
    let connected = edge_e2e::connect_websocket(&url, &[("authorization", &bearer)]).await;
    if edge.module.target == edgectl::Target::Wasm {
        let (status, body) = edge_e2e::websocket_refusal(connected);
        assert_eq!(
            (status, &body["code"]),
            (501, &serde_json::json!(12)),
            "{body}"
        );
        return;
    }
    let mut socket = connected.expect("the upgrade, with a token");
    socket
        .send(Message::text(r#"{"title":"Socket lamp","price":12}"#))
        .await
        .expect("send");
    let answer: Value =
        serde_json::from_str(&edge_e2e::next_websocket_text(&mut socket).await).expect("JSON");
    assert_eq!(answer["item"]["title"], "Socket lamp", "{answer}");
}
