//! Host calls for the edge filters, as `Result`s that never panic.
//!
//! proxy-wasm's SDK (0.2.5) `panic!`s on any host status it does not expect, and a panic kills
//! the Wasm VM for every later request on that worker. The calls the filters make on request
//! paths therefore go through [`abi`], which hands every status back to the caller; the SDK is
//! still used where it must be (starting gRPC calls, whose callbacks only its dispatcher can
//! route).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod abi;
mod crypto;
mod map;
mod upstream;

pub use abi::HostError;
use edge_core::host::{GrpcRequest, Host, Level, SharedStore};
use edge_core::{Client, GrpcCode, Headers, LocalReply};
pub use map::list_elements;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
pub use upstream::check_clusters;

/// [`Host`] for proxy-wasm: each call is one ABI call (metrics are defined on first use, and
/// each cluster's callout `upstream` encoded on first use, once per VM).
#[derive(Default)]
pub struct WasmHost {
    metrics: RefCell<Metrics>,
    /// Encoding a cluster per call cost ~1.3k instructions on the transcoder's path.
    upstreams: RefCell<HashMap<String, Vec<u8>>>,
    /// The stream whose callback is running, where the filter defers its resets (see
    /// [`WasmHost::enter`]); 0 for a filter that resets at once.
    stream: Cell<u32>,
}

impl WasmHost {
    /// Called by a filter whose root runs [`run_deferred`] at the start of each stream callback:
    /// its resets then wait for the root's next tick instead of re-entering the filter.
    pub fn enter(&self, context_id: u32) -> &Self {
        self.stream.set(context_id);
        self
    }

    /// The callout `upstream` argument for `cluster` (see [`upstream`]).
    fn upstream(&self, cluster: &str) -> Result<Vec<u8>, HostError> {
        let mut upstreams = self
            .upstreams
            .try_borrow_mut()
            .map_err(|_| HostError::INTERNAL_FAILURE)?;
        if let Some(upstream) = upstreams.get(cluster) {
            return Ok(upstream.clone());
        }
        let upstream = upstream::grpc_upstream(cluster).map_err(|error| {
            log(LogLevel::Error, &error);
            HostError::BAD_ARGUMENT
        })?;
        upstreams.insert(cluster.to_string(), upstream.clone());
        Ok(upstream)
    }
}

fn status(status: proxy_wasm::types::Status) -> HostError {
    HostError(status as u32)
}

impl SharedStore for WasmHost {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        abi::get_shared_data(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        abi::set_shared_data(key, value, cas)
    }
}

impl Host for WasmHost {
    fn log(&self, level: Level, message: &str) {
        log(
            match level {
                Level::Debug => LogLevel::Debug,
                Level::Info => LogLevel::Info,
                Level::Warn => LogLevel::Warn,
                Level::Error => LogLevel::Error,
            },
            message,
        );
    }
    fn now(&self) -> Option<std::time::Duration> {
        now()
    }
    fn request_headers(&self) -> Result<Headers, HostError> {
        request_headers()
    }
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        set_request_header(name, value)
    }
    fn add_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        abi::add_header(MapType::HttpRequestHeaders, name, value)
    }
    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        abi::remove_header(MapType::HttpRequestHeaders, name)
    }
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        abi::set_property(path, value)
    }
    /// Envoy keeps what `set_property` stores, but runs its access logs before `on_log`.
    fn set_filter_state(&self, _key: &str, _value: &str) -> Result<(), HostError> {
        Err(HostError::UNIMPLEMENTED)
    }
    fn send_reply(&self, reply: &LocalReply, client: Client, details: &str) {
        if let Err(error) = send_reply(reply, client, details) {
            log(
                LogLevel::Error,
                &format!("cannot send local reply: {error}"),
            );
            self.reset_request();
        }
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        abi::get_property(path).unwrap_or(None)
    }
    fn add_to_counter(&self, name: &str, amount: u64) {
        if let Ok(mut metrics) = self.metrics.try_borrow_mut() {
            metrics.add(name, amount);
        }
    }
    fn record_histogram(&self, name: &str, value: u64) {
        if let Ok(mut metrics) = self.metrics.try_borrow_mut() {
            metrics.record(name, value);
        }
    }
    fn set_gauge(&self, name: &str, value: u64) {
        if let Ok(mut metrics) = self.metrics.try_borrow_mut() {
            metrics.set(name, value);
        }
    }
    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        Ok(abi::get_buffer(BufferType::HttpRequestBody, 0, size)?.unwrap_or_default())
    }
    fn send_response(
        &self,
        http_status: u16,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), HostError> {
        let mut all = Vec::with_capacity(headers.len() + 1);
        all.push(("content-type", content_type));
        all.extend_from_slice(headers);
        // The backend's answer, rendered: where Envoy's own transcoder would say the same.
        abi::send_local_response(u32::from(http_status), "via_upstream", &all, body, None)
    }
    fn replace_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        abi::set_buffer(BufferType::HttpRequestBody, 0, size, body)
    }
    fn add_request_body(&self, _body: &[u8]) -> Result<(), HostError> {
        // No proxy-wasm call adds a body to a request that came without one.
        Err(HostError::NOT_FOUND)
    }
    fn response_headers(&self, trailers: bool) -> Result<Headers, HostError> {
        abi::get_header_map(if trailers {
            MapType::HttpResponseTrailers
        } else {
            MapType::HttpResponseHeaders
        })
    }
    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        abi::replace_header(MapType::HttpResponseHeaders, name, value)
    }
    fn remove_response_header(&self, name: &str) -> Result<(), HostError> {
        abi::remove_header(MapType::HttpResponseHeaders, name)
    }
    fn remove_response_trailer(&self, name: &str) -> Result<(), HostError> {
        abi::remove_header(MapType::HttpResponseTrailers, name)
    }
    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        Ok(abi::get_buffer(BufferType::HttpResponseBody, 0, size)?.unwrap_or_default())
    }
    fn replace_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        abi::set_buffer(BufferType::HttpResponseBody, 0, size, body)
    }
    fn append_response_body(&self, body: &[u8]) -> Result<(), HostError> {
        // A start past the end appends (Envoy's Buffer::copyFrom).
        abi::set_buffer(BufferType::HttpResponseBody, usize::MAX >> 1, 0, body)
    }
    fn reset_request(&self) {
        match self.stream.get() {
            0 => reset_request(),
            context_id => reset_later(context_id),
        }
    }
    // The two calls that start callouts go through the SDK, whose dispatcher must learn the
    // token to route the answer. It panics on statuses other than OK, ParseFailure and
    // InternalFailure; see README ("No panics on request paths") for why Envoy returns none.
    fn grpc_call(
        &self,
        request: GrpcRequest<'_>,
        timeout: std::time::Duration,
    ) -> Result<u32, HostError> {
        let upstream = self.upstream(request.cluster)?;
        let [message] = request.messages else {
            return Err(HostError::BAD_ARGUMENT);
        };
        proxy_wasm::hostcalls::dispatch_grpc_call(
            abi::upstream_str(&upstream),
            request.service,
            request.method,
            request.metadata,
            Some(message),
            timeout,
        )
        .map_err(status)
    }
    fn grpc_stream(&self, request: GrpcRequest<'_>) -> Result<u32, HostError> {
        let upstream = self.upstream(request.cluster)?;
        let token = proxy_wasm::hostcalls::open_grpc_stream(
            abi::upstream_str(&upstream),
            request.service,
            request.method,
            request.metadata,
        )
        .map_err(status)?;
        // Closing our side matters beyond the end-of-stream flag: Envoy frees a Wasm gRPC
        // stream's state when it closes remotely only if the filter closed it locally
        // (`proxy_grpc_close`); without it every call left its stream behind (Envoy's RSS
        // grew ~10 MB per 100k requests in the soak).
        // The last message ends our side; a client stream of none is ended by the close alone
        // (Envoy half-closes without a frame).
        let last = request.messages.len().saturating_sub(1);
        request
            .messages
            .iter()
            .enumerate()
            .try_for_each(|(index, message)| abi::grpc_send(token, message, index == last))
            .and_then(|()| abi::grpc_close(token))
            .inspect_err(|_| {
                let _ = abi::grpc_cancel(token);
            })?;
        Ok(token)
    }
    fn grpc_cancel(&self, token: u32) {
        let _ = abi::grpc_cancel(token);
    }
    fn grpc_received(&self, size: usize) -> Result<Vec<u8>, HostError> {
        Ok(abi::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)?.unwrap_or_default())
    }
    fn grpc_metadata(&self, initial: bool, name: &str) -> Option<String> {
        let map = if initial {
            MapType::GrpcReceiveInitialMetadata
        } else {
            MapType::GrpcReceiveTrailingMetadata
        };
        abi::get_header(map, name).unwrap_or(None)
    }
    fn grpc_status_message(&self) -> String {
        abi::grpc_status()
            .map(|(_, message)| message)
            .unwrap_or_default()
    }
    fn verify_signature(
        &self,
        hash: &str,
        public_key: &[u8],
        signature: &[u8],
        text: &[u8],
    ) -> Result<bool, HostError> {
        crypto::verify_signature(hash, public_key, signature, text)
    }
}

/// Writes to Envoy's log under the plugin's name; a failure to log is not worth failing a request.
pub fn log(level: LogLevel, message: &str) {
    let _ = abi::log(level, message);
}

/// Every request header, in one host call: cheaper than several single reads when a filter
/// needs several of them.
pub fn request_headers() -> Result<Headers, HostError> {
    abi::get_header_map(MapType::HttpRequestHeaders)
}

pub fn set_request_header(name: &str, value: &str) -> Result<(), HostError> {
    abi::replace_header(MapType::HttpRequestHeaders, name, value)
}

/// Envoy's clock as time since the Unix epoch (the SDK's `get_current_time` panics on a host
/// error); `None` if Envoy would not say.
pub fn now() -> Option<std::time::Duration> {
    abi::current_time_nanos()
        .ok()
        .map(std::time::Duration::from_nanos)
}

/// Asks for the root context's `on_tick` every `period` (the SDK's own call panics on a status
/// it does not expect). Ticks reach the root context whatever its id: no registration needed.
pub fn set_tick_period(period: std::time::Duration) -> Result<(), HostError> {
    abi::set_tick_period_millis(u32::try_from(period.as_millis()).unwrap_or(u32::MAX))
}

/// The plugin's `root_id` (Istio: the WasmPlugin's `pluginName`), which picks the filter in a
/// module that holds several; `None` if Envoy would not say.
pub fn plugin_root_id() -> Option<String> {
    abi::get_property(&["plugin_root_id"])
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// The plugin configuration, read once per plugin and worker in `on_configure`.
pub fn plugin_configuration() -> Result<Vec<u8>, HostError> {
    Ok(abi::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)?.unwrap_or_default())
}

/// Answers the request locally with `reply`, shaped for `client` (JSON, or a gRPC status).
/// `details` is Envoy's response-code details for the stream. When Envoy refuses (e.g. the
/// response has already started), the caller resets the stream rather than leave the client
/// hanging.
pub fn send_reply(reply: &LocalReply, client: Client, details: &str) -> Result<(), HostError> {
    // Read only on this path (refusals): one host call.
    let bridged = client == Client::Grpc
        && abi::get_header(
            MapType::HttpRequestHeaders,
            edge_core::CLIENT_CONTENT_TYPE_HEADER,
        )
        .ok()
        .flatten()
        .is_some_and(|original| Client::of_content_type(Some(&original)) == Client::Http);
    let wire = edge_core::wire(reply, client, bridged);
    let headers: Vec<(&str, &str)> = wire
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    abi::send_local_response(
        u32::from(wire.http_status),
        details,
        &headers,
        &wire.body,
        wire.grpc_status.map(GrpcCode::number),
    )
}

/// A CEL expression compiled by Envoy once (its `expr_create` foreign function), to read many
/// attributes in one host call where `property` would take one call each.
#[derive(Debug, Clone, Copy)]
pub struct Expression(u32);

impl Expression {
    /// Compiles `text`; call from the root context (Envoy keeps the expression there).
    pub fn create(text: &str) -> Result<Self, HostError> {
        let token = abi::call_foreign_function("expr_create", text.as_bytes())?
            .and_then(|bytes| <[u8; 4]>::try_from(bytes.as_slice()).ok())
            .ok_or(HostError(abi::NOT_FOUND))?;
        Ok(Self(u32::from_le_bytes(token)))
    }

    /// The expression's value for the current request, in Envoy's encoding (a list is a
    /// serialized `google.protobuf.ListValue`).
    pub fn evaluate(self) -> Result<Vec<u8>, HostError> {
        abi::call_foreign_function("expr_evaluate", &self.0.to_le_bytes())
            .map(Option::unwrap_or_default)
    }
}

/// Metrics the filters record, each defined once per VM on first use. Failures are logged and
/// otherwise ignored: a metric must never fail a request.
#[derive(Default)]
struct Metrics {
    ids: std::collections::HashMap<String, u32>,
}

impl Metrics {
    fn id(&mut self, metric_type: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(name) {
            return Some(*id);
        }
        match abi::define_metric(metric_type, name) {
            Ok(id) => {
                self.ids.insert(name.to_string(), id);
                Some(id)
            }
            Err(error) => {
                log(
                    LogLevel::Warn,
                    &format!("cannot define metric {name}: {error}"),
                );
                None
            }
        }
    }

    pub fn add(&mut self, name: &str, amount: u64) {
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = abi::increment_metric(id, i64::try_from(amount).unwrap_or(i64::MAX));
        }
    }

    /// Sets a gauge.
    pub fn set(&mut self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Gauge, name) {
            let _ = abi::record_metric(id, value);
        }
    }

    pub fn record(&mut self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Histogram, name) {
            let _ = abi::record_metric(id, value);
        }
    }
}

/// Resets the current stream at once. Inside a callback prefer [`reset_later`]: Envoy tears the
/// stream down synchronously, logging it, and the SDK's dispatcher panics when it is re-entered
/// for the same stream (`RefCell already borrowed`), which kills the VM.
pub fn reset_request() {
    let _ = abi::reset_http_request();
}

/// What a filter asks of streams from inside its callbacks, done by its root's next tick (within
/// a millisecond). Envoy acts on a stream synchronously: a resume from inside a callback takes
/// effect one chunk late (tried: a chunk was lost), and a reset from inside one re-enters the
/// filter (see [`reset_request`]). Only for a filter whose root calls [`run_deferred`] from its
/// `on_tick` (the transcoder's): the timer is its root's.
#[derive(Default)]
struct Deferred {
    /// Responses paused with a rewritten body, to resume.
    held: Vec<u32>,
    /// Streams to reset at the next tick.
    resets: Vec<u32>,
    /// Streams to reset one tick later: after the next tick has sent what they hold.
    resets_after_flush: Vec<u32>,
}

impl Deferred {
    fn idle(&self) -> bool {
        self.held.is_empty() && self.resets.is_empty() && self.resets_after_flush.is_empty()
    }
}

thread_local! {
    /// This worker's deferred work (one VM per worker).
    static DEFERRED: RefCell<Deferred> = RefCell::new(Deferred::default());
}

/// Adds work, starting the timer if it was idle. Started only then: Envoy restarts the timer
/// whenever its period is set, so a stream whose pieces come faster than the period would
/// otherwise never be resumed (seen: a fast stream held until Envoy's buffer limit reset it).
fn defer(add: impl FnOnce(&mut Deferred)) {
    let start_timer = DEFERRED.with(|deferred| {
        let Ok(mut deferred) = deferred.try_borrow_mut() else {
            return false;
        };
        let was_idle = deferred.idle();
        add(&mut deferred);
        was_idle && !deferred.idle()
    });
    if start_timer {
        if let Err(error) = abi::set_tick_period_millis(1) {
            log(
                LogLevel::Error,
                &format!("cannot start the deferred-work timer: {error}"),
            );
        }
    }
}

fn add_once(list: &mut Vec<u32>, context_id: u32) {
    if !list.contains(&context_id) {
        list.push(context_id);
    }
}

/// Holds the response of `context_id`, whose callback rewrote its body and returned `Pause`,
/// until the root's next tick resumes it. Envoy sends on a body a filter holds, and lets the
/// filter add to its end when the trailers come, only when the filter is resumed from outside
/// the callback. See README, "Streaming methods".
pub fn hold_response(context_id: u32) {
    defer(|deferred| add_once(&mut deferred.held, context_id));
}

/// Whether the response of `context_id` is held still (the timer has not resumed it yet).
pub fn is_held(context_id: u32) -> bool {
    DEFERRED.with(|deferred| {
        deferred
            .try_borrow()
            .is_ok_and(|deferred| deferred.held.contains(&context_id))
    })
}

/// Resets the stream of `context_id` at the root's next tick; its callback returns `Pause`
/// meanwhile, so that nothing passes before.
pub fn reset_later(context_id: u32) {
    defer(|deferred| add_once(&mut deferred.resets, context_id));
}

/// Resets the stream of `context_id` once the next tick has sent what its response holds.
pub fn reset_after_flush(context_id: u32) {
    defer(|deferred| add_once(&mut deferred.resets_after_flush, context_id));
}

/// From the root's `on_tick`: resets the streams due (never resuming them), resumes every held
/// response, and stops the timer once nothing waits. A stream that has ended meanwhile is
/// skipped (Envoy no longer knows its context).
pub fn run_deferred() {
    let Ok((resets, held)) = DEFERRED.with(|deferred| {
        deferred.try_borrow_mut().map(|mut deferred| {
            let resets = std::mem::take(&mut deferred.resets);
            let held = std::mem::take(&mut deferred.held);
            deferred.resets = std::mem::take(&mut deferred.resets_after_flush);
            (resets, held)
        })
    }) else {
        return;
    };
    // Envoy logs a reset stream at once, calling the filters' `on_log` from here: safe, as the
    // dispatcher holds only the root context during `on_tick`.
    for &context_id in &resets {
        if abi::set_effective_context(context_id).is_ok() {
            let _ = abi::reset_http_request();
        }
    }
    for context_id in held {
        if !resets.contains(&context_id) && abi::set_effective_context(context_id).is_ok() {
            let _ = abi::continue_http_response();
        }
    }
    let idle = DEFERRED.with(|deferred| deferred.try_borrow().is_ok_and(|d| d.idle()));
    if idle {
        let _ = abi::set_tick_period_millis(0);
    }
}
