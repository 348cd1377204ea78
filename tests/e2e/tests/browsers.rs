//! Browsers' protocols at the edge: gRPC-Web and Connect, turned into gRPC by Envoy's own
//! filters before auth (see `edgectl::WebProtocol`), refused and allowed exactly as JSON,
//! binary protobuf and gRPC clients by the same policy; and the CORS answers browsers need.
//! The storefront page drives the same protocols in Chromium (`storefront.rs`).

use base64::Engine;
use edge_e2e::{json_of, Edge, Options};
use platform_proto::catalog::{
    catalog_service_client::CatalogServiceClient, GetItemRequest, GetItemResponse,
    PurchaseItemRequest, PurchaseItemResponse,
};
use prost::Message;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The ways a client can call the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// The HTTP routes, JSON.
    Json,
    /// The HTTP routes, binary protobuf.
    Protobuf,
    /// gRPC (tonic), passed through to the backend.
    Grpc,
    GrpcWeb,
    /// gRPC-Web's text mode (base64), as browsers without binary streams use it.
    GrpcWebText,
    ConnectProto,
    ConnectJson,
}

const PROTOCOLS: [Protocol; 7] = [
    Protocol::Json,
    Protocol::Protobuf,
    Protocol::Grpc,
    Protocol::GrpcWeb,
    Protocol::GrpcWebText,
    Protocol::ConnectProto,
    Protocol::ConnectJson,
];

#[derive(Debug, Clone, Copy)]
enum Rpc<'a> {
    GetItem(&'a str),
    PurchaseItem(&'a str),
}

impl Rpc<'_> {
    fn grpc_path(self) -> &'static str {
        match self {
            Rpc::GetItem(_) => "/catalog.CatalogService/GetItem",
            Rpc::PurchaseItem(_) => "/catalog.CatalogService/PurchaseItem",
        }
    }

    fn request(self) -> Vec<u8> {
        match self {
            Rpc::GetItem(id) => GetItemRequest { id: id.into() }.encode_to_vec(),
            Rpc::PurchaseItem(id) => PurchaseItemRequest { id: id.into() }.encode_to_vec(),
        }
    }

    fn json_request(self) -> Value {
        match self {
            Rpc::GetItem(id) | Rpc::PurchaseItem(id) => json!({ "id": id }),
        }
    }
}

/// What a call came to: the gRPC code (0: done) and, when done, whether the item is sold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    code: i32,
    sold: Option<bool>,
}

impl Outcome {
    fn refused(code: i32) -> Self {
        Self { code, sold: None }
    }
    fn done(sold: bool) -> Self {
        Self {
            code: 0,
            sold: Some(sold),
        }
    }
}

/// The item message of a `GetItemResponse` or `PurchaseItemResponse` (same field number).
fn sold_in(rpc: Rpc<'_>, message: &[u8]) -> bool {
    match rpc {
        Rpc::GetItem(_) => {
            GetItemResponse::decode(message)
                .expect("GetItemResponse")
                .item
                .expect("item")
                .sold
        }
        Rpc::PurchaseItem(_) => {
            PurchaseItemResponse::decode(message)
                .expect("PurchaseItemResponse")
                .item
                .expect("item")
                .sold
        }
    }
}

fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// Connect's error codes, as gRPC's numbers.
fn connect_code(name: &str) -> i32 {
    let names = [
        "ok",
        "canceled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal",
        "unavailable",
        "data_loss",
        "unauthenticated",
    ];
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("Connect code {name}")) as i32
}

/// gRPC-Web text: base64 pieces, each padded (Envoy encodes each chunk on its own).
fn decode_web_text(text: &[u8]) -> Vec<u8> {
    text.chunks(4)
        .flat_map(|quad| {
            base64::engine::general_purpose::STANDARD
                .decode(quad)
                .expect("gRPC-Web text")
        })
        .collect()
}

/// A gRPC-Web answer: the status from the headers (trailers-only) or the trailer frame, and
/// the message of the first data frame.
fn read_grpc_web(headers: &reqwest::header::HeaderMap, body: &[u8]) -> (i32, Vec<u8>) {
    if let Some(status) = headers.get("grpc-status") {
        return (status.to_str().unwrap().parse().unwrap(), Vec::new());
    }
    let (mut message, mut status) = (Vec::new(), None);
    let mut rest = body;
    while rest.len() >= 5 {
        let flag = rest[0];
        let length = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = &rest[5..5 + length];
        if flag & 0x80 != 0 {
            let trailers = String::from_utf8_lossy(payload);
            status = trailers.lines().find_map(|line| {
                line.strip_prefix("grpc-status:")
                    .map(|code| code.trim().parse().unwrap())
            });
        } else if message.is_empty() {
            message = payload.to_vec();
        }
        rest = &rest[5 + length..];
    }
    (status.expect("a grpc-status trailer"), message)
}

/// A tonic request with `bearer` as its `authorization` metadata.
fn authorized<T>(message: T, bearer: &Option<String>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = bearer {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("metadata"));
    }
    request
}

async fn call(edge: &Edge, protocol: Protocol, rpc: Rpc<'_>, token: Option<&str>) -> Outcome {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let url = edge.url(rpc.grpc_path());
    let with_auth = |request: reqwest::RequestBuilder| match &bearer {
        Some(value) => request.header("authorization", value),
        None => request,
    };
    match protocol {
        Protocol::Json | Protocol::Protobuf => {
            let request = match rpc {
                Rpc::GetItem(id) => edge.http.get(edge.url(&format!("/catalog/items/{id}"))),
                Rpc::PurchaseItem(id) => edge
                    .http
                    .post(edge.url(&format!("/catalog/items/{id}:purchase"))),
            };
            let request = if protocol == Protocol::Protobuf {
                request.header("accept", "application/x-protobuf")
            } else {
                request
            };
            let response = with_auth(request).send().await.expect("HTTP call");
            if response.status() != 200 {
                let (_, error) = json_of(response).await;
                return Outcome::refused(error["code"].as_i64().expect("code") as i32);
            }
            if protocol == Protocol::Protobuf {
                let body = response.bytes().await.unwrap();
                Outcome::done(sold_in(rpc, &body))
            } else {
                let (_, body) = json_of(response).await;
                Outcome::done(body["item"]["sold"] == true)
            }
        }
        Protocol::Grpc => {
            let mut client = CatalogServiceClient::connect(edge.base_url.clone())
                .await
                .expect("gRPC connection");
            let answer = match rpc {
                Rpc::GetItem(id) => client
                    .get_item(authorized(GetItemRequest { id: id.into() }, &bearer))
                    .await
                    .map(|r| r.into_inner().item.expect("item").sold),
                Rpc::PurchaseItem(id) => client
                    .purchase_item(authorized(PurchaseItemRequest { id: id.into() }, &bearer))
                    .await
                    .map(|r| r.into_inner().item.expect("item").sold),
            };
            match answer {
                Ok(sold) => Outcome::done(sold),
                Err(status) => Outcome::refused(status.code() as i32),
            }
        }
        Protocol::GrpcWeb | Protocol::GrpcWebText => {
            let text = protocol == Protocol::GrpcWebText;
            let frame = grpc_frame(&rpc.request());
            let (content_type, body) = if text {
                (
                    "application/grpc-web-text",
                    base64::engine::general_purpose::STANDARD
                        .encode(frame)
                        .into_bytes(),
                )
            } else {
                ("application/grpc-web+proto", frame)
            };
            let response = with_auth(edge.http.post(&url))
                .header("content-type", content_type)
                .header("accept", content_type)
                .header("x-grpc-web", "1")
                .body(body)
                .send()
                .await
                .expect("gRPC-Web call");
            assert_eq!(response.status(), 200, "gRPC-Web answers 200");
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap();
            let body = if text {
                decode_web_text(&body)
            } else {
                body.to_vec()
            };
            match read_grpc_web(&headers, &body) {
                (0, message) => Outcome::done(sold_in(rpc, &message)),
                (code, _) => Outcome::refused(code),
            }
        }
        Protocol::ConnectProto | Protocol::ConnectJson => {
            let request = with_auth(edge.http.post(&url)).header("connect-protocol-version", "1");
            let request = if protocol == Protocol::ConnectProto {
                request
                    .header("content-type", "application/proto")
                    .body(rpc.request())
            } else {
                request
                    .header("content-type", "application/json")
                    .body(rpc.json_request().to_string())
            };
            let response = request.send().await.expect("Connect call");
            if response.status() != 200 {
                let (_, error) = json_of(response).await;
                return Outcome::refused(connect_code(error["code"].as_str().expect("code")));
            }
            if protocol == Protocol::ConnectProto {
                let body = response.bytes().await.unwrap();
                Outcome::done(sold_in(rpc, &body))
            } else {
                let (_, body) = json_of(response).await;
                Outcome::done(body["item"]["sold"] == true)
            }
        }
    }
}

async fn restrict(edge: &Edge, admin: &str, subject: &str, action: &str) {
    let (status, body) = json_of(
        edge.http
            .post(edge.url("/acl/restrictions"))
            .bearer_auth(admin)
            .json(&json!({ "subject": subject, "action": action, "reason": "chargebacks" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn every_client_protocol_is_allowed_and_refused_alike_by_one_policy() {
    let edge = Edge::start_with(Options {
        customize: Box::new(|config| config.rate_limits.clear()),
        ..Options::default()
    })
    .await;
    let (_, admin) = edge.signup("admin").await;
    let (_, seller) = edge.signup("seller").await;
    let (_, buyer) = edge.signup("buyer").await;
    let (restricted_id, restricted) = edge.signup("restricted").await;
    let mut items = Vec::new();
    for protocol in PROTOCOLS {
        let (status, created) = edge
            .create_item(&seller, &format!("For {protocol:?}"), 1000)
            .await;
        assert_eq!(status, 200, "{created}");
        items.push(created["item"]["id"].as_str().unwrap().to_string());
    }
    restrict(&edge, &admin, &restricted_id, "buy").await;
    // The restriction reaches the auth filter within a couple of seconds (polled on an item
    // that does not exist: until then the answer is NOT_FOUND, and nothing is bought).
    let start = Instant::now();
    while call(
        &edge,
        Protocol::Json,
        Rpc::PurchaseItem("no-such-item"),
        Some(&restricted),
    )
    .await
    .code
        != 7
    {
        assert!(start.elapsed() < Duration::from_secs(5), "not restricted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut table = Vec::new();
    for (protocol, item) in PROTOCOLS.into_iter().zip(&items) {
        let outcomes = [
            call(&edge, protocol, Rpc::GetItem(item), None).await,
            call(&edge, protocol, Rpc::PurchaseItem(item), None).await,
            call(
                &edge,
                protocol,
                Rpc::PurchaseItem(item),
                Some("not.a.token"),
            )
            .await,
            call(&edge, protocol, Rpc::PurchaseItem(item), Some(&restricted)).await,
            call(&edge, protocol, Rpc::PurchaseItem(item), Some(&buyer)).await,
            call(&edge, protocol, Rpc::GetItem(item), None).await,
        ];
        eprintln!("{protocol:?}: {outcomes:?}");
        table.push((protocol, outcomes));
    }
    let expected = [
        Outcome::done(false),
        Outcome::refused(16),
        Outcome::refused(16),
        Outcome::refused(7),
        Outcome::done(true),
        Outcome::done(true),
    ];
    for (protocol, outcomes) in &table {
        assert_eq!(outcomes, &expected, "{protocol:?}");
    }
    // Each was logged as the gRPC call it became, with the same refusals.
    let log = edge.access_log();
    for item in &items {
        let refusals = log
            .iter()
            .filter(|line| {
                line["grpc_status"] == 7
                    && line["path"]
                        .as_str()
                        .is_some_and(|p| p.contains(item.as_str()) || p.ends_with("PurchaseItem"))
            })
            .count();
        assert!(refusals >= 1, "no logged refusal for {item}");
    }
}

#[tokio::test]
async fn preflights_let_the_browser_protocols_headers_through() {
    let edge = Edge::start().await;
    for (protocol, headers) in [
        (
            "grpc-web",
            "content-type,x-grpc-web,x-user-agent,grpc-timeout",
        ),
        (
            "connect",
            "content-type,connect-protocol-version,connect-timeout-ms,authorization",
        ),
    ] {
        let response = edge
            .http
            .request(
                reqwest::Method::OPTIONS,
                edge.url("/catalog.CatalogService/ListItems"),
            )
            .header("origin", "http://localhost:3000")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{protocol}");
        let allowed = response.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_string();
        for header in headers.split(',') {
            assert!(
                allowed.contains(header),
                "{protocol}: {header} in {allowed}"
            );
        }
    }
    // An actual gRPC-Web call from the page's origin: its status is readable by the script.
    let response = edge
        .http
        .post(edge.url("/catalog.CatalogService/PurchaseItem"))
        .header("origin", "http://localhost:3000")
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(grpc_frame(&Rpc::PurchaseItem("x").request()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("grpc-status") && exposed.contains("grpc-message"));
    assert_eq!(response.headers()["grpc-status"], "16");
}

/// The frames of a streamed answer (gRPC-Web or Connect's envelopes: a flag byte, a 4-byte
/// length, the payload): (flag, payload) each.
fn envelopes(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while body.len() >= 5 {
        let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        frames.push((body[0], body[5..5 + length].to_vec()));
        body = &body[5 + length..];
    }
    assert!(body.is_empty(), "a frame cut short");
    frames
}

/// A server stream (WatchItems: new listings as they come) over gRPC-Web and Connect, with
/// Connect's protobuf and JSON codecs: each listing made while it is open, then the stream's
/// status (gRPC-Web's trailer frame, Connect's end-of-stream message).
#[tokio::test]
async fn server_streams_reach_grpc_web_and_connect_clients() {
    use platform_proto::catalog::{Item, WatchItemsRequest};
    let edge = Edge::start().await;
    let (_, seller) = edge.signup("streamer").await;
    let request = WatchItemsRequest {
        max_items: 2,
        wait_seconds: 10,
    };
    for (protocol, content_type) in [
        ("grpc-web", "application/grpc-web+proto"),
        ("connect", "application/connect+proto"),
        ("connect", "application/connect+json"),
    ] {
        let json = content_type.ends_with("json");
        let message = if json {
            json!({ "maxItems": 2, "waitSeconds": 10 })
                .to_string()
                .into_bytes()
        } else {
            request.encode_to_vec()
        };
        let mut call = edge
            .http
            .post(edge.url("/catalog.CatalogService/WatchItems"))
            .header("content-type", content_type)
            .body(grpc_frame(&message));
        call = match protocol {
            "grpc-web" => call.header("x-grpc-web", "1"),
            _ => call.header("connect-protocol-version", "1"),
        };
        let watching = tokio::spawn(async move {
            let response = call.send().await.expect("stream");
            let status = response.status().as_u16();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_string();
            let body = response.bytes().await.expect("the whole stream");
            (status, content_type, body)
        });
        // List until the stream has its two (it may start watching after the first listings).
        let mut listed = 0;
        while !watching.is_finished() {
            listed += 1;
            assert!(listed <= 40, "{content_type}: the stream never ended");
            let title = format!("{content_type} {listed}");
            assert_eq!(edge.create_item(&seller, &title, 100).await.0, 200);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (status, answered_type, body) = watching.await.unwrap();
        assert_eq!(status, 200, "{content_type}");
        let frames = envelopes(&body);
        assert_eq!(frames.len(), 3, "{content_type}: {frames:?}");
        let mut titles = Vec::new();
        for (flag, payload) in &frames[..2] {
            assert_eq!(*flag, 0, "{content_type}: a message");
            let title = if json {
                let item: Value = serde_json::from_slice(payload).expect("a JSON message");
                item["title"].as_str().unwrap().to_string()
            } else {
                Item::decode(payload.as_slice()).expect("an Item").title
            };
            titles.push(title);
        }
        // Two consecutive listings of this stream's, in the order they were made.
        let numbers: Vec<u32> = titles
            .iter()
            .map(|t| {
                t.strip_prefix(&format!("{content_type} "))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{content_type}: {titles:?}"))
            })
            .collect();
        assert_eq!(numbers[1], numbers[0] + 1, "{content_type}: {titles:?}");
        let (flag, end) = &frames[2];
        match protocol {
            "grpc-web" => {
                assert_eq!(*flag, 0x80, "the trailer frame");
                assert!(String::from_utf8_lossy(end).contains("grpc-status:0"));
                assert_eq!(answered_type, "application/grpc-web+proto");
            }
            _ => {
                assert_eq!(*flag, 0x02, "Connect's end of stream");
                let end: Value = serde_json::from_slice(end).expect("end-of-stream JSON");
                assert!(end.get("error").is_none(), "{end}");
                assert_eq!(answered_type, content_type);
            }
        }
    }
}
