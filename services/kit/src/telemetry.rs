//! Logs, and spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: each call a server span
//! whose parent is the caller's W3C `traceparent` (the edge's span, or the calling service's),
//! and each outgoing call carrying the current span on. Off by default; when off, no exporter,
//! no OpenTelemetry layer and no header work on any call.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Set once, when spans are exported.
static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();

/// Flushes the spans still buffered when the service stops (drop it after `serve` returns).
#[must_use = "spans buffered at exit are lost unless this lives until the server stops"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("flushing spans at exit: {e}");
            }
        }
    }
}

/// Logs to stderr (`RUST_LOG` filters, default `info`); stdout is kept for the one line that
/// says where the server listens. With `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g.
/// `http://127.0.0.1:4317`), spans also go there over OTLP/gRPC as `service_name` (or
/// `OTEL_SERVICE_NAME`). Call inside the Tokio runtime: the exporter's channel lives on it.
pub fn init_tracing(service_name: &str) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let endpoint = crate::setting("OTEL_EXPORTER_OTLP_ENDPOINT", "");
    let provider = if endpoint.is_empty() {
        None
    } else {
        match exporter(
            &endpoint,
            &crate::setting("OTEL_SERVICE_NAME", service_name),
        ) {
            Ok(provider) => Some(provider),
            Err(e) => {
                // Tracing is diagnostics: a bad endpoint must not stop the service.
                eprintln!("not exporting spans to {endpoint}: {e}");
                None
            }
        }
    };
    let spans = provider.as_ref().map(|provider| {
        let _ = PROPAGATOR.set(TraceContextPropagator::new());
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name.to_string()))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(spans)
        .init();
    Telemetry { provider }
}

fn exporter(
    endpoint: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_string())
                .build(),
        )
        .build())
}

/// Makes `span` the child of the caller's span, when the request carries one and spans are
/// exported.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if let Some(propagator) = PROPAGATOR.get() {
        let parent = propagator.extract(&HeaderExtractor(headers));
        let _ = span.set_parent(parent);
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Puts the current span (the call being served) on outgoing calls as `traceparent`, so the
/// called service's span is its child.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateTrace;

impl tonic::service::Interceptor for PropagateTrace {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(propagator) = PROPAGATOR.get() {
            let context = tracing::Span::current().context();
            propagator.inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
        }
        Ok(request)
    }
}

/// A channel to another service whose calls continue the current trace.
pub type TracedChannel = InterceptedService<Channel, PropagateTrace>;

pub fn traced(channel: Channel) -> TracedChannel {
    InterceptedService::new(channel, PropagateTrace)
}
