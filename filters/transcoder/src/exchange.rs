//! One request's exchange with the transcoder, driven by the host's callbacks: the request's
//! headers and body, then the backend's answer in parts. Everything that decides lives here
//! (over [`Host`]); the glue of a target only forwards its callbacks.

use crate::stream::Framing;
use crate::websocket::Socket;
use crate::{BodyPlan, Encoding, Failure, FinishedCall, HeadersPlan, Note, Pending, Transcoder};
use edge_core::grpc;
use edge_core::host::{Flow, GrpcRequest, Host, HostError, Level};
use edge_core::trace;
use edge_core::{Client, GrpcCode, Headers, LocalReply, Status};
use std::time::Duration;

/// What the transcoder keeps about one request between callbacks.
#[derive(Debug, Default)]
pub struct Exchange {
    pending: Option<Pending>,
    /// When the backend call went out (for the access log's `upstream_ms`), by the host's clock.
    dispatched_at: Option<Duration>,
    /// What the access log will read about this request, recorded whenever it changes.
    note: Note,
    /// The backend's metadata named in `response_headers`, returned as HTTP headers.
    response_metadata: Vec<(String, String)>,
    /// `grpc-status-details-bin` from the backend's trailers, if any.
    status_details: Option<String>,
    /// The backend's response messages, kept until the call closes with its status: one for a
    /// unary method, every one (up to `max_stream_bytes`) for a server stream.
    messages: Vec<Vec<u8>>,
    received_bytes: usize,
    /// Why a response message could not be read, if one could not.
    unreadable: Option<HostError>,
    /// The backend call, while it is open.
    call: Option<u32>,
    /// Trailing metadata arrived with entries: the backend's own status, not Envoy's reset.
    trailers: bool,
    /// A stream sent through the router, while its response comes back.
    live: Option<Live>,
    /// A call sent through the router whose response is held whole.
    whole: Option<Whole>,
    /// A gRPC call with JSON messages, while its response comes back.
    grpc_json: Option<GrpcJsonCall>,
    /// A WebSocket carrying a stream, from its upgrade on (the glue opens and carries it).
    socket: Option<Socket>,
}

/// A gRPC call with JSON messages (`application/grpc+json`) on its way through the router.
#[derive(Debug)]
struct GrpcJsonCall {
    method: prost_reflect::MethodDescriptor,
    /// The start of a response message whose rest has not come yet.
    pending: Vec<u8>,
}

/// A server stream sent through Envoy's router, its response rewritten as it comes back.
#[derive(Debug)]
struct Live {
    framing: Framing,
    /// The start of a message whose rest has not come yet.
    partial: Vec<u8>,
    /// What this filter wrote that Envoy still holds (not resumed since): it is at the front
    /// of the next callback's body, before the new bytes.
    held: Vec<u8>,
    /// Messages written so far.
    written: usize,
    /// A message could not be rendered: the stream's end is written, the rest dropped.
    ended: bool,
}

/// A unary call (or a raw stream, until its first part) sent through Envoy's router: its
/// response is held (headers stopped, the body taken in) until it ends, then rewritten in
/// place, so that it passes the filters that encode after this one (CORS among them) as any
/// response does.
#[derive(Debug, Default)]
struct Whole {
    /// The response's gRPC frames so far.
    frames: Vec<u8>,
    /// The answer is written (the response outgrew the bound): what still comes is dropped.
    answered: bool,
    /// The HTTP status of an answer that is not gRPC: Envoy's own (no healthy upstream, the
    /// route's timeout), as Envoy renders it for a request that was JSON.
    not_grpc: Option<u16>,
    /// The gRPC headers the response came with, removed when it is rewritten (removing one
    /// that is not there costs a host call all the same).
    grpc_headers: Vec<&'static str>,
    /// The `:status` the response came with: set again only when the answer's differs.
    status: Option<u16>,
    /// A raw stream (`google.api.HttpBody` messages, a download) whose first message came:
    /// the headers went with its content type, and each message's bytes go on as they come.
    raw_live: bool,
}

/// Whether the request's call is a server stream of `google.api.HttpBody` messages.
fn raw_stream(transcoder: &Transcoder, pending: Option<&Pending>) -> bool {
    pending
        .and_then(|pending| transcoder.route(pending.route).ok())
        .is_some_and(|route| route.raw_response && route.server_streaming)
}

/// Where a held response is rewritten: Envoy takes a body differently in each callback.
#[derive(Debug, Clone, Copy)]
enum At {
    /// The headers of a trailers-only answer (no body came: one is added).
    Headers,
    /// The last piece of the body, no trailers following.
    Body,
    Trailers,
}

/// In the trailers' callback of a held response: its gRPC `trailers` go.
fn clean_trailers<H: Host>(host: &H, at: At, trailers: &Headers) {
    if let At::Trailers = at {
        for name in &GRPC_RESPONSE_HEADERS[..3] {
            if trailers.get(name).is_some() {
                let _ = host.remove_response_trailer(name);
            }
        }
    }
}

/// Makes the request a gRPC call of `route` (see [`Pending::grpc_request_headers`]).
fn rewrite_request_headers<H: Host>(
    host: &H,
    route: &crate::Route,
    pending: &Pending,
) -> Result<(), Failure> {
    let (set, remove) = pending.grpc_request_headers(route);
    set.iter()
        .try_for_each(|(name, value)| host.set_request_header(name, value))
        .and_then(|()| {
            remove
                .iter()
                .try_for_each(|name| host.remove_request_header(name))
        })
        .map_err(|error| {
            Failure::host_refused(
                "rewrite the request's headers for the backend",
                &error.to_string(),
            )
        })
}

/// The gRPC headers and trailers of a held response: not the client's.
const GRPC_RESPONSE_HEADERS: [&str; 5] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-encoding",
    "grpc-accept-encoding",
];

/// What the glue does after a response callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFlow {
    Continue,
    /// Pause, and resume the response as soon as the callback has returned: Envoy then sends
    /// what the filter holds, and the filter can still add to the body when the trailers come.
    Hold,
    /// Hold (the stream's last entry is written), then reset the stream once that is sent: the
    /// backend is still sending, and a Wasm filter cannot end a response early.
    HoldThenReset,
    /// Keep what came (the headers stopped; a body piece, taken in, dropped) until the answer
    /// is written in place at the response's end.
    Wait,
}

/// Room kept in Envoy's buffer for a live stream's last entry (a status, compacted to fit).
const END_RESERVE_BYTES: usize = 1024;

impl Exchange {
    /// A request to transcode whose body is still to come (nothing has been sent for it
    /// yet): a host that can hold the headers and still read the body (a native filter;
    /// proxy-wasm's pause stops the body too) holds them until then, so that no buffer filter
    /// has to after it.
    pub fn awaits_body(&self) -> bool {
        self.pending.is_some() && self.whole.is_none() && self.live.is_none() && self.call.is_none()
    }

    /// The request's headers (`end_of_stream`: no body follows).
    pub fn on_request_headers<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
        end_of_stream: bool,
    ) -> Flow {
        // Every header this needs, in one host call. Unreadable, they read as absent: the
        // request then matches no route and is refused.
        let headers = host.request_headers().unwrap_or_default();
        match transcoder.plan_headers(&headers, end_of_stream) {
            HeadersPlan::PassThrough => Flow::Continue,
            HeadersPlan::GrpcJson(method) => {
                // The body changes size; the backend reads protobuf.
                let rewritten = host
                    .set_request_header("content-type", "application/grpc")
                    .and_then(|()| host.remove_request_header("content-length"));
                if let Err(error) = rewritten {
                    return self.refuse_grpc(
                        host,
                        Status::new(
                            GrpcCode::Internal,
                            format!("cannot rewrite the request's headers: {error}"),
                        ),
                    );
                }
                self.grpc_json = Some(GrpcJsonCall {
                    method,
                    pending: Vec::new(),
                });
                // As for any body: held in `on_request_body`, the headers by the buffer filter.
                Flow::Continue
            }
            HeadersPlan::Describe(document) => {
                if let Err(error) =
                    host.send_response(200, "application/json", document.as_bytes(), &[])
                {
                    host.log(Level::Error, &format!("cannot send response: {error}"));
                    host.reset_request();
                }
                Flow::Pause
            }
            HeadersPlan::Socket {
                route,
                pending,
                accept,
            } => {
                self.note.route(route);
                self.socket = Some(Socket::new(
                    pending,
                    accept,
                    transcoder.config.max_body_bytes,
                    transcoder.config.buffer_limit_bytes,
                ));
                // Nothing goes on to the router: the glue opens the call and answers the
                // upgrade itself.
                Flow::Pause
            }
            HeadersPlan::Refuse { route, failure } => {
                if let Some(route) = route {
                    self.note.route(route);
                }
                self.fail(host, failure)
            }
            HeadersPlan::Transcode {
                route,
                pending,
                span_route,
                body_follows,
            } => {
                self.note.route(route);
                self.note.record(host);
                if span_route {
                    let _ = host.set_request_header(trace::ROUTE_HEADER, route.template.as_str());
                }
                // Proxy-wasm can rewrite the request's headers only now. A host that transcodes
                // in place does it once the body is in, holding the headers until then
                // ([`Exchange::awaits_body`]).
                if pending.through_router && !(body_follows && transcoder.in_place) {
                    if let Err(failure) = rewrite_request_headers(host, route, &pending) {
                        return self.fail(host, failure);
                    }
                }
                if body_follows {
                    self.pending = Some(pending);
                    // Let the headers go on: proxy-wasm turns a pause here into
                    // StopAllIteration, after which the body callbacks would never come. The
                    // body is held in `on_request_body` instead, and Envoy's buffer filter,
                    // next in the chain, keeps the headers from reaching the router.
                    return Flow::Continue;
                }
                let flow = if pending.through_router {
                    self.send_through_router(host, transcoder, &pending, None, &[])
                } else {
                    self.call_backend(host, transcoder, &pending, &[])
                };
                // The answer arrives in `on_close` or the response's callbacks, which need the
                // route.
                self.pending = Some(pending);
                flow
            }
        }
    }

    /// The request body received so far (`size` bytes).
    pub fn on_request_body<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
        size: usize,
        end_of_stream: bool,
    ) -> Flow {
        if let Some(call) = &self.grpc_json {
            return match transcoder.plan_body(true, size, end_of_stream) {
                BodyPlan::Ignore | BodyPlan::Call => {
                    let method = call.method.clone();
                    let translated = host
                        .request_body(size)
                        .map_err(|e| {
                            Status::new(GrpcCode::Internal, format!("cannot read the body: {e}"))
                        })
                        .and_then(|body| transcoder.grpc_json_request(&method, &body))
                        .and_then(|frames| {
                            host.replace_request_body(size, &frames).map_err(|e| {
                                Status::new(
                                    GrpcCode::Internal,
                                    format!("cannot replace the body: {e}"),
                                )
                            })
                        });
                    match translated {
                        Ok(()) => Flow::Continue,
                        Err(status) => self.refuse_grpc(host, status),
                    }
                }
                BodyPlan::Wait => Flow::Pause,
                BodyPlan::TooLarge => self.refuse_grpc(
                    host,
                    Status::new(
                        GrpcCode::ResourceExhausted,
                        format!(
                            "request body exceeds {} bytes",
                            transcoder.config.max_body_bytes
                        ),
                    ),
                ),
            };
        }
        match transcoder.plan_body(self.pending.is_some(), size, end_of_stream) {
            BodyPlan::Ignore => Flow::Continue,
            BodyPlan::Wait => Flow::Pause,
            BodyPlan::TooLarge => {
                self.pending = None;
                self.fail(
                    host,
                    Failure::body_too_large(transcoder.config.max_body_bytes),
                )
            }
            BodyPlan::Call => {
                let body = match host.request_body(size) {
                    Ok(body) => body,
                    Err(error) => {
                        self.pending = None;
                        let failure =
                            Failure::host_refused("read the request body", &error.to_string());
                        return self.fail(host, failure);
                    }
                };
                let Some(pending) = self.pending.take() else {
                    return Flow::Continue;
                };
                if pending.through_router && transcoder.in_place {
                    let rewritten = transcoder
                        .route(pending.route)
                        .and_then(|route| rewrite_request_headers(host, route, &pending));
                    if let Err(failure) = rewritten {
                        self.pending = None;
                        return self.fail(host, failure);
                    }
                }
                let flow = if pending.through_router {
                    self.send_through_router(host, transcoder, &pending, Some(size), &body)
                } else {
                    self.call_backend(host, transcoder, &pending, &body)
                };
                self.pending = Some(pending);
                flow
            }
        }
    }

    /// The backend's initial (`initial`) or trailing metadata arrived, `entries` of it.
    pub fn on_response_metadata<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
        initial: bool,
        entries: usize,
    ) {
        if !initial && entries > 0 {
            self.trailers = true;
        }
        for name in &transcoder.config.response_headers {
            if let Some(value) = host.grpc_metadata(initial, name) {
                self.response_metadata.push((name.clone(), value));
            }
        }
        if !initial {
            self.status_details = host.grpc_metadata(false, "grpc-status-details-bin");
        }
    }

    /// A response message (`size` bytes) arrived.
    pub fn on_response_message<H: Host>(&mut self, host: &H, transcoder: &Transcoder, size: usize) {
        let streaming = self.pending.as_ref().is_some_and(|p| p.framing.is_some());
        // A unary method answers once; anything after the first message is ignored.
        if self.unreadable.is_some() || (!streaming && !self.messages.is_empty()) {
            return;
        }
        if self.received_bytes.saturating_add(size) > transcoder.config.max_stream_bytes {
            // Collected in memory until the stream ends: past the bound, the stream is
            // cancelled and answered with what came and why it stopped.
            if let Some(token) = self.call.take() {
                host.grpc_cancel(token);
            }
            self.finish(
                host,
                transcoder,
                Some(Failure::stream_too_large(
                    transcoder.config.max_stream_bytes,
                )),
                GrpcCode::ResourceExhausted.number(),
            );
            return;
        }
        match host.grpc_received(size) {
            Ok(message) => {
                self.received_bytes += message.len();
                self.messages.push(message);
            }
            Err(error) => self.unreadable = Some(error),
        }
    }

    /// The response headers of a request sent through the router (`end_of_stream`: no body or
    /// trailers follow).
    pub fn on_response_headers<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
        end_of_stream: bool,
    ) -> ResponseFlow {
        if self.grpc_json.is_some() {
            let headers = host.response_headers(false).unwrap_or_default();
            let grpc = headers
                .get("content-type")
                .is_some_and(|value| value.starts_with("application/grpc"));
            if grpc && !end_of_stream && headers.get("grpc-status").is_none() {
                let _ = host.set_response_header("content-type", "application/grpc+json");
            } else {
                // Trailers-only, or not the backend's gRPC answer: passed on as it is.
                self.grpc_json = None;
            }
            return ResponseFlow::Continue;
        }
        if self.whole.is_some() {
            let headers = host.response_headers(false).unwrap_or_default();
            let trailers_only = headers.get("grpc-status").is_some();
            let grpc = headers
                .get("content-type")
                .is_some_and(|value| value.starts_with("application/grpc"));
            if let Some(whole) = &mut self.whole {
                whole.grpc_headers = GRPC_RESPONSE_HEADERS
                    .into_iter()
                    .filter(|name| headers.get(name).is_some())
                    .collect();
                whole.status = headers.get(":status").and_then(|value| value.parse().ok());
                if !grpc && !trailers_only {
                    // Failed as a gRPC client would read it; its body is dropped.
                    whole.not_grpc = Some(whole.status.unwrap_or(500));
                }
            }
            if trailers_only || end_of_stream {
                // The call ended without a message.
                return self.end_whole(host, transcoder, &headers, At::Headers);
            }
            return ResponseFlow::Wait;
        }
        let Some(live) = &self.live else {
            return ResponseFlow::Continue;
        };
        let headers = host.response_headers(false).unwrap_or_default();
        if headers.get("grpc-status").is_some() || end_of_stream {
            // Trailers-only: the call ended before any message; answered like a unary call.
            return self.end_live(host, transcoder, &headers, true);
        }
        let grpc = headers
            .get("content-type")
            .is_some_and(|value| value.starts_with("application/grpc"));
        if !grpc {
            // Not the backend's gRPC answer: passed on as it is.
            self.live = None;
            return ResponseFlow::Continue;
        }
        let _ = host.set_response_header("content-type", live.framing.content_type());
        ResponseFlow::Continue
    }

    /// The response body of a request sent through the router (`size` bytes: what this
    /// filter wrote and Envoy still holds, unless it was `resumed` since, then what came): its
    /// complete messages are written in the stream's framing, at once.
    pub fn on_response_body<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
        size: usize,
        end_of_stream: bool,
        resumed: bool,
    ) -> ResponseFlow {
        if let Some(call) = &mut self.grpc_json {
            // Each piece goes on at once, its complete messages in JSON; nothing is held, as
            // the status stays in the trailers.
            let body = host.response_body(size).unwrap_or_default();
            call.pending.extend_from_slice(&body);
            let translated = transcoder
                .grpc_json_response(&call.method, &mut call.pending)
                .map_err(|status| status.message)
                .and_then(|json| {
                    host.replace_response_body(size, &json)
                        .map_err(|e| format!("cannot rewrite the response: {e}"))
                });
            if let Err(why) = translated {
                // The headers (200) are gone and the trailers would say OK: reset instead.
                host.log(Level::Error, &format!("gRPC+JSON response: {why}"));
                self.grpc_json = None;
                host.reset_request();
                return ResponseFlow::Hold;
            }
            return ResponseFlow::Continue;
        }
        if let Some(whole) = &mut self.whole {
            let body = host.response_body(size).unwrap_or_default();
            // Taken in and dropped from Envoy's buffer, which holds no more than the
            // listener's limit; the bound here is the transcoder's own, on the frames as they
            // came (a unary answer's message and its 5-byte prefix).
            let _ = host.replace_response_body(size, &[]);
            if whole.answered {
                return ResponseFlow::Continue;
            }
            whole.frames.extend_from_slice(&body);
            let raw = whole.raw_live || raw_stream(transcoder, self.pending.as_ref());
            if let Some(flow) = raw
                .then(|| self.pass_raw_stream(host, transcoder, end_of_stream))
                .flatten()
            {
                return flow;
            }
            let Some(whole) = &mut self.whole else {
                return ResponseFlow::Continue;
            };
            let max = transcoder.config.max_stream_bytes;
            if whole.frames.len() > max.saturating_add(5) {
                whole.answered = true;
                let failure = Failure::stream_too_large(max);
                let (present, came_with) = (whole.grpc_headers.clone(), whole.status);
                self.note_call_end(host, GrpcCode::ResourceExhausted.number());
                self.pending = None;
                return self.answer_in_place(
                    host,
                    At::Body,
                    Err(failure),
                    &[],
                    (&present, came_with),
                );
            }
            if end_of_stream {
                // No trailers follow: a gRPC answer without its status.
                return self.end_whole(host, transcoder, &Headers::default(), At::Body);
            }
            return ResponseFlow::Wait;
        }
        let (Some(live), Some(pending)) = (&mut self.live, &self.pending) else {
            return ResponseFlow::Continue;
        };
        if resumed {
            live.held.clear();
        }
        let body = host.response_body(size).unwrap_or_default();
        let mut out = std::mem::take(&mut live.held);
        let (held, written_before) = (out.len(), live.written);
        // A stream that has ended (its last entry written) drops what still comes, and is reset
        // once that entry is sent: no proxy-wasm call ends a response early, and the backend
        // would go on sending.
        let mut flow = if live.ended {
            ResponseFlow::HoldThenReset
        } else {
            ResponseFlow::Hold
        };
        if !live.ended {
            live.partial
                .extend_from_slice(body.get(held..).unwrap_or_default());
            let max = transcoder.config.max_stream_bytes;
            let written = grpc::take_messages(&mut live.partial, max).and_then(|messages| {
                let route = transcoder
                    .route(pending.route)
                    .map_err(|failure| failure.reply.status.message)?;
                messages.iter().try_for_each(|message| {
                    let json = transcoder
                        .stream_message_json(route, message)
                        .map_err(|status| status.message)?;
                    live.framing.write_message(&mut out, live.written, &json);
                    live.written += 1;
                    Ok(())
                })
            });
            let room = transcoder
                .config
                .buffer_limit_bytes
                .saturating_sub(END_RESERVE_BYTES);
            let failure = match written {
                Err(why) => Some(Failure::bad_response(why)),
                // Envoy holds at most its buffer limit of a body for a filter; past it, it resets
                // the stream from inside the call that grew the body, re-entering the filter
                // (seen: the VM died). What came between two flushes must fit, with room for an
                // end.
                Ok(()) if out.len() > room => {
                    out.truncate(held);
                    live.written = written_before;
                    Some(Failure::stream_burst(transcoder.config.buffer_limit_bytes))
                }
                Ok(()) => None,
            };
            if let Some(failure) = failure {
                live.framing
                    .write_end(&mut out, live.written, Some(&failure.reply.status));
                live.ended = true;
                flow = ResponseFlow::HoldThenReset;
                if let Some(kind) = failure.kind {
                    self.note.0.error = kind.as_str().to_string();
                }
            }
        }
        if let Err(error) = host.replace_response_body(size, &out) {
            host.log(Level::Error, &format!("cannot rewrite a stream: {error}"));
            // Held, so that nothing passes before the reset.
            host.reset_request();
            return ResponseFlow::Hold;
        }
        live.held = out;
        if end_of_stream {
            // No trailers follow: a gRPC stream without its status.
            return self.end_live(host, transcoder, &Headers::default(), false);
        }
        flow
    }

    /// The response trailers of a request sent through the router: the stream's status.
    pub fn on_response_trailers<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
    ) -> ResponseFlow {
        if self.live.is_none() && self.whole.is_none() {
            return ResponseFlow::Continue;
        }
        let trailers = host.response_headers(true).unwrap_or_default();
        if self.whole.is_some() {
            return self.end_whole(host, transcoder, &trailers, At::Trailers);
        }
        self.end_live(host, transcoder, &trailers, false)
    }

    /// The request is over (the proxy logs it): a backend call still open is for a client
    /// that went away, and is cancelled — the proxy would keep it open until it ends.
    pub fn on_end<H: Host>(&mut self, host: &H) {
        if let Some(token) = self.call.take() {
            host.grpc_cancel(token);
        }
    }

    /// The WebSocket this request upgraded to, if it did.
    pub fn socket(&mut self) -> Option<&mut Socket> {
        self.socket.as_mut()
    }

    /// The socket's call is open, to `cluster`.
    pub fn on_socket_opened<H: Host>(&mut self, host: &H, cluster: &str) {
        self.dispatched_at = host.now();
        self.note.0.upstream_cluster = cluster.to_string();
        self.note.record(host);
    }

    /// The socket's call could not be opened: the upgrade is refused.
    pub fn on_socket_unopened<H: Host>(&mut self, host: &H, error: HostError) {
        host.log(
            Level::Warn,
            &format!("cannot open the WebSocket's call: {error}"),
        );
        self.socket = None;
        self.fail(host, Failure::backend_unreachable());
    }

    /// The socket's call ended with `status_code` (the client is told by the close frame).
    pub fn on_socket_closed<H: Host>(&mut self, host: &H, status_code: u32) {
        self.note_call_end(host, status_code);
        self.note.record(host);
    }

    /// The backend call closed with `status_code`: answer the client.
    pub fn on_close<H: Host>(&mut self, host: &H, transcoder: &Transcoder, status_code: u32) {
        self.call = None;
        self.finish(host, transcoder, None, status_code);
    }

    /// Answers the client once the call is over: closed with `status_code`, or stopped by
    /// the transcoder itself (`stopped`).
    fn finish<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
        stopped: Option<Failure>,
        status_code: u32,
    ) {
        let elapsed = self.note_call_end(host, status_code);
        let Some(pending) = self.pending.take() else {
            self.note.record(host);
            return;
        };
        let route = match transcoder.route(pending.route) {
            Ok(route) => route,
            Err(failure) => {
                self.fail(host, failure);
                return;
            }
        };
        let grpc_message = if status_code == 0 || stopped.is_some() {
            String::new()
        } else {
            host.grpc_status_message()
        };
        let unreadable = self.unreadable.map(|error| error.to_string());
        let messages = std::mem::take(&mut self.messages);
        let details_bin = self.status_details.take();
        let call = FinishedCall {
            grpc_status: status_code,
            grpc_message: &grpc_message,
            details_bin: details_bin.as_deref(),
            response: match &unreadable {
                Some(error) => Some(Err(error.as_str())),
                None => messages.first().map(|message| Ok(message.as_slice())),
            },
            elapsed,
            timeout: pending.timeout,
            reset: !self.trailers,
        };
        let answer = self.answer(transcoder, route, &pending, call, &messages, stopped);
        match answer {
            Ok((body, content_type)) => {
                self.note.record(host);
                let headers: Vec<(&str, &str)> = self
                    .response_metadata
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
                    .collect();
                if let Err(error) = host.send_response(200, &content_type, &body, &headers) {
                    host.log(Level::Error, &format!("cannot send response: {error}"));
                    host.reset_request();
                }
            }
            Err(failure) => {
                self.fail(host, failure);
            }
        }
    }

    /// The client's answer to a finished `call` of `route` (`messages`: what it answered),
    /// with its content type, or the failure to answer with.
    fn answer(
        &mut self,
        transcoder: &Transcoder,
        route: &crate::Route,
        pending: &Pending,
        call: FinishedCall<'_>,
        messages: &[Vec<u8>],
        stopped: Option<Failure>,
    ) -> Result<(Vec<u8>, String), Failure> {
        let answer = match pending.framing {
            Some(_) if pending.response_encoding == Encoding::Raw => transcoder
                .finish_raw_stream(route, call, messages, stopped)
                .map(|body| (body, Encoding::Raw.content_type())),
            Some(framing) => transcoder
                .finish_stream(route, framing, call, messages, stopped)
                .map(|(body, failed)| {
                    if let Some(kind) = failed {
                        self.note.0.error = kind.as_str().to_string();
                    }
                    (body, framing.content_type())
                }),
            None => transcoder
                .finish_call(route, pending.response_encoding, call)
                .map(|body| (body, pending.response_encoding.content_type())),
        };
        // A raw answer is sent with its own content type.
        let raw_type = match (&answer, pending.response_encoding, messages.first()) {
            (Ok(_), Encoding::Raw, Some(message)) => transcoder
                .raw_response(route, message)
                .ok()
                .map(|(_, content_type)| content_type),
            _ => None,
        };
        answer.map(|(body, content_type)| {
            let content_type = raw_type.unwrap_or_else(|| content_type.to_string());
            (body, content_type)
        })
    }

    /// Ends a call whose response is held (see [`Whole`]) with the status in `status` (the
    /// trailers, or the headers of a trailers-only answer): the response is rewritten in
    /// place.
    fn end_whole<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
        status: &Headers,
        at: At,
    ) -> ResponseFlow {
        if self.whole.as_ref().is_some_and(|whole| whole.raw_live) {
            return self.end_raw_stream(host, status, at);
        }
        let Some(mut whole) = self.whole.take() else {
            return ResponseFlow::Continue;
        };
        clean_trailers(host, at, status);
        if whole.answered {
            return ResponseFlow::Continue;
        }
        let Some(pending) = self.pending.take() else {
            return ResponseFlow::Continue;
        };
        let present = std::mem::take(&mut whole.grpc_headers);
        let route = match transcoder.route(pending.route) {
            Ok(route) => route,
            Err(failure) => {
                return self.answer_in_place(host, at, Err(failure), &[], (&present, whole.status))
            }
        };
        let not_grpc = whole.not_grpc.map(|http_status| {
            let code = GrpcCode::from_http_status(http_status);
            let message = format!("the backend's route answered HTTP {http_status}, not gRPC");
            Headers::new(vec![
                ("grpc-status".to_string(), code.number().to_string()),
                ("grpc-message".to_string(), message),
            ])
        });
        let status = not_grpc.as_ref().unwrap_or(status);
        let code = status
            .get("grpc-status")
            .and_then(|value| value.trim().parse::<u32>().ok());
        // No status at all: the stream was cut short (Envoy reset it).
        let grpc_status = code.unwrap_or(GrpcCode::Internal.number());
        let elapsed = self.note_call_end(host, grpc_status);
        let max = transcoder.config.max_stream_bytes;
        let (messages, unreadable) = match grpc::take_messages(&mut whole.frames, max) {
            Ok(messages) => (messages, None),
            Err(why) => (Vec::new(), Some(why)),
        };
        // The backend's trailing metadata named in `response_headers` (its initial metadata
        // is on the response already).
        let metadata: Vec<(String, String)> = match at {
            At::Trailers => transcoder
                .config
                .response_headers
                .iter()
                .filter_map(|name| Some((name.clone(), status.get(name)?.to_string())))
                .collect(),
            At::Headers | At::Body => Vec::new(),
        };
        let call = FinishedCall {
            grpc_status,
            grpc_message: status.get("grpc-message").unwrap_or_default(),
            details_bin: status.get("grpc-status-details-bin"),
            response: match &unreadable {
                Some(why) => Some(Err(why.as_str())),
                None => messages.first().map(|message| Ok(message.as_slice())),
            },
            elapsed,
            timeout: pending.timeout,
            reset: code.is_none(),
        };
        let answer = self.answer(transcoder, route, &pending, call, &messages, None);
        self.answer_in_place(host, at, answer, &metadata, (&present, whole.status))
    }

    /// A piece of a raw stream's response (its frames in [`Whole::frames`]): once its first
    /// message is in, the headers go on with that message's content type and every message's
    /// bytes go as they come, so that a download is neither held nor bounded by
    /// `max_stream_bytes`. `None`: no message yet, held as any answer is.
    fn pass_raw_stream<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
        end_of_stream: bool,
    ) -> Option<ResponseFlow> {
        let (whole, pending) = (self.whole.as_mut()?, self.pending.as_ref()?);
        let route = transcoder.route(pending.route).ok()?;
        let max = transcoder.config.max_stream_bytes;
        let messages = match grpc::take_messages(&mut whole.frames, max) {
            Ok(messages) if messages.is_empty() && !whole.raw_live => return None,
            Ok(messages) => messages,
            Err(why) => return Some(self.cut_raw_stream(host, Failure::bad_response(why))),
        };
        let mut bytes = Vec::new();
        let mut content_type = None;
        for message in &messages {
            match transcoder.raw_response(route, message) {
                Ok((data, of)) => {
                    bytes.extend_from_slice(&data);
                    content_type.get_or_insert(of);
                }
                Err(status) => {
                    let failure = Failure::bad_response(status.message);
                    return Some(self.cut_raw_stream(host, failure));
                }
            }
        }
        let started = if whole.raw_live {
            Ok(())
        } else {
            whole.raw_live = true;
            // The answer's headers: the first part's content type, no gRPC ones.
            let present = std::mem::take(&mut whole.grpc_headers);
            host.set_response_header("content-type", &content_type.unwrap_or_default())
                .and_then(|()| {
                    present
                        .iter()
                        .try_for_each(|name| host.remove_response_header(name))
                })
        };
        if let Err(error) = started.and_then(|()| host.replace_response_body(0, &bytes)) {
            let failure = Failure::host_refused("pass a download on", &error.to_string());
            return Some(self.cut_raw_stream(host, failure));
        }
        if end_of_stream {
            // No trailers follow: the stream was cut short.
            return Some(self.end_raw_stream(host, &Headers::default(), At::Body));
        }
        Some(ResponseFlow::Continue)
    }

    /// A raw stream ended, with the status in `trailers`: an OK one ends the download; any
    /// other, once bytes are out with a 200, can only be told by cutting the response short
    /// (the client sees an incomplete body, never a complete-looking one).
    fn end_raw_stream<H: Host>(&mut self, host: &H, trailers: &Headers, at: At) -> ResponseFlow {
        clean_trailers(host, at, trailers);
        let code = trailers
            .get("grpc-status")
            .and_then(|value| value.trim().parse::<u32>().ok());
        let grpc_status = code.unwrap_or(GrpcCode::Internal.number());
        self.note_call_end(host, grpc_status);
        if grpc_status == GrpcCode::Ok.number() {
            self.whole = None;
            self.pending = None;
            self.note.record(host);
            return ResponseFlow::Continue;
        }
        let message = trailers
            .get("grpc-message")
            .unwrap_or("the stream was cut short");
        let failure = Failure::bad_response(format!(
            "the download failed after it started (gRPC status {grpc_status}: {message})"
        ));
        self.cut_raw_stream(host, failure)
    }

    /// Ends a raw stream that cannot go on: before its first bytes, with an error reply;
    /// after them, by resetting the response.
    fn cut_raw_stream<H: Host>(&mut self, host: &H, failure: Failure) -> ResponseFlow {
        let Some(mut whole) = self.whole.take() else {
            return ResponseFlow::Continue;
        };
        self.pending = None;
        if !whole.raw_live {
            let present = std::mem::take(&mut whole.grpc_headers);
            return self.answer_in_place(
                host,
                At::Body,
                Err(failure),
                &[],
                (&present, whole.status),
            );
        }
        host.log(Level::Warn, &failure.reply.status.message);
        if let Some(kind) = failure.kind {
            self.note.0.error = kind.as_str().to_string();
        }
        self.note.record(host);
        host.reset_request();
        ResponseFlow::Continue
    }

    /// Writes `answer` over the held response (see [`Whole`]): its status, headers and body;
    /// its gRPC headers (`grpc_headers`) go.
    fn answer_in_place<H: Host>(
        &mut self,
        host: &H,
        at: At,
        answer: Result<(Vec<u8>, String), Failure>,
        metadata: &[(String, String)],
        (grpc_headers, came_with): (&[&str], Option<u16>),
    ) -> ResponseFlow {
        let (http_status, mut headers, body) = match answer {
            Ok((body, content_type)) => {
                self.note.record(host);
                let headers = vec![("content-type".to_string(), content_type)];
                (200, headers, body)
            }
            Err(failure) => {
                let (reply, _) = self.note.failed(host, failure, &[]);
                let wire = edge_core::wire(&reply, Client::Http, false);
                (wire.http_status, wire.headers, wire.body)
            }
        };
        headers.extend(metadata.iter().cloned());
        headers.push(("content-length".to_string(), body.len().to_string()));
        let written = if came_with == Some(http_status) {
            Ok(())
        } else {
            host.set_response_header(":status", &http_status.to_string())
        };
        let written = written
            .and_then(|()| {
                headers
                    .iter()
                    .try_for_each(|(name, value)| host.set_response_header(name, value))
            })
            .and_then(|()| {
                grpc_headers
                    .iter()
                    .try_for_each(|name| host.remove_response_header(name))
            })
            .and_then(|()| match at {
                At::Headers | At::Trailers => host.append_response_body(&body),
                At::Body => host.replace_response_body(0, &body),
            });
        if let Err(error) = written {
            // The backend's gRPC response must not reach the client as if it were the answer.
            host.log(Level::Error, &format!("cannot rewrite a response: {error}"));
            host.reset_request();
        }
        ResponseFlow::Continue
    }

    /// Notes how the backend call ended (`status_code`, the time since it went out); returns
    /// that time.
    fn note_call_end<H: Host>(&mut self, host: &H, status_code: u32) -> Duration {
        let elapsed = match (self.dispatched_at, host.now()) {
            (Some(sent), Some(now)) => now.saturating_sub(sent),
            _ => Duration::ZERO,
        };
        self.note.0.grpc_status = Some(status_code);
        // In milliseconds to the microsecond, as logged.
        self.note.0.upstream_ms = Some((elapsed.as_secs_f64() * 1e6).round() / 1e3);
        elapsed
    }

    /// The one way this filter answers with an error (see [`Note::refuse`]).
    /// Refuses a gRPC call with JSON messages with `status`, as a gRPC answer (the bridge in
    /// front turns it into Connect's error).
    fn refuse_grpc<H: Host>(&mut self, host: &H, status: Status) -> Flow {
        self.grpc_json = None;
        let reply = LocalReply::error(status.code, status.message);
        host.send_reply(&reply, Client::Grpc, "edge_grpc_json_refused");
        Flow::Pause
    }

    fn fail<H: Host>(&mut self, host: &H, failure: Failure) -> Flow {
        self.note.refuse(host, failure, &self.response_metadata);
        Flow::Pause
    }

    /// Sends the request on through the router as the gRPC call (its headers were rewritten
    /// when they came): the body, `received` bytes, becomes the gRPC message(s); a request
    /// that came without one (`None`) is given them.
    fn send_through_router<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
        pending: &Pending,
        received: Option<usize>,
        body: &[u8],
    ) -> Flow {
        let route = match transcoder.route(pending.route) {
            Ok(route) => route,
            Err(failure) => return self.fail(host, failure),
        };
        let messages = match transcoder.pending_messages(route, pending, body) {
            Ok(messages) => messages,
            Err(failure) => return self.fail(host, failure),
        };
        let frames = grpc::frame(&messages);
        let placed = match received {
            Some(size) => host.replace_request_body(size, &frames),
            None => host.add_request_body(&frames),
        };
        if let Err(error) = placed {
            let failure = Failure::host_refused(
                "replace the request body for the backend",
                &error.to_string(),
            );
            return self.fail(host, failure);
        }
        match pending.framing {
            Some(framing) if pending.response_encoding != Encoding::Raw => {
                self.live = Some(Live {
                    framing,
                    partial: Vec::new(),
                    held: Vec::new(),
                    written: 0,
                    ended: false,
                })
            }
            _ => self.whole = Some(Whole::default()),
        }
        // Recorded with the call's end; a stream cut short before it is logged with the
        // router's cluster, the same one.
        self.note.0.upstream_cluster = route.destination(pending.backend.as_deref()).to_string();
        self.dispatched_at = host.now();
        Flow::Continue
    }

    /// Ends a stream sent through the router with the status in `status` (the trailers, or
    /// the headers of a trailers-only answer): in band after messages, else as an error reply.
    fn end_live<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
        status: &Headers,
        trailers_only: bool,
    ) -> ResponseFlow {
        let (Some(live), Some(pending)) = (self.live.take(), self.pending.take()) else {
            return ResponseFlow::Continue;
        };
        let code = status
            .get("grpc-status")
            .and_then(|value| value.trim().parse::<u32>().ok());
        // No status at all: the stream was cut short (Envoy reset it).
        let grpc_status = code.unwrap_or(GrpcCode::Internal.number());
        let elapsed = self.note_call_end(host, grpc_status);
        let call = FinishedCall {
            grpc_status,
            grpc_message: status.get("grpc-message").unwrap_or_default(),
            details_bin: status.get("grpc-status-details-bin"),
            response: None,
            elapsed,
            timeout: pending.timeout,
            reset: code.is_none(),
        };
        let failure = transcoder.call_failure(&call);
        if trailers_only {
            match failure {
                Some(failure) => {
                    self.fail(host, failure);
                }
                None => {
                    self.note.record(host);
                    let _ = host.set_response_header("content-type", live.framing.content_type());
                }
            }
            return ResponseFlow::Continue;
        }
        if let Some(kind) = failure.as_ref().and_then(|f| f.kind) {
            self.note.0.error = kind.as_str().to_string();
        }
        self.note.record(host);
        if live.ended {
            return ResponseFlow::Continue;
        }
        let mut end = Vec::new();
        let status = failure.as_ref().map(|f| &f.reply.status);
        live.framing.write_end(&mut end, live.written, status);
        if let Some(status) =
            status.filter(|_| live.held.len() + end.len() > transcoder.config.buffer_limit_bytes)
        {
            // Past Envoy's buffer limit (see `on_response_body`): the code and the start of the
            // message, which the room kept for an end holds.
            end.clear();
            live.framing
                .write_end(&mut end, live.written, Some(&status.compact()));
        }
        if end.is_empty() {
            return ResponseFlow::Continue;
        }
        match host.append_response_body(&end) {
            Ok(()) => ResponseFlow::Hold,
            // No body came, so Envoy holds none to add to, and the headers (200) are gone.
            Err(_) if failure.is_some() => {
                host.log(
                    Level::Warn,
                    "a stream failed after its headers and before any message: reset, so that \
                     the client does not take it for a complete answer",
                );
                // Held, so that the trailers do not end the stream before the reset.
                host.reset_request();
                ResponseFlow::Hold
            }
            // An empty stream: its content type is set, and no body is a valid one.
            Err(_) => ResponseFlow::Continue,
        }
    }

    fn call_backend<H: Host>(
        &mut self,
        host: &H,
        transcoder: &Transcoder,
        pending: &Pending,
        body: &[u8],
    ) -> Flow {
        let deadline = pending.deadline();
        let call = match transcoder.backend_call(pending, &deadline, body) {
            Ok(call) => call,
            Err(failure) => return self.fail(host, failure),
        };
        let route = call.route;
        let messages: Vec<&[u8]> = call.messages.iter().map(Vec::as_slice).collect();
        // A stream rather than a unary call: Envoy hands a unary call's response metadata to
        // nobody, and the response headers and grpc-status-details-bin are needed.
        let opened = host.grpc_stream(GrpcRequest {
            cluster: call.cluster,
            service: &route.service,
            method: &route.method,
            metadata: call.metadata,
            messages: &messages,
        });
        match opened {
            Ok(token) => {
                self.call = Some(token);
                // Recorded with the call's outcome when it closes.
                self.note.0.upstream_cluster = call.cluster.to_string();
                self.dispatched_at = host.now();
                Flow::Pause
            }
            Err(error) => {
                host.log(
                    Level::Error,
                    &format!(
                        "cannot call {} on cluster {}: {error}",
                        route.grpc_path(),
                        call.cluster
                    ),
                );
                self.fail(host, Failure::backend_unreachable())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TranscoderConfig;
    use base64::Engine;
    use edge_core::host::{Call, GrpcAnswer, RecordingHost};
    use edge_core::notes::{self, TranscodeNote};
    use edge_core::Headers;
    use platform_proto::catalog::{CreateItemRequest, GetItemResponse, Item};
    use prost::Message;

    fn transcoder() -> Transcoder {
        let config = serde_json::json!({
            "descriptor_set": base64::engine::general_purpose::STANDARD
                .encode(platform_proto::FILE_DESCRIPTOR_SET),
            "services": {"catalog.CatalogService": "catalog"},
            "max_body_bytes": 100,
            "timeout_ms": 2000,
            "forward_headers": ["x-user-id"],
            "response_headers": ["x-backend"],
        });
        Transcoder::new(serde_json::from_value::<TranscoderConfig>(config).unwrap()).unwrap()
    }

    fn recorded_note(host: &RecordingHost) -> TranscodeNote {
        let calls = host.calls();
        let last = calls
            .iter()
            .rev()
            .find_map(|call| match call {
                Call::SetProperty(path, value) if path == notes::TRANSCODE => Some(value),
                _ => None,
            })
            .expect("a note");
        notes::decode(Some(last))
    }

    fn at(millis: u64) -> Option<Duration> {
        Some(Duration::from_millis(1_700_000_000_000 + millis))
    }

    #[test]
    fn a_get_calls_the_backend_and_answers_with_its_message_and_metadata() {
        let t = transcoder();
        let host = RecordingHost::with_headers(&[
            (":method", "GET"),
            (":path", "/catalog/items/42"),
            ("x-user-id", "ada"),
        ]);
        host.now.set(at(0));
        let mut exchange = Exchange::default();
        assert_eq!(
            exchange.on_request_headers(&host, &t, true),
            Flow::Pause,
            "waits for the backend"
        );
        let Call::Grpc {
            cluster,
            path,
            metadata,
            messages,
            timeout: None,
            ..
        } = &host.grpc_calls()[0]
        else {
            panic!("a stream: {:?}", host.calls());
        };
        assert_eq!(
            (cluster.as_str(), path.as_str()),
            ("catalog", "/catalog.CatalogService/GetItem")
        );
        assert_eq!(
            metadata,
            &vec![
                ("x-user-id".to_string(), b"ada".to_vec()),
                ("grpc-timeout".to_string(), b"2000m".to_vec())
            ]
        );
        assert_eq!(
            messages,
            &vec![platform_proto::catalog::GetItemRequest { id: "42".into() }.encode_to_vec()]
        );

        let item = GetItemResponse {
            item: Some(Item {
                id: "42".into(),
                title: "lamp".into(),
                price: 1200,
                ..Item::default()
            }),
        };
        *host.answer.borrow_mut() = GrpcAnswer {
            message: item.encode_to_vec(),
            initial_metadata: vec![
                ("x-backend".into(), "v2".into()),
                ("x-other".into(), "no".into()),
            ],
            ..GrpcAnswer::default()
        };
        exchange.on_response_metadata(&host, &t, true, 2);
        exchange.on_response_message(&host, &t, item.encoded_len());
        exchange.on_response_metadata(&host, &t, false, 1);
        host.now.set(at(7));
        exchange.on_close(&host, &t, 0);

        let Some(Call::Response {
            http_status: 200,
            content_type,
            body,
            headers,
        }) = host.calls().last().cloned()
        else {
            panic!("answered: {:?}", host.calls());
        };
        assert_eq!(content_type, "application/json");
        assert_eq!(headers, vec![("x-backend".to_string(), "v2".to_string())]);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["item"]["title"], "lamp");
        assert_eq!(
            body["item"]["price"], "1200",
            "int64 as a string, as proto3 JSON says"
        );
        let note = recorded_note(&host);
        assert_eq!(note.grpc_status, Some(0));
        assert_eq!(note.upstream_cluster, "catalog");
        assert_eq!(note.upstream_ms, Some(7.0));
        assert_eq!(note.grpc_method, "/catalog.CatalogService/GetItem");
    }

    #[test]
    fn a_backend_error_is_answered_with_its_status_and_message() {
        let t = transcoder();
        let host =
            RecordingHost::with_headers(&[(":method", "GET"), (":path", "/catalog/items/9")]);
        let mut exchange = Exchange::default();
        exchange.on_request_headers(&host, &t, true);
        host.answer.borrow_mut().status_message = "no item 9".into();
        exchange.on_response_metadata(&host, &t, false, 2);
        exchange.on_close(&host, &t, 5);
        let calls = host.calls();
        let Some(Call::Reply {
            http_status: 404,
            status,
            details,
            ..
        }) = calls.last()
        else {
            panic!("refused: {calls:?}");
        };
        assert_eq!(status.message, "no item 9");
        assert_eq!(details, "via_upstream");
        assert_eq!(recorded_note(&host).grpc_status, Some(5));
    }

    /// Envoy closes a stream it reset INTERNAL, with empty trailers; a backend's own INTERNAL
    /// comes with its trailers.
    #[test]
    fn a_stream_reset_mid_answer_is_a_502_not_the_backends_500() {
        let t = transcoder();
        for (trailers, expected) in [(0, 502), (3, 500)] {
            let host =
                RecordingHost::with_headers(&[(":method", "GET"), (":path", "/catalog/items/9")]);
            let mut exchange = Exchange::default();
            exchange.on_request_headers(&host, &t, true);
            host.answer.borrow_mut().status_message =
                "upstream reset: connection termination".into();
            exchange.on_response_metadata(&host, &t, true, 2);
            exchange.on_response_metadata(&host, &t, false, trailers);
            exchange.on_close(&host, &t, 13);
            let calls = host.calls();
            let Some(Call::Reply {
                http_status,
                status,
                details,
                ..
            }) = calls.last()
            else {
                panic!("refused: {calls:?}");
            };
            assert_eq!(*http_status, expected, "{trailers} trailers: {status:?}");
            if expected == 502 {
                assert_eq!(details, "edge_transcoder_backend_reset");
                assert_eq!(recorded_note(&host).error, "backend_reset");
                assert!(!status.message.contains("upstream"), "{}", status.message);
            }
        }
    }

    #[test]
    fn a_body_is_held_until_complete_then_sent_as_the_message() {
        let t = transcoder();
        let mut host = RecordingHost::with_headers(&[
            (":method", "POST"),
            (":path", "/catalog/items"),
            ("content-type", "application/json"),
        ]);
        host.body = br#"{"title":"lamp","price":"1200"}"#.to_vec();
        let mut exchange = Exchange::default();
        assert_eq!(
            exchange.on_request_headers(&host, &t, false),
            Flow::Continue
        );
        assert_eq!(exchange.on_request_body(&host, &t, 10, false), Flow::Pause);
        assert!(
            host.grpc_calls().is_empty(),
            "nothing sent before the body is complete"
        );
        assert_eq!(
            exchange.on_request_body(&host, &t, host.body.len(), true),
            Flow::Pause
        );
        let Call::Grpc { path, messages, .. } = &host.grpc_calls()[0] else {
            panic!("called");
        };
        assert_eq!(path, "/catalog.CatalogService/CreateItem");
        let sent = CreateItemRequest::decode(messages[0].as_slice()).unwrap();
        assert_eq!((sent.title.as_str(), sent.price), ("lamp", 1200));
    }

    #[test]
    fn a_body_too_large_or_a_backend_that_cannot_be_called_is_refused_without_a_call() {
        let t = transcoder();
        let host = RecordingHost::with_headers(&[(":method", "POST"), (":path", "/catalog/items")]);
        let mut exchange = Exchange::default();
        exchange.on_request_headers(&host, &t, false);
        assert_eq!(exchange.on_request_body(&host, &t, 101, false), Flow::Pause);
        assert!(matches!(
            host.calls().last(),
            Some(Call::Reply { http_status: 413, details, .. }) if details == "edge_transcoder_body_too_large"
        ));
        assert_eq!(
            exchange.on_request_body(&host, &t, 120, true),
            Flow::Continue,
            "the rest of a refused body is not transcoded"
        );
        assert!(host.grpc_calls().is_empty());

        let unreachable =
            RecordingHost::with_headers(&[(":method", "GET"), (":path", "/catalog/items/1")]);
        unreachable
            .failing_grpc
            .set(Some(HostError::INTERNAL_FAILURE));
        let mut exchange = Exchange::default();
        assert_eq!(
            exchange.on_request_headers(&unreachable, &t, true),
            Flow::Pause
        );
        let calls = unreachable.calls();
        assert!(calls.iter().any(|call| matches!(call, Call::Log(Level::Error, line)
            if line.contains("/catalog.CatalogService/GetItem") && line.contains("InternalFailure"))));
        assert!(matches!(
            calls.last(),
            Some(Call::Reply { http_status: 503, details, .. }) if details == "edge_transcoder_backend_unreachable"
        ));
    }

    fn listing(title: &str) -> Vec<u8> {
        Item {
            id: title.into(),
            title: title.into(),
            ..Item::default()
        }
        .encode_to_vec()
    }

    /// A watch of `listings`, closed with `status` (trailers with entries: the backend's own).
    fn watch(t: &Transcoder, accept: &str, listings: &[&str], status: u32) -> RecordingHost {
        let host = RecordingHost::with_headers(&[
            (":method", "GET"),
            (":path", "/catalog/items:watch?max_items=2"),
            ("accept", accept),
        ]);
        let mut exchange = Exchange::default();
        assert_eq!(exchange.on_request_headers(&host, t, true), Flow::Pause);
        exchange.on_response_metadata(&host, t, true, 1);
        for title in listings {
            let message = listing(title);
            host.answer.borrow_mut().message = message.clone();
            exchange.on_response_message(&host, t, message.len());
        }
        host.answer.borrow_mut().status_message = "item store gone".into();
        exchange.on_response_metadata(&host, t, false, 2);
        exchange.on_close(&host, t, status);
        host
    }

    fn answered(host: &RecordingHost) -> (String, String) {
        let Some(Call::Response {
            http_status: 200,
            content_type,
            body,
            ..
        }) = host.calls().last().cloned()
        else {
            panic!("answered: {:?}", host.calls());
        };
        (content_type, String::from_utf8(body).unwrap())
    }

    #[test]
    fn a_server_stream_is_answered_in_the_framing_accept_chose_with_its_failure_last() {
        let t = transcoder();
        let host = watch(&t, "*/*", &["a", "b"], 0);
        let Call::Grpc { path, messages, .. } = &host.grpc_calls()[0] else {
            panic!("called");
        };
        assert_eq!(path, "/catalog.CatalogService/WatchItems");
        assert_eq!(
            messages,
            &vec![platform_proto::catalog::WatchItemsRequest {
                max_items: 2,
                wait_seconds: 0
            }
            .encode_to_vec()]
        );
        assert_eq!(
            answered(&host),
            (
                "application/x-ndjson".to_string(),
                "{\"result\":{\"id\":\"a\",\"title\":\"a\"}}\n{\"result\":{\"id\":\"b\",\"title\":\"b\"}}\n"
                    .to_string()
            )
        );
        let (content_type, body) = answered(&watch(&t, "text/event-stream", &["a"], 14));
        assert_eq!(content_type, "text/event-stream");
        assert_eq!(
            body,
            "data: {\"id\":\"a\",\"title\":\"a\"}\n\nevent: error\ndata: {\"code\":14,\"message\":\"item store gone\"}\n\n"
        );
        let (_, body) = answered(&watch(&t, "application/json", &[], 0));
        assert_eq!(body, "[]");
    }

    #[test]
    fn a_server_stream_that_fails_before_any_message_is_an_error_reply() {
        let t = transcoder();
        let host = watch(&t, "*/*", &[], 14);
        assert!(matches!(
            host.calls().last(),
            Some(Call::Reply { http_status: 503, status, .. }) if status.message == "item store gone"
        ));
    }

    #[test]
    fn a_server_stream_past_its_bound_is_cancelled_and_answered_with_what_came() {
        let mut t = transcoder();
        t.config.max_stream_bytes = 20;
        let host =
            RecordingHost::with_headers(&[(":method", "GET"), (":path", "/catalog/items:watch")]);
        let mut exchange = Exchange::default();
        exchange.on_request_headers(&host, &t, true);
        for title in ["first", "second"] {
            let message = listing(title);
            host.answer.borrow_mut().message = message.clone();
            exchange.on_response_message(&host, &t, message.len());
        }
        let calls = host.calls();
        assert!(calls.contains(&Call::GrpcCancel(1)), "{calls:?}");
        let (_, body) = answered(&host);
        assert_eq!(
            body,
            "{\"result\":{\"id\":\"first\",\"title\":\"first\"}}\n\
             {\"error\":{\"code\":8,\"message\":\"the backend's stream exceeded 20 bytes: cancelled\"}}\n"
        );
        assert_eq!(recorded_note(&host).error, "stream_too_large");
    }

    #[test]
    fn a_call_still_open_when_the_request_ends_is_cancelled() {
        let t = transcoder();
        let host =
            RecordingHost::with_headers(&[(":method", "GET"), (":path", "/catalog/items:watch")]);
        let mut exchange = Exchange::default();
        exchange.on_request_headers(&host, &t, true);
        exchange.on_end(&host);
        assert_eq!(
            host.calls().last(),
            Some(&Call::GrpcCancel(1)),
            "the client left"
        );

        let answered =
            RecordingHost::with_headers(&[(":method", "GET"), (":path", "/catalog/items/1")]);
        let mut exchange = Exchange::default();
        exchange.on_request_headers(&answered, &t, true);
        exchange.on_close(&answered, &t, 5);
        exchange.on_end(&answered);
        assert!(!answered
            .calls()
            .iter()
            .any(|call| matches!(call, Call::GrpcCancel(_))));
    }

    /// A POST watch sent through the router, its body in: the exchange and its host.
    fn live_watch(t: &Transcoder, accept: &str) -> (Exchange, RecordingHost) {
        let mut host = RecordingHost::with_headers(&[
            (":method", "POST"),
            (":path", "/catalog/items:watch?x=1"),
            ("content-type", "application/json"),
            ("content-length", "15"),
            ("accept", accept),
        ]);
        host.body = br#"{"max_items":2}"#.to_vec();
        let mut exchange = Exchange::default();
        assert_eq!(exchange.on_request_headers(&host, t, false), Flow::Continue);
        assert_eq!(
            exchange.on_request_body(&host, t, host.body.len(), true),
            Flow::Continue,
            "on to the router"
        );
        (exchange, host)
    }

    fn grpc_frame(message: &[u8]) -> Vec<u8> {
        grpc::frame(&[message.to_vec()])
    }

    /// `GET /catalog/items/42` through a transcoder built `in_place`: its exchange and host.
    fn in_place_get(t: &Transcoder) -> (Exchange, RecordingHost) {
        let host = RecordingHost::with_headers(&[
            (":method", "GET"),
            (":path", "/catalog/items/42"),
            ("x-backend-ignored", "1"),
        ]);
        let mut exchange = Exchange::default();
        assert_eq!(
            exchange.on_request_headers(&host, t, true),
            Flow::Continue,
            "on to the router"
        );
        (exchange, host)
    }

    #[test]
    fn in_place_a_get_is_given_its_message_and_goes_through_the_router() {
        let t = transcoder().in_place();
        let (_, host) = in_place_get(&t);
        let calls = host.calls();
        let message = platform_proto::catalog::GetItemRequest { id: "42".into() }.encode_to_vec();
        for expected in [
            Call::SetHeader(":path".into(), "/catalog.CatalogService/GetItem".into()),
            Call::SetHeader(":method".into(), "POST".into()),
            Call::SetHeader("content-type".into(), "application/grpc".into()),
            Call::SetHeader(edge_core::TRANSCODED_HEADER.into(), "json".into()),
            Call::AddRequestBody(grpc_frame(&message)),
        ] {
            assert!(calls.contains(&expected), "{expected:?} in {calls:?}");
        }
        assert!(host.grpc_calls().is_empty(), "no callout");
    }

    #[test]
    fn a_request_awaits_its_body_until_it_is_in_and_a_bodiless_one_never_does() {
        let t = transcoder().in_place();
        let mut host = RecordingHost::with_headers(&[
            (":method", "POST"),
            (":path", "/catalog/items:watch"),
            ("content-type", "application/json"),
        ]);
        host.body = br#"{"max_items":2}"#.to_vec();
        let mut exchange = Exchange::default();
        assert_eq!(
            exchange.on_request_headers(&host, &t, false),
            Flow::Continue
        );
        assert!(exchange.awaits_body(), "the headers wait for the body");
        exchange.on_request_body(&host, &t, host.body.len(), true);
        assert!(!exchange.awaits_body(), "sent on with its body");
        let (get, _) = in_place_get(&t);
        assert!(!get.awaits_body(), "nothing to wait for");
        let passing = RecordingHost::with_headers(&[(":method", "GET"), (":path", "/healthz")]);
        let mut other = Exchange::default();
        other.on_request_headers(&passing, &t, false);
        assert!(!other.awaits_body(), "not transcoded");
    }

    #[test]
    fn in_place_a_unary_response_is_held_and_rewritten_whole_at_its_end() {
        let t = transcoder().in_place();
        let (mut exchange, host) = in_place_get(&t);
        *host.response_headers.borrow_mut() = Headers::new(vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/grpc".into()),
        ]);
        assert_eq!(
            exchange.on_response_headers(&host, &t, false),
            ResponseFlow::Wait
        );
        let item = GetItemResponse {
            item: Some(Item {
                id: "42".into(),
                title: "lamp".into(),
                ..Item::default()
            }),
        };
        let frame = grpc_frame(&item.encode_to_vec());
        // In two pieces: each taken in and dropped from Envoy's buffer.
        for piece in [&frame[..3], &frame[3..]] {
            *host.response_body.borrow_mut() = piece.to_vec();
            assert_eq!(
                exchange.on_response_body(&host, &t, piece.len(), false, true),
                ResponseFlow::Wait
            );
        }
        *host.response_trailers.borrow_mut() = Headers::new(vec![
            ("grpc-status".into(), "0".into()),
            ("x-backend".into(), "b1".into()),
        ]);
        assert_eq!(
            exchange.on_response_trailers(&host, &t),
            ResponseFlow::Continue
        );
        let calls = host.calls();
        let Some(Call::AppendResponseBody(json)) = calls
            .iter()
            .find(|call| matches!(call, Call::AppendResponseBody(_)))
        else {
            panic!("a body written in {calls:?}");
        };
        let json: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(json["item"]["title"], "lamp");
        assert!(
            !calls
                .iter()
                .any(|call| matches!(call, Call::SetResponseHeader(name, _) if name == ":status")),
            "the backend's 200 stays: {calls:?}"
        );
        for expected in [
            Call::SetResponseHeader("content-type".into(), "application/json".into()),
            Call::SetResponseHeader("x-backend".into(), "b1".into()),
            Call::RemoveResponseTrailer("grpc-status".into()),
        ] {
            assert!(calls.contains(&expected), "{expected:?} in {calls:?}");
        }
        assert_eq!(recorded_note(&host).grpc_status, Some(0));
    }

    #[test]
    fn in_place_a_failure_or_envoys_own_reply_is_the_json_error() {
        let t = transcoder().in_place();
        // The backend's trailers-only NOT_FOUND.
        let (mut exchange, host) = in_place_get(&t);
        *host.response_headers.borrow_mut() = Headers::new(vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/grpc".into()),
            ("grpc-status".into(), "5".into()),
            ("grpc-message".into(), "no%20such%20item".into()),
        ]);
        assert_eq!(
            exchange.on_response_headers(&host, &t, true),
            ResponseFlow::Continue
        );
        let calls = host.calls();
        assert!(calls.contains(&Call::SetResponseHeader(":status".into(), "404".into())));
        assert!(calls.contains(&Call::RemoveResponseHeader("grpc-status".into())));
        assert!(calls.contains(&Call::AppendResponseBody(
            br#"{"code":5,"message":"no such item"}"#.to_vec()
        )));
        // Envoy's own 503 (no healthy upstream), rendered for the JSON request it was.
        let (mut exchange, host) = in_place_get(&t);
        *host.response_headers.borrow_mut() = Headers::new(vec![
            (":status".into(), "503".into()),
            ("content-type".into(), "text/plain".into()),
        ]);
        assert_eq!(
            exchange.on_response_headers(&host, &t, false),
            ResponseFlow::Wait
        );
        *host.response_body.borrow_mut() = b"no healthy upstream".to_vec();
        exchange.on_response_body(&host, &t, 19, true, true);
        let calls = host.calls();
        assert!(
            !calls
                .iter()
                .any(|call| matches!(call, Call::SetResponseHeader(name, _) if name == ":status")),
            "Envoy's 503 stays: {calls:?}"
        );
        let written = calls.iter().rev().find_map(|call| match call {
            Call::ReplaceResponseBody(body) if !body.is_empty() => Some(body.clone()),
            _ => None,
        });
        let json: serde_json::Value =
            serde_json::from_slice(&written.expect("the error written")).unwrap();
        assert_eq!(json["code"], 14, "{json}");
    }

    #[test]
    fn a_post_stream_becomes_a_grpc_call_through_the_router() {
        let t = transcoder();
        let (_, host) = live_watch(&t, "*/*");
        let calls = host.calls();
        for expected in [
            Call::SetHeader(":path".into(), "/catalog.CatalogService/WatchItems".into()),
            Call::SetHeader("content-type".into(), "application/grpc".into()),
            Call::SetHeader("te".into(), "trailers".into()),
            Call::SetHeader("grpc-timeout".into(), "2000m".into()),
            Call::RemoveHeader("content-length".into()),
            Call::ReplaceRequestBody(grpc_frame(
                &platform_proto::catalog::WatchItemsRequest {
                    max_items: 2,
                    wait_seconds: 0,
                }
                .encode_to_vec(),
            )),
        ] {
            assert!(calls.contains(&expected), "{expected:?} in {calls:?}");
        }
        // Posted already: the method needs no edit.
        assert!(
            !calls
                .iter()
                .any(|call| matches!(call, Call::SetHeader(name, _) if name == ":method")),
            "{calls:?}"
        );
        assert!(host.grpc_calls().is_empty(), "no callout");
    }

    #[test]
    fn a_stream_through_the_router_is_rewritten_as_it_comes_and_ends_in_band() {
        let t = transcoder();
        let (mut exchange, host) = live_watch(&t, "*/*");
        *host.response_headers.borrow_mut() = Headers::new(vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/grpc".into()),
        ]);
        assert_eq!(
            exchange.on_response_headers(&host, &t, false),
            ResponseFlow::Continue
        );
        assert!(host.calls().contains(&Call::SetResponseHeader(
            "content-type".into(),
            "application/x-ndjson".into()
        )));
        let (a, b) = (grpc_frame(&listing("a")), grpc_frame(&listing("b")));
        // The first message and half the second: only the whole one is written.
        let mut first = a.clone();
        first.extend_from_slice(&b[..4]);
        *host.response_body.borrow_mut() = first.clone();
        assert_eq!(
            exchange.on_response_body(&host, &t, first.len(), false, true),
            ResponseFlow::Hold
        );
        let line_a = "{\"result\":{\"id\":\"a\",\"title\":\"a\"}}\n";
        assert_eq!(
            host.calls().last(),
            Some(&Call::ReplaceResponseBody(line_a.as_bytes().to_vec()))
        );
        // Not resumed yet: Envoy holds what was written, in front of the rest.
        let mut held = line_a.as_bytes().to_vec();
        held.extend_from_slice(&b[4..]);
        *host.response_body.borrow_mut() = held.clone();
        assert_eq!(
            exchange.on_response_body(&host, &t, held.len(), false, false),
            ResponseFlow::Hold
        );
        let line_b = "{\"result\":{\"id\":\"b\",\"title\":\"b\"}}\n";
        assert_eq!(
            host.calls().last(),
            Some(&Call::ReplaceResponseBody(
                format!("{line_a}{line_b}").into_bytes()
            ))
        );
        *host.response_trailers.borrow_mut() = Headers::new(vec![
            ("grpc-status".into(), "14".into()),
            ("grpc-message".into(), "item%20store gone".into()),
        ]);
        assert_eq!(exchange.on_response_trailers(&host, &t), ResponseFlow::Hold);
        assert_eq!(
            host.calls().last(),
            Some(&Call::AppendResponseBody(
                b"{\"error\":{\"code\":14,\"message\":\"item store gone\"}}\n".to_vec()
            ))
        );
        let note = recorded_note(&host);
        assert_eq!(note.grpc_status, Some(14));
        assert_eq!(note.upstream_cluster, "catalog");
    }

    #[test]
    fn a_live_stream_holds_less_than_envoys_buffer_limit_and_ends_in_band_past_it() {
        let mut t = transcoder();
        t.config.buffer_limit_bytes = END_RESERVE_BYTES + 100;
        let (mut exchange, host) = live_watch(&t, "*/*");
        *host.response_headers.borrow_mut() = Headers::new(vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/grpc".into()),
        ]);
        exchange.on_response_headers(&host, &t, false);
        let line_a = "{\"result\":{\"id\":\"a\",\"title\":\"a\"}}\n";
        let a = grpc_frame(&listing("a"));
        *host.response_body.borrow_mut() = a.clone();
        assert_eq!(
            exchange.on_response_body(&host, &t, a.len(), false, true),
            ResponseFlow::Hold
        );
        // Not resumed, three more came: 4 lines would pass the 100 bytes of room. What Envoy
        // holds stays as it was, and the stream ends there, to be reset once that is sent.
        let mut body = line_a.as_bytes().to_vec();
        for id in ["b", "c", "d"] {
            body.extend_from_slice(&grpc_frame(&listing(id)));
        }
        *host.response_body.borrow_mut() = body.clone();
        assert_eq!(
            exchange.on_response_body(&host, &t, body.len(), false, false),
            ResponseFlow::HoldThenReset
        );
        let Some(Call::ReplaceResponseBody(written)) = host.calls().last().cloned() else {
            panic!("{:?}", host.calls());
        };
        let text = String::from_utf8(written).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(format!("{}\n", lines[0]), line_a);
        let end: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(end["error"]["code"], 8, "{text}");
        assert!(text.len() <= t.config.buffer_limit_bytes);
        // What still comes is dropped; the trailers add nothing (the end is written).
        let more = grpc_frame(&listing("e"));
        *host.response_body.borrow_mut() = more.clone();
        assert_eq!(
            exchange.on_response_body(&host, &t, more.len(), false, true),
            ResponseFlow::HoldThenReset
        );
        assert_eq!(
            host.calls().last(),
            Some(&Call::ReplaceResponseBody(Vec::new()))
        );
        assert_eq!(
            recorded_note_after_trailers(&mut exchange, &host, &t),
            "stream_too_large"
        );
    }

    #[test]
    fn a_live_streams_end_is_compacted_to_fit_what_envoy_holds() {
        let mut t = transcoder();
        t.config.buffer_limit_bytes = END_RESERVE_BYTES + 100;
        let (mut exchange, host) = live_watch(&t, "*/*");
        *host.response_headers.borrow_mut() = Headers::new(vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/grpc".into()),
        ]);
        exchange.on_response_headers(&host, &t, false);
        let a = grpc_frame(&listing("a"));
        *host.response_body.borrow_mut() = a.clone();
        exchange.on_response_body(&host, &t, a.len(), false, true);
        let long = "x".repeat(4000);
        *host.response_trailers.borrow_mut() = Headers::new(vec![
            ("grpc-status".into(), "9".into()),
            ("grpc-message".into(), long),
        ]);
        assert_eq!(exchange.on_response_trailers(&host, &t), ResponseFlow::Hold);
        let Some(Call::AppendResponseBody(end)) = host.calls().last().cloned() else {
            panic!("{:?}", host.calls());
        };
        let end: serde_json::Value = serde_json::from_slice(&end).unwrap();
        assert_eq!(end["error"]["code"], 9);
        assert_eq!(end["error"]["message"].as_str().unwrap().len(), 256);
    }

    /// Ends a live stream with OK trailers: the access log's error for it.
    fn recorded_note_after_trailers(
        exchange: &mut Exchange,
        host: &RecordingHost,
        t: &Transcoder,
    ) -> String {
        *host.response_trailers.borrow_mut() =
            Headers::new(vec![("grpc-status".into(), "0".into())]);
        assert_eq!(
            exchange.on_response_trailers(host, t),
            ResponseFlow::Continue
        );
        recorded_note(host).error
    }

    #[test]
    fn a_stream_through_the_router_that_ends_before_any_message_is_an_error_or_a_reset() {
        let t = transcoder();
        // Trailers-only: the status in the headers; answered as a unary call's error.
        let (mut exchange, host) = live_watch(&t, "text/event-stream");
        *host.response_headers.borrow_mut() = Headers::new(vec![
            (":status".into(), "200".into()),
            ("grpc-status".into(), "3".into()),
            (
                "grpc-message".into(),
                "max_items must not be negative".into(),
            ),
        ]);
        exchange.on_response_headers(&host, &t, true);
        assert!(matches!(
            host.calls().last(),
            Some(Call::Reply { http_status: 400, status, .. }) if status.message == "max_items must not be negative"
        ));

        // Headers, then an error without a message: nothing to add to, and the 200 is gone.
        let (mut exchange, host) = live_watch(&t, "*/*");
        *host.response_headers.borrow_mut() = Headers::new(vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/grpc".into()),
        ]);
        exchange.on_response_headers(&host, &t, false);
        *host.response_trailers.borrow_mut() =
            Headers::new(vec![("grpc-status".into(), "14".into())]);
        host.failing_appends.set(Some(HostError::BAD_ARGUMENT));
        assert_eq!(
            exchange.on_response_trailers(&host, &t),
            ResponseFlow::Hold,
            "the trailers wait for the reset"
        );
        assert_eq!(host.calls().last(), Some(&Call::Reset));

        // An empty stream that ends OK: nothing to write.
        let (mut exchange, host) = live_watch(&t, "*/*");
        *host.response_headers.borrow_mut() = Headers::new(vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/grpc".into()),
        ]);
        exchange.on_response_headers(&host, &t, false);
        *host.response_trailers.borrow_mut() =
            Headers::new(vec![("grpc-status".into(), "0".into())]);
        assert_eq!(
            exchange.on_response_trailers(&host, &t),
            ResponseFlow::Continue
        );
        assert!(!host
            .calls()
            .iter()
            .any(|c| matches!(c, Call::AppendResponseBody(_) | Call::Reset)));
    }

    #[test]
    fn a_get_stream_or_an_array_is_collected_by_a_callout() {
        let t = transcoder();
        let host = RecordingHost::with_headers(&[
            (":method", "POST"),
            (":path", "/catalog/items:watch"),
            ("accept", "application/json"),
        ]);
        let mut exchange = Exchange::default();
        exchange.on_request_headers(&host, &t, false);
        exchange.on_request_body(&host, &t, 0, true);
        assert_eq!(
            host.grpc_calls().len(),
            1,
            "an array is only whole at the end"
        );
    }

    #[test]
    fn grpc_clients_pass_through_without_a_call_or_a_note() {
        let t = transcoder();
        let host = RecordingHost::with_headers(&[
            (":method", "POST"),
            (":path", "/catalog.CatalogService/GetItem"),
            ("content-type", "application/grpc"),
        ]);
        let mut exchange = Exchange::default();
        assert_eq!(
            exchange.on_request_headers(&host, &t, false),
            Flow::Continue
        );
        assert_eq!(
            exchange.on_request_body(&host, &t, 10, true),
            Flow::Continue
        );
        assert!(host.calls().is_empty());
    }

    /// A download (`kitchen.v1.Bodies/Download`, a stream of `google.api.HttpBody`) through a
    /// transcoder built `in_place`, its response headers in: its exchange and host.
    fn in_place_download() -> (Transcoder, Exchange, RecordingHost) {
        let config = serde_json::json!({
            "descriptor_set": base64::engine::general_purpose::STANDARD
                .encode(kitchen::FILE_DESCRIPTOR_SET),
            "services": {"kitchen.v1.Bodies": "kitchen"},
            "max_stream_bytes": 64,
        });
        let t = Transcoder::new(serde_json::from_value::<TranscoderConfig>(config).unwrap())
            .unwrap()
            .in_place();
        let host =
            RecordingHost::with_headers(&[(":method", "GET"), (":path", "/v1/bodies/d1:download")]);
        let mut exchange = Exchange::default();
        assert_eq!(exchange.on_request_headers(&host, &t, true), Flow::Continue);
        *host.response_headers.borrow_mut() = Headers::new(vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/grpc".into()),
        ]);
        assert_eq!(
            exchange.on_response_headers(&host, &t, false),
            ResponseFlow::Wait,
            "held until the first part says its content type"
        );
        (t, exchange, host)
    }

    fn part(data: &str) -> Vec<u8> {
        let body = platform_proto::google::api::HttpBody {
            content_type: "text/plain".into(),
            data: data.as_bytes().to_vec(),
            extensions: Vec::new(),
        };
        grpc_frame(&body.encode_to_vec())
    }

    #[test]
    fn in_place_a_download_goes_on_part_by_part_past_max_stream_bytes() {
        let (t, mut exchange, host) = in_place_download();
        // The first part, in two pieces: held until whole, then the headers go with its type.
        let first = part(&"a".repeat(40));
        *host.response_body.borrow_mut() = first[..10].to_vec();
        assert_eq!(
            exchange.on_response_body(&host, &t, 10, false, true),
            ResponseFlow::Wait
        );
        *host.response_body.borrow_mut() = first[10..].to_vec();
        assert_eq!(
            exchange.on_response_body(&host, &t, first.len() - 10, false, true),
            ResponseFlow::Continue
        );
        let calls = host.calls();
        assert!(
            calls.contains(&Call::SetResponseHeader(
                "content-type".into(),
                "text/plain".into()
            )),
            "{calls:?}"
        );
        assert_eq!(
            calls.last(),
            Some(&Call::ReplaceResponseBody("a".repeat(40).into_bytes()))
        );
        // Two more parts in one piece: 120 bytes in all, over the 64 a held stream may have.
        let mut both = part(&"b".repeat(40));
        both.extend(part(&"c".repeat(40)));
        *host.response_body.borrow_mut() = both.clone();
        assert_eq!(
            exchange.on_response_body(&host, &t, both.len(), false, true),
            ResponseFlow::Continue
        );
        let expected = format!("{}{}", "b".repeat(40), "c".repeat(40)).into_bytes();
        assert_eq!(
            host.calls().last(),
            Some(&Call::ReplaceResponseBody(expected))
        );
        *host.response_trailers.borrow_mut() =
            Headers::new(vec![("grpc-status".into(), "0".into())]);
        assert_eq!(
            exchange.on_response_trailers(&host, &t),
            ResponseFlow::Continue
        );
        let calls = host.calls();
        assert!(calls.contains(&Call::RemoveResponseTrailer("grpc-status".into())));
        assert!(!calls.contains(&Call::Reset), "{calls:?}");
        assert_eq!(recorded_note(&host).grpc_status, Some(0));
    }

    #[test]
    fn in_place_a_download_that_fails_midway_is_cut_short_and_before_any_part_is_an_error() {
        let (t, mut exchange, host) = in_place_download();
        let first = part("the start");
        *host.response_body.borrow_mut() = first.clone();
        exchange.on_response_body(&host, &t, first.len(), false, true);
        *host.response_trailers.borrow_mut() = Headers::new(vec![
            ("grpc-status".into(), "13".into()),
            ("grpc-message".into(), "disk gone".into()),
        ]);
        exchange.on_response_trailers(&host, &t);
        assert_eq!(
            host.calls().last(),
            Some(&Call::Reset),
            "never a complete-looking body"
        );
        assert_eq!(recorded_note(&host).grpc_status, Some(13));

        // No part yet: the JSON error, as for any answer held whole.
        let (t, mut exchange, host) = in_place_download();
        *host.response_trailers.borrow_mut() = Headers::new(vec![
            ("grpc-status".into(), "13".into()),
            ("grpc-message".into(), "disk gone".into()),
        ]);
        exchange.on_response_trailers(&host, &t);
        let calls = host.calls();
        assert!(!calls.contains(&Call::Reset), "{calls:?}");
        assert!(
            calls.contains(&Call::SetResponseHeader(":status".into(), "500".into())),
            "{calls:?}"
        );
    }
}
