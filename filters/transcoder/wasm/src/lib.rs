//! proxy-wasm glue of the transcoder: matches the HTTP request to a route, builds the gRPC
//! request, calls the backend with `dispatch_grpc_call` and answers the client locally with
//! JSON. Calling out (rather than rewriting the request in place) is what works for every
//! method in Envoy 1.40: a GET has no body to replace, and the HTTP status cannot be set from
//! gRPC trailers on the response path. gRPC clients (`application/grpc`) pass through to the
//! router untouched.
//!
//! Requests with a body rely on Envoy's buffer filter right after this one: see
//! `on_headers` for why.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edge_core::{properties, GrpcCode, Status};
use edge_glue as host;
use edge_transcoder::{Lookup, Transcoder, TranscoderConfig};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(TranscoderRoot { transcoder: None }));
}}

struct TranscoderRoot {
    transcoder: Option<Rc<Transcoder>>,
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
            .and_then(Transcoder::new);
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
            transcoder: self.transcoder.clone(),
            pending: None,
            dispatched_at: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// A matched request, kept until the backend answers.
struct Pending {
    route: usize,
    bindings: Vec<(String, String)>,
    query: Option<String>,
    /// Headers to pass as gRPC metadata, read at headers time: Envoy no longer exposes the
    /// request headers to a filter once it let them continue.
    metadata: Vec<(String, String)>,
}

struct TranscoderFilter {
    transcoder: Option<Rc<Transcoder>>,
    pending: Option<Pending>,
    /// When the backend call went out (for the access log's `upstream_ms`).
    dispatched_at: Option<Duration>,
}

impl TranscoderFilter {
    /// A transcoding error of `kind` (recorded for metrics), answered with `status`.
    fn fail(&self, kind: &str, status: &Status) -> Action {
        self.fail_with(status.http_status(), kind, status)
    }

    /// The same with an HTTP status the gRPC code does not imply (405, 413).
    fn fail_with(&self, http_status: u16, kind: &str, status: &Status) -> Action {
        let _ = host::set_property(&[properties::TRANSCODE_ERROR], kind.as_bytes());
        self.answer(http_status, status)
    }

    /// Answers with `status` as JSON; if even that fails, resets so the client never hangs.
    fn reply(&self, status: &Status) -> Action {
        self.answer(status.http_status(), status)
    }

    fn answer(&self, http_status: u16, status: &Status) -> Action {
        if let Err(error) = host::send_json(http_status, status.to_json().as_bytes(), &[]) {
            host::log(
                LogLevel::Error,
                &format!("cannot send local reply: {error}"),
            );
            host::reset_request();
        }
        Action::Pause
    }

    fn on_headers(&mut self, transcoder: &Transcoder, end_of_stream: bool) -> Action {
        let content_type = host::request_header("content-type").unwrap_or_default();
        if content_type.starts_with("application/grpc") {
            return Action::Continue;
        }
        let method = host::request_header(":method").unwrap_or_default();
        let path = host::request_header(":path").unwrap_or_default();
        let (route, index, bindings) = match transcoder.lookup(&method, &path) {
            Lookup::Matched {
                route,
                index,
                bindings,
            } => (route, index, bindings),
            Lookup::NotFound => {
                let shown = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
                return self.fail(
                    "no_route",
                    &Status::new(GrpcCode::NotFound, format!("no route for {method} {shown}")),
                );
            }
            Lookup::MethodNotAllowed => {
                return self.reply_method_not_allowed(&method);
            }
        };
        let _ = host::set_property(&[properties::ROUTE], route.template.as_str().as_bytes());
        let _ = host::set_property(&[properties::GRPC_METHOD], route.grpc_path().as_bytes());
        let metadata = transcoder
            .config
            .forward_headers
            .iter()
            .filter_map(|name| host::request_header(name).map(|value| (name.clone(), value)))
            .collect();
        let pending = Pending {
            route: index,
            bindings,
            query: path.split_once('?').map(|(_, q)| q.to_string()),
            metadata,
        };
        if end_of_stream {
            let action = self.call_backend(transcoder, &pending, &[]);
            // The response arrives in on_grpc_call_response, which needs the route.
            self.pending = Some(pending);
            return action;
        }
        let declared_length =
            host::request_header("content-length").and_then(|v| v.parse::<usize>().ok());
        if declared_length.is_some_and(|length| length > transcoder.config.max_body_bytes) {
            return self.reply_too_large(transcoder);
        }
        self.pending = Some(pending);
        // Let the headers go on: proxy-wasm turns a pause here into StopAllIteration, after
        // which the body callbacks would never come. The body is held in
        // on_http_request_body instead, and Envoy's buffer filter, next in the chain, keeps
        // the headers from reaching the router.
        Action::Continue
    }

    fn reply_method_not_allowed(&self, method: &str) -> Action {
        let message = format!("method {method} is not allowed on this path");
        self.fail_with(
            405,
            "method_not_allowed",
            &Status::new(GrpcCode::Unimplemented, message),
        )
    }

    fn reply_too_large(&self, transcoder: &Transcoder) -> Action {
        let message = format!(
            "request body exceeds {} bytes",
            transcoder.config.max_body_bytes
        );
        self.fail_with(
            413,
            "body_too_large",
            &Status::new(GrpcCode::ResourceExhausted, message),
        )
    }

    fn call_backend(&mut self, transcoder: &Transcoder, pending: &Pending, body: &[u8]) -> Action {
        let Some(route) = transcoder.routes().get(pending.route) else {
            return self.reply(&Status::new(GrpcCode::Internal, "route table changed"));
        };
        let message = match transcoder.request_message(
            route,
            &pending.bindings,
            pending.query.as_deref(),
            body,
        ) {
            Ok(message) => message,
            Err(status) => return self.fail("bad_request", &status),
        };
        let metadata: Vec<(&str, &[u8])> = pending
            .metadata
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        match self.dispatch_grpc_call(
            &route.upstream,
            &route.service,
            &route.method,
            metadata,
            Some(&message),
            Duration::from_millis(transcoder.config.timeout_ms),
        ) {
            Ok(_) => {
                let _ =
                    host::set_property(&[properties::UPSTREAM_CLUSTER], route.cluster.as_bytes());
                self.dispatched_at = self
                    .get_current_time()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok();
                Action::Pause
            }
            Err(error) => {
                host::log(
                    LogLevel::Error,
                    &format!(
                        "cannot call {} on cluster {}: {error:?}",
                        route.grpc_path(),
                        route.cluster
                    ),
                );
                self.fail(
                    "backend_unreachable",
                    &Status::new(GrpcCode::Unavailable, "the backend is not reachable"),
                )
            }
        }
    }
}

impl Context for TranscoderFilter {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        let _ = host::set_property(
            &[properties::GRPC_STATUS],
            status_code.to_string().as_bytes(),
        );
        if let (Some(sent), Ok(now)) = (
            self.dispatched_at,
            self.get_current_time()
                .duration_since(std::time::UNIX_EPOCH),
        ) {
            let upstream_ms = now.saturating_sub(sent).as_secs_f64() * 1000.0;
            let _ = host::set_property(
                &[properties::UPSTREAM_MS],
                format!("{upstream_ms:.3}").as_bytes(),
            );
        }
        let Some(transcoder) = self.transcoder.clone() else {
            return;
        };
        let Some(pending) = self.pending.take() else {
            return;
        };
        let route = transcoder.routes().get(pending.route);
        let outcome = match (status_code, route) {
            (0, Some(route)) => host::grpc_call_response_body(response_size)
                .map_err(|e| {
                    Status::new(
                        GrpcCode::Internal,
                        format!("cannot read backend response: {e}"),
                    )
                })
                .and_then(|body| transcoder.response_json(route, &body)),
            (0, None) => Err(Status::new(GrpcCode::Internal, "route table changed")),
            (code, _) => {
                let (_, message) = self.get_grpc_status();
                Err(Status::new(
                    GrpcCode::from_number(code),
                    backend_message(message),
                ))
            }
        };
        match outcome {
            Ok(json) => {
                if let Err(error) = host::send_json(200, &json, &[]) {
                    host::log(LogLevel::Error, &format!("cannot send response: {error}"));
                    host::reset_request();
                }
            }
            Err(status) => {
                if status_code == 0 {
                    let _ = host::set_property(&[properties::TRANSCODE_ERROR], b"bad_response");
                }
                self.reply(&status);
            }
        }
    }
}

/// The backend's message as users should read it: `grpc-message` is percent-encoded on the
/// wire, and Envoy may append a `{details}` suffix (e.g. `{via_upstream}`) of its own.
fn backend_message(message: Option<String>) -> String {
    let message = message.unwrap_or_default();
    let envoy_details = |at: usize| {
        message[at + 1..message.len() - 1]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_')
    };
    let trimmed = match message.rfind('{') {
        Some(at) if at > 0 && message.ends_with('}') && envoy_details(at) => {
            message[..at].trim_end()
        }
        _ => message.trim_end(),
    };
    edge_core::percent_decode(trimmed, false).unwrap_or_else(|| trimmed.to_string())
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
        if self.pending.is_none() {
            return Action::Continue;
        }
        if body_size > transcoder.config.max_body_bytes {
            self.pending = None;
            return self.reply_too_large(&transcoder);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = match host::request_body(body_size) {
            Ok(body) => body,
            Err(error) => {
                return self.reply(&Status::new(
                    GrpcCode::Internal,
                    format!("cannot read request body: {error}"),
                ))
            }
        };
        let Some(pending) = self.pending.take() else {
            return Action::Continue;
        };
        let action = self.call_backend(&transcoder, &pending, &body);
        self.pending = Some(pending);
        action
    }
}
