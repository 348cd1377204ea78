//! Native glue of the transcoder: forwards Envoy's hooks to one [`Exchange`] per request, as
//! the Wasm glue does, over [`NativeHost`]. The transcoder is built `in_place`: every call
//! goes on through Envoy's router (the stream callouts that [`NativeHost::on_call`] answers
//! are auth's, the access log's, and none of the transcoder's). Nothing is held by Envoy
//! between callbacks here (a native filter's rewritten body is sent on when the hook
//! returns), so a live stream's pieces are always `resumed` and a hold is a continue.

use crate::{flow as flow_of, FilterConfig, StreamFilter};
use edge_core::host::{Flow, Level};
use edge_native_host::abi::{status, EnvoyConfig, EnvoyFilter};
use edge_native_host::{log, Metrics, NativeHost, Scope};
use edge_transcoder::{Exchange, ResponseFlow, Transcoder, TranscoderConfig};
use std::sync::Arc;

pub(crate) const NAME: &str = "transcoder";

/// Room over `max_body_bytes` in Envoy's buffer: the transcoder refuses a larger body itself,
/// with its JSON error, before Envoy's own 413 could.
const BODY_SLACK_BYTES: usize = 64 * 1024;

struct Config {
    transcoder: Arc<Transcoder>,
    metrics: Arc<Metrics>,
}

pub(crate) fn configure(
    _envoy: EnvoyConfig,
    config: &[u8],
) -> Result<Box<dyn FilterConfig>, String> {
    let config = serde_json::from_slice::<TranscoderConfig>(config)
        .map_err(|e| format!("invalid transcoder configuration: {e}"))?;
    // Every call through Envoy's router: this host can give a GET its message as a body.
    let transcoder = Transcoder::new(config)?.in_place();
    log(
        Level::Info,
        &format!("transcoding {} HTTP route(s)", transcoder.routes().len()),
    );
    Ok(Box::new(Config {
        transcoder: Arc::new(transcoder),
        metrics: Arc::default(),
    }))
}

impl FilterConfig for Config {
    fn new_filter(&self, envoy: EnvoyFilter) -> Box<dyn StreamFilter> {
        Box::new(Filter {
            host: NativeHost::new(NAME, Scope::Filter(envoy), self.metrics.clone()),
            transcoder: self.transcoder.clone(),
            exchange: Exchange::default(),
        })
    }
}

struct Filter {
    host: NativeHost,
    transcoder: Arc<Transcoder>,
    exchange: Exchange,
}

/// The hook's status for `flow`; `waiting`: what stops a callback that waits (the headers
/// and trailers stop; a body piece, taken in by the exchange, is not buffered).
fn respond(flow: ResponseFlow, waiting: u32) -> u32 {
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
        let size = self.host.request_body_arrived();
        let flow = self
            .exchange
            .on_request_body(&self.host, &self.transcoder, size, end_of_stream);
        self.host.settle_route();
        flow_of(flow)
    }

    fn response_headers(&mut self, end_of_stream: bool) -> u32 {
        respond(
            self.exchange
                .on_response_headers(&self.host, &self.transcoder, end_of_stream),
            status::STOP,
        )
    }

    fn response_body(&mut self, end_of_stream: bool) -> u32 {
        let size = self.host.response_chunk_size();
        respond(
            self.exchange
                .on_response_body(&self.host, &self.transcoder, size, end_of_stream, true),
            status::STOP_NO_BUFFER,
        )
    }

    fn response_trailers(&mut self) -> u32 {
        respond(
            self.exchange
                .on_response_trailers(&self.host, &self.transcoder),
            status::STOP,
        )
    }
}

/// Workers share one transcoder: it must be safe to read from several threads at once.
const _: fn() = || {
    fn shared_by_workers<T: Send + Sync>() {}
    shared_by_workers::<Transcoder>();
    shared_by_workers::<edge_access_log::AccessLogConfig>();
};
