//! proxy-wasm glue of the transcoder: matches the HTTP request to a route, builds the gRPC
//! request, calls the backend over a one-message gRPC stream and answers the client locally with
//! JSON. Calling out (rather than rewriting the request in place) is what works for every
//! method in Envoy 1.40: a GET has no body to replace, and the HTTP status cannot be set from
//! gRPC trailers on the response path. gRPC clients (`application/grpc`) pass through to the
//! router untouched.
//!
//! Requests with a body rely on Envoy's buffer filter right after this one: see
//! `on_headers` for why.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edge_core::trace;
use edge_host as host;
use edge_host::WasmHost;
use edge_transcoder::{
    BodyPlan, Failure, FinishedCall, HeadersPlan, Note, Pending, Transcoder, TranscoderConfig,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(TranscoderRoot {
        host: Rc::default(),
        transcoder: None,
    }));
}}

/// The configured transcoder, with each cluster it calls encoded once as the callout's
/// `upstream` argument (encoding it per request cost ~1.3k instructions).
struct Configured {
    transcoder: Transcoder,
    upstreams: Vec<(String, String)>,
}

impl Configured {
    fn upstream(&self, cluster: &str) -> Result<&str, String> {
        self.upstreams
            .iter()
            .find(|(name, _)| name == cluster)
            .map(|(_, upstream)| upstream.as_str())
            .ok_or_else(|| format!("no upstream for cluster {cluster}"))
    }
}

impl std::ops::Deref for Configured {
    type Target = Transcoder;
    fn deref(&self) -> &Transcoder {
        &self.transcoder
    }
}

struct TranscoderRoot {
    host: Rc<WasmHost>,
    transcoder: Option<Rc<Configured>>,
}

impl Context for TranscoderRoot {}

impl RootContext for TranscoderRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let built = host::plugin_configuration()
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<TranscoderConfig>(&bytes)
                    .map_err(|e| format!("invalid transcoder configuration: {e}"))
            })
            .and_then(Transcoder::new)
            .and_then(|transcoder| {
                let mut upstreams: Vec<(String, String)> = Vec::new();
                for cluster in transcoder.clusters() {
                    if upstreams.iter().all(|(name, _)| name != cluster) {
                        let upstream = host::grpc_upstream(cluster)
                            .map_err(|e| format!("invalid transcoder configuration: {e}"))?;
                        upstreams.push((cluster.to_string(), upstream));
                    }
                }
                Ok(Configured {
                    transcoder,
                    upstreams,
                })
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

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TranscoderFilter {
            host: self.host.clone(),
            transcoder: self.transcoder.clone(),
            pending: None,
            dispatched_at: None,
            note: Note::default(),
            response_metadata: Vec::new(),
            status_details: None,
            response_message: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct TranscoderFilter {
    host: Rc<WasmHost>,
    transcoder: Option<Rc<Configured>>,
    pending: Option<Pending>,
    /// When the backend call went out (for the access log's `upstream_ms`), by Envoy's clock.
    dispatched_at: Option<Duration>,
    /// What the access log will read about this request, recorded whenever it changes.
    note: Note,
    /// The backend's metadata named in `response_headers`, returned as HTTP headers.
    response_metadata: Vec<(String, String)>,
    /// `grpc-status-details-bin` from the backend's trailers, if any.
    status_details: Option<String>,
    /// The backend's response message, kept until the stream closes with its status.
    response_message: Option<Result<Vec<u8>, host::HostError>>,
}

impl TranscoderFilter {
    /// Records the note for the access log: one filter-state write, as a whole.
    fn record_note(&self) {
        self.note.record(&*self.host);
    }

    /// The one way this filter answers with an error (see [`Note::refuse`]).
    fn fail(&mut self, failure: Failure) -> Action {
        self.note
            .refuse(&*self.host, failure, &self.response_metadata);
        Action::Pause
    }

    fn on_headers(&mut self, transcoder: &Configured, end_of_stream: bool) -> Action {
        // Every header this needs, in one host call. Unreadable, they read as absent: the
        // request then matches no route and is refused.
        let headers = host::request_headers().unwrap_or_default();
        match transcoder.plan_headers(&headers, end_of_stream) {
            HeadersPlan::PassThrough => Action::Continue,
            HeadersPlan::Refuse { route, failure } => {
                if let Some(route) = route {
                    self.note.route(route);
                }
                self.fail(failure)
            }
            HeadersPlan::Transcode {
                route,
                pending,
                span_route,
                body_follows,
            } => {
                self.note.route(route);
                self.record_note();
                if span_route {
                    let _ = host::set_request_header(trace::ROUTE_HEADER, route.template.as_str());
                }
                if body_follows {
                    self.pending = Some(pending);
                    // Let the headers go on: proxy-wasm turns a pause here into
                    // StopAllIteration, after which the body callbacks would never come. The
                    // body is held in on_http_request_body instead, and Envoy's buffer filter,
                    // next in the chain, keeps the headers from reaching the router.
                    return Action::Continue;
                }
                let action = self.call_backend(transcoder, &pending, &[]);
                // The response arrives in on_grpc_stream_close, which needs the route.
                self.pending = Some(pending);
                action
            }
        }
    }

    fn call_backend(&mut self, transcoder: &Configured, pending: &Pending, body: &[u8]) -> Action {
        let deadline = pending.deadline();
        let call = match transcoder.backend_call(pending, &deadline, body) {
            Ok(call) => call,
            Err(failure) => return self.fail(failure),
        };
        // A stream rather than dispatch_grpc_call: Envoy hands a unary call's response
        // metadata to nobody, and the response headers and grpc-status-details-bin are needed.
        let route = call.route;
        let opened = transcoder
            .upstream(call.cluster)
            .and_then(|upstream| {
                self.open_grpc_stream(upstream, &route.service, &route.method, call.metadata)
                    .map_err(|e| format!("{e:?}"))
            })
            .and_then(|token| {
                host::grpc_send_last(token, &call.message).map_err(|e| {
                    host::grpc_cancel(token);
                    e.to_string()
                })
            });
        match opened {
            Ok(()) => {
                // Recorded with the call's outcome when it closes.
                self.note.0.upstream_cluster = call.cluster.to_string();
                self.dispatched_at = host::now();
                Action::Pause
            }
            Err(error) => {
                host::log(
                    LogLevel::Error,
                    &format!(
                        "cannot call {} on cluster {}: {error:?}",
                        route.grpc_path(),
                        call.cluster
                    ),
                );
                self.fail(Failure::backend_unreachable())
            }
        }
    }
}

impl TranscoderFilter {
    fn keep_response_metadata(&mut self, initial: bool) {
        let Some(transcoder) = self.transcoder.clone() else {
            return;
        };
        for name in &transcoder.config.response_headers {
            if let Some(value) = host::grpc_call_metadata(initial, name) {
                self.response_metadata.push((name.clone(), value));
            }
        }
        if !initial {
            self.status_details = host::grpc_call_metadata(false, "grpc-status-details-bin");
        }
    }
}

impl Context for TranscoderFilter {
    fn on_grpc_stream_initial_metadata(&mut self, _token_id: u32, _num_elements: u32) {
        self.keep_response_metadata(true);
    }

    fn on_grpc_stream_message(&mut self, _token_id: u32, message_size: usize) {
        // A unary method answers once; anything after the first message is ignored.
        if self.response_message.is_none() {
            self.response_message = Some(host::grpc_received_message(message_size));
        }
    }

    fn on_grpc_stream_trailing_metadata(&mut self, _token_id: u32, _num_elements: u32) {
        self.keep_response_metadata(false);
    }

    fn on_grpc_stream_close(&mut self, _token_id: u32, status_code: u32) {
        let elapsed = match (self.dispatched_at, host::now()) {
            (Some(sent), Some(now)) => now.saturating_sub(sent),
            _ => Duration::ZERO,
        };
        self.note.0.grpc_status = Some(status_code);
        // In milliseconds to the microsecond, as logged.
        self.note.0.upstream_ms = Some((elapsed.as_secs_f64() * 1e6).round() / 1e3);
        let (Some(transcoder), Some(pending)) = (self.transcoder.clone(), self.pending.take())
        else {
            self.record_note();
            return;
        };
        let route = match transcoder.route(pending.route) {
            Ok(route) => route,
            Err(failure) => {
                self.fail(failure);
                return;
            }
        };
        let grpc_message = if status_code == 0 {
            String::new()
        } else {
            host::grpc_message()
        };
        let response = self.response_message.take();
        let response_error = match &response {
            Some(Err(error)) => error.to_string(),
            _ => String::new(),
        };
        let call = FinishedCall {
            grpc_status: status_code,
            grpc_message: &grpc_message,
            details_bin: self.status_details.as_deref(),
            response: response.as_ref().map(|read| match read {
                Ok(body) => Ok(body.as_slice()),
                Err(_) => Err(response_error.as_str()),
            }),
            elapsed,
            timeout: pending.timeout,
        };
        match transcoder.finish_call(route, pending.response_encoding, call) {
            Ok(body) => {
                self.record_note();
                let headers: Vec<(&str, &str)> = self
                    .response_metadata
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
                    .collect();
                let content_type = pending.response_encoding.content_type();
                if let Err(error) = host::send_body(200, content_type, &body, &headers) {
                    host::log(LogLevel::Error, &format!("cannot send response: {error}"));
                    host::reset_request();
                }
            }
            Err(failure) => {
                self.fail(failure);
            }
        }
    }
}

impl HttpContext for TranscoderFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(transcoder) = self.transcoder.clone() else {
            host::reset_request();
            return Action::Pause;
        };
        self.on_headers(&transcoder, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(transcoder) = self.transcoder.clone() else {
            return Action::Continue;
        };
        match transcoder.plan_body(self.pending.is_some(), body_size, end_of_stream) {
            BodyPlan::Ignore => Action::Continue,
            BodyPlan::Wait => Action::Pause,
            BodyPlan::TooLarge => {
                self.pending = None;
                self.fail(Failure::body_too_large(transcoder.config.max_body_bytes))
            }
            BodyPlan::Call => {
                let body = match host::request_body(body_size) {
                    Ok(body) => body,
                    Err(error) => return self.fail(Failure::unreadable_body(&error.to_string())),
                };
                let Some(pending) = self.pending.take() else {
                    return Action::Continue;
                };
                let action = self.call_backend(&transcoder, &pending, &body);
                self.pending = Some(pending);
                action
            }
        }
    }
}
