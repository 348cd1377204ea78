//! proxy-wasm glue of the access log: in `on_log`, which Envoy calls for every request
//! (local replies from auth or the transcoder included), gathers the request's attributes and
//! writes one JSON line to Envoy's log, or buffers it for the collector (shipped from the root
//! context's timer by `edge_access_log::shipping`).

use edge_access_log::attributes::{self, Attributes};
use edge_access_log::request::{arrive, depart, Arrival};
use edge_access_log::shipping::Shipping;
use edge_access_log::{AccessLogConfig, LineBuffer};
use edge_core::host::Host;
use edge_host as host;
use edge_host::WasmHost;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

pub(crate) const ROOT_ID: &str = "access-log";

pub(crate) fn root_context() -> Box<dyn RootContext> {
    Box::new(AccessLogRoot {
        config: Rc::default(),
        host: Rc::default(),
        requests_seen: Rc::default(),
        buffer: Rc::default(),
        shipping: Shipping::default(),
        attributes: None,
    })
}

struct AccessLogRoot {
    config: Rc<AccessLogConfig>,
    host: Rc<WasmHost>,
    /// Mixed into generated span ids so that they differ between requests.
    requests_seen: Rc<RefCell<u64>>,
    /// Lines waiting for the collector (only used when one is configured).
    buffer: Rc<RefCell<LineBuffer>>,
    /// The batch in flight to the collector, if any.
    shipping: Shipping,
    /// `attributes::EXPRESSION`, compiled by Envoy for this root context.
    attributes: Option<host::Expression>,
}

impl Context for AccessLogRoot {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, _response_size: usize) {
        self.shipping.on_answer(&*self.host, token_id, status_code);
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
            .and_then(refuse_filter_state)
        {
            Ok(config) => {
                if let Some(collector) = &config.collector {
                    *self.buffer.borrow_mut() = LineBuffer::new(collector.max_buffered_lines);
                    let period = Duration::from_millis(collector.flush_interval_ms);
                    if let Err(error) = host::set_tick_period(period) {
                        host::log(
                            LogLevel::Error,
                            &format!("cannot schedule shipping to the collector: {error}"),
                        );
                        return false;
                    }
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
        if let Some(collector) = &self.config.collector {
            self.shipping
                .flush(&*self.host, collector, &mut self.buffer.borrow_mut());
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AccessLog {
            arrival: None,
            config: self.config.clone(),
            host: self.host.clone(),
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
    /// What the request looked like when it arrived (`None`: Envoy answered before the
    /// filters saw it).
    arrival: Option<Arrival>,
    config: Rc<AccessLogConfig>,
    host: Rc<WasmHost>,
    requests_seen: Rc<RefCell<u64>>,
    buffer: Rc<RefCell<LineBuffer>>,
    attributes: Option<host::Expression>,
}

impl Context for AccessLog {}

impl HttpContext for AccessLog {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let seen = {
            let mut seen = self.requests_seen.borrow_mut();
            *seen = seen.wrapping_add(1);
            *seen
        };
        self.arrival = Some(arrive(&*self.host, &self.config, seen));
        Action::Continue
    }

    fn on_log(&mut self) {
        // Host calls are what this costs: the request's headers come from the snapshot, and
        // Envoy's attributes with the other filters' notes (`edge_core::notes`) from one
        // expression. Whatever cannot be read is left out; the line is still written.
        let arrival = self.arrival.take().unwrap_or_else(|| Arrival {
            // Envoy answered before the filters saw the request.
            headers: self.host.request_headers().unwrap_or_default(),
            ..Arrival::default()
        });
        // Unreadable, it leaves Envoy's and the other filters' fields out.
        let attributes = self
            .attributes
            .and_then(|expression| expression.evaluate().ok())
            .map(|list| Attributes::from_elements(&host::list_elements(&list)))
            .unwrap_or_default();
        depart(
            &*self.host,
            &self.config,
            &arrival,
            attributes,
            &mut self.buffer.borrow_mut(),
        );
    }
}

/// A line handed to Envoy's access logs would be set after they ran: Envoy logs a stream
/// before it calls a Wasm filter's `on_log`. Refused, so that no line is lost.
fn refuse_filter_state(config: AccessLogConfig) -> Result<AccessLogConfig, String> {
    match &config.filter_state_key {
        Some(_) => Err("filter_state_key needs the native module: Envoy runs its access logs before a Wasm filter's on_log".to_string()),
        None => Ok(config),
    }
}
