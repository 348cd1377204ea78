//! The gRPC server every service runs: its own services plus health and reflection, on a
//! listener bound before anything is served, stopped gracefully on SIGTERM or Ctrl-C.

use crate::StartupError;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tonic::service::Routes;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, OnResponse, TraceLayer};

/// One log line per call, in a span carrying the edge's `x-request-id` and `traceparent`, so a
/// service's lines join the edge's access log by request id and trace id. When spans are
/// exported (see [`crate::init_tracing`]) the same span is the call's OpenTelemetry server span,
/// named by its gRPC method, with the caller's span as parent and the gRPC status recorded.
fn request_log() -> RequestLog {
    TraceLayer::new_for_grpc()
        .make_span_with(call_span as MakeSpan)
        .on_request(())
        .on_response(record_response as OnResponseFn)
        .on_body_chunk(())
        .on_eos(record_trailers as OnEosFn)
        .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN))
}

type MakeSpan = fn(&http::Request<tonic::body::Body>) -> tracing::Span;
type OnResponseFn = fn(&http::Response<tonic::body::Body>, Duration, &tracing::Span);
type OnEosFn = fn(Option<&http::HeaderMap>, Duration, &tracing::Span);
type RequestLog = TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::GrpcErrorsAsFailures>,
    MakeSpan,
    (),
    OnResponseFn,
    (),
    OnEosFn,
>;

fn call_span(request: &http::Request<tonic::body::Body>) -> tracing::Span {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let path = request.uri().path();
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", path));
    let span = tracing::info_span!(
        "rpc",
        method = %path,
        request_id = %header("x-request-id"),
        traceparent = %header("traceparent"),
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    crate::continue_trace(&span, request.headers());
    span
}

fn record_response(
    response: &http::Response<tonic::body::Body>,
    latency: Duration,
    span: &tracing::Span,
) {
    // A trailers-only reply (an error) has its status in the headers.
    record_grpc_status(response.headers(), span);
    DefaultOnResponse::new()
        .level(tracing::Level::INFO)
        .on_response(response, latency, span);
}

fn record_trailers(trailers: Option<&http::HeaderMap>, _duration: Duration, span: &tracing::Span) {
    if let Some(trailers) = trailers {
        record_grpc_status(trailers, span);
    }
}

/// OpenTelemetry's gRPC conventions: the code as `rpc.grpc.status_code`, and the span in error
/// for the codes that mean the server failed (not the caller's mistakes).
fn record_grpc_status(headers: &http::HeaderMap, span: &tracing::Span) {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
    else {
        return;
    };
    span.record("rpc.grpc.status_code", code);
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    if matches!(code, 2 | 4 | 12 | 13 | 14 | 15) {
        span.record("otel.status_code", "ERROR");
    }
}

/// A bound listener; binding first lets `LISTEN_ADDR=127.0.0.1:0` pick a free port.
pub struct Listener {
    listener: TcpListener,
    pub local_addr: SocketAddr,
}

impl Listener {
    pub async fn bind(addr: &str) -> Result<Self, StartupError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
        })
    }
}

/// Serves `routes` with gRPC health (reporting SERVING for `service_names`) and reflection
/// until SIGTERM or SIGINT, then drains in-flight calls. Prints `listening on ADDR` on stdout
/// once ready: tests and scripts wait for that line.
pub async fn serve(
    listener: Listener,
    service_names: &[&str],
    routes: Routes,
) -> Result<(), StartupError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in service_names {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    // Reflection describes what this server serves, in both versions (v1 and the v1alpha that
    // Postman, Evans and older grpcurl still ask for) — or, on the server that answers
    // reflection for the edge (`REFLECTION_SERVICES`, set by edgectl), what the edge serves:
    // its public services, whichever server implements them, and not this server's health.
    let edge_facing = std::env::var("REFLECTION_SERVICES")
        .ok()
        .filter(|list| !list.trim().is_empty());
    let described: Vec<&str> = match &edge_facing {
        Some(list) => list.split(',').map(str::trim).collect(),
        None => service_names.to_vec(),
    };
    let platform = crate::reflection::describing(platform_proto::FILE_DESCRIPTOR_SET, &described)?;
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(&platform)
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        if edge_facing.is_none() {
            builder = builder
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("grpc.health.v1.Health");
        }
        for name in &described {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let routes = routes
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);

    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("shutting down");
    };
    tracing::info!(addr = %listener.local_addr, "serving");
    println!("listening on {}", listener.local_addr);
    tonic::transport::Server::builder()
        .layer(request_log())
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming(listener.listener), shutdown)
        .await?;
    Ok(())
}

/// Accepted connections with Nagle's algorithm off: a gRPC response is several small writes
/// (headers, message, trailers), and Nagle plus the peer's delayed ACK can hold the last one
/// back by 40 ms.
fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
