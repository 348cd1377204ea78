//! How a server-streaming method's messages are written to an HTTP client: the framing a
//! client's `Accept` chooses, each message as it is written, and how the stream ends — with
//! the failure, if any, in the body where a client reading it will see it.

use edge_core::Status;

/// The whole of a server-sent-event stream that ended OK without a message.
pub const EMPTY_SSE: &[u8] = b": no events\n\n";

/// The framings a server stream is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/x-ndjson`, the default: one line per message, `{"result": message}`, and a
    /// failure as a last `{"error": google.rpc.Status}` line — grpc-gateway's stream, so a line
    /// is never ambiguous whatever fields the message has.
    Ndjson,
    /// `text/event-stream` (browsers' `EventSource`): a `data:` event per message, and a
    /// failure as an `event: error` whose data is the `google.rpc.Status`.
    Sse,
    /// `application/json`: one JSON array of the messages, Envoy's native default; a failure
    /// is its last element, `{"error": google.rpc.Status}`.
    Array,
}

impl Framing {
    /// The framing the first media range of `Accept` that names one asks for; NDJSON when none
    /// does (`*/*`, curl's default, or no `Accept`).
    pub fn of_accept(accept: Option<&str>) -> Framing {
        accept
            .unwrap_or_default()
            .split(',')
            .find_map(|range| {
                let essence = range.split(';').next().unwrap_or_default().trim();
                if essence.eq_ignore_ascii_case("text/event-stream") {
                    Some(Framing::Sse)
                } else if essence.eq_ignore_ascii_case("application/x-ndjson")
                    || essence.eq_ignore_ascii_case("application/jsonl")
                {
                    Some(Framing::Ndjson)
                } else if essence.eq_ignore_ascii_case("application/json") {
                    Some(Framing::Array)
                } else {
                    None
                }
            })
            .unwrap_or(Framing::Ndjson)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Framing::Ndjson => "application/x-ndjson",
            Framing::Sse => "text/event-stream",
            Framing::Array => "application/json",
        }
    }

    /// Appends message number `index` (from 0), rendered as one line of JSON, to `out`.
    pub fn write_message(self, out: &mut Vec<u8>, index: usize, json: &[u8]) {
        match self {
            Framing::Ndjson => {
                out.extend_from_slice(b"{\"result\":");
                out.extend_from_slice(json);
                out.extend_from_slice(b"}\n");
            }
            Framing::Sse => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(json);
                out.extend_from_slice(b"\n\n");
            }
            Framing::Array => {
                out.push(if index == 0 { b'[' } else { b',' });
                out.extend_from_slice(json);
            }
        }
    }

    /// Appends the end of a stream of `count` messages, and its failure if it failed.
    pub fn write_end(self, out: &mut Vec<u8>, count: usize, failure: Option<&Status>) {
        let error = failure.map(Status::to_json);
        match self {
            Framing::Ndjson => {
                if let Some(error) = error {
                    out.extend_from_slice(b"{\"error\":");
                    out.extend_from_slice(error.as_bytes());
                    out.extend_from_slice(b"}\n");
                }
            }
            Framing::Sse => {
                if let Some(error) = error {
                    out.extend_from_slice(b"event: error\ndata: ");
                    out.extend_from_slice(error.as_bytes());
                    out.extend_from_slice(b"\n\n");
                } else if count == 0 {
                    // A comment, which clients skip: Envoy sends an empty body without its
                    // content type, and an `EventSource` refuses a stream that is not
                    // `text/event-stream`.
                    out.extend_from_slice(EMPTY_SSE);
                }
            }
            Framing::Array => {
                if let Some(error) = error {
                    out.push(if count == 0 { b'[' } else { b',' });
                    out.extend_from_slice(b"{\"error\":");
                    out.extend_from_slice(error.as_bytes());
                    out.push(b'}');
                } else if count == 0 {
                    out.push(b'[');
                }
                out.push(b']');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::GrpcCode;

    fn stream(framing: Framing, messages: &[&str], failure: Option<&Status>) -> String {
        let mut out = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            framing.write_message(&mut out, index, message.as_bytes());
        }
        framing.write_end(&mut out, messages.len(), failure);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn accept_chooses_the_framing_and_anything_else_is_ndjson() {
        for (accept, framing) in [
            (None, Framing::Ndjson),
            (Some("*/*"), Framing::Ndjson),
            (Some("text/event-stream"), Framing::Sse),
            (Some("application/json"), Framing::Array),
            (Some("Application/JSON; charset=utf-8"), Framing::Array),
            (
                Some("text/html, application/x-ndjson, application/json"),
                Framing::Ndjson,
            ),
            (
                Some("application/json;q=0.9, text/event-stream"),
                Framing::Array,
            ),
        ] {
            assert_eq!(Framing::of_accept(accept), framing, "{accept:?}");
        }
    }

    #[test]
    fn each_framing_writes_messages_and_an_in_band_failure_a_client_can_tell_from_data() {
        let failure = Status::new(GrpcCode::Unavailable, "gone");
        let messages = [r#"{"id":"1"}"#, r#"{"error":"a field"}"#];
        assert_eq!(
            stream(Framing::Ndjson, &messages, Some(&failure)),
            "{\"result\":{\"id\":\"1\"}}\n{\"result\":{\"error\":\"a field\"}}\n\
             {\"error\":{\"code\":14,\"message\":\"gone\"}}\n"
        );
        assert_eq!(stream(Framing::Ndjson, &[], None), "");
        assert_eq!(stream(Framing::Sse, &[], None), ": no events\n\n");
        assert_eq!(
            stream(Framing::Sse, &messages[..1], Some(&failure)),
            "data: {\"id\":\"1\"}\n\nevent: error\ndata: {\"code\":14,\"message\":\"gone\"}\n\n"
        );
        assert_eq!(
            stream(Framing::Array, &messages, None),
            r#"[{"id":"1"},{"error":"a field"}]"#
        );
        assert_eq!(stream(Framing::Array, &[], None), "[]");
        assert_eq!(
            stream(Framing::Array, &[], Some(&failure)),
            r#"[{"error":{"code":14,"message":"gone"}}]"#
        );
        for framing in [Framing::Ndjson, Framing::Array] {
            let body = stream(framing, &messages, Some(&failure));
            let parsed: Vec<serde_json::Value> = match framing {
                Framing::Ndjson => body
                    .lines()
                    .map(|line| serde_json::from_str(line).unwrap())
                    .collect(),
                _ => serde_json::from_str(&body).unwrap(),
            };
            assert_eq!(parsed.len(), 3, "{body}");
        }
    }
}
