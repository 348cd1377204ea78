//! gRPC on the wire: length-prefixed messages (a flag byte, a 4-byte big-endian length, the
//! message), for the calls transcoded through Envoy's router and for a host that speaks gRPC
//! over plain HTTP/2 callouts.

use crate::GrpcCode;

/// The messages as one gRPC request body.
pub fn frame(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(messages.iter().map(|m| m.len() + 5).sum());
    for message in messages {
        body.push(0);
        // A message over 4 GiB cannot have been built from a bounded request body.
        body.extend_from_slice(
            &u32::try_from(message.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        body.extend_from_slice(message);
    }
    body
}

/// Takes the complete messages at the front of `buffer`, leaving the start of the next one
/// there. A compressed message (we never offer compression) or one longer than `max` bytes is
/// an error.
pub fn take_messages(buffer: &mut Vec<u8>, max: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut messages = Vec::new();
    let mut at = 0;
    while let Some(prefix) = buffer.get(at..at + 5) {
        if prefix[0] != 0 {
            return Err("the backend sent a compressed message".into());
        }
        let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if length > max {
            return Err(format!(
                "the backend sent a message of {length} bytes, over {max}"
            ));
        }
        let Some(message) = buffer.get(at + 5..at + 5 + length) else {
            break;
        };
        messages.push(message.to_vec());
        at += 5 + length;
    }
    buffer.drain(..at);
    Ok(messages)
}

/// gRPC's default limit on a received message (grpc-go, grpc-java, tonic).
pub const MAX_RECEIVED_MESSAGE_BYTES: usize = 4 << 20;

/// What one response of a call read from a plain HTTP/2 stream brings, in the order a gRPC
/// client library reports it (Envoy's own: a trailers-only answer is empty initial metadata,
/// then its headers as trailing metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    InitialMetadata(usize),
    Message(Vec<u8>),
    TrailingMetadata(usize),
    /// The call is over with this status (and message, percent-decoded).
    Close {
        status: u32,
        message: String,
    },
}

/// A gRPC call's response as it comes back over an HTTP/2 stream (headers, body chunks,
/// trailers, then its end or a reset), turned into [`CallEvent`]s: for a host whose proxy lends
/// plain HTTP streams but no gRPC client (Envoy's dynamic modules).
#[derive(Debug, Default)]
pub struct CallReader {
    http_status: Option<u16>,
    initial: Vec<(String, String)>,
    trailing: Vec<(String, String)>,
    partial: Vec<u8>,
    /// The call had a deadline of its own: the proxy's 504 is that deadline.
    deadline: bool,
    /// Why a message could not be read, if one could not: the call's end.
    broken: Option<String>,
}

impl CallReader {
    /// For a call sent with a deadline of the proxy's (`deadline`).
    pub fn new(deadline: bool) -> Self {
        Self {
            deadline,
            ..Self::default()
        }
    }

    pub fn initial_metadata(&self) -> &[(String, String)] {
        &self.initial
    }

    pub fn trailing_metadata(&self) -> &[(String, String)] {
        &self.trailing
    }

    pub fn headers(&mut self, headers: Vec<(String, String)>, end_stream: bool) -> Vec<CallEvent> {
        self.http_status = headers
            .iter()
            .find(|(name, _)| name == ":status")
            .and_then(|(_, value)| value.parse().ok());
        let metadata: Vec<(String, String)> = headers
            .into_iter()
            .filter(|(name, _)| !name.starts_with(':'))
            .collect();
        if end_stream {
            self.trailing = metadata;
            vec![
                CallEvent::InitialMetadata(0),
                CallEvent::TrailingMetadata(self.trailing.len()),
            ]
        } else {
            self.initial = metadata;
            vec![CallEvent::InitialMetadata(self.initial.len())]
        }
    }

    pub fn data(&mut self, chunk: &[u8]) -> Vec<CallEvent> {
        if self.broken.is_some() {
            return Vec::new();
        }
        self.partial.extend_from_slice(chunk);
        match take_messages(&mut self.partial, MAX_RECEIVED_MESSAGE_BYTES) {
            Ok(messages) => messages.into_iter().map(CallEvent::Message).collect(),
            Err(why) => {
                self.broken = Some(why);
                self.partial.clear();
                Vec::new()
            }
        }
    }

    pub fn trailers(&mut self, trailers: Vec<(String, String)>) -> Vec<CallEvent> {
        self.trailing = trailers;
        vec![CallEvent::TrailingMetadata(self.trailing.len())]
    }

    /// The stream ended: the call's status from its trailers (or a trailers-only answer), else
    /// from the HTTP status as gRPC's spec maps it.
    pub fn complete(&mut self) -> CallEvent {
        if let Some(why) = self.broken.take() {
            return CallEvent::Close {
                status: GrpcCode::Internal.number(),
                message: why,
            };
        }
        let trailer = |name: &str| {
            self.trailing
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let message = trailer("grpc-message")
            .map(|message| {
                crate::percent_decode(message, false).unwrap_or_else(|| message.to_string())
            })
            .unwrap_or_default();
        if let Some(status) = trailer("grpc-status").and_then(|status| status.trim().parse().ok()) {
            return CallEvent::Close { status, message };
        }
        let code = match self.http_status {
            Some(504) if self.deadline => GrpcCode::DeadlineExceeded,
            Some(400) => GrpcCode::Internal,
            Some(401) => GrpcCode::Unauthenticated,
            Some(403) => GrpcCode::PermissionDenied,
            Some(404) => GrpcCode::Unimplemented,
            Some(429 | 502 | 503 | 504) => GrpcCode::Unavailable,
            _ => GrpcCode::Unknown,
        };
        CallEvent::Close {
            status: code.number(),
            message: format!(
                "the call ended without a gRPC status (HTTP {})",
                self.http_status.unwrap_or_default()
            ),
        }
    }

    /// The stream was reset: INTERNAL with no trailers, as Envoy's gRPC client reports it.
    pub fn reset() -> CallEvent {
        CallEvent::Close {
            status: GrpcCode::Internal.number(),
            message: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_anywhere_come_back_whole_and_in_order() {
        let messages = vec![b"one".to_vec(), Vec::new(), vec![7; 300]];
        let wire = frame(&messages);
        assert_eq!(&wire[..8], &[0, 0, 0, 0, 3, b'o', b'n', b'e']);
        for split in 0..wire.len() {
            let mut buffer = Vec::new();
            let mut got = Vec::new();
            for chunk in [&wire[..split], &wire[split..]] {
                buffer.extend_from_slice(chunk);
                got.extend(take_messages(&mut buffer, 1000).unwrap());
            }
            assert_eq!(got, messages, "split at {split}");
            assert!(buffer.is_empty());
        }
    }

    #[test]
    fn compressed_or_oversized_messages_are_refused() {
        let mut compressed = vec![1, 0, 0, 0, 1, 9];
        assert!(take_messages(&mut compressed, 10).is_err());
        let mut large = frame(&[vec![0; 11]]);
        assert_eq!(
            take_messages(&mut large, 10).unwrap_err(),
            "the backend sent a message of 11 bytes, over 10"
        );
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn a_call_read_from_a_stream_reports_what_a_grpc_client_would() {
        let mut call = CallReader::new(false);
        let headers = pairs(&[(":status", "200"), ("x-request-id", "r")]);
        assert_eq!(
            call.headers(headers, false),
            vec![CallEvent::InitialMetadata(1)]
        );
        let wire = frame(&[b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(call.data(&wire[..6]), vec![]);
        assert_eq!(
            call.data(&wire[6..]),
            vec![
                CallEvent::Message(b"one".to_vec()),
                CallEvent::Message(b"two".to_vec())
            ]
        );
        let trailers = pairs(&[("grpc-status", "5"), ("grpc-message", "no%20item")]);
        assert_eq!(
            call.trailers(trailers),
            vec![CallEvent::TrailingMetadata(2)]
        );
        assert_eq!(
            call.complete(),
            CallEvent::Close {
                status: 5,
                message: "no item".into()
            }
        );
    }

    #[test]
    fn trailers_only_http_errors_resets_and_bad_frames_have_statuses() {
        let mut only = CallReader::new(false);
        let headers = pairs(&[(":status", "200"), ("grpc-status", "16")]);
        assert_eq!(
            only.headers(headers, true),
            vec![
                CallEvent::InitialMetadata(0),
                CallEvent::TrailingMetadata(1)
            ]
        );
        assert!(matches!(
            only.complete(),
            CallEvent::Close { status: 16, .. }
        ));
        for (http, deadline, status) in [
            ("503", false, 14),
            ("504", true, 4),
            ("504", false, 14),
            ("200", false, 2),
        ] {
            let mut call = CallReader::new(deadline);
            call.headers(pairs(&[(":status", http)]), true);
            assert!(
                matches!(call.complete(), CallEvent::Close { status: s, .. } if s == status),
                "HTTP {http}"
            );
        }
        assert_eq!(
            CallReader::reset(),
            CallEvent::Close {
                status: 13,
                message: String::new()
            }
        );
        let mut compressed = CallReader::new(false);
        compressed.headers(pairs(&[(":status", "200")]), false);
        assert_eq!(compressed.data(&[1, 0, 0, 0, 1, 9]), vec![]);
        compressed.trailers(pairs(&[("grpc-status", "0")]));
        assert!(matches!(
            compressed.complete(),
            CallEvent::Close { status: 13, .. }
        ));
    }
}
