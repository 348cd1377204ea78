//! proxy-wasm glue of the access log: in `on_log`, which Envoy calls for every request
//! (local replies from auth or the transcoder included), gathers the request's attributes and
//! writes one JSON line to Envoy's log.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edge_access_log::attributes::{self, Attributes};
use edge_access_log::metrics::{samples, Sample};
use edge_access_log::{new_traceparent, AccessLogConfig, LineBuffer, LogBatch, Record, Timing};
use edge_core::Headers;
use edge_host as host;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(AccessLogRoot {
        config: Rc::default(),
        metrics: Rc::default(),
        requests_seen: Rc::default(),
        buffer: Rc::default(),
        shipping: None,
        attributes: None,
    }));
}}

struct AccessLogRoot {
    config: Rc<AccessLogConfig>,
    metrics: Rc<RefCell<host::Metrics>>,
    /// Mixed into generated span ids so that they differ between requests.
    requests_seen: Rc<RefCell<u64>>,
    /// Lines waiting for the collector (only used when one is configured).
    buffer: Rc<RefCell<LineBuffer>>,
    /// Lines in the batch being shipped, if one is in flight.
    shipping: Option<usize>,
    /// `attributes::EXPRESSION`, compiled by Envoy for this root context.
    attributes: Option<host::Expression>,
}

const SHIPPED: &str = edge_access_log::metrics::SHIPPED_LINES;
const DROPPED: &str = edge_access_log::metrics::DROPPED_LINES;

impl AccessLogRoot {
    fn count(&self, name: &str, lines: usize) {
        let mut metrics = self.metrics.borrow_mut();
        for _ in 0..lines {
            metrics.increment(name);
        }
    }

    /// Sends the oldest lines as one batch, unless a batch is still in flight.
    fn flush(&mut self) {
        let Some(collector) = self.config.collector.clone() else {
            return;
        };
        if self.shipping.is_some() || self.buffer.borrow().is_empty() {
            return;
        }
        let lines = self.buffer.borrow_mut().take(collector.batch_lines);
        let count = lines.len();
        let message = prost::Message::encode_to_vec(&LogBatch { lines });
        let sent = host::grpc_upstream(&collector.cluster)
            .map_err(|e| format!("{e:?}"))
            .and_then(|upstream| {
                self.dispatch_grpc_call(
                    &upstream,
                    "telemetry.LogCollector",
                    "Ship",
                    Vec::new(),
                    Some(&message),
                    Duration::from_millis(collector.timeout_ms),
                )
                .map_err(|e| format!("{e:?}"))
            });
        match sent {
            Ok(_) => self.shipping = Some(count),
            Err(error) => {
                host::log(LogLevel::Warn, &format!("cannot ship access log: {error}"));
                self.count(DROPPED, count);
            }
        }
    }
}

impl Context for AccessLogRoot {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, _response_size: usize) {
        let count = self.shipping.take().unwrap_or_default();
        // A failed batch is dropped, not retried: memory stays bounded while the collector is down.
        self.count(if status_code == 0 { SHIPPED } else { DROPPED }, count);
    }
}

impl RootContext for AccessLogRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        if self.attributes.is_none() {
            match host::Expression::create(attributes::EXPRESSION) {
                Ok(expression) => self.attributes = Some(expression),
                Err(error) => {
                    // Envoy builds without CEL (expr_create) cannot run this filter.
                    host::log(
                        LogLevel::Error,
                        &format!("cannot compile the access log's attribute expression: {error}"),
                    );
                    return false;
                }
            }
        }
        match host::plugin_configuration()
            .map_err(|e| e.to_string())
            .and_then(|bytes| AccessLogConfig::from_json(&bytes))
        {
            Ok(config) => {
                if let Some(collector) = &config.collector {
                    *self.buffer.borrow_mut() = LineBuffer::new(collector.max_buffered_lines);
                    self.set_tick_period(Duration::from_millis(collector.flush_interval_ms));
                }
                self.config = Rc::new(config);
                true
            }
            Err(error) => {
                host::log(LogLevel::Error, &error);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.flush();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AccessLog {
            started: None,
            request: None,
            traceparent: None,
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            requests_seen: self.requests_seen.clone(),
            buffer: self.buffer.clone(),
            attributes: self.attributes,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AccessLog {
    /// Envoy's clock when the request's headers arrived (the filter is first in the chain).
    started: Option<Duration>,
    /// The request's headers as they arrived: the line logs the client's request, and one
    /// snapshot serves both the trace this filter may start and the line.
    request: Option<Headers>,
    /// The `traceparent` this filter started, if the request came without one.
    traceparent: Option<String>,
    config: Rc<AccessLogConfig>,
    metrics: Rc<RefCell<host::Metrics>>,
    requests_seen: Rc<RefCell<u64>>,
    buffer: Rc<RefCell<LineBuffer>>,
    attributes: Option<host::Expression>,
}

impl Context for AccessLog {}

/// Envoy encodes integer attributes as 8 little-endian bytes.
fn int_property(path: &[&str]) -> Option<u64> {
    let bytes: [u8; 8] = host::property(path)?.as_slice().try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

impl HttpContext for AccessLog {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Envoy's clock is one cheap host call; the `request.time` and `request.duration`
        // attributes would be two property reads, each far dearer.
        self.started = host::now();
        // Unreadable headers are logged as absent (and a trace is started), as before.
        let headers = host::request_headers().unwrap_or_default();
        // First in the chain: a trace started here reaches the backend through the
        // transcoder's forwarded headers or the router.
        if self.config.generate_traceparent && !headers.contains("traceparent") {
            let seen = {
                let mut seen = self.requests_seen.borrow_mut();
                *seen = seen.wrapping_add(1);
                *seen
            };
            // Any value that differs between requests will do.
            let parent = new_traceparent(
                headers.get("x-request-id").unwrap_or_default(),
                seen ^ self.started.map_or(0, |now| now.as_nanos() as u64),
            );
            let _ = host::set_request_header("traceparent", &parent);
            self.traceparent = Some(parent);
        }
        self.request = Some(headers);
        Action::Continue
    }

    fn on_log(&mut self) {
        // Host calls are what this costs: the request's headers come from the snapshot, and
        // Envoy's attributes with the other filters' notes (`edge_core::notes`) from one
        // expression. Whatever cannot be read is left out; the line is still written.
        let headers = match self.request.take() {
            Some(headers) => headers,
            // Envoy answered before the filters saw the request.
            None => host::request_headers().unwrap_or_default(),
        };
        // Without the headers callback (Envoy answered before the filters saw the request),
        // Envoy's own attributes.
        let timing = match (self.started, host::now()) {
            (Some(started), Some(now)) => Timing {
                started_unix_nanos: started.as_nanos() as u64,
                duration_nanos: now.saturating_sub(started).as_nanos() as u64,
            },
            _ => Timing {
                started_unix_nanos: int_property(&["request", "time"]).unwrap_or_default(),
                duration_nanos: int_property(&["request", "duration"]).unwrap_or_default(),
            },
        };
        // Unreadable, it leaves Envoy's and the other filters' fields out.
        let attributes = self
            .attributes
            .and_then(|expression| expression.evaluate().ok())
            .map(|list| Attributes::from_elements(&host::list_elements(&list)))
            .unwrap_or_default();
        let record = Record::of(
            &self.config,
            &headers,
            attributes,
            timing,
            self.traceparent.as_deref(),
        );
        let line = record.to_json();
        if self.config.collector.is_none() {
            host::log(LogLevel::Info, &line);
        } else if !self.buffer.borrow_mut().push(line) {
            self.metrics.borrow_mut().increment(DROPPED);
        }
        let mut metrics = self.metrics.borrow_mut();
        for sample in samples(&record) {
            match sample {
                Sample::Count(name) => metrics.increment(&name),
                Sample::Observe(name, value) => metrics.record(&name, value),
            }
        }
    }
}
