//! Native glue of the transcoder: forwards Envoy's hooks to one [`Exchange`] per request, as
//! the Wasm glue does, over [`NativeHost`]. The transcoder is built `in_place`: every call
//! goes on through Envoy's router (the stream callouts that [`NativeHost::on_call`] answers
//! are auth's, the access log's, and none of the transcoder's). Nothing is held by Envoy
//! between callbacks here (a native filter's rewritten body is sent on when the hook
//! returns), so a live stream's pieces are always `resumed` and a hold is a continue.

use crate::{flow as flow_of, FilterConfig, StreamFilter};
use edge_core::host::{Flow, Host, HostError, Level};
use edge_native_host::abi::{status, EnvoyConfig, EnvoyFilter};
use edge_native_host::notes::StreamNotes;
use edge_native_host::{log, CallPart, Delivery, Metrics, NativeHost, Scope};
use edge_transcoder::websocket::SocketStep;
use edge_transcoder::{Exchange, ResponseFlow, Transcoder, TranscoderConfig};
use std::sync::Arc;

pub(crate) const NAME: &str = "transcoder";

/// Room over `max_body_bytes` in Envoy's buffer: the transcoder refuses a larger body itself,
/// with its JSON error, before Envoy's own 413 could.
const BODY_SLACK_BYTES: usize = 64 * 1024;

pub(crate) struct Config {
    transcoder: Arc<Transcoder>,
    metrics: Arc<Metrics>,
}

pub(crate) fn configure(_envoy: EnvoyConfig, config: &[u8]) -> Result<Config, String> {
    let config = serde_json::from_slice::<TranscoderConfig>(config)
        .map_err(|e| format!("invalid transcoder configuration: {e}"))?;
    // Every call through Envoy's router: this host can give a GET its message as a body. It
    // can also answer a stream itself and end a call's request side: WebSockets.
    let transcoder = Transcoder::new(config)?.in_place().with_sockets();
    log(
        Level::Info,
        &format!("transcoding {} HTTP route(s)", transcoder.routes().len()),
    );
    Ok(Config {
        transcoder: Arc::new(transcoder),
        metrics: Arc::default(),
    })
}

impl FilterConfig for Config {
    fn new_filter(&self, envoy: EnvoyFilter) -> Box<dyn StreamFilter> {
        Box::new(Filter {
            host: NativeHost::new(NAME, Scope::Filter(envoy), self.metrics.clone())
                .with_notes(StreamNotes::join(NAME)),
            transcoder: self.transcoder.clone(),
            exchange: Exchange::default(),
            socket_call: None,
        })
    }
}

struct Filter {
    host: NativeHost,
    transcoder: Arc<Transcoder>,
    exchange: Exchange,
    /// A WebSocket's call, while it is open.
    socket_call: Option<u32>,
}

impl Filter {
    /// Opens the call of a WebSocket the request upgraded to and answers the upgrade; `None`
    /// when the request is no WebSocket.
    fn open_socket(&mut self) -> Option<u32> {
        let socket = self.exchange.socket()?;
        let opened = match socket.route(&self.transcoder) {
            Ok(route) => {
                let call = socket.call(route);
                let cluster = call.cluster.to_string();
                self.host.open_call(call).map(|token| (token, cluster))
            }
            Err(_) => Err(HostError::NOT_FOUND),
        };
        match opened {
            Ok((token, cluster)) => {
                self.socket_call = Some(token);
                self.host.send_response_headers(&socket.accepted(), false);
                self.exchange.on_socket_opened(&self.host, &cluster);
            }
            Err(error) => self.exchange.on_socket_unopened(&self.host, error),
        }
        Some(status::STOP)
    }

    /// Carries out what the socket decided.
    fn run(&mut self, steps: Vec<SocketStep>) {
        for step in steps {
            match step {
                SocketStep::ToBackend { data, end } => {
                    let sent = self
                        .socket_call
                        .ok_or(HostError::NOT_FOUND)
                        .and_then(|token| self.host.send_on_call(token, &data, end));
                    if let Err(error) = sent {
                        // The call has ended: its close comes (or came) to `call`.
                        self.host.log(
                            Level::Debug,
                            &format!("a WebSocket message found its call closed: {error}"),
                        );
                    }
                }
                SocketStep::ToClient { data, end } => self.host.send_response_data(&data, end),
                SocketStep::CancelCall => {
                    if let Some(token) = self.socket_call.take() {
                        self.host.grpc_cancel(token);
                    }
                }
            }
        }
    }
}

/// The hook's status for `flow`; `waiting`: what stops a callback that waits (the headers
/// and trailers stop; a body piece, taken in by the exchange, is not buffered). A stream the
/// exchange reset stops there.
fn respond(host: &NativeHost, flow: ResponseFlow, waiting: u32) -> u32 {
    if host.was_reset() {
        return waiting;
    }
    match flow {
        ResponseFlow::Continue | ResponseFlow::Hold | ResponseFlow::HoldThenReset => {
            status::CONTINUE
        }
        ResponseFlow::Wait => waiting,
    }
}

impl StreamFilter for Filter {
    fn request_headers(&mut self, end_of_stream: bool) -> u32 {
        let flow = self
            .exchange
            .on_request_headers(&self.host, &self.transcoder, end_of_stream);
        if let Some(status) = self.open_socket() {
            return status;
        }
        self.host.settle_route();
        if flow == Flow::Continue && self.exchange.awaits_body() {
            // The headers wait here for the body they are rewritten with, which this filter
            // holds itself (no buffer filter needed after it; Envoy Gateway has none), with
            // room for the largest body the transcoder takes and the framing it adds.
            let limit = self
                .transcoder
                .config
                .max_body_bytes
                .saturating_add(BODY_SLACK_BYTES);
            self.host.set_buffer_limit(limit as u64);
            return status::STOP;
        }
        flow_of(flow)
    }

    fn request_body(&mut self, end_of_stream: bool) -> u32 {
        if let Some(socket) = self.exchange.socket() {
            let bytes = self.host.take_request_chunk();
            let mut steps = socket.client_sent(&self.transcoder, &bytes);
            if end_of_stream {
                // The connection ended without the closing handshake.
                steps.extend(socket.gone());
            }
            self.run(steps);
            return status::STOP_NO_BUFFER;
        }
        let size = self.host.request_body_arrived();
        let flow = self
            .exchange
            .on_request_body(&self.host, &self.transcoder, size, end_of_stream);
        self.host.settle_route();
        flow_of(flow)
    }

    fn response_headers(&mut self, end_of_stream: bool) -> u32 {
        respond(
            &self.host,
            self.exchange
                .on_response_headers(&self.host, &self.transcoder, end_of_stream),
            status::STOP,
        )
    }

    fn response_body(&mut self, end_of_stream: bool) -> u32 {
        let size = self.host.response_chunk_size();
        respond(
            &self.host,
            self.exchange
                .on_response_body(&self.host, &self.transcoder, size, end_of_stream, true),
            status::STOP_NO_BUFFER,
        )
    }

    fn response_trailers(&mut self) -> u32 {
        respond(
            &self.host,
            self.exchange
                .on_response_trailers(&self.host, &self.transcoder),
            status::STOP,
        )
    }

    fn client_slow(&mut self) {
        if let Some(socket) = self.exchange.socket() {
            socket.client_slow();
        }
    }

    fn client_ready(&mut self) {
        if let Some(socket) = self.exchange.socket() {
            let steps = socket.client_ready();
            self.run(steps);
        }
    }

    fn complete(&mut self) {
        // A socket whose client went away: its call is cancelled.
        if let Some(token) = self.socket_call.take() {
            self.host.grpc_cancel(token);
        }
    }

    /// The answer of a WebSocket's call: each message a text frame, its status the close.
    fn call(&mut self, stream: u64, part: CallPart<'_>) {
        let Filter {
            host,
            transcoder,
            exchange,
            ..
        } = self;
        let mut steps = Vec::new();
        let mut closed = None;
        host.on_call(stream, part, |_, delivery| {
            let Some(socket) = exchange.socket() else {
                return;
            };
            match delivery {
                Delivery::Message(size) => match host.grpc_received(size) {
                    Ok(message) => steps.extend(socket.backend_sent(transcoder, &message)),
                    Err(error) => host.log(
                        Level::Warn,
                        &format!("cannot read a WebSocket call's message: {error}"),
                    ),
                },
                Delivery::Close(code) => {
                    let status = transcoder.backend_error(
                        code,
                        host.grpc_status_message(),
                        host.grpc_metadata(false, "grpc-status-details-bin")
                            .as_deref(),
                    );
                    steps.extend(socket.closed_by_backend(&status));
                    closed = Some(code);
                }
                Delivery::Metadata { .. } => {}
            }
        });
        if let Some(code) = closed {
            self.socket_call = None;
            self.exchange.on_socket_closed(&self.host, code);
        }
        self.run(steps);
    }
}

/// Workers share one transcoder: it must be safe to read from several threads at once.
const _: fn() = || {
    fn shared_by_workers<T: Send + Sync>() {}
    shared_by_workers::<Transcoder>();
    shared_by_workers::<edge_access_log::AccessLogConfig>();
};
