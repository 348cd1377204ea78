//! WebSocket (RFC 6455) for client and bidirectional streams: the handshake's answer, the
//! frames each way, and one socket's session over a gRPC call — each text frame from the
//! client one JSON message of the call, each message of the backend's one text frame to the
//! client, and the call's status the close code.
//!
//! The framing is written here rather than taken from a WebSocket crate: the proxy owns the
//! connection, so only the frame format is needed (a few dozen lines), where the crates bring
//! their own I/O, handshake client and random-number generator into a core that also builds for
//! Wasm.
//!
//! Closing: a client ends its messages with a close frame (libraries), or with an empty text
//! frame (browsers drop what arrives after they close, so they cannot read a client stream's
//! answer otherwise); the socket then stays open for the backend's answer, and closes with
//! `1000` when the call ends OK, `4000 + code` (the gRPC code) and its message otherwise.

use crate::{Failure, Pending, Route, Transcoder};
use base64::Engine;
use edge_core::grpc;
use edge_core::host::GrpcRequest;
use edge_core::{GrpcCode, Headers, LocalReply, Status};
use sha1::{Digest, Sha1};

/// RFC 6455's key suffix for `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The one version of the protocol (RFC 6455).
const VERSION: &str = "13";

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Close codes (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    /// The private range's start: a gRPC status `code` closes with `GRPC_BASE + code`.
    pub const GRPC_BASE: u16 = 4000;
}

/// A close frame's reason fits in 123 bytes (a control frame's 125, less the code).
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Whether a request asks for a WebSocket (`Upgrade: websocket`; Envoy gives an HTTP/2
/// extended CONNECT the same headers).
pub fn is_upgrade(headers: &Headers) -> bool {
    headers
        .get("upgrade")
        .is_some_and(|upgrade| upgrade.eq_ignore_ascii_case("websocket"))
}

/// The handshake's `Sec-WebSocket-Accept` for a request, or the reply refusing it.
pub fn accept(headers: &Headers) -> Result<String, Failure> {
    if headers.get("sec-websocket-version") != Some(VERSION) {
        return Err(Failure::socket_refused(
            LocalReply::error(
                GrpcCode::InvalidArgument,
                "WebSocket version 13 (RFC 6455) is the one served here",
            )
            .with_http_status(426)
            .with_header("sec-websocket-version", VERSION),
        ));
    }
    let key = headers.get("sec-websocket-key").unwrap_or_default().trim();
    let nonce = base64::engine::general_purpose::STANDARD.decode(key);
    if nonce.map_or(true, |nonce| nonce.len() != 16) {
        return Err(Failure::socket_refused(LocalReply::error(
            GrpcCode::InvalidArgument,
            "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455)",
        )));
    }
    Ok(accept_key(key))
}

fn accept_key(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// One frame from the server (never masked, never fragmented).
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x80 | opcode);
    match payload.len() {
        short @ 0..=125 => frame.push(short as u8),
        medium @ 126..=0xFFFF => {
            frame.push(126);
            frame.extend_from_slice(&(medium as u16).to_be_bytes());
        }
        long => {
            frame.push(127);
            frame.extend_from_slice(&(long as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// A close frame with `code` and as much of `reason` as fits, cut at a character boundary.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CLOSE_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(CLOSE, &payload)
}

/// The close code for a call that ended with gRPC status `code`.
pub fn close_code_of(code: GrpcCode) -> u16 {
    match code {
        GrpcCode::Ok => close_code::NORMAL,
        code => close_code::GRPC_BASE + code.number() as u16,
    }
}

/// What a client's frames amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A whole text message (fragments joined).
    Text(String),
    /// A whole binary message.
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close,
}

/// The client broke the protocol: close with `code`, saying `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: String,
}

fn violation(code: u16, reason: impl Into<String>) -> Violation {
    Violation {
        code,
        reason: reason.into(),
    }
}

/// Reads a client's frames as their bytes come, in pieces of any size.
#[derive(Debug)]
pub struct FrameReader {
    buffer: Vec<u8>,
    /// A fragmented message so far: its opcode and payload.
    fragments: Option<(u8, Vec<u8>)>,
    /// The largest message taken (the transcoder's `max_body_bytes`).
    max_message_bytes: usize,
}

impl FrameReader {
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            buffer: Vec::new(),
            fragments: None,
            max_message_bytes,
        }
    }

    /// The messages `bytes` complete, in order, and the violation that stopped the reading, if
    /// one did (the messages before it are still returned, to be passed on before the close).
    pub fn push(&mut self, bytes: &[u8]) -> (Vec<Inbound>, Option<Violation>) {
        self.buffer.extend_from_slice(bytes);
        let mut messages = Vec::new();
        loop {
            match self.next_frame() {
                Ok(Some(message)) => messages.extend(message),
                Ok(None) => return (messages, None),
                Err(violation) => return (messages, Some(violation)),
            }
        }
    }

    /// The next whole frame at the buffer's front, taken off it: `Ok(None)` until it is all
    /// in; `Some(None)` for a fragment that completes no message.
    fn next_frame(&mut self) -> Result<Option<Option<Inbound>>, Violation> {
        let Some(&[first, second]) = self.buffer.get(..2) else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            return Err(violation(
                close_code::PROTOCOL_ERROR,
                "no WebSocket extension was agreed: RSV bits must be 0",
            ));
        }
        if second & 0x80 == 0 {
            return Err(violation(
                close_code::PROTOCOL_ERROR,
                "a client's frames must be masked",
            ));
        }
        let (length, header) = match second & 0x7F {
            126 => match self.buffer.get(2..4) {
                Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4),
                None => return Ok(None),
            },
            127 => match self.buffer.get(2..10) {
                Some(bytes) => {
                    let mut length = [0; 8];
                    length.copy_from_slice(bytes);
                    (u64::from_be_bytes(length), 10)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 2),
        };
        let (fin, opcode) = (first & 0x80 != 0, first & 0x0F);
        let control = opcode >= CLOSE;
        if control && (!fin || length > 125) {
            return Err(violation(
                close_code::PROTOCOL_ERROR,
                "a control frame must be whole and at most 125 bytes",
            ));
        }
        let so_far = self
            .fragments
            .as_ref()
            .map_or(0, |(_, payload)| payload.len());
        if length.saturating_add(so_far as u64) > self.max_message_bytes as u64 {
            return Err(violation(
                close_code::TOO_BIG,
                format!("a message exceeds {} bytes", self.max_message_bytes),
            ));
        }
        let length = length as usize;
        let Some(mask) = self.buffer.get(header..header + 4) else {
            return Ok(None);
        };
        let mask = [mask[0], mask[1], mask[2], mask[3]];
        let start = header + 4;
        let Some(masked) = self.buffer.get(start..start + length) else {
            return Ok(None);
        };
        let payload: Vec<u8> = masked
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ mask[i % 4])
            .collect();
        self.buffer.drain(..start + length);
        let message = match (opcode, self.fragments.take()) {
            (CLOSE, fragments) => {
                self.fragments = fragments;
                Inbound::Close
            }
            (PING, fragments) => {
                self.fragments = fragments;
                Inbound::Ping(payload)
            }
            (PONG, fragments) => {
                self.fragments = fragments;
                Inbound::Pong
            }
            (TEXT | BINARY, None) if !fin => {
                self.fragments = Some((opcode, payload));
                return Ok(Some(None));
            }
            (TEXT | BINARY, None) => whole(opcode, payload)?,
            (CONTINUATION, Some((first_opcode, mut joined))) => {
                joined.extend_from_slice(&payload);
                if !fin {
                    self.fragments = Some((first_opcode, joined));
                    return Ok(Some(None));
                }
                whole(first_opcode, joined)?
            }
            (CONTINUATION, None) => {
                return Err(violation(
                    close_code::PROTOCOL_ERROR,
                    "a continuation frame with no message to continue",
                ))
            }
            (TEXT | BINARY, Some(_)) => {
                return Err(violation(
                    close_code::PROTOCOL_ERROR,
                    "a new message began before the last one ended",
                ))
            }
            (other, _) => {
                return Err(violation(
                    close_code::PROTOCOL_ERROR,
                    format!("unknown opcode {other:#x}"),
                ))
            }
        };
        Ok(Some(Some(message)))
    }
}

fn whole(opcode: u8, payload: Vec<u8>) -> Result<Inbound, Violation> {
    if opcode == BINARY {
        return Ok(Inbound::Binary(payload));
    }
    String::from_utf8(payload)
        .map(Inbound::Text)
        .map_err(|_| violation(close_code::INVALID_PAYLOAD, "a text frame must be UTF-8"))
}

/// What the glue does for a socket, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketStep {
    /// To the backend: gRPC frames, `end` when the client's side of the call ends here.
    ToBackend { data: Vec<u8>, end: bool },
    /// To the client: WebSocket frames, `end` when the socket ends here.
    ToClient { data: Vec<u8>, end: bool },
    /// Cancel the call: the backend sees CANCELLED.
    CancelCall,
}

/// One WebSocket carrying one client- or bidirectional-streaming call.
#[derive(Debug)]
pub struct Socket {
    pending: Pending,
    accept: String,
    frames: FrameReader,
    /// Messages the client sent (for errors naming one).
    sent: usize,
    /// The client ended its messages: the backend's answer is still awaited.
    client_done: bool,
    /// The socket is closed (a close frame sent or held): nothing more goes either way.
    closed: bool,
    /// The client's connection is not taking what is written (Envoy's buffer for it is over
    /// its high watermark): frames wait in `held` until it drains.
    slow: bool,
    held: Vec<u8>,
    /// `held` ends with the socket's last frame.
    held_end: bool,
    /// The most that waits for a slow client (the transcoder's `buffer_limit_bytes`).
    max_held_bytes: usize,
}

impl Socket {
    pub fn new(
        pending: Pending,
        accept: String,
        max_message_bytes: usize,
        max_held_bytes: usize,
    ) -> Self {
        Self {
            pending,
            accept,
            frames: FrameReader::new(max_message_bytes),
            sent: 0,
            client_done: false,
            closed: false,
            slow: false,
            held: Vec::new(),
            held_end: false,
            max_held_bytes,
        }
    }

    /// Frames for the client: written, or held while it is slow. A client that lets more than
    /// `max_held_bytes` wait is dropped (its call cancelled): memory stays bounded whatever it
    /// reads.
    fn for_client(&mut self, data: Vec<u8>, end: bool) -> Vec<SocketStep> {
        if !self.slow {
            return vec![SocketStep::ToClient { data, end }];
        }
        self.held.extend_from_slice(&data);
        self.held_end |= end;
        if self.held.len() <= self.max_held_bytes {
            return Vec::new();
        }
        self.held = Vec::new();
        self.held_end = false;
        self.closed = true;
        vec![
            SocketStep::CancelCall,
            SocketStep::ToClient {
                data: close_frame(
                    close_code_of(GrpcCode::ResourceExhausted),
                    &format!(
                        "the client did not read: over {} bytes waited for it",
                        self.max_held_bytes
                    ),
                ),
                end: true,
            },
        ]
    }

    /// The client's connection is full (Envoy's high watermark): hold what is for it.
    pub fn client_slow(&mut self) {
        self.slow = true;
    }

    /// The client's connection drained (the low watermark): what waited goes.
    pub fn client_ready(&mut self) -> Vec<SocketStep> {
        self.slow = false;
        if self.held.is_empty() {
            return Vec::new();
        }
        let end = std::mem::take(&mut self.held_end);
        vec![SocketStep::ToClient {
            data: std::mem::take(&mut self.held),
            end,
        }]
    }

    pub fn route<'t>(&self, transcoder: &'t Transcoder) -> Result<&'t Route, Failure> {
        transcoder.route(self.pending.route)
    }

    /// The call to open, with the request's forwarded headers as metadata and no message yet
    /// (each comes in a frame).
    pub fn call<'s>(&'s self, route: &'s Route) -> GrpcRequest<'s> {
        GrpcRequest {
            cluster: route.destination(self.pending.backend.as_deref()),
            service: &route.service,
            method: &route.method,
            metadata: self
                .pending
                .metadata
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes()))
                .collect(),
            messages: &[],
        }
    }

    /// The upgrade's answer, once the call is open.
    pub fn accepted(&self) -> Vec<(&'static str, &str)> {
        vec![
            (":status", "101"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", self.accept.as_str()),
        ]
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes from the client.
    pub fn client_sent(&mut self, transcoder: &Transcoder, bytes: &[u8]) -> Vec<SocketStep> {
        if self.closed {
            return Vec::new();
        }
        let (messages, violation) = self.frames.push(bytes);
        let mut steps = Vec::new();
        for message in messages {
            match message {
                Inbound::Text(text) if text.trim().is_empty() => self.end_client(&mut steps),
                Inbound::Close => self.end_client(&mut steps),
                Inbound::Text(_) | Inbound::Binary(_) if self.client_done => {}
                Inbound::Text(text) => match self.message(transcoder, &text) {
                    Ok(message) => steps.push(SocketStep::ToBackend {
                        data: grpc::frame(&[message]),
                        end: false,
                    }),
                    Err(status) => return self.abort(steps, status.code, &status.message),
                },
                Inbound::Binary(_) => {
                    return self.fail(
                        steps,
                        close_code::UNSUPPORTED_DATA,
                        "send each message as a JSON text frame",
                    )
                }
                Inbound::Ping(payload) => {
                    steps.extend(self.for_client(frame(PONG, &payload), false))
                }
                Inbound::Pong => {}
            }
        }
        match violation {
            Some(Violation { code, reason }) => self.fail(steps, code, &reason),
            None => steps,
        }
    }

    /// A text frame as the call's next message (the upgrade's path variables and query
    /// parameters apply to each, as to each element of a JSON array body).
    fn message(&mut self, transcoder: &Transcoder, text: &str) -> Result<Vec<u8>, Status> {
        let index = self.sent;
        self.sent += 1;
        let route = self
            .route(transcoder)
            .map_err(|failure| failure.reply.status)?;
        transcoder
            .request_message(
                route,
                &self.pending.bindings,
                self.pending.query.as_deref(),
                text.as_bytes(),
                crate::Encoding::Json,
            )
            .map_err(|status| {
                Status::new(status.code, format!("message {index}: {}", status.message))
            })
    }

    fn end_client(&mut self, steps: &mut Vec<SocketStep>) {
        if !self.client_done {
            self.client_done = true;
            steps.push(SocketStep::ToBackend {
                data: Vec::new(),
                end: true,
            });
        }
    }

    /// The client sent what cannot be passed on: the call is cancelled and the socket closed
    /// with `code` (the gRPC status's close code), the reason saying why.
    fn abort(&mut self, steps: Vec<SocketStep>, code: GrpcCode, reason: &str) -> Vec<SocketStep> {
        self.fail(steps, close_code_of(code), reason)
    }

    fn fail(&mut self, mut steps: Vec<SocketStep>, code: u16, reason: &str) -> Vec<SocketStep> {
        // The close goes at once: what waited for the client is dropped with the socket.
        self.closed = true;
        self.held = Vec::new();
        self.held_end = false;
        steps.push(SocketStep::CancelCall);
        steps.push(SocketStep::ToClient {
            data: close_frame(code, reason),
            end: true,
        });
        steps
    }

    /// A message from the backend.
    pub fn backend_sent(&mut self, transcoder: &Transcoder, message: &[u8]) -> Vec<SocketStep> {
        if self.closed {
            return Vec::new();
        }
        let json = self
            .route(transcoder)
            .map_err(|failure| failure.reply.status)
            .and_then(|route| transcoder.stream_message_json(route, message));
        match json {
            Ok(json) => self.for_client(frame(TEXT, &json), false),
            Err(status) => self.abort(Vec::new(), status.code, &status.message),
        }
    }

    /// The call ended with `status`: the socket closes with it.
    pub fn closed_by_backend(&mut self, status: &Status) -> Vec<SocketStep> {
        if self.closed {
            return Vec::new();
        }
        let close = close_frame(close_code_of(status.code), &status.message);
        let steps = self.for_client(close, true);
        self.closed = true;
        steps
    }

    /// The client went away (the stream ended before the call): it is cancelled.
    pub fn gone(&mut self) -> Vec<SocketStep> {
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        vec![SocketStep::CancelCall]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's frame: masked with `mask`.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    fn upgrade(path: &str) -> Headers {
        upgrade_with(path, &[])
    }

    fn upgrade_with(path: &str, more: &[(&str, &str)]) -> Headers {
        let headers = [
            (":method", "GET"),
            (":path", path),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("x-user-id", "u1"),
        ];
        Headers::new(
            headers
                .iter()
                .chain(more)
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        )
    }

    fn refusal(plan: crate::HeadersPlan<'_>) -> LocalReply {
        match plan {
            crate::HeadersPlan::Refuse { failure, .. } => failure.reply,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn an_upgrade_to_a_stream_from_the_client_is_a_socket_and_any_other_is_refused() {
        let transcoder = crate::tests::transcoder().with_sockets();
        match transcoder.plan_headers(&upgrade("/catalog/items:batchCreate"), true) {
            crate::HeadersPlan::Socket {
                route,
                pending,
                accept,
            } => {
                assert_eq!(route.method, "CreateItems");
                assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
                assert_eq!(pending.bindings, Vec::<(String, String)>::new());
            }
            other => panic!("not a socket: {other:?}"),
        }
        // One message from the client (a POST binding, a GET-only path): 400, saying why.
        for path in [
            "/catalog/items",
            "/catalog/items/42?x=1",
            "/catalog/items:watch",
        ] {
            let reply = refusal(transcoder.plan_headers(&upgrade(path), true));
            assert_eq!(reply.http_status, 400, "{path}");
            assert!(
                reply
                    .status
                    .message
                    .contains("client and bidirectional streams only"),
                "{path}: {}",
                reply.status.message
            );
            assert!(
                !reply.status.message.contains('?'),
                "{}",
                reply.status.message
            );
        }
        // A browser's socket from an origin the configuration does not list: 403; a client
        // that names no origin is no browser, and not checked.
        let mut config = crate::tests::transcoder().config.clone();
        config.socket_origins = vec!["https://shop.example".into()];
        let guarded = Transcoder::new(config).unwrap().with_sockets();
        let from = |origin: &str| {
            let headers = upgrade_with("/catalog/items:batchCreate", &[("origin", origin)]);
            guarded.plan_headers(&headers, true)
        };
        let reply = refusal(from("https://evil.example"));
        assert_eq!(
            (reply.http_status, reply.status.code),
            (403, GrpcCode::PermissionDenied)
        );
        assert!(matches!(
            from("https://shop.example"),
            crate::HeadersPlan::Socket { .. }
        ));
        assert!(matches!(
            guarded.plan_headers(&upgrade("/catalog/items:batchCreate"), true),
            crate::HeadersPlan::Socket { .. }
        ));
        // A host that cannot serve sockets (proxy-wasm): 501.
        let wasm = crate::tests::transcoder();
        let reply = refusal(wasm.plan_headers(&upgrade("/catalog/items:batchCreate"), true));
        assert_eq!(
            (reply.http_status, reply.status.code),
            (501, GrpcCode::Unimplemented)
        );
    }

    fn new_socket(transcoder: &Transcoder) -> Socket {
        match transcoder.plan_headers(&upgrade("/catalog/items:batchCreate"), true) {
            crate::HeadersPlan::Socket {
                pending, accept, ..
            } => Socket::new(pending, accept, 1024, 64),
            other => panic!("not a socket: {other:?}"),
        }
    }

    #[test]
    fn a_socket_carries_text_frames_as_messages_and_ends_with_the_calls_status() {
        use platform_proto::catalog::{CreateItemRequest, CreateItemResponse, Item};
        use prost::Message;
        let transcoder = crate::tests::transcoder().with_sockets();
        let mut socket = new_socket(&transcoder);
        let steps = socket.client_sent(
            &transcoder,
            &client_frame(
                true,
                TEXT,
                br#"{"title":"Lamp","price":"40"}"#,
                [7, 7, 7, 7],
            ),
        );
        let [SocketStep::ToBackend { data, end: false }] = steps.as_slice() else {
            panic!("{steps:?}");
        };
        let message = CreateItemRequest::decode(&data[5..]).expect("the call's message");
        assert_eq!((message.title.as_str(), message.price), ("Lamp", 40));
        assert_eq!(data[..5], [0, 0, 0, 0, message.encoded_len() as u8]);

        let answer = CreateItemResponse {
            item: Some(Item {
                id: "i1".into(),
                title: "Lamp".into(),
                ..Item::default()
            }),
        };
        let steps = socket.backend_sent(&transcoder, &answer.encode_to_vec());
        assert_eq!(
            steps,
            vec![SocketStep::ToClient {
                data: frame(TEXT, br#"{"item":{"id":"i1","title":"Lamp"}}"#),
                end: false
            }]
        );
        // The client's close ends its side only; the call's status closes the socket.
        let steps = socket.client_sent(&transcoder, &client_frame(true, CLOSE, &[], [1; 4]));
        assert_eq!(
            steps,
            vec![SocketStep::ToBackend {
                data: Vec::new(),
                end: true
            }]
        );
        assert!(!socket.is_closed());
        let steps = socket.closed_by_backend(&Status::new(GrpcCode::Ok, ""));
        assert_eq!(
            steps,
            vec![SocketStep::ToClient {
                data: close_frame(1000, ""),
                end: true
            }]
        );
        assert!(socket.is_closed());
        assert_eq!(socket.backend_sent(&transcoder, &[]), vec![]);
        assert_eq!(socket.gone(), vec![]);
    }

    #[test]
    fn a_slow_client_is_written_to_once_it_drains_and_dropped_past_the_bound() {
        let transcoder = crate::tests::transcoder().with_sockets();
        let answer = platform_proto::catalog::CreateItemResponse::default();
        let message = prost::Message::encode_to_vec(&answer);
        let mut socket = new_socket(&transcoder);
        socket.client_slow();
        assert_eq!(socket.backend_sent(&transcoder, &message), vec![]);
        assert_eq!(
            socket.closed_by_backend(&Status::new(GrpcCode::Ok, "")),
            vec![]
        );
        let mut both = frame(TEXT, b"{}");
        both.extend(close_frame(1000, ""));
        assert_eq!(
            socket.client_ready(),
            vec![SocketStep::ToClient {
                data: both,
                end: true
            }]
        );
        assert_eq!(socket.client_ready(), vec![]);

        // Over the bound (64 bytes here): the call cancelled, the socket closed with why.
        let mut socket = new_socket(&transcoder);
        socket.client_slow();
        let pings = client_frame(true, PING, &[b'p'; 40], [1; 4]);
        assert_eq!(socket.client_sent(&transcoder, &pings), vec![]);
        let steps = socket.client_sent(&transcoder, &pings);
        let [SocketStep::CancelCall, SocketStep::ToClient { data, end: true }] = steps.as_slice()
        else {
            panic!("{steps:?}");
        };
        assert_eq!(data[2..4], 4008u16.to_be_bytes());
        assert!(socket.is_closed());
        assert_eq!(socket.client_ready(), vec![]);
    }

    #[test]
    fn what_the_client_sends_wrong_cancels_the_call_and_closes_with_why() {
        let transcoder = crate::tests::transcoder().with_sockets();
        let cases: [(&[u8], u16, &str); 3] = [
            (br#"{"price":"a lot"}"#, 4003, "message 0: "),
            (b"[1]", 4003, "message 0: "),
            (b"{", 4003, "message 0: "),
        ];
        for (text, code, reason) in cases {
            let mut socket = new_socket(&transcoder);
            let steps = socket.client_sent(&transcoder, &client_frame(true, TEXT, text, [3; 4]));
            let [SocketStep::CancelCall, SocketStep::ToClient { data, end: true }] =
                steps.as_slice()
            else {
                panic!("{steps:?}");
            };
            assert_eq!(data[2..4], code.to_be_bytes());
            let sent = std::str::from_utf8(&data[4..]).expect("UTF-8");
            assert!(sent.starts_with(reason), "{sent}");
            assert!(socket.is_closed());
            // Nothing more goes either way.
            assert_eq!(
                socket.client_sent(&transcoder, &client_frame(true, TEXT, b"{}", [3; 4])),
                vec![]
            );
        }
        // A client gone mid-call: the call is cancelled, once.
        let mut socket = new_socket(&transcoder);
        assert_eq!(socket.gone(), vec![SocketStep::CancelCall]);
        assert_eq!(socket.gone(), vec![]);
    }

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_handshake_needs_version_13_and_a_16_byte_key() {
        let headers = |version: &str, key: &str| {
            Headers::new(vec![
                ("sec-websocket-version".into(), version.into()),
                ("sec-websocket-key".into(), key.into()),
            ])
        };
        assert!(accept(&headers("13", "dGhlIHNhbXBsZSBub25jZQ==")).is_ok());
        let old = accept(&headers("8", "dGhlIHNhbXBsZSBub25jZQ==")).unwrap_err();
        assert_eq!(old.reply.http_status, 426);
        assert!(old
            .reply
            .headers
            .contains(&("sec-websocket-version".into(), "13".into())));
        let short = accept(&headers("13", "c2hvcnQ=")).unwrap_err();
        assert_eq!(short.reply.http_status, 400);
    }

    #[test]
    fn frames_are_read_in_pieces_of_any_size_fragments_joined() {
        let mut bytes = client_frame(true, TEXT, b"{\"a\":1}", [1, 2, 3, 4]);
        bytes.extend(client_frame(false, TEXT, b"hel", [9, 8, 7, 6]));
        bytes.extend(client_frame(true, PING, b"p", [5, 5, 5, 5]));
        bytes.extend(client_frame(true, CONTINUATION, b"lo", [0, 1, 0, 1]));
        bytes.extend(client_frame(true, TEXT, &[b'x'; 300], [3, 1, 4, 1]));
        bytes.extend(client_frame(
            true,
            CLOSE,
            &1000u16.to_be_bytes(),
            [2, 7, 1, 8],
        ));
        let mut reader = FrameReader::new(1 << 20);
        let mut read = Vec::new();
        for byte in &bytes {
            let (messages, violation) = reader.push(std::slice::from_ref(byte));
            assert_eq!(violation, None);
            read.extend(messages);
        }
        assert_eq!(
            read,
            vec![
                Inbound::Text("{\"a\":1}".into()),
                Inbound::Ping(b"p".to_vec()),
                Inbound::Text("hello".into()),
                Inbound::Text("x".repeat(300)),
                Inbound::Close,
            ]
        );
    }

    #[test]
    fn a_broken_frame_is_a_violation_with_its_close_code() {
        let mut unmasked = client_frame(true, TEXT, b"hi", [0; 4]);
        unmasked[1] &= 0x7F;
        unmasked.truncate(2);
        unmasked.extend_from_slice(b"hi");
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (unmasked, close_code::PROTOCOL_ERROR),
            (
                client_frame(true, 0x3, b"", [1; 4]),
                close_code::PROTOCOL_ERROR,
            ),
            (
                client_frame(false, PING, b"", [1; 4]),
                close_code::PROTOCOL_ERROR,
            ),
            (
                client_frame(true, CONTINUATION, b"x", [1; 4]),
                close_code::PROTOCOL_ERROR,
            ),
            (
                client_frame(true, TEXT, &[0xFF, 0xFE], [1; 4]),
                close_code::INVALID_PAYLOAD,
            ),
            (
                client_frame(true, TEXT, &[b'x'; 65], [1; 4]),
                close_code::TOO_BIG,
            ),
        ];
        for (bytes, code) in cases {
            let (_, violation) = FrameReader::new(64).push(&bytes);
            assert_eq!(violation.map(|v| v.code), Some(code), "{bytes:?}");
        }
    }

    #[test]
    fn server_frames_use_the_shortest_length_and_close_reasons_fit() {
        assert_eq!(frame(TEXT, b"hi"), vec![0x81, 2, b'h', b'i']);
        assert_eq!(frame(TEXT, &[0; 126])[..4], [0x81, 126, 0, 126]);
        assert_eq!(frame(BINARY, &[0; 70_000])[..2], [0x82, 127]);
        let reason = "é".repeat(100);
        let close = close_frame(4005, &reason);
        assert_eq!(close[2..4], 4005u16.to_be_bytes());
        let sent = std::str::from_utf8(&close[4..]).expect("cut at a character boundary");
        assert!(sent.len() <= MAX_CLOSE_REASON_BYTES && sent.starts_with('é'));
        assert_eq!(close_code_of(GrpcCode::Ok), 1000);
        assert_eq!(close_code_of(GrpcCode::NotFound), 4005);
    }
}
