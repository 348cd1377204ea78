//! Traces end to end: Envoy's OpenTelemetry tracer makes the edge span, the transcoder's backend
//! call continues it, and the services export theirs; all to a real Jaeger (as `make observe`
//! runs it), and read back through Jaeger's query API as its UI reads them.

use edge_e2e::jaeger::Jaeger;
use edge_e2e::otlp::ReceivedSpan;
use edge_e2e::{Edge, Options, MOBILE_PHONE_ID};
use platform_proto::catalog::catalog_service_client::CatalogServiceClient;
use platform_proto::catalog::GetItemRequest;
use serde_json::json;
use std::time::Duration;

/// Exporters batch (Envoy flushes every 5 s): long enough for a few flushes.
const ARRIVAL: Duration = Duration::from_secs(15);
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

async fn traced_edge(receiver: &Jaeger) -> Edge {
    let collector = receiver.address.clone();
    Edge::start_with(Options {
        customize: Box::new(move |config| {
            config.tracing.as_mut().expect("edge.json traces").collector = collector;
        }),
        service_env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint()),
            // The SDK's batch delay (5 s by default), so the test waits less.
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ],
        ..Options::default()
    })
    .await
}

fn by_service<'a>(spans: &'a [ReceivedSpan], service: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.service == service).collect()
}

fn one<'a>(spans: &'a [ReceivedSpan], service: &str) -> &'a ReceivedSpan {
    let found = by_service(spans, service);
    assert_eq!(found.len(), 1, "one {service} span in {spans:#?}");
    found[0]
}

/// The edge's server span, and the edge span the backend's is the child of: the router's
/// client span when the call went on through the router (transcoded in place, as a gRPC
/// client's), else the server span itself.
fn edge_spans<'a>(
    edge: &Edge,
    spans: &'a [ReceivedSpan],
    gateway: &str,
) -> (&'a ReceivedSpan, &'a ReceivedSpan) {
    if !edge.transcodes_in_place() {
        let span = one(spans, gateway);
        return (span, span);
    }
    let edge_spans = by_service(spans, gateway);
    assert_eq!(edge_spans.len(), 2, "{edge_spans:#?}");
    let server = edge_spans
        .iter()
        .find(|s| s.kind == SERVER)
        .expect("the edge's server span");
    let upstream = edge_spans
        .iter()
        .find(|s| s.kind == CLIENT)
        .expect("the router's client span");
    assert_eq!(upstream.parent_span_id, server.span_id);
    (server, upstream)
}

fn has_all<'a>(services: &'a [&'a str]) -> impl Fn(&[ReceivedSpan]) -> bool + 'a {
    move |spans| {
        services
            .iter()
            .all(|s| spans.iter().any(|span| span.service == *s))
    }
}

#[tokio::test]
async fn a_json_read_is_one_trace_from_the_edge_to_item_and_customer() {
    let receiver = Jaeger::start().await;
    let edge = traced_edge(&receiver).await;
    // The edge span's service: edge.json's locally, the gateway's in Istio.
    let gateway = edge.edge_span_service();

    // The client's own trace: the edge span is its child, and everything below the edge's.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let response = edge
        .http
        .get(edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}")))
        .header("traceparent", format!("00-{trace}-{client_span}-01"))
        .header("x-request-id", "traced-read-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let spans = receiver
        .trace(
            trace,
            ARRIVAL,
            has_all(&[&gateway, "catalog", "item", "customer"]),
        )
        .await;
    let (edge_span, caller) = edge_spans(&edge, &spans, &gateway);
    assert_eq!(edge_span.parent_span_id, client_span, "{edge_span:#?}");
    assert_eq!(edge_span.kind, SERVER);
    assert_eq!(edge_span.attributes["http.route"], "/catalog/items/{id}");
    assert_eq!(edge_span.attributes["http.status_code"], "200");
    assert_eq!(edge_span.attributes["guid:x-request-id"], "traced-read-1");

    let catalog = one(&spans, "catalog");
    assert_eq!(catalog.parent_span_id, caller.span_id, "{catalog:#?}");
    assert_eq!(catalog.name, "catalog.CatalogService/GetItem");
    assert_eq!(catalog.kind, SERVER);
    assert_eq!(catalog.attributes["rpc.grpc.status_code"], "0");
    for service in ["item", "customer"] {
        let span = one(&spans, service);
        assert_eq!(span.parent_span_id, catalog.span_id, "{span:#?}");
    }
    let item = one(&spans, "item");
    assert_eq!(item.name, "item.ItemService/GetItem");
    // Each call lies within its caller's.
    assert!(edge_span.start_unix_nanos <= catalog.start_unix_nanos);
    assert!(catalog.end_unix_nanos <= edge_span.end_unix_nanos);
    assert!(catalog.start_unix_nanos <= item.start_unix_nanos);
    assert!(item.end_unix_nanos <= catalog.end_unix_nanos);
}

#[tokio::test]
async fn a_trace_the_edge_starts_is_the_one_its_access_log_names() {
    let receiver = Jaeger::start().await;
    let edge = traced_edge(&receiver).await;
    // The edge span's service: edge.json's locally, the gateway's in Istio.
    let gateway = edge.edge_span_service();
    let response = edge
        .http
        .get(edge.url("/catalog/items"))
        .header("x-request-id", "traced-list-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = edge.access_log();
    let line = log
        .iter()
        .find(|l| l["request_id"] == "traced-list-1")
        .expect("logged");
    let trace = line["trace_id"].as_str().expect("a trace id").to_string();

    let spans = receiver
        .trace(&trace, ARRIVAL, has_all(&[&gateway, "catalog", "item"]))
        .await;
    let (edge_span, caller) = edge_spans(&edge, &spans, &gateway);
    assert_eq!(edge_span.parent_span_id, "", "the edge span is the root");
    assert_eq!(edge_span.attributes["http.route"], "/catalog/items");
    assert_eq!(one(&spans, "catalog").parent_span_id, caller.span_id);
}

#[tokio::test]
async fn grpc_clients_pass_through_the_router_in_the_same_trace() {
    let receiver = Jaeger::start().await;
    let edge = traced_edge(&receiver).await;
    // The edge span's service: edge.json's locally, the gateway's in Istio.
    let gateway = edge.edge_span_service();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let mut client = CatalogServiceClient::connect(edge.base_url.clone())
        .await
        .unwrap();
    let mut request = tonic::Request::new(GetItemRequest {
        id: MOBILE_PHONE_ID.into(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-b7ad6b7169203331-01").parse().unwrap(),
    );
    client.get_item(request).await.unwrap();

    let spans = receiver
        .trace(
            trace,
            ARRIVAL,
            has_all(&[&gateway, "catalog", "item", "customer"]),
        )
        .await;
    // The router's call is a span of its own (Envoy's `spawn_upstream_span`, as in Istio):
    // client → edge (server) → edge (client, to catalog) → catalog.
    let edge_spans = by_service(&spans, &gateway);
    assert_eq!(edge_spans.len(), 2, "{edge_spans:#?}");
    let server = edge_spans
        .iter()
        .find(|s| s.kind == SERVER)
        .expect("the edge's server span");
    assert_eq!(server.parent_span_id, "b7ad6b7169203331");
    let upstream = edge_spans
        .iter()
        .find(|s| s.kind == CLIENT)
        .expect("the router's client span");
    assert_eq!(upstream.parent_span_id, server.span_id);
    assert_eq!(one(&spans, "catalog").parent_span_id, upstream.span_id);
}

#[tokio::test]
async fn a_refused_request_is_the_edge_span_alone_with_the_reason() {
    let receiver = Jaeger::start().await;
    let edge = traced_edge(&receiver).await;
    // The edge span's service: edge.json's locally, the gateway's in Istio.
    let gateway = edge.edge_span_service();
    let trace = "11111111111111111111111111111111";
    let response = edge
        .http
        .post(edge.url("/catalog/items"))
        .header("traceparent", format!("00-{trace}-2222222222222222-01"))
        .header("authorization", "Bearer not-a-token")
        .json(&json!({ "title": "x", "price": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let spans = receiver.trace(trace, ARRIVAL, has_all(&[&gateway])).await;
    let edge_span = one(&spans, &gateway);
    assert_eq!(edge_span.attributes["http.status_code"], "401");
    assert_eq!(edge_span.attributes["edge.auth.reason"], "token_malformed");
    assert!(
        !edge_span.attributes.contains_key("http.route"),
        "{edge_span:#?}"
    );
    // Nothing went further: give the services' exporters (100 ms batches) time to show it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all: Vec<ReceivedSpan> = receiver.trace(trace, Duration::ZERO, |_| true).await;
    assert_eq!(all.len(), 1, "{all:#?}");
}
