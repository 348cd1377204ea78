//! What a Rust proxy-wasm filter costs Envoy before it does any work, for `make bench`'s
//! decomposition. The configuration picks the mode:
//! - `empty`: a filter that lets everything through (the fixed cost of a Wasm filter);
//! - `grpc-stream` / `http-call`: on each request, one fixed `catalog.CatalogService/GetItem`
//!   call to the `catalog` cluster, as a gRPC stream (as the transcoder calls) or as a plain
//!   HTTP/2 call with our own gRPC framing, then a fixed local reply; nothing is parsed;
//! - `probe KIND [ARG]`: at the end of each request (`on_log`, where the response is known),
//!   one kind of host call made `PROBE_CALLS` times, to count what one call costs Envoy
//!   (`edge-bench --instructions`); `probe none` is the baseline.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use edge_core::host::{GrpcRequest, Host};
use edge_host::WasmHost;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(BenchRoot { mode: Rc::new(Mode::Empty) }));
}}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Empty,
    GrpcStream,
    HttpCall,
    Probe(Probe),
}

/// Host calls `probe` mode makes per request.
const PROBE_CALLS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    None,
    Now,
    /// An attribute by its dotted path, e.g. `request.time`.
    Property(Vec<String>),
    RequestHeader(String),
    RequestHeaders,
    ResponseHeaders,
    Log,
}

impl Probe {
    fn parse(config: &str) -> Option<Probe> {
        let mut words = config.split_whitespace();
        if words.next() != Some("probe") {
            return None;
        }
        Some(match (words.next()?, words.next()) {
            ("none", None) => Probe::None,
            ("now", None) => Probe::Now,
            ("property", Some(path)) => {
                Probe::Property(path.split('.').map(String::from).collect())
            }
            ("request-header", Some(name)) => Probe::RequestHeader(name.to_string()),
            ("request-headers", None) => Probe::RequestHeaders,
            ("response-headers", None) => Probe::ResponseHeaders,
            ("log", None) => Probe::Log,
            _ => return None,
        })
    }

    fn call(&self, filter: &BenchFilter) {
        let found = match self {
            Probe::None => true,
            Probe::Now => filter.get_current_time() > std::time::UNIX_EPOCH,
            Probe::Property(path) => filter
                .get_property(path.iter().map(String::as_str).collect())
                .is_some(),
            Probe::RequestHeader(name) => filter.get_http_request_header(name).is_some(),
            Probe::RequestHeaders => !filter.get_http_request_headers().is_empty(),
            Probe::ResponseHeaders => !filter.get_http_response_headers().is_empty(),
            Probe::Log => proxy_wasm::hostcalls::log(LogLevel::Info, "probe").is_ok(),
        };
        std::hint::black_box(found);
    }
}

/// `GetItemRequest { id: "e0e58243-4138-48e5-8aba-448a8888e2ff" }` (goldie's Mobile Phone).
const ITEM_ID: &[u8] = b"e0e58243-4138-48e5-8aba-448a8888e2ff";

fn get_item_request() -> Vec<u8> {
    let mut message = vec![0x0a, ITEM_ID.len() as u8];
    message.extend_from_slice(ITEM_ID);
    message
}

struct BenchRoot {
    mode: Rc<Mode>,
}

impl Context for BenchRoot {}

impl RootContext for BenchRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        self.mode = Rc::new(
            if let Some(probe) = Probe::parse(config.trim_matches('"')) {
                Mode::Probe(probe)
            } else if config.contains("grpc-stream") {
                Mode::GrpcStream
            } else if config.contains("http-call") {
                Mode::HttpCall
            } else {
                Mode::Empty
            },
        );
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(BenchFilter {
            mode: (*self.mode).clone(),
            stream: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct BenchFilter {
    mode: Mode,
    stream: Option<u32>,
}

impl BenchFilter {
    fn reply(&self, ok: bool) {
        let (status, body): (u32, &[u8]) = if ok {
            (200, b"{}")
        } else {
            (503, b"{\"code\":14}")
        };
        self.send_http_response(
            status,
            vec![("content-type", "application/json")],
            Some(body),
        );
    }
}

impl Context for BenchFilter {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.reply(body_size > 0);
    }

    fn on_grpc_stream_message(&mut self, _token: u32, _size: usize) {
        self.reply(true);
    }

    fn on_grpc_stream_close(&mut self, _token: u32, status: u32) {
        if status != 0 {
            self.reply(false);
        }
    }
}

impl HttpContext for BenchFilter {
    fn on_log(&mut self) {
        if let Mode::Probe(probe) = &self.mode {
            for _ in 0..PROBE_CALLS {
                probe.call(self);
            }
        }
    }

    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        match self.mode {
            Mode::Empty | Mode::Probe(_) => Action::Continue,
            Mode::GrpcStream => {
                // As the transcoder calls: through the same host adapter.
                let message = get_item_request();
                match WasmHost::default().grpc_stream(GrpcRequest {
                    cluster: "catalog",
                    service: "catalog.CatalogService",
                    method: "GetItem",
                    metadata: Vec::new(),
                    messages: &[&message],
                }) {
                    Ok(token) => self.stream = Some(token),
                    Err(_) => self.reply(false),
                }
                Action::Pause
            }
            Mode::HttpCall => {
                let message = get_item_request();
                let mut framed = vec![0u8];
                framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
                framed.extend_from_slice(&message);
                let sent = self.dispatch_http_call(
                    "catalog",
                    vec![
                        (":method", "POST"),
                        (":path", "/catalog.CatalogService/GetItem"),
                        (":authority", "catalog"),
                        ("content-type", "application/grpc"),
                        ("te", "trailers"),
                    ],
                    Some(&framed),
                    vec![],
                    Duration::from_secs(5),
                );
                if sent.is_err() {
                    self.reply(false);
                }
                Action::Pause
            }
        }
    }
}
