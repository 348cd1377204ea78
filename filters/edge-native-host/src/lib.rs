//! [`Host`] for Envoy's dynamic modules (ABI v0.2.0, Envoy 1.40): the native counterpart of
//! `edge-host`, so that the filters' cores run unchanged as a native module.
//!
//! Where the ABI differs from proxy-wasm, this adapter (and only this) makes up the difference:
//! - **No gRPC client.** Calls go out as HTTP/2 stream callouts with gRPC framing, and their
//!   answers are read back by [`edge_core::grpc::CallReader`] into the parts a gRPC client
//!   reports ([`NativeHost::on_call`]).
//! - **Metrics are defined at configuration time, with labels.** The cores name a labelled
//!   sample `family.edge_label.value…` (see `edge_access_log::metrics`); [`Metrics`] defines
//!   each family with its labels when the filter is configured and splits names back at
//!   runtime.
//! - **Shared data** is process memory: one [`MemoryStore`] for the whole process, as Envoy's
//!   shared data is one per process.
//! - **A gRPC client's refusal** is written whole (HTTP 200, `grpc-status` and `grpc-message`
//!   headers): the ABI's local reply takes no gRPC status.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
// The ABI is C: calling into Envoy is unsafe by nature; each call's contract is the header's.
#![allow(unsafe_code)]

pub mod abi;
pub mod notes;

use abi::{body_type, header_type, Buffer, EnvoyConfig, EnvoyFilter, Header};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use edge_core::grpc::{CallEvent, CallReader};
use edge_core::host::{GrpcRequest, Host, HostError, Level, MemoryStore, SharedStore};
use edge_core::metrics::Observation;
use edge_core::{Client, Headers, LocalReply};
use notes::StreamNotes;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

/// Envoy's crypto is not in the ABI: ring checks the signature (BoringSSL's P-256 code, which
/// Envoy's own `verify_signature` runs), with the arguments that call takes: `sha256`, a DER
/// SubjectPublicKeyInfo, a DER ECDSA signature. ES256 only, as the filters ask.
pub fn verify_es256(
    hash: &str,
    public_key: &[u8],
    signature: &[u8],
    text: &[u8],
) -> Result<bool, HostError> {
    if hash != "sha256" {
        return Err(HostError::BAD_ARGUMENT);
    }
    // A P-256 SubjectPublicKeyInfo is 91 bytes and ends with the uncompressed point.
    let point = public_key
        .get(P256_SPKI_BYTES - 65..)
        .filter(|point| public_key.len() == P256_SPKI_BYTES && point.first() == Some(&4))
        .ok_or(HostError::BAD_ARGUMENT)?;
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point);
    Ok(key.verify(text, signature).is_ok())
}

/// The length of a P-256 key's DER SubjectPublicKeyInfo.
const P256_SPKI_BYTES: usize = 91;

/// The dynamic-metadata namespace of the filters' notes to each other.
const NOTES_NAMESPACE: &str = "edge";

/// Envoy's shared data, for a module: process memory, shared by every worker and the main
/// thread.
static SHARED: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::default);

/// Where a host's calls go: a stream's filter (on its worker) or a filter configuration (on
/// the main thread, for work that belongs to no request).
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Filter(EnvoyFilter),
    Config(EnvoyConfig),
}

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric family the cores use, with its labels in the order its names carry them.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
}

/// The families a filter configuration defined: Envoy's ids for them. A handful, so a scan
/// beats hashing each sample's name.
#[derive(Debug, Default)]
pub struct Metrics {
    ids: Vec<(&'static str, MetricKind, usize, usize)>,
    /// Where held counts go ([`Self::hold_counts`]); `None`: every count goes at once.
    held: Option<HeldCounts>,
}

/// A stream's labelled counts held in the module and handed to Envoy in one sum per series
/// ([`Metrics::flush`]): each labelled update makes Envoy build the series' name from its
/// labels and look it up (~4k instructions; three of them on a refused request), where adding
/// to a sum here costs a lock and a hash.
#[derive(Debug)]
struct HeldCounts {
    config: ConfigHandle,
    /// By family id, then by series: each label value after a [`LABEL_SEPARATOR`].
    sums: Mutex<Vec<(usize, foldhash::HashMap<String, u64>)>>,
}

/// Comes before each label value in a held series' key (label values are made of safe
/// characters, `edge_core::metrics::label_value`).
const LABEL_SEPARATOR: char = '\u{1f}';

/// Envoy's filter configuration, for the main thread's flush of held counts.
#[derive(Debug, Clone, Copy)]
struct ConfigHandle(EnvoyConfig);
// SAFETY: the configuration outlives its filters and ticks, and its config-level metric calls
// may be made from any thread (the ABI's documentation).
unsafe impl Send for ConfigHandle {}
unsafe impl Sync for ConfigHandle {}

thread_local! {
    /// The key of the series being counted, built in one buffer per worker.
    static SERIES: RefCell<String> = const { RefCell::new(String::new()) };
    /// The array Envoy fills with a header map's pointers, reused by each snapshot.
    static HEADER_POINTERS: RefCell<Vec<Header>> = const { RefCell::new(Vec::new()) };
}

/// The most labels a family may have (label values are passed from the stack).
pub const MAX_LABELS: usize = 8;

impl Metrics {
    /// Defines `families` on `config`; call only from `on_http_filter_config_new` (Envoy
    /// freezes stat creation when it returns). A family Envoy refuses is logged and left out.
    ///
    /// # Safety
    /// `config` is the configuration Envoy passed to the hook being run.
    pub unsafe fn define(config: EnvoyConfig, families: &[Family]) -> Self {
        let mut ids = Vec::new();
        for family in families {
            let mut labels: Vec<Buffer> = family
                .labels
                .iter()
                .map(|label| Buffer::of(label.as_bytes()))
                .collect();
            let define = match family.kind {
                MetricKind::Counter => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_counter
                }
                MetricKind::Gauge => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_gauge
                }
                MetricKind::Histogram => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_histogram
                }
            };
            let mut id = 0;
            let result = unsafe {
                define(
                    config,
                    Buffer::of(family.name.as_bytes()),
                    labels.as_mut_ptr(),
                    labels.len(),
                    &mut id,
                )
            };
            if result == 0 && family.labels.len() <= MAX_LABELS {
                ids.push((family.name, family.kind, id, family.labels.len()));
            } else {
                log(
                    Level::Error,
                    &format!("cannot define metric {}: result {result}", family.name),
                );
            }
        }
        Self { ids, held: None }
    }

    /// Holds the streams' labelled counts for [`Self::flush`], which the configuration must
    /// then call on its main thread every second or so, and when it is destroyed.
    pub fn hold_counts(mut self, config: EnvoyConfig) -> Self {
        self.held = Some(HeldCounts {
            config: ConfigHandle(config),
            sums: Mutex::default(),
        });
        self
    }

    /// Hands the held counts to Envoy, one update per series counted since the last flush.
    pub fn flush(&self) {
        let Some(held) = &self.held else {
            return;
        };
        let Ok(mut sums) = held.sums.lock() else {
            return;
        };
        let series = sums
            .iter_mut()
            .flat_map(|(id, family)| family.iter_mut().map(|(series, sum)| (*id, series, sum)));
        for (id, series, sum) in series.filter(|(_, _, sum)| **sum > 0) {
            let mut values = [Buffer::NULL; MAX_LABELS];
            let mut length = 0;
            for (slot, value) in values.iter_mut().zip(series.split(LABEL_SEPARATOR).skip(1)) {
                *slot = Buffer::of(value.as_bytes());
                length += 1;
            }
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                    held.config.0,
                    id,
                    values.as_mut_ptr(),
                    length,
                    *sum,
                );
            }
            // The series stays: the same few come back, and keeping them saves their keys.
            *sum = 0;
        }
    }

    /// Adds `value` to a held series; `false` when counts are not held.
    fn hold(&self, id: usize, labels: &[(&str, &str)], value: u64) -> bool {
        let Some(held) = &self.held else {
            return false;
        };
        let _ = SERIES.try_with(|series| {
            let (Ok(mut series), Ok(mut sums)) = (series.try_borrow_mut(), held.sums.lock()) else {
                return;
            };
            series.clear();
            for (_, label) in labels {
                series.push(LABEL_SEPARATOR);
                series.push_str(label);
            }
            let at = match sums.iter().position(|(family, _)| *family == id) {
                Some(at) => at,
                None => {
                    sums.push((id, foldhash::HashMap::default()));
                    sums.len() - 1
                }
            };
            let family = &mut sums[at].1;
            match family.get_mut(series.as_str()) {
                Some(sum) => *sum += value,
                None => {
                    family.insert(series.clone(), value);
                }
            }
        });
        true
    }

    /// Envoy's id for `family` of `kind` with `label_count` labels (a name of no defined
    /// family, or with other labels, has none).
    fn id(&self, family: &str, kind: MetricKind, label_count: usize) -> Option<usize> {
        self.ids
            .iter()
            .find(|(name, defined_kind, _, count)| {
                *name == family && *defined_kind == kind && *count == label_count
            })
            .map(|(_, _, id, _)| *id)
    }
}

/// Writes to Envoy's log (component `dynamic_modules`).
pub fn log(level: Level, message: &str) {
    log_from(level, "", message);
}

/// [`log`], the message after `filter: ` unless `filter` is empty; built only when Envoy
/// logs at `level`.
fn log_from(level: Level, filter: &str, message: &str) {
    let level = match level {
        Level::Debug => abi::log_level::DEBUG,
        Level::Info => abi::log_level::INFO,
        Level::Warn => abi::log_level::WARN,
        Level::Error => abi::log_level::ERROR,
    };
    unsafe {
        if !abi::envoy_dynamic_module_callback_log_enabled(level) {
            return;
        }
        if filter.is_empty() {
            abi::envoy_dynamic_module_callback_log(level, Buffer::of(message.as_bytes()));
        } else {
            let mut line = String::with_capacity(filter.len() + 2 + message.len());
            line.push_str(filter);
            line.push_str(": ");
            line.push_str(message);
            abi::envoy_dynamic_module_callback_log(level, Buffer::of(line.as_bytes()));
        }
    }
}

/// One part of a call's response, as Envoy's stream-callout hooks bring it.
#[derive(Clone)]
pub enum CallPart<'a> {
    Headers(Vec<(String, String)>, bool),
    Data(Vec<&'a [u8]>),
    Trailers(Vec<(String, String)>),
    Complete,
    Reset,
}

/// What a core is told of a call's response, its bytes served by the host meanwhile (as
/// proxy-wasm's gRPC callbacks do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Metadata { initial: bool, entries: usize },
    Message(usize),
    Close(u32),
}

/// What the gRPC callbacks read while one [`Delivery`] is handled.
#[derive(Debug, Default)]
struct Received {
    message: Vec<u8>,
    initial: Vec<(String, String)>,
    trailing: Vec<(String, String)>,
    status_message: String,
}

/// The calls this host has open, by Envoy's stream id.
#[derive(Debug, Default)]
struct Calls {
    next_token: u32,
    open: HashMap<u64, (u32, CallReader)>,
}

/// [`Host`] over the dynamic-module ABI, for one stream's filter or one filter configuration.
pub struct NativeHost {
    /// The filter's name, which starts its log lines (as Envoy starts a Wasm plugin's with
    /// its root id).
    name: &'static str,
    scope: Scope,
    metrics: Arc<Metrics>,
    calls: RefCell<Calls>,
    received: RefCell<Received>,
    /// The current request-body callback's chunk size (the rest is Envoy's buffer).
    request_chunk: Cell<usize>,
    /// A request header changed since the route was last picked (see [`Self::settle_route`]).
    route_stale: Cell<bool>,
    /// The filter reset the stream in this hook: Envoy must not be told to go on with it.
    reset: Cell<bool>,
    /// The stream's notes, when kept in the module ([`notes`]); else dynamic metadata.
    notes: Option<Rc<StreamNotes>>,
    /// The request headers as the filter before this one in the same Envoy filter read them.
    lent_request_headers: RefCell<Option<Headers>>,
}

impl NativeHost {
    pub fn new(name: &'static str, scope: Scope, metrics: Arc<Metrics>) -> Self {
        Self {
            name,
            scope,
            metrics,
            calls: RefCell::default(),
            received: RefCell::default(),
            request_chunk: Cell::new(0),
            route_stale: Cell::new(false),
            reset: Cell::new(false),
            notes: None,
            lent_request_headers: RefCell::new(None),
        }
    }

    /// The request headers as the filter before this one, in the same Envoy filter, read
    /// them: its next `request_headers` is these.
    pub fn lend_request_headers(&self, headers: Headers) {
        *self.lent_request_headers.borrow_mut() = Some(headers);
    }

    /// Closes this stream's record of notes to more filters ([`StreamNotes::close`]).
    pub fn close_notes(&self) {
        if let Some(notes) = &self.notes {
            notes.close();
        }
    }

    /// This host, its notes kept in `notes` (a stream's record, [`notes`]) when there is one.
    pub fn with_notes(mut self, notes: Option<Rc<StreamNotes>>) -> Self {
        self.notes = notes;
        self
    }

    /// At the end of a request callback: has Envoy pick the route again if a request header
    /// changed in it, as its Wasm host does on every change (a rollout's `x-edge-backend` must
    /// steer the router; a request transcoded in place has a new path). Once per callback, not
    /// per header: each pick walks the route table.
    pub fn settle_route(&self) {
        if self.route_stale.replace(false) {
            if let Ok(filter) = self.filter() {
                unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(filter) };
            }
        }
    }

    /// Whether the filter has reset the stream: a hook that did must stop, since continuing a
    /// reset stream is a use after free in Envoy (seen: a segfault when a hook reset the
    /// stream and returned continue).
    pub fn was_reset(&self) -> bool {
        self.reset.get()
    }

    /// Raises (or lowers) how much of the stream Envoy holds for the filters: the listener's
    /// per-connection limit otherwise.
    pub fn set_buffer_limit(&self, limit: u64) {
        if let Ok(filter) = self.filter() {
            unsafe { abi::envoy_dynamic_module_callback_http_set_buffer_limit(filter, limit) };
        }
    }

    fn filter(&self) -> Result<EnvoyFilter, HostError> {
        match self.scope {
            Scope::Filter(filter) => Ok(filter),
            Scope::Config(_) => Err(HostError::BAD_ARGUMENT),
        }
    }

    fn headers(&self, kind: u32) -> Result<Headers, HostError> {
        let filter = self.filter()?;
        let size =
            unsafe { abi::envoy_dynamic_module_callback_http_get_headers_size(filter, kind) };
        if size == 0 {
            return Ok(Headers::default());
        }
        // Envoy fills an array of pointers into its map, reused by each snapshot on this
        // worker; the names and values are copied once, into the snapshot's one buffer.
        HEADER_POINTERS
            .try_with(|pointers| {
                let mut pointers = pointers.try_borrow_mut().ok()?;
                pointers.clear();
                pointers.resize(size, Header::of("", ""));
                let filled = unsafe {
                    abi::envoy_dynamic_module_callback_http_get_headers(
                        filter,
                        kind,
                        pointers.as_mut_ptr(),
                    )
                };
                // SAFETY: Envoy filled `pointers` with pointers valid during this hook.
                filled.then(|| {
                    Headers::copied(pointers.iter().map(|header| unsafe { header.halves() }))
                })
            })
            .ok()
            .flatten()
            .ok_or(HostError::NOT_FOUND)
    }

    fn set_header(&self, kind: u32, name: &str, value: Option<&str>) -> Result<(), HostError> {
        let filter = self.filter()?;
        let value = value.map_or(Buffer::NULL, |value| Buffer::of(value.as_bytes()));
        let set = unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                filter,
                kind,
                Buffer::of(name.as_bytes()),
                value,
            )
        };
        set.then_some(()).ok_or(HostError::NOT_FOUND)
    }

    /// Changes a request header; the route is picked again when the callback ends
    /// ([`Self::settle_route`]).
    fn set_request_header_to(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        self.set_header(header_type::REQUEST, name, value)?;
        self.route_stale.set(true);
        Ok(())
    }

    fn body(&self, kind: u32) -> Vec<u8> {
        let Ok(filter) = self.filter() else {
            return Vec::new();
        };
        let count =
            unsafe { abi::envoy_dynamic_module_callback_http_get_body_chunks_size(filter, kind) };
        let mut chunks = vec![Buffer::NULL; count];
        if count == 0
            || !unsafe {
                abi::envoy_dynamic_module_callback_http_get_body_chunks(
                    filter,
                    kind,
                    chunks.as_mut_ptr(),
                )
            }
        {
            return Vec::new();
        }
        // SAFETY: Envoy filled `chunks` with pointers valid during this hook.
        let slices = || chunks.iter().map(|chunk| unsafe { chunk.bytes() });
        // Chunk by chunk: collected byte by byte, a body cost ~15 instructions a byte.
        let mut body = Vec::with_capacity(slices().map(<[u8]>::len).sum());
        slices().for_each(|slice| body.extend_from_slice(slice));
        body
    }

    fn append_body(&self, kind: u32, body: &[u8]) -> Result<(), HostError> {
        let filter = self.filter()?;
        unsafe {
            abi::envoy_dynamic_module_callback_http_append_body(filter, kind, Buffer::of(body))
        }
        .then_some(())
        .ok_or(HostError::NOT_FOUND)
    }

    fn replace_body(&self, kinds: [u32; 2], body: &[u8]) -> Result<(), HostError> {
        let filter = self.filter()?;
        unsafe {
            for kind in kinds {
                abi::envoy_dynamic_module_callback_http_drain_body(filter, kind, usize::MAX);
            }
            abi::envoy_dynamic_module_callback_http_append_body(filter, kinds[1], Buffer::of(body))
        }
        .then_some(())
        .ok_or(HostError::NOT_FOUND)
    }

    /// Called at the start of a request-body callback: the chunk that came (Envoy holds the
    /// earlier ones); returns the size of the whole body so far.
    pub fn request_body_arrived(&self) -> usize {
        let Ok(filter) = self.filter() else {
            return 0;
        };
        let size =
            |kind| unsafe { abi::envoy_dynamic_module_callback_http_get_body_size(filter, kind) };
        let chunk = size(body_type::RECEIVED_REQUEST);
        self.request_chunk.set(chunk);
        chunk + size(body_type::BUFFERED_REQUEST)
    }

    /// The size of the response body this callback brought.
    pub fn response_chunk_size(&self) -> usize {
        self.filter().map_or(0, |filter| unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_size(
                filter,
                body_type::RECEIVED_RESPONSE,
            )
        })
    }

    /// An integer attribute of the stream (`abi::attribute`).
    pub fn attribute_int(&self, id: u32) -> Option<u64> {
        let filter = self.filter().ok()?;
        let mut value = 0;
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_int(filter, id, &mut value)
        }
        .then_some(value)
    }

    /// A string attribute of the stream (`abi::attribute`).
    pub fn attribute_string(&self, id: u32) -> Option<String> {
        let filter = self.filter().ok()?;
        let mut value = Buffer::NULL;
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                filter, id, &mut value,
            )
        }
        .then(|| String::from_utf8_lossy(unsafe { value.bytes() }).into_owned())
    }

    /// A note one of the filters left for the others ([`Host::set_property`]).
    pub fn note(&self, key: &str) -> Option<Vec<u8>> {
        if let Some(notes) = &self.notes {
            let note = notes.get(key);
            if note.is_some() || !notes.may_lack() {
                return note;
            }
        }
        let filter = self.filter().ok()?;
        let mut value = Buffer::NULL;
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_metadata_string(
                filter,
                0,
                Buffer::of(NOTES_NAMESPACE.as_bytes()),
                Buffer::of(key.as_bytes()),
                &mut value,
            )
        };
        found
            .then(|| BASE64.decode(unsafe { value.bytes() }).ok())
            .flatten()
    }

    /// Opens a call whose messages are sent later ([`Self::send_on_call`]), with no deadline
    /// (a WebSocket's call lasts as long as the socket): its answer comes to [`Self::on_call`]
    /// as any call's.
    pub fn open_call(&self, request: GrpcRequest<'_>) -> Result<u32, HostError> {
        self.start_call(request, None, false)
    }

    /// Sends `data` (gRPC frames) on an open call; `end`: the call's request side ends here.
    pub fn send_on_call(&self, token: u32, data: &[u8], end: bool) -> Result<(), HostError> {
        let filter = self.filter()?;
        let stream = self
            .calls
            .try_borrow()
            .map_err(|_| HostError::INTERNAL_FAILURE)?
            .open
            .iter()
            .find(|(_, (open, _))| *open == token)
            .map(|(stream, _)| *stream)
            .ok_or(HostError::NOT_FOUND)?;
        unsafe {
            abi::envoy_dynamic_module_callback_http_stream_send_data(
                filter,
                stream,
                Buffer::of(data),
                end,
            )
        }
        .then_some(())
        .ok_or(HostError::NOT_FOUND)
    }

    /// Starts the filter's own response with `headers` (`:status` among them), its body to
    /// follow in [`Self::send_response_data`] unless `end`.
    pub fn send_response_headers(&self, headers: &[(&str, &str)], end: bool) {
        if let Ok(filter) = self.filter() {
            let mut headers: Vec<Header> = headers
                .iter()
                .map(|(name, value)| Header::of(name, value))
                .collect();
            unsafe {
                abi::envoy_dynamic_module_callback_http_send_response_headers(
                    filter,
                    headers.as_mut_ptr(),
                    headers.len(),
                    end,
                )
            }
        }
    }

    /// More of the filter's own response body; `end`: its last.
    pub fn send_response_data(&self, data: &[u8], end: bool) {
        if let Ok(filter) = self.filter() {
            unsafe {
                abi::envoy_dynamic_module_callback_http_send_response_data(
                    filter,
                    Buffer::of(data),
                    end,
                )
            }
        }
    }

    /// In a request-body callback: the piece that came, taken out of Envoy's way (nothing of
    /// it goes on to the next filter).
    pub fn take_request_chunk(&self) -> Vec<u8> {
        let chunk = self.body(body_type::RECEIVED_REQUEST);
        if let Ok(filter) = self.filter() {
            unsafe {
                abi::envoy_dynamic_module_callback_http_drain_body(
                    filter,
                    body_type::RECEIVED_REQUEST,
                    chunk.len(),
                )
            };
        }
        chunk
    }

    fn start_call(
        &self,
        request: GrpcRequest<'_>,
        timeout: Option<Duration>,
        end_stream: bool,
    ) -> Result<u32, HostError> {
        let path = format!("/{}/{}", request.service, request.method);
        let authority = edge_core::cluster_authority(request.cluster);
        let metadata: Vec<(&str, String)> = request
            .metadata
            .iter()
            .map(|(name, value)| (*name, String::from_utf8_lossy(value).into_owned()))
            .collect();
        let mut headers = vec![
            Header::of(":method", "POST"),
            Header::of(":path", &path),
            Header::of(":authority", &authority),
            Header::of("content-type", "application/grpc"),
            Header::of("te", "trailers"),
        ];
        headers.extend(metadata.iter().map(|(name, value)| Header::of(name, value)));
        let messages: Vec<Vec<u8>> = request.messages.iter().map(|m| m.to_vec()).collect();
        let body = edge_core::grpc::frame(&messages);
        let timeout_ms = timeout.map_or(0, |timeout| timeout.as_millis().max(1) as u64);
        let cluster = Buffer::of(request.cluster.as_bytes());
        let mut stream = 0;
        let result = unsafe {
            match self.scope {
                Scope::Filter(filter) => {
                    abi::envoy_dynamic_module_callback_http_filter_start_http_stream(
                        filter,
                        &mut stream,
                        cluster,
                        headers.as_mut_ptr(),
                        headers.len(),
                        Buffer::of(&body),
                        end_stream,
                        timeout_ms,
                    )
                }
                Scope::Config(config) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_start_http_stream(
                        config,
                        &mut stream,
                        cluster,
                        headers.as_mut_ptr(),
                        headers.len(),
                        Buffer::of(&body),
                        end_stream,
                        timeout_ms,
                    )
                }
            }
        };
        if result != 0 {
            // 2: no such cluster.
            return Err(if result == 2 {
                HostError::NOT_FOUND
            } else {
                HostError::INTERNAL_FAILURE
            });
        }
        let mut calls = self
            .calls
            .try_borrow_mut()
            .map_err(|_| HostError::INTERNAL_FAILURE)?;
        calls.next_token = calls.next_token.wrapping_add(1).max(1);
        let token = calls.next_token;
        calls
            .open
            .insert(stream, (token, CallReader::new(timeout.is_some())));
        Ok(token)
    }

    /// One part of a call's response arrived on `stream`: tells `deliver` what a gRPC client
    /// would report, in order, under the call's token, serving the message and metadata of
    /// each while it runs.
    pub fn on_call(&self, stream: u64, part: CallPart<'_>, mut deliver: impl FnMut(u32, Delivery)) {
        let (token, events) = {
            let Ok(mut calls) = self.calls.try_borrow_mut() else {
                return;
            };
            let ends = matches!(part, CallPart::Complete | CallPart::Reset);
            let Some((token, reader)) = calls.open.get_mut(&stream) else {
                return;
            };
            let token = *token;
            let events = match part {
                CallPart::Headers(headers, end_stream) => reader.headers(headers, end_stream),
                CallPart::Data(chunks) => chunks
                    .into_iter()
                    .flat_map(|chunk| reader.data(chunk))
                    .collect(),
                CallPart::Trailers(trailers) => reader.trailers(trailers),
                CallPart::Complete => vec![reader.complete()],
                CallPart::Reset => vec![CallReader::reset()],
            };
            if let Ok(mut received) = self.received.try_borrow_mut() {
                received.initial = reader.initial_metadata().to_vec();
                received.trailing = reader.trailing_metadata().to_vec();
            }
            if ends {
                calls.open.remove(&stream);
            }
            (token, events)
        };
        for event in events {
            let delivery = match event {
                CallEvent::InitialMetadata(entries) => Delivery::Metadata {
                    initial: true,
                    entries,
                },
                CallEvent::TrailingMetadata(entries) => Delivery::Metadata {
                    initial: false,
                    entries,
                },
                CallEvent::Message(message) => {
                    let size = message.len();
                    if let Ok(mut received) = self.received.try_borrow_mut() {
                        received.message = message;
                    }
                    Delivery::Message(size)
                }
                CallEvent::Close { status, message } => {
                    if let Ok(mut received) = self.received.try_borrow_mut() {
                        received.status_message = message;
                    }
                    Delivery::Close(status)
                }
            };
            deliver(token, delivery);
        }
    }

    /// The size of the last message a call delivered (a unary call's answer, at its close).
    pub fn received_size(&self) -> usize {
        self.received
            .try_borrow()
            .map_or(0, |received| received.message.len())
    }

    fn metric(&self, family: &str, kind: MetricKind, labels: &[(&str, &str)], value: u64) {
        let Some(id) = self.metrics.id(family, kind, labels.len()) else {
            return;
        };
        if matches!((self.scope, kind), (Scope::Filter(_), MetricKind::Counter))
            && self.metrics.hold(id, labels, value)
        {
            return;
        }
        let mut values = [Buffer::NULL; MAX_LABELS];
        for (slot, (_, value)) in values.iter_mut().zip(labels) {
            *slot = Buffer::of(value.as_bytes());
        }
        let length = labels.len();
        let pointer = values.as_mut_ptr();
        unsafe {
            match (self.scope, kind) {
                (Scope::Filter(filter), MetricKind::Counter) => {
                    abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                        filter, id, pointer, length, value,
                    )
                }
                (Scope::Filter(filter), MetricKind::Histogram) => {
                    abi::envoy_dynamic_module_callback_http_filter_record_histogram_value(
                        filter, id, pointer, length, value,
                    )
                }
                (Scope::Config(config), MetricKind::Counter) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                        config, id, pointer, length, value,
                    )
                }
                (Scope::Config(config), MetricKind::Histogram) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
                        config, id, pointer, length, value,
                    )
                }
                (Scope::Config(config), MetricKind::Gauge) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
                        config, id, pointer, length, value,
                    )
                }
                // Gauges are set by roots, from the main thread.
                (Scope::Filter(_), MetricKind::Gauge) => 0,
            }
        };
    }
}

impl SharedStore for NativeHost {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        SHARED.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        SHARED.set(key, value, cas)
    }
}

impl Host for NativeHost {
    fn log(&self, level: Level, message: &str) {
        log_from(level, self.name, message);
    }
    fn now(&self) -> Option<Duration> {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
    }
    fn request_headers(&self) -> Result<Headers, HostError> {
        if let Some(lent) = self.lent_request_headers.borrow_mut().take() {
            return Ok(lent);
        }
        self.headers(header_type::REQUEST)
    }
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.set_request_header_to(name, Some(value))
    }
    fn add_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        let filter = self.filter()?;
        let added = unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                filter,
                header_type::REQUEST,
                Buffer::of(name.as_bytes()),
                Buffer::of(value.as_bytes()),
            )
        };
        added.then_some(()).ok_or(HostError::NOT_FOUND)?;
        self.route_stale.set(true);
        Ok(())
    }
    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        self.set_request_header_to(name, None)
    }
    /// In the stream's record when the filter joined one ([`notes`]), else in its dynamic
    /// metadata, which a later write replaces (Envoy's filter state keeps the first write of a
    /// key read-only), base64 for a string value.
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        let key = path.join(".");
        if let Some(notes) = &self.notes {
            notes.set(&key, value);
            return Ok(());
        }
        let filter = self.filter()?;
        let encoded = BASE64.encode(value);
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                filter,
                Buffer::of(NOTES_NAMESPACE.as_bytes()),
                Buffer::of(key.as_bytes()),
                Buffer::of(encoded.as_bytes()),
            );
        }
        Ok(())
    }
    fn set_filter_state(&self, key: &str, value: &str) -> Result<(), HostError> {
        let filter = self.filter()?;
        let set = unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                filter,
                Buffer::of(key.as_bytes()),
                Buffer::of(value.as_bytes()),
            )
        };
        set.then_some(()).ok_or(HostError::NOT_FOUND)
    }
    fn send_reply(&self, reply: &LocalReply, client: Client, details: &str) {
        // Always written whole for gRPC clients: the ABI's local reply takes no gRPC status.
        let wire = edge_core::wire(reply, client, true);
        let mut headers: Vec<Header> = wire
            .headers
            .iter()
            .map(|(name, value)| Header::of(name, value))
            .collect();
        let Ok(filter) = self.filter() else {
            return;
        };
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                filter,
                u32::from(wire.http_status),
                headers.as_mut_ptr(),
                headers.len(),
                Buffer::of(&wire.body),
                Buffer::of(details.as_bytes()),
            );
        }
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let id = match path {
            ["request", "time"] => abi::attribute::REQUEST_TIME,
            ["request", "duration"] => abi::attribute::REQUEST_DURATION,
            _ => return None,
        };
        self.attribute_int(id)
            .map(|value| value.to_le_bytes().to_vec())
    }
    fn add_to_counter(&self, name: &str, amount: u64) {
        self.metric(name, MetricKind::Counter, &[], amount);
    }
    fn set_gauge(&self, name: &str, value: u64) {
        self.metric(name, MetricKind::Gauge, &[], value);
    }
    fn record_histogram(&self, name: &str, value: u64) {
        self.metric(name, MetricKind::Histogram, &[], value);
    }
    /// Envoy defines the families with their labels: the values go as they are.
    fn record_labelled(&self, family: &str, labels: &[(&str, &str)], observation: Observation) {
        match observation {
            Observation::Count => self.metric(family, MetricKind::Counter, labels, 1),
            Observation::Value(value) => self.metric(family, MetricKind::Histogram, labels, value),
        }
    }
    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        let mut body = self.body(body_type::BUFFERED_REQUEST);
        if self.request_chunk.get() > 0 {
            body.extend(self.body(body_type::RECEIVED_REQUEST));
        }
        body.truncate(size);
        Ok(body)
    }
    fn send_response(
        &self,
        http_status: u16,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), HostError> {
        let filter = self.filter()?;
        let mut all = Vec::with_capacity(headers.len() + 1);
        all.push(Header::of("content-type", content_type));
        all.extend(headers.iter().map(|(name, value)| Header::of(name, value)));
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                filter,
                u32::from(http_status),
                all.as_mut_ptr(),
                all.len(),
                Buffer::of(body),
                Buffer::of(b"via_upstream"),
            );
        }
        Ok(())
    }
    fn replace_request_body(&self, _size: usize, body: &[u8]) -> Result<(), HostError> {
        self.replace_body(
            [body_type::BUFFERED_REQUEST, body_type::RECEIVED_REQUEST],
            body,
        )
    }
    fn add_request_body(&self, body: &[u8]) -> Result<(), HostError> {
        self.append_body(body_type::BUFFERED_REQUEST, body)
    }
    fn response_headers(&self, trailers: bool) -> Result<Headers, HostError> {
        self.headers(if trailers {
            header_type::RESPONSE_TRAILER
        } else {
            header_type::RESPONSE
        })
    }
    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.set_header(header_type::RESPONSE, name, Some(value))
    }
    fn remove_response_header(&self, name: &str) -> Result<(), HostError> {
        self.set_header(header_type::RESPONSE, name, None)
    }
    fn remove_response_trailer(&self, name: &str) -> Result<(), HostError> {
        self.set_header(header_type::RESPONSE_TRAILER, name, None)
    }
    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        let mut body = self.body(body_type::RECEIVED_RESPONSE);
        body.truncate(size);
        Ok(body)
    }
    fn replace_response_body(&self, _size: usize, body: &[u8]) -> Result<(), HostError> {
        self.replace_body(
            [body_type::BUFFERED_RESPONSE, body_type::RECEIVED_RESPONSE],
            body,
        )
    }
    fn append_response_body(&self, body: &[u8]) -> Result<(), HostError> {
        self.append_body(body_type::BUFFERED_RESPONSE, body)
    }
    fn reset_request(&self) {
        if let Ok(filter) = self.filter() {
            self.reset.set(true);
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_reset_stream(
                    filter,
                    0,
                    Buffer::of(b"edge_reset"),
                );
            }
        }
    }
    fn grpc_call(&self, request: GrpcRequest<'_>, timeout: Duration) -> Result<u32, HostError> {
        self.start_call(request, Some(timeout), true)
    }
    fn grpc_stream(&self, request: GrpcRequest<'_>) -> Result<u32, HostError> {
        self.start_call(request, None, true)
    }
    fn grpc_cancel(&self, token: u32) {
        let stream = self.calls.try_borrow_mut().ok().and_then(|mut calls| {
            let stream = calls
                .open
                .iter()
                .find(|(_, (open, _))| *open == token)
                .map(|(stream, _)| *stream)?;
            calls.open.remove(&stream);
            Some(stream)
        });
        let Some(stream) = stream else {
            return;
        };
        unsafe {
            match self.scope {
                Scope::Filter(filter) => {
                    abi::envoy_dynamic_module_callback_http_filter_reset_http_stream(filter, stream)
                }
                Scope::Config(config) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_reset_http_stream(
                        config, stream,
                    )
                }
            }
        }
    }
    fn grpc_received(&self, size: usize) -> Result<Vec<u8>, HostError> {
        let received = self
            .received
            .try_borrow()
            .map_err(|_| HostError::INTERNAL_FAILURE)?;
        Ok(received.message[..size.min(received.message.len())].to_vec())
    }
    fn grpc_metadata(&self, initial: bool, name: &str) -> Option<String> {
        let received = self.received.try_borrow().ok()?;
        let metadata = if initial {
            &received.initial
        } else {
            &received.trailing
        };
        metadata
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
    fn grpc_status_message(&self) -> String {
        self.received
            .try_borrow()
            .map(|received| received.status_message.clone())
            .unwrap_or_default()
    }
    fn verify_signature(
        &self,
        hash: &str,
        public_key: &[u8],
        signature: &[u8],
        text: &[u8],
    ) -> Result<bool, HostError> {
        verify_es256(hash, public_key, signature, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    #[test]
    fn es256_signatures_are_checked_as_envoys_verify_signature_takes_them() {
        let random = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &random).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &random)
                .unwrap();
        // SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 } BIT STRING { point }.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let signature = pair.sign(&random, b"header.payload").unwrap();
        let check = |text: &[u8]| verify_es256("sha256", &spki, signature.as_ref(), text);
        assert_eq!(check(b"header.payload"), Ok(true));
        assert_eq!(check(b"header.payloaD"), Ok(false));
        assert_eq!(
            verify_es256("sha512", &spki, signature.as_ref(), b"x"),
            Err(HostError::BAD_ARGUMENT)
        );
        assert_eq!(
            verify_es256("sha256", &spki[1..], signature.as_ref(), b"x"),
            Err(HostError::BAD_ARGUMENT)
        );
    }
}
