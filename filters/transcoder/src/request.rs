//! One request through the transcoder, decided here and carried out by the glue: what its
//! headers mean ([`HeadersPlan`]), whether its body is waited for ([`BodyPlan`]), and the
//! backend call it becomes ([`BackendCall`]).

use crate::stream::Framing;
use crate::{Encoding, Failure, Route, Transcoder};
use edge_core::host::Host;
use edge_core::notes::{self, TranscodeNote};
use edge_core::{trace, Client, GrpcCode, Headers, LocalReply};
use std::time::Duration;

/// A matched request, kept until the backend answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The route's index in [`Transcoder::routes`] (kept across callbacks instead of a borrow).
    pub route: usize,
    pub bindings: Vec<(String, String)>,
    pub query: Option<String>,
    /// Headers to pass as gRPC metadata, read at headers time: Envoy no longer exposes the
    /// request headers to a filter once it let them continue.
    pub metadata: Vec<(String, String)>,
    pub request_encoding: Encoding,
    /// The request's `Content-Type`, for a raw body's `google.api.HttpBody`.
    pub content_type: Option<String>,
    pub response_encoding: Encoding,
    /// How a server-streaming method's messages are written (`None` for one message).
    pub framing: Option<Framing>,
    /// Sent on through Envoy's router as a gRPC request, rather than called out and answered
    /// once the call ends: a server stream written as NDJSON or SSE (rewritten as it streams
    /// back) whose request has a body to become the gRPC message or a host that can add one,
    /// and, on such a host, every call (a JSON array rewritten as it streams back too, a raw
    /// stream passed on part by part; a unary call held and rewritten whole).
    pub through_router: bool,
    pub timeout: Duration,
    /// The cluster auth's rollout chose (the backend header), if the route is being rolled out.
    pub backend: Option<String>,
    /// Which of [`BODY_HEADERS`] the client sent: only those need removing (each header
    /// edit is a host call).
    pub body_headers: Vec<&'static str>,
    /// The client's method is POST already, as gRPC's: it needs no edit.
    pub posted: bool,
}

/// The refusal of a WebSocket to what takes one message from the client (`what`: the method or
/// the path).
fn socket_carries_streams_only(what: &str) -> LocalReply {
    LocalReply::error(
        GrpcCode::InvalidArgument,
        format!(
            "{what} takes one message from the client: WebSocket carries client and \
             bidirectional streams only"
        ),
    )
}

/// What a client says of its own body, moot once the body becomes the gRPC message.
pub const BODY_HEADERS: [&str; 2] = ["content-length", "content-encoding"];

/// What to do with a request's headers.
#[derive(Debug)]
pub enum HeadersPlan<'t> {
    /// gRPC clients (and CORS preflights, when configured) go on to the router untouched.
    PassThrough,
    /// `GET` of the API description's path: answer with the document.
    Describe(&'t str),
    /// gRPC with JSON messages to an exposed method: its messages are translated both ways
    /// (see [`crate::grpc_json`]).
    GrpcJson(prost_reflect::MethodDescriptor),
    /// Answer with the failure; `route` is the route the request matched, if it did.
    Refuse {
        route: Option<&'t Route>,
        failure: Failure,
    },
    /// A WebSocket for a client- or bidirectional-streaming method: open the call, answer
    /// the upgrade with `accept`, then carry its messages (see [`crate::websocket`]).
    Socket {
        route: &'t Route,
        pending: Pending,
        accept: String,
    },
    /// Transcode: call the backend at once, or once the body is in (`body_follows`).
    Transcode {
        route: &'t Route,
        pending: Pending,
        /// Tell Envoy's tracer the route (the edge span's attribute): the backend call is
        /// then a child of the edge span.
        span_route: bool,
        body_follows: bool,
    },
}

/// What to do with a piece of the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Not a request this filter transcodes.
    Ignore,
    TooLarge,
    /// Hold it: more is coming.
    Wait,
    /// The body is complete: call the backend with it.
    Call,
}

/// The backend call a request becomes.
#[derive(Debug)]
pub struct BackendCall<'t> {
    pub route: &'t Route,
    /// The cluster called.
    pub cluster: &'t str,
    /// Every metadata entry, `grpc-timeout` last.
    pub metadata: Vec<(&'t str, &'t [u8])>,
    /// The request's one message, or a client stream's messages.
    pub messages: Vec<Vec<u8>>,
}

impl Transcoder {
    /// The plan for a request's headers; `end_of_stream` when no body follows them.
    pub fn plan_headers(&self, headers: &Headers, end_of_stream: bool) -> HeadersPlan<'_> {
        let content_type = headers.get("content-type").unwrap_or_default();
        let method = headers.get(":method").unwrap_or_default();
        let client = Client::of_content_type(Some(content_type));
        let preflight = edge_core::is_cors_preflight(
            method,
            headers.get("origin"),
            headers.get("access-control-request-method"),
        );
        if crate::grpc_json::is_grpc_json(content_type) && method == "POST" {
            let path = headers.get(":path").unwrap_or_default();
            // An unknown method is the backend's to refuse (UNIMPLEMENTED), as for gRPC.
            return self
                .grpc_method(path)
                .map_or(HeadersPlan::PassThrough, HeadersPlan::GrpcJson);
        }
        if self.passes_through(client, preflight) {
            return HeadersPlan::PassThrough;
        }
        let path = headers.get(":path").unwrap_or_default();
        if let Some(description) = &self.config.openapi {
            let without_query = path.split_once('?').map_or(path, |(path, _)| path);
            if method == "GET" && without_query == description.path {
                return HeadersPlan::Describe(&description.document);
            }
        }
        // A WebSocket's upgrade is a GET whatever the method's binding: streams that take
        // messages from the client are bound to POST.
        let socket = crate::websocket::is_upgrade(headers);
        let (route, index, bindings) = match self.lookup(if socket { "POST" } else { method }, path)
        {
            crate::Lookup::Matched {
                route,
                index,
                bindings,
            } => (route, index, bindings),
            crate::Lookup::Unrouted(edge_core::RouteError::MethodNotAllowed { .. }) if socket => {
                // Bound, but not to POST: no stream from the client to carry.
                return HeadersPlan::Refuse {
                    route: None,
                    failure: Failure::socket_refused(socket_carries_streams_only(
                        path.split_once('?').map_or(path, |(path, _)| path),
                    )),
                };
            }
            crate::Lookup::Unrouted(error) => {
                return HeadersPlan::Refuse {
                    route: None,
                    failure: Failure::unrouted(&error, method, path),
                }
            }
        };
        let refuse = |failure| HeadersPlan::Refuse {
            route: Some(route),
            failure,
        };
        let mut metadata: Vec<(String, String)> = self
            .config
            .forward_headers
            .iter()
            .filter_map(|name| headers.value(name).map(|value| (name.clone(), value)))
            .collect();
        let mut span_route = false;
        if let Some(edge_span) = headers.get(trace::EDGE_SPAN_HEADER) {
            let incoming = metadata
                .iter()
                .find(|(name, _)| name == "traceparent")
                .map(|(_, value)| value.as_str());
            if let Some(traceparent) = trace::child_traceparent(edge_span, incoming) {
                metadata.retain(|(name, _)| name != "traceparent");
                metadata.push(("traceparent".to_string(), traceparent));
                span_route = true;
            }
        }
        if socket {
            return self.plan_socket(headers, route, index, bindings, path, metadata);
        }
        let content_type = (!content_type.is_empty()).then_some(content_type);
        let request_encoding = if end_of_stream && !route.raw_request {
            Some(Encoding::Json)
        } else {
            self.request_encoding(route, content_type)
        };
        let Some(request_encoding) = request_encoding else {
            return refuse(Failure::unsupported_media_type(
                content_type.unwrap_or_default(),
            ));
        };
        if route.client_streaming && request_encoding == Encoding::Protobuf {
            return refuse(Failure::stream_needs_json(content_type.unwrap_or_default()));
        }
        if !end_of_stream
            && headers
                .get("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|length| length > self.config.max_body_bytes)
        {
            return refuse(Failure::body_too_large(self.config.max_body_bytes));
        }
        let framing = route
            .server_streaming
            .then(|| Framing::of_accept(headers.get("accept")));
        let pending = Pending {
            body_headers: BODY_HEADERS
                .into_iter()
                .filter(|name| headers.contains(name))
                .collect(),
            posted: method == "POST",
            route: index,
            bindings,
            query: path.split_once('?').map(|(_, q)| q.to_string()),
            metadata,
            request_encoding,
            content_type: content_type
                .filter(|_| request_encoding == Encoding::Raw)
                .map(str::to_string),
            response_encoding: if route.server_streaming && !route.raw_response {
                Encoding::Json
            } else {
                self.response_encoding(
                    route,
                    headers.get("accept"),
                    content_type.and(Some(request_encoding)),
                )
            },
            framing,
            through_router: match framing {
                // In place, a raw stream (`google.api.HttpBody` messages) is held as a unary
                // answer is until its first part, then passed on part by part.
                None => self.in_place,
                Some(_) if route.raw_response => self.in_place,
                Some(Framing::Ndjson | Framing::Sse) => self.in_place || !end_of_stream,
                // Collected (a callout) unless in place: written as it comes, the array's
                // failure is its last element, as when collected.
                Some(Framing::Array) => self.in_place,
            },
            timeout: self.call_timeout(headers.get("grpc-timeout")),
            backend: route
                .rollout
                .as_ref()
                .and_then(|_| headers.value(&self.config.backend_header)),
        };
        HeadersPlan::Transcode {
            route,
            pending,
            span_route,
            body_follows: !end_of_stream,
        }
    }

    /// The plan for a WebSocket upgrade to `route`.
    fn plan_socket<'t>(
        &'t self,
        headers: &Headers,
        route: &'t Route,
        index: usize,
        bindings: Vec<(String, String)>,
        path: &str,
        metadata: Vec<(String, String)>,
    ) -> HeadersPlan<'t> {
        let refuse = |reply| HeadersPlan::Refuse {
            route: Some(route),
            failure: Failure::socket_refused(reply),
        };
        if !self.sockets {
            return refuse(
                LocalReply::error(
                    GrpcCode::Unimplemented,
                    "WebSocket is served by the native build of the edge filters \
                 (EDGE_TARGET=native); call the method with a JSON array body here",
                )
                .with_http_status(501),
            );
        }
        if !route.client_streaming {
            return refuse(socket_carries_streams_only(&route.grpc_path()));
        }
        let origins = &self.config.socket_origins;
        if let Some(origin) = headers.get("origin") {
            if !origins.is_empty()
                && !origins
                    .iter()
                    .any(|allowed| allowed == "*" || allowed == origin)
            {
                return refuse(LocalReply::error(
                    GrpcCode::PermissionDenied,
                    format!("a WebSocket from the origin {origin:?} is not allowed here"),
                ));
            }
        }
        let accept = match crate::websocket::accept(headers) {
            Ok(accept) => accept,
            Err(failure) => {
                return HeadersPlan::Refuse {
                    route: Some(route),
                    failure,
                }
            }
        };
        let pending = Pending {
            route: index,
            bindings,
            query: path.split_once('?').map(|(_, q)| q.to_string()),
            metadata,
            request_encoding: Encoding::Json,
            content_type: None,
            response_encoding: Encoding::Json,
            framing: None,
            through_router: false,
            timeout: self.call_timeout(headers.get("grpc-timeout")),
            backend: route
                .rollout
                .as_ref()
                .and_then(|_| headers.value(&self.config.backend_header)),
            body_headers: Vec::new(),
            posted: false,
        };
        HeadersPlan::Socket {
            route,
            pending,
            accept,
        }
    }

    /// The plan for the body received so far (`size` bytes) of a request being transcoded
    /// (`pending`).
    pub fn plan_body(&self, pending: bool, size: usize, end_of_stream: bool) -> BodyPlan {
        if !pending {
            BodyPlan::Ignore
        } else if size > self.config.max_body_bytes {
            BodyPlan::TooLarge
        } else if !end_of_stream {
            BodyPlan::Wait
        } else {
            BodyPlan::Call
        }
    }

    /// The messages a matched request (`pending`, of `route`) and its body become.
    pub fn pending_messages(
        &self,
        route: &Route,
        pending: &Pending,
        body: &[u8],
    ) -> Result<Vec<Vec<u8>>, Failure> {
        self.request_messages(
            route,
            &pending.bindings,
            pending.query.as_deref(),
            body,
            pending.request_encoding,
            pending.content_type.as_deref(),
        )
        .map_err(Failure::bad_request)
    }

    /// The backend call for a request and its body. The deadline travels as `grpc-timeout`,
    /// which the backend enforces; the cluster's `max_stream_duration` bounds a backend that
    /// ignores it.
    pub fn backend_call<'t>(
        &'t self,
        pending: &'t Pending,
        deadline: &'t str,
        body: &[u8],
    ) -> Result<BackendCall<'t>, Failure> {
        let route = self.route(pending.route)?;
        let messages = self.pending_messages(route, pending, body)?;
        let cluster = route.destination(pending.backend.as_deref());
        let mut metadata: Vec<(&str, &[u8])> = pending
            .metadata
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        metadata.push(("grpc-timeout", deadline.as_bytes()));
        Ok(BackendCall {
            route,
            cluster,
            metadata,
            messages,
        })
    }
}

/// What the access log will read about a request, kept up to date in the stream's filter
/// state (one write of the whole note each time it changes).
#[derive(Debug, Default)]
pub struct Note(pub TranscodeNote);

impl Note {
    /// The route a request matched.
    pub fn route(&mut self, route: &Route) {
        self.0.route = route.template.as_str().to_string();
        self.0.grpc_method = route.grpc_path();
    }

    /// Records the note; a failure only loses the access log's fields.
    pub fn record<H: Host>(&self, host: &H) {
        let _ = host.set_property(&[notes::TRANSCODE], &notes::encode(&self.0));
    }

    /// The one way the transcoder answers with an error: the note with the failure's kind,
    /// then the reply with the backend's `response_headers` metadata and the kind as Envoy's
    /// response-code details.
    pub fn refuse<H: Host>(&mut self, host: &H, failure: Failure, metadata: &[(String, String)]) {
        let (reply, details) = self.failed(host, failure, metadata);
        host.send_reply(&reply, Client::Http, &details);
    }

    /// Records a failure (its kind, in the note): the reply to answer with, the backend's
    /// `metadata` added, and Envoy's response-code details for it.
    pub fn failed<H: Host>(
        &mut self,
        host: &H,
        failure: Failure,
        metadata: &[(String, String)],
    ) -> (LocalReply, String) {
        if let Some(kind) = failure.kind {
            self.0.error = kind.as_str().to_string();
        }
        self.record(host);
        let details = failure.details();
        let mut reply = failure.reply;
        reply.headers.extend(metadata.iter().cloned());
        (reply, details)
    }
}

impl Pending {
    /// `grpc-timeout` for the call: the deadline in milliseconds (at least 1).
    pub fn deadline(&self) -> String {
        format!("{}m", self.timeout.as_millis().max(1))
    }

    /// The request headers that make a request sent through the router a gRPC call of
    /// `route`: (name, value) to set, then names to remove. The route table then matches it
    /// as any gRPC client's call (a rollout's choice included).
    pub fn grpc_request_headers(
        &self,
        route: &Route,
    ) -> (Vec<(&'static str, String)>, &[&'static str]) {
        let mut set = vec![
            (":path", route.grpc_path()),
            ("content-type", "application/grpc".to_string()),
            ("te", "trailers".to_string()),
            ("grpc-timeout", self.deadline()),
            (edge_core::TRANSCODED_HEADER, "json".to_string()),
        ];
        if !self.posted {
            set.push((":method", "POST".to_string()));
        }
        (set, &self.body_headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TranscoderConfig;
    use base64::Engine;
    use edge_core::RouteError;

    fn transcoder(extra: serde_json::Value) -> Transcoder {
        let mut config = serde_json::json!({
            "descriptor_set": base64::engine::general_purpose::STANDARD
                .encode(platform_proto::FILE_DESCRIPTOR_SET),
            "services": {"catalog.CatalogService": "catalog"},
            "max_body_bytes": 100,
            "timeout_ms": 2000,
            "forward_headers": ["x-user-id", "traceparent"],
        });
        for (key, value) in extra.as_object().cloned().unwrap_or_default() {
            config[key] = value;
        }
        Transcoder::new(serde_json::from_value::<TranscoderConfig>(config).unwrap()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::new(
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_refusal_is_noted_then_answered_with_its_kind_and_the_backends_headers() {
        use edge_core::host::{Call, RecordingHost};
        let host = RecordingHost::default();
        let t = transcoder(serde_json::json!({}));
        let mut note = Note::default();
        note.route(&t.routes()[0]);
        let metadata = [("x-backend".to_string(), "v2".to_string())];
        note.refuse(&host, Failure::body_too_large(100), &metadata);
        let calls = host.calls();
        let Call::SetProperty(path, recorded) = &calls[0] else {
            panic!("{calls:?}");
        };
        assert_eq!(path, notes::TRANSCODE);
        let recorded: TranscodeNote = notes::decode(Some(recorded));
        assert_eq!(recorded.error, "body_too_large");
        assert_eq!(recorded.route, t.routes()[0].template.as_str());
        assert!(matches!(
            &calls[1],
            Call::Reply { http_status: 413, client: Client::Http, details, .. }
                if details == "edge_transcoder_body_too_large"
        ));
        let unrouted = RecordingHost::default();
        let failure = Failure::unrouted(&RouteError::NotFound, "GET", "/x");
        Note::default().refuse(&unrouted, failure, &[]);
        assert!(matches!(
            &unrouted.calls()[1],
            Call::Reply { http_status: 404, details, .. } if details == "edge_transcoder_no_route"
        ));
    }

    #[test]
    fn in_place_every_call_goes_through_the_router_else_only_a_live_stream_with_a_body() {
        let through = |t: &Transcoder, method: &str, path: &str, accept: &str| {
            let request = headers(&[(":method", method), (":path", path), ("accept", accept)]);
            match t.plan_headers(&request, method == "GET") {
                HeadersPlan::Transcode { pending, .. } => pending.through_router,
                other => panic!("{method} {path}: {other:?}"),
            }
        };
        let by_default = transcoder(serde_json::json!({}));
        let in_place = transcoder(serde_json::json!({})).in_place();
        // (request, through the router by default, through the router in place)
        for (method, path, accept, routed, routed_in_place) in [
            ("GET", "/catalog/items/42", "*/*", false, true),
            ("GET", "/catalog/items:watch", "*/*", false, true),
            ("POST", "/catalog/items:watch", "*/*", true, true),
            (
                "POST",
                "/catalog/items:watch",
                "text/event-stream",
                true,
                true,
            ),
            (
                "POST",
                "/catalog/items:watch",
                "application/json",
                false,
                true,
            ),
            (
                "GET",
                "/catalog/items:watch",
                "application/json",
                false,
                true,
            ),
        ] {
            assert_eq!(
                through(&by_default, method, path, accept),
                routed,
                "{method} {path} {accept}"
            );
            assert_eq!(
                through(&in_place, method, path, accept),
                routed_in_place,
                "in place: {method} {path} {accept}"
            );
        }
    }

    #[test]
    fn a_get_is_called_at_once_with_its_metadata_and_deadline() {
        let t = transcoder(serde_json::json!({}));
        let request = headers(&[
            (":method", "GET"),
            (":path", "/catalog/items/42?x=1"),
            ("x-user-id", "ada"),
            ("grpc-timeout", "500m"),
        ]);
        let HeadersPlan::Transcode {
            route,
            pending,
            span_route,
            body_follows,
        } = t.plan_headers(&request, true)
        else {
            panic!("transcoded");
        };
        assert_eq!(route.grpc_path(), "/catalog.CatalogService/GetItem");
        assert!(!span_route && !body_follows);
        assert_eq!(pending.bindings, vec![("id".to_string(), "42".to_string())]);
        assert_eq!(pending.query.as_deref(), Some("x=1"));
        assert_eq!(pending.timeout, Duration::from_millis(500));
        let deadline = pending.deadline();
        let call = t.backend_call(&pending, &deadline, &[]).unwrap();
        assert_eq!(
            (call.cluster, call.route.method.as_str()),
            ("catalog", "GetItem")
        );
        assert_eq!(
            call.metadata,
            vec![("x-user-id", &b"ada"[..]), ("grpc-timeout", &b"500m"[..])]
        );
    }

    #[test]
    fn grpc_clients_pass_and_unrouted_or_unreadable_requests_are_refused() {
        let t = transcoder(serde_json::json!({}));
        let grpc = headers(&[
            (":method", "POST"),
            (":path", "/catalog.CatalogService/GetItem"),
            ("content-type", "application/grpc"),
        ]);
        assert!(matches!(
            t.plan_headers(&grpc, false),
            HeadersPlan::PassThrough
        ));
        let described = transcoder(serde_json::json!({
            "openapi": {"path": "/openapi.json", "document": "{}"}
        }));
        let get = headers(&[(":method", "GET"), (":path", "/openapi.json?x=1")]);
        assert!(matches!(
            described.plan_headers(&get, true),
            HeadersPlan::Describe("{}")
        ));
        let post = headers(&[(":method", "POST"), (":path", "/openapi.json")]);
        assert!(matches!(
            described.plan_headers(&post, true),
            HeadersPlan::Refuse { .. }
        ));
        let nowhere = headers(&[(":method", "GET"), (":path", "/nowhere")]);
        match t.plan_headers(&nowhere, true) {
            HeadersPlan::Refuse {
                route: None,
                failure,
            } => assert_eq!(
                failure,
                Failure::unrouted(&RouteError::NotFound, "GET", "/nowhere")
            ),
            other => panic!("{other:?}"),
        }
        let multipart = headers(&[
            (":method", "POST"),
            (":path", "/catalog/items"),
            ("content-type", "multipart/form-data; boundary=x"),
        ]);
        assert!(matches!(
            t.plan_headers(&multipart, false),
            HeadersPlan::Refuse { route: Some(_), failure } if failure.reply.http_status == 415
        ));
        let declared_too_large = headers(&[
            (":method", "POST"),
            (":path", "/catalog/items"),
            ("content-length", "101"),
        ]);
        assert!(matches!(
            t.plan_headers(&declared_too_large, false),
            HeadersPlan::Refuse { route: Some(_), failure } if failure.reply.http_status == 413
        ));
    }

    #[test]
    fn a_body_is_waited_for_bounded_and_then_called_with() {
        let t = transcoder(serde_json::json!({}));
        let create = headers(&[
            (":method", "POST"),
            (":path", "/catalog/items"),
            ("content-type", "application/json"),
        ]);
        let HeadersPlan::Transcode {
            pending,
            body_follows: true,
            ..
        } = t.plan_headers(&create, false)
        else {
            panic!("waits for the body");
        };
        assert_eq!(t.plan_body(false, 10, true), BodyPlan::Ignore);
        assert_eq!(t.plan_body(true, 10, false), BodyPlan::Wait);
        assert_eq!(t.plan_body(true, 101, false), BodyPlan::TooLarge);
        assert_eq!(t.plan_body(true, 10, true), BodyPlan::Call);
        let deadline = pending.deadline();
        assert_eq!(deadline, "2000m");
        let bad = t.backend_call(&pending, &deadline, b"{").unwrap_err();
        assert_eq!(bad.reply.http_status, 400);
        assert!(t
            .backend_call(&pending, &deadline, br#"{"title":"t"}"#)
            .is_ok());
    }

    #[test]
    fn a_traced_request_gives_the_backend_a_child_of_the_edge_span() {
        let t = transcoder(serde_json::json!({}));
        let edge_span = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331";
        let request = headers(&[
            (":method", "GET"),
            (":path", "/catalog/items/1"),
            (trace::EDGE_SPAN_HEADER, edge_span),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
            ),
        ]);
        let HeadersPlan::Transcode {
            pending,
            span_route: true,
            ..
        } = t.plan_headers(&request, true)
        else {
            panic!("traced");
        };
        let traceparent = &pending
            .metadata
            .iter()
            .find(|(name, _)| name == "traceparent")
            .unwrap()
            .1;
        assert_eq!(
            traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "the client's parent replaced by the edge span"
        );
        assert_eq!(
            pending
                .metadata
                .iter()
                .filter(|(n, _)| n == "traceparent")
                .count(),
            1
        );
    }

    #[test]
    fn a_rollouts_backend_is_taken_only_from_the_header_auth_sets() {
        let t =
            transcoder(serde_json::json!({"rollouts": {"catalog.CatalogService": "catalog-v2"}}));
        let chosen = headers(&[
            (":method", "GET"),
            (":path", "/catalog/items/1"),
            ("x-edge-backend", "catalog-v2"),
        ]);
        let HeadersPlan::Transcode { pending, .. } = t.plan_headers(&chosen, true) else {
            panic!("transcoded");
        };
        let deadline = pending.deadline();
        assert_eq!(
            t.backend_call(&pending, &deadline, &[]).unwrap().cluster,
            "catalog-v2"
        );
        let stable = headers(&[(":method", "GET"), (":path", "/catalog/items/1")]);
        let HeadersPlan::Transcode { pending, .. } = t.plan_headers(&stable, true) else {
            panic!("transcoded");
        };
        assert_eq!(
            t.backend_call(&pending, &deadline, &[]).unwrap().cluster,
            "catalog"
        );
    }
}
