//! What the filters ask of the proxy they run in, as traits: the glue of every filter is written
//! against [`Host`] (and the cores that keep state across requests against [`SharedStore`]), so
//! that it is unit-tested on the host with [`RecordingHost`] and a second target (a native
//! Envoy module) implements the same surface. `edge-host` implements it for proxy-wasm.
//!
//! Every call returns the host's status instead of panicking: a panic in a Wasm filter kills
//! its VM for every later request on that worker.

use crate::metrics::Observation;
#[cfg(any(test, feature = "testing"))]
use crate::Status;
use crate::{Client, Headers, LocalReply};
#[cfg(any(test, feature = "testing"))]
use std::cell::Cell;
#[cfg(any(test, feature = "testing"))]
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// A non-OK status from the host, by number (proxy-wasm's `WasmResult`, which a native host
/// maps its failures onto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl HostError {
    pub const NOT_FOUND: Self = Self(1);
    pub const BAD_ARGUMENT: Self = Self(2);
    pub const CAS_MISMATCH: Self = Self(8);
    pub const INTERNAL_FAILURE: Self = Self(10);
    pub const UNIMPLEMENTED: Self = Self(12);
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            7 => "Empty",
            8 => "CasMismatch",
            10 => "InternalFailure",
            12 => "Unimplemented",
            _ => "Unknown",
        };
        write!(f, "host status {} ({name})", self.0)
    }
}

/// Where a log line goes in the proxy's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Values shared by every worker of one proxy, updated by compare-and-swap (Envoy's shared
/// data: a key is never forgotten, and each value carries a CAS number).
pub trait SharedStore {
    /// The value and the CAS number to update it by; `None` when the key was never set.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// Writes unless another worker changed the value since `cas` was read (then
    /// `Err(HostError::CAS_MISMATCH)`); `cas` 0 writes unconditionally.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError>;
}

/// Workers' contexts share one host: the root's timers and the requests read the same store.
impl<S: SharedStore> SharedStore for std::rc::Rc<S> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        S::get(self, key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        S::set(self, key, value, cas)
    }
}

/// Whether a request goes on to the next filter after a callback, or waits (for a body, a
/// backend's answer, or a reply already sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

/// A gRPC request a filter sends, with metadata, to a cluster of the proxy: one message (a
/// unary call), or a client stream's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcRequest<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    pub metadata: Vec<(&'a str, &'a [u8])>,
    pub messages: &'a [&'a [u8]],
}

/// The calls a filter makes while handling one request (and from its timers).
pub trait Host: SharedStore {
    fn log(&self, level: Level, message: &str);
    /// The proxy's clock, as time since the Unix epoch; `None` if it will not say.
    fn now(&self) -> Option<Duration>;
    /// Every request header, in one call.
    fn request_headers(&self) -> Result<Headers, HostError>;
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    /// Adds a request header beside any of that name. For one the filter saw absent, cheaper
    /// than a set: Envoy looks nothing up, and so does not index a long header list for it.
    fn add_request_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    fn remove_request_header(&self, name: &str) -> Result<(), HostError>;
    /// Stores a value in the stream's filter state, for later filters and the access log.
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError>;
    /// Stores `value` in the stream's filter state under `key` as a string Envoy's access logs
    /// print (`%FILTER_STATE(key:PLAIN)%`); a proxy-wasm host cannot (`UNIMPLEMENTED`).
    fn set_filter_state(&self, key: &str, value: &str) -> Result<(), HostError>;
    /// Answers the request with `reply` shaped for `client`; `details` is the proxy's
    /// response-code details (`%RESPONSE_CODE_DETAILS%`). When the proxy refuses (the
    /// response has started), the host resets the stream rather than leave the client hanging.
    fn send_reply(&self, reply: &LocalReply, client: Client, details: &str);
    /// One of the proxy's attributes (e.g. `["request", "duration"]`), in its encoding
    /// (integers as 8 little-endian bytes); `None` when it has none.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    fn increment_counter(&self, name: &str) {
        self.add_to_counter(name, 1);
    }
    fn add_to_counter(&self, name: &str, amount: u64);
    fn set_gauge(&self, name: &str, value: u64);
    fn record_histogram(&self, name: &str, value: u64);
    /// An observation of `family` with `labels` (name, value, in the family's order). By
    /// default the labels go in the stat name ([`crate::metrics::labelled_name`]), as a
    /// proxy-wasm host needs; a host whose proxy has labelled metrics passes them as they are.
    fn record_labelled(&self, family: &str, labels: &[(&str, &str)], observation: Observation) {
        let name = crate::metrics::labelled_name(family, labels);
        match observation {
            Observation::Count => self.increment_counter(&name),
            Observation::Value(value) => self.record_histogram(&name, value),
        }
    }
    /// The request body buffered so far (up to `size` bytes).
    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError>;
    /// Answers the request with a body rendered from a backend's answer (Envoy's details
    /// `via_upstream`).
    fn send_response(
        &self,
        http_status: u16,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), HostError>;
    /// Replaces the request body buffered so far (`size` bytes) with `body`.
    fn replace_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostError>;
    /// In the headers' callback of a request that came without a body: gives it `body`.
    /// Refused by a host that cannot (proxy-wasm has no such call).
    fn add_request_body(&self, body: &[u8]) -> Result<(), HostError>;
    /// Every response header, or every trailer (`trailers`), in one call.
    fn response_headers(&self, trailers: bool) -> Result<Headers, HostError>;
    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    fn remove_response_header(&self, name: &str) -> Result<(), HostError>;
    fn remove_response_trailer(&self, name: &str) -> Result<(), HostError>;
    /// The response body of this callback (`size` bytes).
    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces the response body of this callback (`size` bytes) with `body`.
    fn replace_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError>;
    /// Appends to the response body this filter holds; refused when it holds none (no body
    /// came).
    fn append_response_body(&self, body: &[u8]) -> Result<(), HostError>;
    /// Resets the request's stream: the last resort when no reply can be sent, so that the
    /// client sees an error instead of a hang.
    fn reset_request(&self);
    /// Sends a unary call; its answer comes back to the calling context as one response and
    /// a status, under the returned token.
    fn grpc_call(&self, request: GrpcRequest<'_>, timeout: Duration) -> Result<u32, HostError>;
    /// Sends a call as a stream (opened, its messages sent, our side closed), for callers that
    /// need the response's metadata or several messages: the answer comes back in parts
    /// (initial metadata, each message, trailing metadata, close) under the returned token.
    fn grpc_stream(&self, request: GrpcRequest<'_>) -> Result<u32, HostError>;
    /// Cancels a stream: no more of its callbacks come, and the backend sees CANCELLED.
    fn grpc_cancel(&self, token: u32);
    /// Inside a gRPC callback: the message received (`size` bytes).
    fn grpc_received(&self, size: usize) -> Result<Vec<u8>, HostError>;
    /// Inside a stream's metadata callback: one value of its initial or trailing metadata.
    fn grpc_metadata(&self, initial: bool, name: &str) -> Option<String>;
    /// Inside the callback of a call that failed: the status message it closed with.
    fn grpc_status_message(&self) -> String;
    /// Checks `signature` (DER) over `text` with `public_key` (DER SubjectPublicKeyInfo) and
    /// the `hash` named (e.g. `sha256`) by the proxy's own crypto: `Ok(valid)`;
    /// `Err(HostError::NOT_FOUND)` when the proxy has none.
    fn verify_signature(
        &self,
        hash: &str,
        public_key: &[u8],
        signature: &[u8],
        text: &[u8],
    ) -> Result<bool, HostError>;
}

/// A signature check for [`RecordingHost`]: (hash, public key, signature, text) → valid.
#[cfg(any(test, feature = "testing"))]
pub type Crypto = fn(&str, &[u8], &[u8], &[u8]) -> bool;

/// A [`SharedStore`] in memory, as Envoy keeps shared data: a CAS number per key, bumped on
/// every write. Thread-safe: a native host keeps one for the whole process, as Envoy does.
#[derive(Debug, Default)]
pub struct MemoryStore {
    values: Mutex<HashMap<String, (Vec<u8>, u32)>>,
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        let values = self
            .values
            .lock()
            .map_err(|_| HostError::INTERNAL_FAILURE)?;
        Ok(values.get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        let mut values = self
            .values
            .lock()
            .map_err(|_| HostError::INTERNAL_FAILURE)?;
        let held = values.get(key).map(|(_, held)| *held);
        // Envoy checks the number only against a value it holds.
        if held.is_some_and(|held| cas != 0 && cas != held) {
            return Err(HostError::CAS_MISMATCH);
        }
        let next = held.unwrap_or(0).wrapping_add(1).max(1);
        values.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

/// One call a filter made, as [`RecordingHost`] saw it.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Log(Level, String),
    SetHeader(String, String),
    AddHeader(String, String),
    RemoveHeader(String),
    SetResponseHeader(String, String),
    RemoveResponseHeader(String),
    RemoveResponseTrailer(String),
    ReplaceRequestBody(Vec<u8>),
    AddRequestBody(Vec<u8>),
    ReplaceResponseBody(Vec<u8>),
    AppendResponseBody(Vec<u8>),
    SetProperty(String, Vec<u8>),
    SetFilterState(String, String),
    Reply {
        http_status: u16,
        status: Status,
        client: Client,
        details: String,
    },
    Counter(String),
    Gauge(String, u64),
    Histogram(String, u64),
    Response {
        http_status: u16,
        content_type: String,
        body: Vec<u8>,
        headers: Vec<(String, String)>,
    },
    Reset,
    /// A unary call (`timeout: Some`) or a stream (`None`), with its token.
    Grpc {
        token: u32,
        cluster: String,
        path: String,
        metadata: Vec<(String, Vec<u8>)>,
        messages: Vec<Vec<u8>>,
        timeout: Option<Duration>,
    },
    /// A stream cancelled by its token.
    GrpcCancel(u32),
}

/// What [`RecordingHost`] serves inside gRPC callbacks: the answer a test delivers.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default, Clone)]
pub struct GrpcAnswer {
    pub message: Vec<u8>,
    pub initial_metadata: Vec<(String, String)>,
    pub trailing_metadata: Vec<(String, String)>,
    pub status_message: String,
}

/// A host for the glue's unit tests: it serves the request headers and clock it was given,
/// keeps shared data in a [`MemoryStore`], records every other call in order, and fails the
/// calls it is told to fail. The clock, the failing calls and the gRPC answer can change
/// while a test runs, behind the `Rc` the cores hold.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct RecordingHost {
    pub headers: Headers,
    pub now: Cell<Option<Duration>>,
    pub store: MemoryStore,
    pub calls: RefCell<Vec<Call>>,
    /// Header writes (set or remove) fail with this status.
    pub failing_header_writes: Option<HostError>,
    /// The attributes it serves, by dotted path (`request.time`).
    pub properties: HashMap<String, Vec<u8>>,
    pub body: Vec<u8>,
    /// gRPC calls fail to start with this status.
    pub failing_grpc: Cell<Option<HostError>>,
    /// What gRPC callbacks read (set it before delivering one).
    pub answer: RefCell<GrpcAnswer>,
    /// The response headers and trailers it serves.
    pub response_headers: RefCell<Headers>,
    pub response_trailers: RefCell<Headers>,
    /// The response body of the callback being delivered (set it before delivering one).
    pub response_body: RefCell<Vec<u8>>,
    /// Appends to the response body fail with this status (no body was held).
    pub failing_appends: Cell<Option<HostError>>,
    /// The proxy's crypto, if it has any.
    pub crypto: Option<Crypto>,
    /// Filter state writes fail with this status (as a proxy-wasm host's do).
    pub failing_filter_state: Option<HostError>,
}

#[cfg(any(test, feature = "testing"))]
impl RecordingHost {
    pub fn with_headers(pairs: &[(&str, &str)]) -> Self {
        Self {
            headers: Headers::new(
                pairs
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect(),
            ),
            ..Self::default()
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn record(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }

    /// The gRPC calls made so far.
    pub fn grpc_calls(&self) -> Vec<Call> {
        self.calls
            .borrow()
            .iter()
            .filter(|call| matches!(call, Call::Grpc { .. }))
            .cloned()
            .collect()
    }

    fn grpc(&self, request: GrpcRequest<'_>, timeout: Option<Duration>) -> Result<u32, HostError> {
        if let Some(error) = self.failing_grpc.get() {
            return Err(error);
        }
        let token = 1 + self.grpc_calls().len() as u32;
        self.record(Call::Grpc {
            token,
            cluster: request.cluster.to_string(),
            path: format!("/{}/{}", request.service, request.method),
            metadata: request
                .metadata
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_vec()))
                .collect(),
            messages: request.messages.iter().map(|m| m.to_vec()).collect(),
            timeout,
        });
        Ok(token)
    }

    fn header_write(&self, call: Call) -> Result<(), HostError> {
        match self.failing_header_writes {
            Some(error) => Err(error),
            None => {
                self.record(call);
                Ok(())
            }
        }
    }
}

#[cfg(any(test, feature = "testing"))]
impl SharedStore for RecordingHost {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.store.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        self.store.set(key, value, cas)
    }
}

#[cfg(any(test, feature = "testing"))]
impl Host for RecordingHost {
    fn log(&self, level: Level, message: &str) {
        self.record(Call::Log(level, message.to_string()));
    }
    fn now(&self) -> Option<Duration> {
        self.now.get()
    }
    fn request_headers(&self) -> Result<Headers, HostError> {
        Ok(self.headers.clone())
    }
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.header_write(Call::SetHeader(name.to_string(), value.to_string()))
    }
    fn add_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.header_write(Call::AddHeader(name.to_string(), value.to_string()))
    }
    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        self.header_write(Call::RemoveHeader(name.to_string()))
    }
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        self.record(Call::SetProperty(path.join("."), value.to_vec()));
        Ok(())
    }
    fn set_filter_state(&self, key: &str, value: &str) -> Result<(), HostError> {
        if let Some(error) = self.failing_filter_state {
            return Err(error);
        }
        self.record(Call::SetFilterState(key.to_string(), value.to_string()));
        Ok(())
    }
    fn send_reply(&self, reply: &LocalReply, client: Client, details: &str) {
        self.record(Call::Reply {
            http_status: reply.http_status,
            status: reply.status.clone(),
            client,
            details: details.to_string(),
        });
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.get(&path.join(".")).cloned()
    }
    /// Recorded as `amount` increments.
    fn add_to_counter(&self, name: &str, amount: u64) {
        for _ in 0..amount {
            self.record(Call::Counter(name.to_string()));
        }
    }
    fn set_gauge(&self, name: &str, value: u64) {
        self.record(Call::Gauge(name.to_string(), value));
    }
    fn record_histogram(&self, name: &str, value: u64) {
        self.record(Call::Histogram(name.to_string(), value));
    }
    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        Ok(self.body[..size.min(self.body.len())].to_vec())
    }
    fn replace_request_body(&self, _size: usize, body: &[u8]) -> Result<(), HostError> {
        self.record(Call::ReplaceRequestBody(body.to_vec()));
        Ok(())
    }
    fn add_request_body(&self, body: &[u8]) -> Result<(), HostError> {
        self.record(Call::AddRequestBody(body.to_vec()));
        Ok(())
    }
    fn response_headers(&self, trailers: bool) -> Result<Headers, HostError> {
        Ok(if trailers {
            self.response_trailers.borrow().clone()
        } else {
            self.response_headers.borrow().clone()
        })
    }
    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.record(Call::SetResponseHeader(name.to_string(), value.to_string()));
        Ok(())
    }
    fn remove_response_header(&self, name: &str) -> Result<(), HostError> {
        self.record(Call::RemoveResponseHeader(name.to_string()));
        Ok(())
    }
    fn remove_response_trailer(&self, name: &str) -> Result<(), HostError> {
        self.record(Call::RemoveResponseTrailer(name.to_string()));
        Ok(())
    }
    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        let body = self.response_body.borrow();
        Ok(body[..size.min(body.len())].to_vec())
    }
    fn replace_response_body(&self, _size: usize, body: &[u8]) -> Result<(), HostError> {
        self.record(Call::ReplaceResponseBody(body.to_vec()));
        Ok(())
    }
    fn append_response_body(&self, body: &[u8]) -> Result<(), HostError> {
        if let Some(error) = self.failing_appends.get() {
            return Err(error);
        }
        self.record(Call::AppendResponseBody(body.to_vec()));
        Ok(())
    }
    fn send_response(
        &self,
        http_status: u16,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), HostError> {
        self.record(Call::Response {
            http_status,
            content_type: content_type.to_string(),
            body: body.to_vec(),
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        });
        Ok(())
    }
    fn reset_request(&self) {
        self.record(Call::Reset);
    }
    fn grpc_call(&self, request: GrpcRequest<'_>, timeout: Duration) -> Result<u32, HostError> {
        self.grpc(request, Some(timeout))
    }
    fn grpc_stream(&self, request: GrpcRequest<'_>) -> Result<u32, HostError> {
        self.grpc(request, None)
    }
    fn grpc_cancel(&self, token: u32) {
        self.record(Call::GrpcCancel(token));
    }
    fn grpc_received(&self, size: usize) -> Result<Vec<u8>, HostError> {
        let message = &self.answer.borrow().message;
        Ok(message[..size.min(message.len())].to_vec())
    }
    fn grpc_metadata(&self, initial: bool, name: &str) -> Option<String> {
        let answer = self.answer.borrow();
        let metadata = if initial {
            &answer.initial_metadata
        } else {
            &answer.trailing_metadata
        };
        metadata
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
    fn grpc_status_message(&self) -> String {
        self.answer.borrow().status_message.clone()
    }
    fn verify_signature(
        &self,
        hash: &str,
        public_key: &[u8],
        signature: &[u8],
        text: &[u8],
    ) -> Result<bool, HostError> {
        let crypto = self.crypto.ok_or(HostError::NOT_FOUND)?;
        Ok(crypto(hash, public_key, signature, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_refuses_a_stale_cas_as_envoy_does() {
        let store = MemoryStore::default();
        assert_eq!(store.get("k"), Ok(None));
        store.set("k", b"1", 0).unwrap();
        let (value, cas) = store.get("k").unwrap().unwrap();
        assert_eq!(value, b"1");
        store.set("k", b"2", cas).unwrap();
        assert_eq!(store.set("k", b"3", cas), Err(HostError::CAS_MISMATCH));
        assert_eq!(store.get("k").unwrap().unwrap().0, b"2");
        store.set("k", b"4", 0).unwrap();
        assert_eq!(store.get("k").unwrap().unwrap().0, b"4");
    }
}
