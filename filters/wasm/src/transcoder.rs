//! proxy-wasm glue of the transcoder: forwards Envoy's callbacks to one
//! [`edge_transcoder::Exchange`] per request, which matches the HTTP request to a route,
//! calls the backend over a gRPC stream and answers the client locally with JSON. Calling out
//! (rather than rewriting the request in place) is what works for every method in Envoy 1.40:
//! a GET has no body to replace, and the HTTP status cannot be set from gRPC trailers on the
//! response path. The exception is a server stream with a request body, written as NDJSON or
//! SSE: it is rewritten into the gRPC call and sent on through the router, and its response
//! rewritten as it streams back (each piece held until the root's next tick resumes it; see
//! [`edge_host::hold_response`]). Every callback `enter`s the host with its stream, so that a
//! reset waits for that tick too instead of re-entering the filter. gRPC clients (`application/grpc`) pass through to the
//! router untouched.
//!
//! Requests with a body rely on Envoy's buffer filter right after this one: see
//! `Exchange::on_request_headers` for why.

use edge_core::host::{Flow, Host};
use edge_host as host;
use edge_host::WasmHost;
use edge_transcoder::{Exchange, ResponseFlow, Transcoder, TranscoderConfig};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;

pub(crate) const ROOT_ID: &str = "transcoder";

pub(crate) fn root_context() -> Box<dyn RootContext> {
    Box::new(TranscoderRoot {
        host: Rc::default(),
        transcoder: None,
    })
}

struct TranscoderRoot {
    host: Rc<WasmHost>,
    transcoder: Option<Rc<Transcoder>>,
}

impl Context for TranscoderRoot {}

impl RootContext for TranscoderRoot {
    fn on_tick(&mut self) {
        host::run_deferred();
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let built = host::plugin_configuration()
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<TranscoderConfig>(&bytes)
                    .map_err(|e| format!("invalid transcoder configuration: {e}"))
            })
            .and_then(Transcoder::new)
            .and_then(|transcoder| {
                host::check_clusters(transcoder.clusters())
                    .map_err(|e| format!("invalid transcoder configuration: {e}"))?;
                Ok(transcoder)
            });
        match built {
            Ok(transcoder) => {
                host::log(
                    LogLevel::Info,
                    &format!("transcoding {} HTTP route(s)", transcoder.routes().len()),
                );
                self.transcoder = Some(Rc::new(transcoder));
                true
            }
            Err(error) => {
                host::log(LogLevel::Error, &error);
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TranscoderFilter {
            context_id,
            host: self.host.clone(),
            transcoder: self.transcoder.clone(),
            exchange: Exchange::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct TranscoderFilter {
    context_id: u32,
    host: Rc<WasmHost>,
    /// `None` only when Envoy refused the configuration.
    transcoder: Option<Rc<Transcoder>>,
    exchange: Exchange,
}

fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

impl TranscoderFilter {
    fn respond(&self, flow: ResponseFlow) -> Action {
        match flow {
            ResponseFlow::Continue => Action::Continue,
            ResponseFlow::Hold => {
                host::hold_response(self.context_id);
                Action::Pause
            }
            ResponseFlow::HoldThenReset => {
                host::hold_response(self.context_id);
                host::reset_after_flush(self.context_id);
                Action::Pause
            }
            // Only for a transcoder built `in_place`, which this host cannot be.
            ResponseFlow::Wait => Action::Pause,
        }
    }
}

impl Context for TranscoderFilter {
    fn on_grpc_stream_initial_metadata(&mut self, _token_id: u32, num_elements: u32) {
        if let Some(transcoder) = &self.transcoder {
            self.exchange.on_response_metadata(
                self.host.enter(self.context_id),
                transcoder,
                true,
                num_elements as usize,
            );
        }
    }

    fn on_grpc_stream_message(&mut self, _token_id: u32, message_size: usize) {
        if let Some(transcoder) = &self.transcoder {
            self.exchange.on_response_message(
                self.host.enter(self.context_id),
                transcoder,
                message_size,
            );
        }
    }

    fn on_grpc_stream_trailing_metadata(&mut self, _token_id: u32, num_elements: u32) {
        if let Some(transcoder) = &self.transcoder {
            self.exchange.on_response_metadata(
                self.host.enter(self.context_id),
                transcoder,
                false,
                num_elements as usize,
            );
        }
    }

    fn on_grpc_stream_close(&mut self, _token_id: u32, status_code: u32) {
        if let Some(transcoder) = &self.transcoder {
            self.exchange
                .on_close(self.host.enter(self.context_id), transcoder, status_code);
        }
    }
}

impl HttpContext for TranscoderFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(transcoder) = &self.transcoder else {
            // Unconfigured means Envoy refused our configuration: never pass traffic untranscoded.
            self.host.enter(self.context_id).reset_request();
            return Action::Pause;
        };
        action(self.exchange.on_request_headers(
            self.host.enter(self.context_id),
            transcoder,
            end_of_stream,
        ))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(transcoder) = &self.transcoder else {
            return Action::Continue;
        };
        let flow = self.exchange.on_response_headers(
            self.host.enter(self.context_id),
            transcoder,
            end_of_stream,
        );
        self.respond(flow)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(transcoder) = &self.transcoder else {
            return Action::Continue;
        };
        let resumed = !host::is_held(self.context_id);
        let flow = self.exchange.on_response_body(
            self.host.enter(self.context_id),
            transcoder,
            body_size,
            end_of_stream,
            resumed,
        );
        self.respond(flow)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        let Some(transcoder) = &self.transcoder else {
            return Action::Continue;
        };
        let flow = self
            .exchange
            .on_response_trailers(self.host.enter(self.context_id), transcoder);
        self.respond(flow)
    }

    fn on_log(&mut self) {
        self.exchange.on_end(self.host.enter(self.context_id));
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(transcoder) = &self.transcoder else {
            return Action::Continue;
        };
        action(self.exchange.on_request_body(
            self.host.enter(self.context_id),
            transcoder,
            body_size,
            end_of_stream,
        ))
    }
}
