//! How a transcoded request ends: every error the transcoder answers itself, and the finished
//! backend call turned into the client's response. The glue only sends what these decide.

use crate::stream::Framing;
use crate::{Encoding, Route, Transcoder};
use edge_core::{percent_decode, Client, GrpcCode, LocalReply, RouteError, Status};
use std::time::Duration;

/// An error reply, and the kind it is counted under in metrics and the access log
/// (`None` for errors the backend itself returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reply: LocalReply,
    pub kind: Option<FailureKind>,
}

/// Why the transcoder answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    NoRoute,
    MethodNotAllowed,
    UnsupportedMediaType,
    BodyTooLarge,
    /// The request could not be turned into the backend's message.
    BadRequest,
    BackendUnreachable,
    /// Envoy reset the call's stream after the backend started answering (e.g. the backend
    /// went away mid-answer): no status of the backend's own.
    BackendReset,
    /// The backend's answer could not be turned into the client's response.
    BadResponse,
    /// A server stream outgrew what the transcoder holds (`max_stream_bytes`), or a live
    /// stream what Envoy holds between two flushes (`buffer_limit_bytes`).
    StreamTooLarge,
    /// Envoy refused a host call the transcoder needed (reading the body, rewriting the
    /// request for the router): no fault of the client's.
    HostRefused,
}

impl FailureKind {
    /// The name in the access log (`transcode_error`) and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::NoRoute => "no_route",
            FailureKind::MethodNotAllowed => "method_not_allowed",
            FailureKind::UnsupportedMediaType => "unsupported_media_type",
            FailureKind::BodyTooLarge => "body_too_large",
            FailureKind::BadRequest => "bad_request",
            FailureKind::BackendUnreachable => "backend_unreachable",
            FailureKind::BackendReset => "backend_reset",
            FailureKind::BadResponse => "bad_response",
            FailureKind::StreamTooLarge => "stream_too_large",
            FailureKind::HostRefused => "host_refused",
        }
    }
}

impl Failure {
    fn local(kind: FailureKind, reply: LocalReply) -> Self {
        Self {
            reply,
            kind: Some(kind),
        }
    }

    /// Envoy's response-code details for the reply: the kind, or (for the backend's own
    /// error, carried to the client) `via_upstream`, as Envoy says of upstream answers.
    pub fn details(&self) -> String {
        match self.kind {
            Some(kind) => format!("edge_transcoder_{}", kind.as_str()),
            None => "via_upstream".to_string(),
        }
    }

    /// No route serves the request (404, or 405 with `Allow`).
    pub fn unrouted(error: &RouteError, method: &str, path: &str) -> Self {
        let kind = match error {
            RouteError::NotFound => FailureKind::NoRoute,
            RouteError::MethodNotAllowed { .. } => FailureKind::MethodNotAllowed,
        };
        Self::local(kind, error.reply(Client::Http, method, path))
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::local(
            FailureKind::UnsupportedMediaType,
            LocalReply::error(
                GrpcCode::InvalidArgument,
                format!(
                    "content type {content_type:?} is not supported here: send JSON or application/x-protobuf"
                ),
            )
            .with_http_status(415),
        )
    }

    /// A client stream is a JSON array of messages: binary protobuf has no framing here.
    pub fn stream_needs_json(content_type: &str) -> Self {
        Self::local(
            FailureKind::UnsupportedMediaType,
            LocalReply::error(
                GrpcCode::InvalidArgument,
                format!(
                    "content type {content_type:?} is not supported for a stream: send a JSON array of messages"
                ),
            )
            .with_http_status(415),
        )
    }

    pub fn body_too_large(max_body_bytes: usize) -> Self {
        Self::local(
            FailureKind::BodyTooLarge,
            LocalReply::error(
                GrpcCode::ResourceExhausted,
                format!("request body exceeds {max_body_bytes} bytes"),
            )
            .with_http_status(413),
        )
    }

    /// A WebSocket upgrade that cannot be served, refused before any socket opens.
    pub fn socket_refused(reply: LocalReply) -> Self {
        Self::local(FailureKind::BadRequest, reply)
    }

    /// The request could not be turned into the backend's message.
    pub fn bad_request(status: Status) -> Self {
        Self::local(FailureKind::BadRequest, LocalReply::new(status))
    }

    pub fn backend_unreachable() -> Self {
        Self::local(
            FailureKind::BackendUnreachable,
            LocalReply::error(GrpcCode::Unavailable, "the backend is not reachable"),
        )
    }

    /// As Envoy's router answers a reset upstream stream: 502, the backend's answer was cut.
    fn backend_reset() -> Self {
        Self::local(
            FailureKind::BackendReset,
            LocalReply::error(
                GrpcCode::Unavailable,
                "the backend's answer was cut off: its stream was reset",
            )
            .with_http_status(502),
        )
    }

    /// A server stream collected past `max_stream_bytes`: cancelled there.
    pub fn stream_too_large(max_stream_bytes: usize) -> Self {
        Self::local(
            FailureKind::StreamTooLarge,
            LocalReply::error(
                GrpcCode::ResourceExhausted,
                format!("the backend's stream exceeded {max_stream_bytes} bytes: cancelled"),
            ),
        )
    }

    /// More of a live stream came between two flushes to the client than Envoy holds for a
    /// filter (`buffer_limit_bytes`): ended there.
    pub fn stream_burst(buffer_limit_bytes: usize) -> Self {
        Self::local(
            FailureKind::StreamTooLarge,
            LocalReply::error(
                GrpcCode::ResourceExhausted,
                format!(
                    "the backend's stream sent more than {buffer_limit_bytes} bytes (the \
                     proxy's buffer limit) before they could be passed on: cancelled"
                ),
            ),
        )
    }

    /// Envoy refused a host call needed to `action` (e.g. "read the request body").
    pub fn host_refused(action: &str, error: &str) -> Self {
        Self::local(
            FailureKind::HostRefused,
            LocalReply::error(GrpcCode::Internal, format!("cannot {action}: {error}")),
        )
    }

    pub(crate) fn unknown_route() -> Self {
        Self::local(
            FailureKind::BadRequest,
            LocalReply::error(GrpcCode::Internal, "the request lost its route"),
        )
    }

    pub(crate) fn bad_response(message: String) -> Self {
        Self::local(
            FailureKind::BadResponse,
            LocalReply::error(GrpcCode::Internal, message),
        )
    }

    fn from_backend(status: Status) -> Self {
        let mut reply = LocalReply::new(status);
        if reply.status.code == GrpcCode::Unauthenticated {
            reply = reply.with_header("www-authenticate", "Bearer");
        }
        Self { reply, kind: None }
    }
}

/// What the glue saw of a finished backend call.
#[derive(Debug, Clone, Copy)]
pub struct FinishedCall<'a> {
    /// The status the stream closed with.
    pub grpc_status: u32,
    /// `grpc-message` as received (percent-encoded, maybe with an Envoy `{details}` suffix).
    pub grpc_message: &'a str,
    /// `grpc-status-details-bin`, if the backend sent it.
    pub details_bin: Option<&'a str>,
    /// The response message, or why it could not be read; `None` when none came.
    pub response: Option<Result<&'a [u8], &'a str>>,
    /// Time from dispatch to close, and the deadline the call had.
    pub elapsed: Duration,
    pub timeout: Duration,
    /// The call ended without the backend's trailers (no `grpc-status` of its own): Envoy
    /// reset the stream, and closes it INTERNAL with its own reason.
    pub reset: bool,
}

impl Transcoder {
    /// The client's response body for a finished call, or the error reply. Whatever a failed
    /// call says once its deadline has passed (tonic says CANCELLED, a reset stream UNAVAILABLE)
    /// is DEADLINE_EXCEEDED, as a gRPC client's own timer would report.
    pub fn finish_call(
        &self,
        route: &Route,
        encoding: Encoding,
        call: FinishedCall<'_>,
    ) -> Result<Vec<u8>, Failure> {
        if let Some(failure) = self.call_failure(&call) {
            return Err(failure);
        }
        match call.response {
            Some(Ok(message)) => self
                .response_body(route, message, encoding)
                .map_err(|status| Failure::bad_response(status.message)),
            Some(Err(error)) => Err(Failure::bad_response(format!(
                "cannot read backend response: {error}"
            ))),
            None => Err(Failure::bad_response(
                "the backend closed the call without a response".into(),
            )),
        }
    }

    /// The client's response body for a finished server stream: its `messages` in `framing`,
    /// and how it failed, if it did, as its last entry (with the kind, when the transcoder's,
    /// for the access log) — unless it failed before any message, which is an error reply like
    /// a unary call's. `stopped`: the transcoder ended the call.
    pub fn finish_stream(
        &self,
        route: &Route,
        framing: Framing,
        call: FinishedCall<'_>,
        messages: &[Vec<u8>],
        stopped: Option<Failure>,
    ) -> Result<(Vec<u8>, Option<FailureKind>), Failure> {
        let mut failure = stopped.or_else(|| self.call_failure(&call));
        if let (None, Some(Err(error))) = (&failure, call.response) {
            failure = Some(Failure::bad_response(format!(
                "cannot read backend response: {error}"
            )));
        }
        let mut body = Vec::new();
        let mut written = 0;
        for message in messages {
            match self.stream_message_json(route, message) {
                Ok(json) => {
                    framing.write_message(&mut body, written, &json);
                    written += 1;
                }
                Err(status) => {
                    failure = Some(Failure::bad_response(status.message));
                    break;
                }
            }
        }
        match failure {
            Some(failure) if written == 0 => Err(failure),
            failure => {
                framing.write_end(
                    &mut body,
                    written,
                    failure.as_ref().map(|f| &f.reply.status),
                );
                Ok((body, failure.and_then(|f| f.kind)))
            }
        }
    }

    /// The client's response body for a finished server stream of `google.api.HttpBody` (a
    /// download in parts): their bytes, one after another. Raw bytes have no place for a
    /// status, so a stream that failed, at any point, is an error reply rather than a
    /// truncated body with a 200.
    pub fn finish_raw_stream(
        &self,
        route: &Route,
        call: FinishedCall<'_>,
        messages: &[Vec<u8>],
        stopped: Option<Failure>,
    ) -> Result<Vec<u8>, Failure> {
        if let Some(failure) = stopped.or_else(|| self.call_failure(&call)) {
            return Err(failure);
        }
        if let Some(Err(error)) = call.response {
            return Err(Failure::bad_response(format!(
                "cannot read backend response: {error}"
            )));
        }
        let mut body = Vec::new();
        for message in messages {
            let (data, _) = self
                .raw_response(route, message)
                .map_err(|status| Failure::bad_response(status.message))?;
            body.extend_from_slice(&data);
        }
        Ok(body)
    }

    /// How a closed call failed, `None` if it did not.
    pub(crate) fn call_failure(&self, call: &FinishedCall<'_>) -> Option<Failure> {
        if call.grpc_status == GrpcCode::Ok.number() {
            return None;
        }
        // Past our deadline, whatever the call says is our timeout; a backend's own
        // DEADLINE_EXCEEDED before it (its downstream call ran out) keeps its message and details.
        if call.elapsed >= call.timeout {
            return Some(Failure::from_backend(Status::new(
                GrpcCode::DeadlineExceeded,
                format!(
                    "the backend did not answer within {} ms",
                    call.timeout.as_millis()
                ),
            )));
        }
        if call.reset && call.grpc_status == GrpcCode::Internal.number() {
            return Some(Failure::backend_reset());
        }
        Some(Failure::from_backend(self.backend_error(
            call.grpc_status,
            backend_message(call.grpc_message),
            call.details_bin,
        )))
    }
}

/// The backend's message as users should read it: `grpc-message` is percent-encoded on the
/// wire, and Envoy may append a `{details}` suffix (e.g. `{via_upstream}`) of its own.
fn backend_message(message: &str) -> String {
    // Envoy's details are lowercase words, nested in braces when they carry a reason
    // (`{upstream_reset_before_response_started{remote_reset}}`).
    let envoy_details = |suffix: &str| {
        let mut depth = 0usize;
        suffix.chars().all(|c| match c {
            '{' => {
                depth += 1;
                true
            }
            '}' => depth.checked_sub(1).map(|d| depth = d).is_some(),
            c => depth > 0 && (c.is_ascii_lowercase() || c == '_'),
        }) && depth == 0
    };
    let trimmed = match message
        .match_indices('{')
        .map(|(at, _)| at)
        .find(|&at| at > 0 && message.ends_with('}') && envoy_details(&message[at..]))
    {
        Some(at) => message[..at].trim_end(),
        None => message.trim_end(),
    };
    percent_decode(trimmed, false).unwrap_or_else(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_messages_lose_envoys_suffix_and_encoding() {
        assert_eq!(backend_message("item%20not found"), "item not found");
        assert_eq!(
            backend_message("upstream connect error {via_upstream}"),
            "upstream connect error"
        );
        assert_eq!(
            backend_message(
                "upstream connect error or disconnect/reset before headers. reset reason: \
                 remote reset{upstream_reset_before_response_started{remote_reset}}"
            ),
            "upstream connect error or disconnect/reset before headers. reset reason: remote reset"
        );
        // A backend's own braces are its message.
        assert_eq!(backend_message("bad {Field}"), "bad {Field}");
        assert_eq!(backend_message("{only}"), "{only}");
        assert_eq!(backend_message("100%"), "100%");
    }

    fn not_allowed() -> RouteError {
        RouteError::MethodNotAllowed {
            allow: "GET, POST".into(),
        }
    }

    #[test]
    fn local_failures_carry_their_http_status_and_kind() {
        let cases = [
            (
                Failure::unrouted(&RouteError::NotFound, "GET", "/x?y=1"),
                404,
                "no_route",
            ),
            (
                Failure::unrouted(&not_allowed(), "PUT", "/x"),
                405,
                "method_not_allowed",
            ),
            (
                Failure::unsupported_media_type("multipart/form-data"),
                415,
                "unsupported_media_type",
            ),
            (Failure::body_too_large(10), 413, "body_too_large"),
            (Failure::backend_unreachable(), 503, "backend_unreachable"),
            (Failure::unknown_route(), 500, "bad_request"),
            (
                Failure::host_refused("read the request body", "BadArgument"),
                500,
                "host_refused",
            ),
        ];
        for (failure, status, kind) in cases {
            assert_eq!(failure.reply.http_status, status, "{kind}");
            assert_eq!(failure.kind.map(FailureKind::as_str), Some(kind));
            assert_eq!(failure.details(), format!("edge_transcoder_{kind}"));
        }
        assert_eq!(
            Failure::unrouted(&RouteError::NotFound, "GET", "/x?y=1")
                .reply
                .status
                .message,
            "no route for GET /x"
        );
        assert_eq!(
            Failure::unrouted(&not_allowed(), "PUT", "/x").reply.headers,
            vec![("allow".to_string(), "GET, POST".to_string())]
        );
    }
}
