//! The edge end to end: curl-like HTTP clients through the real Envoy, the three Wasm filters
//! and the real services.

use edge_e2e::json_of;
use edge_e2e::{Edge, GOLDIE_ID, MOBILE_PHONE_ID};
use platform_proto::catalog::{
    catalog_service_client::CatalogServiceClient, GetItemRequest, ListItemsRequest,
};
use serde_json::{json, Value};

/// The Mercari walkthrough: signup, signin, create an item with the token, list, get.
#[tokio::test]
async fn mercari_walkthrough() {
    let edge = Edge::start().await;
    let http = &edge.http;

    let (status, signup) = json_of(
        http.post(edge.url("/auth/signup"))
            .json(&json!({"name": "gopher"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{signup}");
    let gopher_id = signup["customer"]["id"]
        .as_str()
        .expect("customer id")
        .to_string();
    assert_eq!(signup["customer"]["name"], "gopher");

    let token = edge.signin("gopher").await;
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let (status, created) = json_of(
        http.post(edge.url("/catalog/items"))
            .bearer_auth(&token)
            .json(&json!({"title": "Keyboard", "price": 30000}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let item = &created["item"];
    assert_eq!(item["customer_id"], gopher_id.as_str());
    assert_eq!(item["customer_name"], "gopher");
    assert_eq!(item["title"], "Keyboard");
    assert_eq!(
        item["price"], "30000",
        "int64 is a JSON string in proto3 JSON"
    );
    let item_id = item["id"].as_str().expect("item id");

    let (status, listed) =
        json_of(http.get(edge.url("/catalog/items")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let titles: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["title"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(titles, ["Mobile Phone", "Laptop", "Keyboard"]);
    assert_eq!(listed["items"][0]["customer_name"], "goldie");
    assert_eq!(listed["items"][0]["customer_id"], GOLDIE_ID);

    let (status, got) = json_of(
        http.get(edge.url(&format!("/catalog/items/{item_id}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got, json!({"item": item}));
}

#[tokio::test]
async fn errors_are_google_rpc_status_json() {
    let edge = Edge::start().await;
    let http = &edge.http;
    let token = edge.signin("goldie").await;

    // No token, a tampered token, a wrong scheme: 401 with a challenge, nothing reaches catalog.
    let (header, payload, signature) = {
        let mut parts = token.split('.');
        (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        )
    };
    let tampered_payload = format!("{header}.{}A.{signature}", &payload[..payload.len() - 1]);
    let tampered_signature = format!(
        "{header}.{payload}.{}",
        signature.chars().rev().collect::<String>()
    );
    for authorization in [
        None,
        Some(format!("Bearer {tampered_payload}")),
        Some(format!("Bearer {tampered_signature}")),
        Some(format!("Basic {token}")),
    ] {
        let mut request = http
            .post(edge.url("/catalog/items"))
            .json(&json!({"title": "x", "price": 1}));
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        let challenge = response.headers().get("www-authenticate").cloned();
        let (status, body) = json_of(response).await;
        assert_eq!(status, 401, "{authorization:?}: {body}");
        assert_eq!(body["code"], 16);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(challenge.is_some_and(|c| c.to_str().unwrap().starts_with("Bearer")));
    }

    let cases: Vec<(reqwest::RequestBuilder, u16, u64)> = vec![
        (http.get(edge.url("/catalog/items/no-such-item")), 404, 5),
        // No route of the edge serves these: 404, or 405 for a known path (as grpc-gateway
        // and Envoy's routes answer), before any backend is involved.
        (http.get(edge.url("/no/such/route")), 404, 5),
        (
            http.delete(edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}"))),
            405,
            12,
        ),
        (http.delete(edge.url("/catalog/items")), 405, 12),
        // Served (a gRPC method of a public service), but no rule covers it: denied.
        (
            http.post(edge.url("/authority.AuthorityService/ListPublicKeys"))
                .json(&json!({})),
            403,
            7,
        ),
        // Public path, unbound method: the transcoder answers, no backend is called.
        (
            http.put(edge.url("/auth/signup"))
                .json(&json!({"name": "x"})),
            405,
            12,
        ),
        (
            http.post(edge.url("/catalog/items"))
                .bearer_auth(&token)
                .body(r#"{"title": "x", "price":"#),
            400,
            3,
        ),
        (
            http.post(edge.url("/catalog/items"))
                .bearer_auth(&token)
                .body(r#"{"price": "abc"}"#),
            400,
            3,
        ),
        (
            http.post(edge.url("/catalog/items"))
                .bearer_auth(&token)
                .json(&json!({"title": "", "price": 1})),
            400,
            3,
        ),
        (
            http.post(edge.url("/catalog/items"))
                .bearer_auth(&token)
                .body(format!(
                    r#"{{"title": "{}", "price": 1}}"#,
                    "x".repeat(70_000)
                )),
            413,
            8,
        ),
        (
            http.post(edge.url("/auth/signup"))
                .json(&json!({"name": "goldie"})),
            409,
            6,
        ),
        (
            http.post(edge.url("/auth/signin"))
                .json(&json!({"name": "nobody"})),
            404,
            5,
        ),
    ];
    for (request, expected_status, expected_code) in cases {
        let described = format!("{request:?}");
        let (status, body) = json_of(request.send().await.unwrap()).await;
        assert_eq!(status, expected_status, "{described}: {body}");
        assert_eq!(body["code"], expected_code, "{described}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty() && !message.contains('%'),
            "readable message: {body}"
        );
    }
}

#[tokio::test]
async fn identity_comes_only_from_the_token() {
    let edge = Edge::start().await;
    let http = &edge.http;
    let (_, token) = edge.signup("mallory").await;
    // Mallory claims to be goldie through the header the backends trust.
    let (status, created) = json_of(
        http.post(edge.url("/catalog/items"))
            .bearer_auth(&token)
            .header("x-user-id", GOLDIE_ID)
            .json(&json!({"title": "Forged", "price": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["item"]["customer_name"], "mallory");
    assert_ne!(created["item"]["customer_id"], GOLDIE_ID);
    // Without a token the spoofed header buys nothing.
    let response = http
        .post(edge.url("/catalog/items"))
        .header("x-user-id", GOLDIE_ID)
        .json(&json!({"title": "Forged", "price": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn grpc_clients_pass_straight_through() {
    let edge = Edge::start().await;
    let mut client = CatalogServiceClient::connect(edge.base_url.clone())
        .await
        .expect("connect via Envoy");
    let items = client
        .list_items(ListItemsRequest::default())
        .await
        .expect("ListItems via Envoy")
        .into_inner()
        .items;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].customer_name, "goldie");
}

#[tokio::test]
async fn one_access_log_line_per_request() {
    let mut edge = Edge::start().await;
    let http = &edge.http;
    let token = edge.signin("goldie").await;
    let requests = [
        (
            "ok-list",
            http.get(edge.url("/catalog/items?secret=1")),
            200,
        ),
        (
            "ok-get",
            http.get(edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}"))),
            200,
        ),
        (
            "ok-create",
            http.post(edge.url("/catalog/items"))
                .bearer_auth(&token)
                .json(&json!({"title": "Pen", "price": 5})),
            200,
        ),
        (
            "denied",
            http.post(edge.url("/catalog/items")).json(&json!({})),
            401,
        ),
        ("missing", http.get(edge.url("/catalog/items/nope")), 404),
        (
            "forbidden",
            http.post(edge.url("/authority.AuthorityService/ListPublicKeys"))
                .json(&json!({})),
            403,
        ),
        (
            "malformed",
            http.post(edge.url("/catalog/items"))
                .bearer_auth(&token)
                .body("{"),
            400,
        ),
        (
            "too-large",
            http.post(edge.url("/catalog/items"))
                .bearer_auth(&token)
                .body(format!(r#"{{"title":"{}"}}"#, "x".repeat(70_000))),
            413,
        ),
    ];
    for (id, request, expected) in requests {
        let response = request.header("x-request-id", id).send().await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{id}");
    }
    // gRPC clients pass through Envoy's router: the access log takes their status and cluster
    // from Envoy, not from the transcoder's note.
    let mut client = CatalogServiceClient::connect(edge.base_url.clone())
        .await
        .expect("connect via Envoy");
    for (id, item, expected) in [
        ("grpc-ok", MOBILE_PHONE_ID, tonic::Code::Ok),
        ("grpc-missing", "nope", tonic::Code::NotFound),
    ] {
        let mut request = tonic::Request::new(GetItemRequest { id: item.into() });
        request
            .metadata_mut()
            .insert("x-request-id", id.parse().unwrap());
        let code = client
            .get_item(request)
            .await
            .map_or_else(|status| status.code(), |_| tonic::Code::Ok);
        assert_eq!(code, expected, "{id}");
    }
    edge.kill_service("catalog");
    let http = &edge.http;
    let response = http
        .get(edge.url("/catalog/items"))
        .header("x-request-id", "backend-down")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    // on_log runs after the response is sent: give Envoy a moment to write the last lines.
    let mut records = Vec::new();
    for _ in 0..50 {
        records = edge.access_log();
        if records
            .iter()
            .filter(|r| r["request_id"] == "backend-down")
            .count()
            == 1
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let record = |id: &str| -> Value {
        let matching: Vec<&Value> = records.iter().filter(|r| r["request_id"] == id).collect();
        assert_eq!(matching.len(), 1, "exactly one line for {id}: {records:#?}");
        matching[0].clone()
    };
    let list = record("ok-list");
    assert_eq!(list["method"], "GET");
    assert_eq!(
        list["path"], "/catalog/items",
        "query strings are not logged by default"
    );
    assert_eq!(list["route"], "/catalog/items");
    assert_eq!(list["grpc_method"], "/catalog.CatalogService/ListItems");
    assert_eq!(list["status"], 200);
    assert_eq!(list["grpc_status"], 0);
    assert!(list["duration_ms"].as_f64().is_some_and(|d| d > 0.0));
    assert!(list["time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.len() == 24));
    assert!(list.get("subject").is_none());

    let create = record("ok-create");
    assert_eq!(create["subject"], GOLDIE_ID);
    assert!(create["bytes_in"].as_u64().is_some_and(|b| b > 0));
    assert!(create["bytes_out"].as_u64().is_some_and(|b| b > 0));

    let denied = record("denied");
    assert_eq!(denied["status"], 401);
    assert_eq!(denied["auth_reason"], "token_missing");
    assert!(denied.get("subject").is_none());

    let missing = record("missing");
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["grpc_status"], 5);
    let forbidden = record("forbidden");
    assert_eq!(forbidden["status"], 403);
    assert_eq!(forbidden["auth_reason"], "no_matching_rule");
    let malformed = record("malformed");
    assert_eq!(malformed["status"], 400);
    assert_eq!(malformed["route"], "/catalog/items");
    assert_eq!(malformed["subject"], GOLDIE_ID);
    assert_eq!(record("too-large")["status"], 413);
    let grpc_ok = record("grpc-ok");
    assert_eq!(grpc_ok["status"], 200);
    assert_eq!(
        grpc_ok["grpc_status"], 0,
        "from the response trailers: {grpc_ok}"
    );
    assert_eq!(
        grpc_ok["upstream_cluster"],
        edge_e2e::cluster_name("catalog")
    );
    assert!(grpc_ok.get("route").is_none(), "not transcoded: {grpc_ok}");
    let grpc_missing = record("grpc-missing");
    assert_eq!(
        grpc_missing["grpc_status"], 5,
        "from the headers of a trailers-only reply: {grpc_missing}"
    );
    let down = record("backend-down");
    assert_eq!(down["status"], 503);
    assert_eq!(down["grpc_status"], 14);
    assert_eq!(down["upstream_cluster"], edge_e2e::cluster_name("catalog"));
    assert!(
        !edge.envoy_log_text().contains(&token),
        "tokens never reach the log"
    );
}

#[tokio::test]
async fn backend_down_is_503_json_not_a_hang() {
    let mut edge = Edge::start().await;
    edge.kill_service("catalog");
    let started = std::time::Instant::now();
    let (status, body) = json_of(
        edge.http
            .get(edge.url("/catalog/items"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], 14);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered promptly"
    );

    // A dependency of catalog down: its UNAVAILABLE propagates as 503 too.
    edge.kill_service("item");
    edge.kill_service("customer");
    let (status, body) = json_of(
        edge.http
            .get(edge.url("/auth/signin"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405, "{body}");
    let (status, body) = json_of(
        edge.http
            .post(edge.url("/auth/signin"))
            .json(&json!({"name": "goldie"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], 14);
}

#[tokio::test]
async fn listings_come_in_pages() {
    let edge = Edge::start().await;
    let token = edge.signin("goldie").await;
    for n in 0..3 {
        let response = edge
            .http
            .post(edge.url("/catalog/items"))
            .bearer_auth(&token)
            .json(&json!({ "title": format!("Paged {n}"), "price": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Two seeded items and three new ones, two a page: three pages, each item once, in order.
    let mut titles = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let (status, page) = json_of(
            edge.http
                .get(edge.url("/catalog/items"))
                .query(&[("page_size", "2"), ("page_token", token.as_str())])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        titles.extend(
            items
                .iter()
                .map(|i| i["title"].as_str().unwrap().to_string()),
        );
        assert!(
            items.iter().all(|i| i["customer_name"] == "goldie"),
            "{page}"
        );
        match page["next_page_token"].as_str() {
            Some(next) => token = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        titles,
        ["Mobile Phone", "Laptop", "Paged 0", "Paged 1", "Paged 2"]
    );
    let (status, body) = json_of(
        edge.http
            .get(edge.url("/catalog/items?page_token=garbage"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(3)), "{body}");
}

/// A watch of new listings, each arriving as it is listed: over HTTP as NDJSON lines (a POST
/// goes through the router; a GET's stream is collected), over gRPC as messages.
#[tokio::test]
async fn watchers_see_new_listings_with_their_owners() {
    use platform_proto::catalog::WatchItemsRequest;
    let edge = Edge::start().await;
    let token = edge.signin("goldie").await;
    let http_watch = edge
        .http
        .post(edge.url("/catalog/items:watch"))
        .json(&json!({"max_items": 2, "wait_seconds": 20}))
        .send();
    let mut grpc = CatalogServiceClient::connect(edge.base_url.clone())
        .await
        .expect("connect via Envoy");
    let mut grpc_watch = grpc
        .watch_items(WatchItemsRequest {
            max_items: 2,
            wait_seconds: 20,
        })
        .await
        .expect("WatchItems via Envoy")
        .into_inner();
    let lister = async {
        // Both watches are open (the item service polls every 200 ms) before the first listing.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(edge.create_item(&token, "Lamp", 40).await.0, 200);
        let first = grpc_watch
            .message()
            .await
            .expect("a listing")
            .expect("open");
        assert_eq!(
            (first.title.as_str(), first.customer_name.as_str()),
            ("Lamp", "goldie"),
            "live over gRPC: the first listing before the second exists"
        );
        assert_eq!(edge.create_item(&token, "Desk", 90).await.0, 200);
        let second = grpc_watch
            .message()
            .await
            .expect("a listing")
            .expect("open");
        assert_eq!(second.title, "Desk");
        assert!(
            grpc_watch.message().await.expect("ended OK").is_none(),
            "max_items"
        );
    };
    let (response, ()) = tokio::join!(http_watch, lister);
    let response = response.expect("watch over HTTP");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = response.text().await.expect("body");
    let lines = edge_e2e::ndjson_lines(&body);
    let titles: Vec<&str> = lines
        .iter()
        .map(|line| line["result"]["title"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(titles, ["Lamp", "Desk"], "{body}");
    assert_eq!(lines[0]["result"]["customer_name"], "goldie");

    // Nothing listed within the wait: an empty stream, in the framing asked for.
    let quiet = edge
        .http
        .get(edge.url("/catalog/items:watch?wait_seconds=1"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("quiet watch");
    assert_eq!(quiet.status(), 200);
    assert_eq!(quiet.headers()["content-type"], "text/event-stream");
    assert_eq!(
        quiet.text().await.expect("body"),
        ": no events\n\n",
        "an SSE comment"
    );
}

/// Several listings on one stream (`CreateItems`, bidirectional): over HTTP a JSON array body,
/// answered with an NDJSON line per item as each is listed and, last, the refusal that ended
/// the stream; over gRPC, messages each way. A write like `POST /catalog/items`: no token, 401.
#[tokio::test]
async fn several_listings_go_on_one_stream() {
    use platform_proto::catalog::CreateItemRequest;
    let edge = Edge::start().await;
    let token = edge.signin("goldie").await;
    let items = json!([
        { "title": "Chair", "price": 30 },
        { "title": "Sofa", "price": 300 },
        { "title": " ", "price": 5 }
    ]);
    let url = edge.url("/catalog/items:batchCreate");
    let (status, body) = json_of(
        edge.http
            .post(&url)
            .json(&items)
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_eq!((status, &body["code"]), (401, &json!(16)), "{body}");
    let response = edge
        .http
        .post(&url)
        .bearer_auth(&token)
        .json(&items)
        .send()
        .await
        .expect("POST with a token");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = response.text().await.expect("body");
    let lines = edge_e2e::ndjson_lines(&body);
    assert_eq!(lines.len(), 3, "{body}");
    assert_eq!(lines[0]["result"]["item"]["title"], "Chair", "{body}");
    assert_eq!(
        lines[1]["result"]["item"]["customer_name"], "goldie",
        "{body}"
    );
    assert_eq!(
        lines[2]["error"],
        json!({ "code": 3, "message": "title must not be empty" }),
        "{body}"
    );
    // Refused at the first item: the call's error alone, a plain 400 (what schemathesis sent).
    let (status, body) = json_of(
        edge.http
            .post(&url)
            .bearer_auth(&token)
            .json(&json!([{ "price": "0" }, { "0": [], "": { "": 0 } }]))
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_eq!((status, &body["code"]), (400, &json!(3)), "{body}");
    // Listed, both.
    for line in &lines[..2] {
        let id = line["result"]["item"]["id"].as_str().expect("an id");
        assert_eq!(edge.item_status(id).await, 200);
    }

    let mut grpc = CatalogServiceClient::connect(edge.base_url.clone())
        .await
        .expect("connect via Envoy");
    let requests = ["Stool", "Bench"].map(|title| CreateItemRequest {
        title: title.to_string(),
        price: 10,
    });
    let mut request = tonic::Request::new(tokio_stream::iter(requests));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("metadata"),
    );
    let mut answers = grpc
        .create_items(request)
        .await
        .expect("CreateItems via Envoy")
        .into_inner();
    let mut titles = Vec::new();
    while let Some(answer) = answers.message().await.expect("a listing") {
        titles.push(answer.item.expect("an item").title);
    }
    assert_eq!(titles, ["Stool", "Bench"]);
}

/// A 1×1 PNG, as README's walkthrough writes it.
const PHOTO_PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/// An item's image (google.api.HttpBody both ways): the seller PUTs the bytes with their type,
/// anyone GETs them back as they were, from disk; what is not an image of its type, not the
/// seller's, or too large is refused with the reason.
#[tokio::test]
async fn item_images_are_raw_bytes_both_ways() {
    use base64::Engine;
    use platform_proto::catalog::GetItemImageRequest;
    let mut edge = Edge::start().await;
    let seller = edge.signin("goldie").await;
    let (_, other) = edge.signup("not-the-seller").await;
    let (_, created) = edge.create_item(&seller, "Camera", 5000).await;
    let item = created["item"]["id"].as_str().expect("an id").to_string();
    let image_url = edge.url(&format!("/catalog/items/{item}/image"));
    let photo = base64::engine::general_purpose::STANDARD
        .decode(PHOTO_PNG_BASE64)
        .expect("base64");
    let http = edge.http.clone();
    let put = |token: Option<&str>, content_type: &str, body: Vec<u8>| {
        let request = http
            .put(&image_url)
            .header("content-type", content_type)
            .body(body);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
    };

    let (status, kept) = json_of(
        put(Some(&seller), "image/png", photo.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(
        kept,
        json!({"item_id": item, "content_type": "image/png", "size": photo.len().to_string()})
    );
    let read_back = |edge: &Edge| {
        let request = edge.http.get(&image_url);
        async move {
            let response = request.send().await.expect("GET image");
            let status = response.status().as_u16();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_string();
            (
                status,
                content_type,
                response.bytes().await.unwrap().to_vec(),
            )
        }
    };
    assert_eq!(
        read_back(&edge).await,
        (200, "image/png".to_string(), photo.clone())
    );

    // Acknowledged means on disk: the item service restarted still has it.
    edge.kill_service("item");
    edge.restart_service("item");
    assert_eq!(
        read_back(&edge).await,
        (200, "image/png".to_string(), photo.clone())
    );

    let refusals = [
        (
            put(Some(&other), "image/png", photo.clone()).await,
            403,
            "only the item's seller can change its image",
        ),
        (
            put(None, "image/png", photo.clone()).await,
            401,
            "a bearer token is required",
        ),
        (
            put(Some(&seller), "text/plain", b"hello".to_vec()).await,
            400,
            "the image's content type must be image/png, image/jpeg, image/gif or image/webp",
        ),
        (
            put(Some(&seller), "image/png", b"not a png".to_vec()).await,
            400,
            "the body is not a PNG image",
        ),
        (
            put(Some(&seller), "image/png", vec![0; 70_000]).await,
            413,
            "request body exceeds 65536 bytes",
        ),
    ];
    for (response, status, message) in refusals {
        let (got, body) = json_of(response.unwrap()).await;
        assert_eq!(
            (got, body["message"].as_str()),
            (status, Some(message)),
            "{body}"
        );
    }
    assert_eq!(
        read_back(&edge).await.2,
        photo,
        "a refused PUT leaves the image as it was"
    );

    let (status, body) = json_of(
        edge.http
            .get(edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}/image")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (404, json!({"code": 5, "message": "item image not found"}))
    );

    // gRPC clients get the HttpBody message itself.
    let mut grpc = CatalogServiceClient::connect(edge.base_url.clone())
        .await
        .expect("connect via Envoy");
    let body = grpc
        .get_item_image(GetItemImageRequest { id: item })
        .await
        .expect("GetItemImage via Envoy")
        .into_inner();
    assert_eq!(
        (body.content_type.as_str(), body.data),
        ("image/png", photo)
    );
}
