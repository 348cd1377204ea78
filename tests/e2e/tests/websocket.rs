//! WebSocket for client and bidirectional streams (README, "WebSocket"), against the real
//! Envoy 1.40 in front of the kitchen backend, with a real WebSocket client library
//! (tokio-tungstenite): each text frame one JSON message each way, the call's status the close
//! code. The native build serves it (whatever `EDGE_TARGET` says); the Wasm build refuses it
//! with 501, also tested here.

use edge_e2e::{
    connect_websocket, next_websocket_text, websocket_refusal, Edge, KitchenEdge, Options,
    WebSocket,
};
use edgectl::Target;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};

async fn connect(edge: &KitchenEdge, path: &str) -> Result<WebSocket, Error> {
    let url = format!("ws://127.0.0.1:{}{path}", edge.port);
    connect_websocket(&url, &[("x-kitchen-tag", "socket")]).await
}

async fn open(edge: &KitchenEdge, path: &str) -> WebSocket {
    connect(edge, path).await.expect("the upgrade")
}

async fn refusal(edge: &KitchenEdge, path: &str) -> (u16, Value) {
    websocket_refusal(connect(edge, path).await)
}

async fn send(socket: &mut WebSocket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .expect("send a message");
}

/// The next frame from the edge (pongs and all).
async fn next(socket: &mut WebSocket) -> Message {
    tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a frame within 10 s")
        .expect("the socket is open")
        .expect("a frame")
}

async fn next_json(socket: &mut WebSocket) -> Value {
    serde_json::from_str(&next_websocket_text(socket).await).expect("JSON")
}

async fn close_of(socket: &mut WebSocket) -> (CloseCode, String) {
    match next(socket).await {
        Message::Close(Some(CloseFrame { code, reason })) => (code, reason.to_string()),
        other => panic!("not a close frame: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bidirectional_stream_goes_both_ways_over_a_websocket() {
    let edge = KitchenEdge::start(Target::Native).await;
    let mut socket = open(&edge, "/v1/sinks:chat").await;
    send(&mut socket, json!({ "name": "first", "int32_value": 1 })).await;
    let answer = next_json(&mut socket).await;
    assert_eq!(
        (answer["name"].as_str(), answer["int32_value"].as_i64()),
        (Some("first"), Some(1)),
        "{answer}"
    );
    // Each message is answered as it comes: the second after the first's answer was read.
    send(&mut socket, json!({ "name": "second" })).await;
    assert_eq!(next_json(&mut socket).await["name"], "second");
    socket
        .send(Message::Ping("are you there".into()))
        .await
        .expect("ping");
    assert_eq!(
        next(&mut socket).await,
        Message::Pong("are you there".into())
    );
    // The client's close ends its side of the call; the call's end (OK) closes the socket.
    socket.close(None).await.expect("close");
    assert_eq!(close_of(&mut socket).await.0, CloseCode::Normal);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_stream_is_answered_after_the_clients_last_message() {
    let edge = KitchenEdge::start(Target::Native).await;
    // A library's way: a close frame ends the messages, the answer still comes.
    let mut socket = open(&edge, "/v1/sinks:collect").await;
    for name in ["a", "b", "c"] {
        send(&mut socket, json!({ "name": name })).await;
    }
    socket.close(None).await.expect("close");
    let answer = next_json(&mut socket).await;
    assert_eq!(answer["tags"], json!(["a", "b", "c"]), "{answer}");
    assert_eq!(answer["int32_value"], 3);
    assert_eq!(close_of(&mut socket).await.0, CloseCode::Normal);
    // A browser's way (it drops what comes after its own close): an empty text frame.
    let mut socket = open(&edge, "/v1/sinks:collect").await;
    send(&mut socket, json!({ "name": "only" })).await;
    socket.send(Message::text("")).await.expect("the end");
    assert_eq!(next_json(&mut socket).await["tags"], json!(["only"]));
    assert_eq!(close_of(&mut socket).await.0, CloseCode::Normal);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_close_the_socket_with_the_grpc_status_as_its_code() {
    let edge = KitchenEdge::start(Target::Native).await;
    // The backend's own error: 4000 + NOT_FOUND, its message the reason.
    let mut socket = open(&edge, "/v1/sinks:chat").await;
    send(&mut socket, json!({ "name": "ok" })).await;
    assert_eq!(next_json(&mut socket).await["name"], "ok");
    send(
        &mut socket,
        json!({ "fault": { "code": 5, "message": "no such sink" } }),
    )
    .await;
    assert_eq!(
        close_of(&mut socket).await,
        (CloseCode::from(4005), "no such sink".to_string())
    );

    // A message that is not the method's: 4000 + INVALID_ARGUMENT, naming the message.
    let mut socket = open(&edge, "/v1/sinks:chat").await;
    send(&mut socket, json!({ "name": "fine" })).await;
    assert_eq!(next_json(&mut socket).await["name"], "fine");
    send(&mut socket, json!({ "int32_value": "many" })).await;
    let (code, reason) = close_of(&mut socket).await;
    assert_eq!(code, CloseCode::from(4003), "{reason}");
    assert!(reason.starts_with("message 1: "), "{reason}");

    // Binary frames have no place here: 1003, saying what to send.
    let mut socket = open(&edge, "/v1/sinks:chat").await;
    socket
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .expect("binary");
    assert_eq!(
        close_of(&mut socket).await,
        (
            CloseCode::Unsupported,
            "send each message as a JSON text frame".to_string()
        )
    );

    // Over max_body_bytes in one message: 1009.
    let mut socket = open(&edge, "/v1/sinks:chat").await;
    send(&mut socket, json!({ "name": "x".repeat(5000) })).await;
    assert_eq!(close_of(&mut socket).await.0, CloseCode::Size);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_cancels_the_call() {
    let edge = KitchenEdge::start(Target::Native).await;
    let mut socket = open(&edge, "/v1/sinks:chat").await;
    send(&mut socket, json!({ "name": "hello" })).await;
    assert_eq!(next_json(&mut socket).await["name"], "hello");
    let before = kitchen::CHATS_CUT.load(Ordering::SeqCst);
    drop(socket);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while kitchen::CHATS_CUT.load(Ordering::SeqCst) == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backend's chat never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that sends and never reads: what waits for it is bounded (Envoy's buffer for its
/// connection, then `buffer_limit_bytes` held by the transcoder), past which its call is
/// cancelled and the socket closed with RESOURCE_EXHAUSTED, its messages until then answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_is_closed_with_what_waited_bounded() {
    let edge = KitchenEdge::start(Target::Native).await;
    let mut socket = open(&edge, "/v1/sinks:chat").await;
    let before = kitchen::CHATS_CUT.load(Ordering::SeqCst);
    let message = json!({ "name": "x".repeat(3000) }).to_string();
    // Up to 60 MB, far over what the kernel's buffers on both sides hold, until the edge gives
    // up on the client (the chat is cut) or the messages run out. A send that blocks (the edge
    // stopped reading) is retried only while the chat goes on: once it is cut, the client must
    // start reading, or Envoy's delayed close (1 s) resets the connection before the close
    // frame waiting behind the echoes is read.
    let mut sent = 0;
    let mut blocked = false;
    while sent < 20_000 && kitchen::CHATS_CUT.load(Ordering::SeqCst) == before {
        let step = if blocked {
            tokio::time::timeout(Duration::from_millis(50), socket.flush()).await
        } else {
            tokio::time::timeout(
                Duration::from_millis(50),
                socket.send(Message::text(message.clone())),
            )
            .await
        };
        match step {
            Ok(Ok(())) => {
                sent += 1;
                blocked = false;
            }
            Ok(Err(_)) => break,
            Err(_) => blocked = true,
        }
    }
    assert!(
        kitchen::CHATS_CUT.load(Ordering::SeqCst) > before,
        "the chat went on after {sent} messages"
    );
    // Reading now: the echoes that were written, then the close saying why.
    let mut echoes = 0;
    let (code, reason) = loop {
        match next(&mut socket).await {
            Message::Text(_) => echoes += 1,
            Message::Close(Some(CloseFrame { code, reason })) => break (code, reason.to_string()),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, CloseCode::from(4008), "{reason}");
    assert!(reason.starts_with("the client did not read"), "{reason}");
    assert!(
        echoes > 0 && echoes < sent,
        "{echoes} echoes of {sent} messages"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_a_socket_cannot_serve_is_refused_with_a_status() {
    let edge = KitchenEdge::start(Target::Native).await;
    // A unary method, and a server stream (SSE and NDJSON serve those): 400, saying why.
    for path in ["/v1/sinks", "/v1/sinks:feed"] {
        let (status, body) = refusal(&edge, path).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (400, Some(3)),
            "{path}: {body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("client and bidirectional streams"),
            "{body}"
        );
    }
    // No route: 404 as for any request.
    assert_eq!(refusal(&edge, "/v1/nothing:here").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wasm_build_refuses_a_websocket_with_501() {
    let edge = KitchenEdge::start(Target::Wasm).await;
    let (status, body) = refusal(&edge, "/v1/sinks:chat").await;
    assert_eq!((status, body["code"].as_i64()), (501, Some(12)), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("native build"),
        "{body}"
    );
}

/// The platform's own stream, `CreateItems`, over a WebSocket at the edge: the upgrade is a
/// request like any other to auth (no token: 401, never upgraded), and each listing is
/// answered as it is listed, on disk by then.
#[tokio::test(flavor = "multi_thread")]
async fn sellers_list_items_one_by_one_over_a_websocket_through_auth() {
    let edge = Edge::start_with(Options {
        target: Target::Native,
        ..Options::default()
    })
    .await;
    let url = edge
        .url("/catalog/items:batchCreate")
        .replacen("http", "ws", 1);
    let (status, body) = websocket_refusal(connect_websocket(&url, &[]).await);
    assert_eq!((status, body["code"].as_i64()), (401, Some(16)), "{body}");

    let token = edge.signin("goldie").await;
    let bearer = format!("Bearer {token}");
    edge.wait_for_restrictions(&bearer).await;
    // A page of an origin `cors` does not list cannot open one (CORS does not guard a
    // WebSocket); the storefront's can.
    let from = |origin: &'static str| [("authorization", bearer.as_str()), ("origin", origin)];
    let (status, body) =
        websocket_refusal(connect_websocket(&url, &from("http://evil.example")).await);
    assert_eq!((status, body["code"].as_i64()), (403, Some(7)), "{body}");
    drop(
        connect_websocket(&url, &from("http://localhost:3000"))
            .await
            .expect("the storefront's origin"),
    );
    let mut socket = connect_websocket(&url, &[("authorization", &bearer)])
        .await
        .expect("the upgrade, with a token");
    let mut ids = Vec::new();
    for (title, price) in [("Lamp", 40), ("Desk", 90)] {
        send(&mut socket, json!({ "title": title, "price": price })).await;
        let item = &next_json(&mut socket).await["item"];
        assert_eq!(
            (item["title"].as_str(), item["customer_name"].as_str()),
            (Some(title), Some("goldie")),
            "{item}"
        );
        ids.push(item["id"].as_str().expect("an id").to_string());
    }
    // The item service's refusal ends the stream: 4000 + INVALID_ARGUMENT, its message.
    send(&mut socket, json!({ "title": " ", "price": 1 })).await;
    assert_eq!(
        close_of(&mut socket).await,
        (CloseCode::from(4003), "title must not be empty".to_string())
    );
    // One access-log line for the socket, once it is over: the upgrade's 101, the call's
    // status, the caller and the cluster (the socket opened from the storefront's origin, and
    // left at once, has its own line).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let socket_lines: Vec<Value> = edge
            .access_log()
            .into_iter()
            .filter(|line| line["status"] == 101 && line["grpc_status"] == 3)
            .collect();
        if let [line] = socket_lines.as_slice() {
            break line.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{socket_lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (
            &line["grpc_method"],
            &line["grpc_status"],
            &line["upstream_cluster"]
        ),
        (
            &json!("/catalog.CatalogService/CreateItems"),
            &json!(3),
            &json!("catalog")
        ),
        "{line}"
    );
    assert!(line["subject"].is_string(), "{line}");
    // What was answered was listed.
    for id in ids {
        assert_eq!(edge.item_status(&id).await, 200);
    }
}

/// A browser's own WebSocket (headless Chromium, `tests/browser/websocket.cjs`): its messages as
/// text frames, its side ended with an empty text frame, the answer read before the close.
#[tokio::test(flavor = "multi_thread")]
async fn a_browser_streams_over_a_websocket_and_reads_the_answer_and_the_close() {
    let edge = KitchenEdge::start(Target::Native).await;
    let cases = json!([
        { "path": "/v1/sinks:collect", "send": [{ "name": "a" }, { "name": "b" }] },
        { "path": "/v1/sinks:chat", "send": [{ "name": "hi" }, { "fault": { "code": 5, "message": "gone" } }] }
    ]);
    let run = std::process::Command::new("node")
        .arg(edge_e2e::workspace_root().join("tests/browser/websocket.cjs"))
        .arg(format!("ws://127.0.0.1:{}", edge.port))
        .arg(cases.to_string())
        .env("NODE_PATH", edge_e2e::storefront_dir().join("node_modules"))
        .output()
        .expect("run node");
    assert!(
        run.status.success(),
        "Chromium: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let report: Value = serde_json::from_slice(&run.stdout).expect("the script's JSON report");
    assert_eq!(report["errors"], json!([]), "{report}");
    let [collect, chat] = [&report["results"][0], &report["results"][1]];
    assert_eq!(
        (&collect["received"][0]["tags"], &collect["code"]),
        (&json!(["a", "b"]), &json!(1000)),
        "{collect}"
    );
    assert_eq!(chat["received"][0]["name"], "hi", "{chat}");
    assert_eq!(
        (&chat["code"], &chat["reason"]),
        (&json!(4005), &json!("gone")),
        "{chat}"
    );
}
