//! The transcoder's logic, free of proxy-wasm so that it is tested on the host: a route table
//! built from the `google.api.http` annotations of a descriptor set, the request message built
//! from path, query and JSON body, and the JSON rendering of the response.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod config;
mod exchange;
mod grpc_json;
mod message;
mod outcome;
mod request;
pub mod stream;
pub mod websocket;

use base64::Engine;
pub use config::{ApiDescription, PrintOptions, TranscoderConfig};
use edge_core::{Client, GrpcCode, PathTemplate, RouteError, RouteMatch, Status};
pub use exchange::{Exchange, ResponseFlow};
use message::JsonInput;
pub use outcome::{Failure, FailureKind, FinishedCall};
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
};
pub use request::{BackendCall, BodyPlan, HeadersPlan, Note, Pending};
use std::time::Duration;

/// How a request or response body is encoded on the HTTP side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    /// The binary protobuf message itself (`application/x-protobuf`): HTTP clients that have
    /// the generated code skip JSON on both sides, and use the same routes.
    Protobuf,
    /// A `google.api.HttpBody`'s bytes, of its own content type (a page, an image, a file).
    Raw,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Protobuf => "application/x-protobuf",
            // What an HttpBody without a content type is sent as.
            Encoding::Raw => "application/octet-stream",
        }
    }

    /// The encoding a media type names (parameters such as `charset` ignored).
    fn of_media_type(media_type: &str) -> Option<Encoding> {
        let essence = media_type.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/json")
            || essence.to_ascii_lowercase().ends_with("+json")
        {
            Some(Encoding::Json)
        } else if essence.eq_ignore_ascii_case("application/x-protobuf")
            || essence.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Encoding::Protobuf)
        } else {
            None
        }
    }
}

/// The message a route passes as raw bytes with their content type.
const HTTP_BODY: &str = "google.api.HttpBody";

/// `google.api.HttpBody`'s wire form (its `extensions`, field 3, are left out): what a raw
/// request body becomes and what a raw response is read from, with no descriptor lookup.
#[derive(Clone, PartialEq, prost::Message)]
struct HttpBody {
    #[prost(string, tag = "1")]
    content_type: String,
    #[prost(bytes = "vec", tag = "2")]
    data: Vec<u8>,
}

/// Whether a field holds one `google.api.HttpBody`.
fn holds_http_body(field: &FieldDescriptor) -> bool {
    !field.is_list() && matches!(field.kind(), Kind::Message(m) if m.full_name() == HTTP_BODY)
}

fn is_multipart(media_type: &str) -> bool {
    media_type
        .get(..10)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("multipart/"))
}

/// What the request body fills (`body` of the `HttpRule`).
#[derive(Debug, Clone)]
pub enum BodyTarget {
    /// No body is accepted.
    None,
    /// `body: "*"`: the whole request message.
    Whole,
    /// `body: "field"`: one top-level field.
    Field(FieldDescriptor),
}

/// One HTTP binding of one gRPC method.
#[derive(Debug, Clone)]
pub struct Route {
    pub http_method: String,
    pub template: PathTemplate,
    /// Full service name, e.g. `catalog.CatalogService`.
    pub service: String,
    pub method: String,
    pub cluster: String,
    /// The new deployment's cluster while the service is being rolled out.
    pub rollout: Option<String>,
    pub body: BodyTarget,
    /// `response_body`: render only this field of the response.
    pub response_body: Option<FieldDescriptor>,
    /// The method takes a stream of messages: the body is a JSON array of them.
    pub client_streaming: bool,
    /// The method answers with a stream of messages, written in a [`stream::Framing`].
    pub server_streaming: bool,
    /// The body fills a `google.api.HttpBody` (the request, or the `body:` field): any content
    /// type, passed as it is.
    pub raw_request: bool,
    /// The answer is a `google.api.HttpBody` (the response, or the `response_body` field): its
    /// bytes with its content type.
    pub raw_response: bool,
    input: MessageDescriptor,
    output: MessageDescriptor,
}

impl Route {
    /// The cluster to call: the rollout's new deployment when auth chose it (`backend`, from
    /// the backend header), else the route's own.
    pub fn destination(&self, backend: Option<&str>) -> &str {
        match (&self.rollout, backend) {
            (Some(cluster), Some(chosen)) if chosen == cluster => cluster,
            _ => &self.cluster,
        }
    }

    /// The method's request message.
    pub fn input(&self) -> &MessageDescriptor {
        &self.input
    }

    /// The method's response message.
    pub fn output(&self) -> &MessageDescriptor {
        &self.output
    }

    /// `/package.Service/Method`, the gRPC path (for logs).
    pub fn grpc_path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }

    /// One `HttpRule` (or additional binding) of `method`, served by `cluster`.
    fn from_rule(
        method: &MethodDescriptor,
        rule: &DynamicMessage,
        cluster: &str,
    ) -> Result<Self, String> {
        let (http_method, path) =
            http_pattern(rule).ok_or("google.api.http rule has no pattern")?;
        let template = PathTemplate::parse(&path)?;
        let input = method.input();
        if let Some(field_path) = template.field_paths().find(|f| !resolves(&input, f)) {
            return Err(format!(
                "path variable {{{field_path}}} names no singular scalar field of {}",
                input.full_name()
            ));
        }
        let body = match string_field(rule, "body").as_str() {
            "" => BodyTarget::None,
            "*" => BodyTarget::Whole,
            name => BodyTarget::Field(
                input
                    .get_field_by_name(name)
                    .ok_or_else(|| format!("body field {name:?} is not in the request"))?,
            ),
        };
        let output = method.output();
        let response_body = match string_field(rule, "response_body").as_str() {
            "" => None,
            name => Some(
                output
                    .get_field_by_name(name)
                    .ok_or_else(|| format!("response_body {name:?} is not in the response"))?,
            ),
        };
        let raw_request = match &body {
            BodyTarget::Whole => input.full_name() == HTTP_BODY,
            BodyTarget::Field(field) => holds_http_body(field),
            BodyTarget::None => false,
        };
        let raw_response = match &response_body {
            None => output.full_name() == HTTP_BODY,
            Some(field) => holds_http_body(field),
        };
        Ok(Route {
            http_method,
            template,
            service: method.parent_service().full_name().to_string(),
            method: method.name().to_string(),
            cluster: cluster.to_string(),
            rollout: None,
            body,
            response_body,
            client_streaming: method.is_client_streaming(),
            server_streaming: method.is_server_streaming(),
            raw_request,
            raw_response,
            input,
            output,
        })
    }

    /// Two routes of one HTTP method whose templates have the same shape match the same
    /// requests.
    fn overlaps(&self, other: &Route) -> bool {
        self.http_method == other.http_method && self.template.shape() == other.template.shape()
    }
}

/// A method's `google.api.http` rule and its `additional_bindings`; none when unannotated.
fn http_rules(
    method: &MethodDescriptor,
    http: &prost_reflect::ExtensionDescriptor,
) -> Result<Vec<DynamicMessage>, String> {
    let options = method.options();
    if !options.has_extension(http) {
        return Ok(Vec::new());
    }
    let Some(rule) = options.get_extension(http).as_message().cloned() else {
        return Ok(Vec::new());
    };
    let additional: Vec<DynamicMessage> = rule
        .get_field_by_name("additional_bindings")
        .and_then(|v| {
            v.as_list().map(|list| {
                list.iter()
                    .filter_map(|v| v.as_message().cloned())
                    .collect()
            })
        })
        .unwrap_or_default();
    Ok(std::iter::once(rule).chain(additional).collect())
}

/// The result of looking a request up in the route table.
#[derive(Debug)]
pub enum Lookup<'a> {
    Matched {
        route: &'a Route,
        /// The route's position in [`Transcoder::routes`], for callers that keep it across
        /// callbacks instead of a borrow.
        index: usize,
        /// Field path and decoded value of every path variable.
        bindings: Vec<(String, String)>,
    },
    /// No route serves it (404), or not with this method (405).
    Unrouted(RouteError),
}

pub struct Transcoder {
    routes: Vec<Route>,
    /// Kept to render error details (`google.protobuf.Any`) of any type the set defines.
    pool: DescriptorPool,
    pub config: TranscoderConfig,
    /// Every call goes on through Envoy's router, its request rewritten and its response
    /// held and rewritten in place, rather than called out: for a host that can give a
    /// bodiless request a body and hold a whole response (the native module). See
    /// [`Transcoder::in_place`].
    pub(crate) in_place: bool,
    /// WebSocket upgrades to client and bidirectional streams are served (by a host that can
    /// answer a stream itself and end a call's request side: the native module).
    pub(crate) sockets: bool,
}

impl Transcoder {
    /// Builds the route table; any problem (bad descriptor, bad template, a listed service
    /// missing, two identical bindings) is an error saying what is wrong.
    pub fn new(config: TranscoderConfig) -> Result<Self, String> {
        config.check_headers()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(config.descriptor_set.trim())
            .map_err(|e| format!("descriptor_set is not base64: {e}"))?;
        let pool = DescriptorPool::decode(bytes.as_slice())
            .map_err(|e| format!("descriptor_set is not a valid FileDescriptorSet: {e}"))?;
        let http = pool
            .get_extension_by_name("google.api.http")
            .ok_or("descriptor_set lacks google/api/annotations.proto (google.api.http)")?;
        let mut routes: Vec<Route> = Vec::new();
        for (service_name, cluster) in &config.services {
            let service = pool
                .get_service_by_name(service_name)
                .ok_or_else(|| format!("service {service_name} is not in descriptor_set"))?;
            for method in service.methods() {
                for rule in http_rules(&method, &http)? {
                    let context = format!("{} ({})", method.full_name(), service_name);
                    let route = Route::from_rule(&method, &rule, cluster)
                        .map_err(|e| format!("{context}: {e}"))?;
                    if let Some(other) = routes.iter().find(|other| other.overlaps(&route)) {
                        return Err(format!(
                            "{context}: {} {} is ambiguous: {} {} ({}) matches the same requests",
                            route.http_method,
                            route.template.as_str(),
                            other.http_method,
                            other.template.as_str(),
                            other.grpc_path()
                        ));
                    }
                    let mut route = route;
                    route.rollout = config.rollouts.get(service_name).cloned();
                    routes.push(route);
                }
            }
        }
        // Most specific first; the sort is stable, so equal ones keep descriptor order.
        routes.sort_by_key(|route| std::cmp::Reverse(route.template.specificity()));
        Ok(Self {
            routes,
            pool,
            config,
            in_place: false,
            sockets: false,
        })
    }

    /// The transcoder for a host that transcodes in place: every call goes through Envoy's
    /// router as a gRPC request (a GET given its message as a body), so it gets the route
    /// table's routing, retries, timeouts and tracing like a gRPC client's. A stream of JSON
    /// is rewritten as it comes, a raw stream (`google.api.HttpBody` messages) passed on part
    /// by part once its first part gives the content type; a unary answer is held and
    /// rewritten whole.
    pub fn in_place(mut self) -> Self {
        self.in_place = true;
        self
    }

    /// The transcoder for a host that serves WebSockets ([`crate::websocket`]).
    pub fn with_sockets(mut self) -> Self {
        self.sockets = true;
        self
    }

    /// Every cluster the transcoder calls (rollouts' new deployments included).
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .flat_map(|route| std::iter::once(&route.cluster).chain(&route.rollout))
            .map(String::as_str)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route a [`Lookup::Matched`] named by index (kept across callbacks instead of a
    /// borrow). An index this table never gave out is an internal error, not a panic.
    pub fn route(&self, index: usize) -> Result<&Route, Failure> {
        self.routes.get(index).ok_or_else(Failure::unknown_route)
    }

    /// Every route the edge serves for these services, most specific first, as (method, path
    /// template, gRPC service): each HTTP binding (as its shape, variables erased) and each
    /// gRPC method as `POST /package.Service/Method` (gRPC clients pass through). The auth
    /// filter tells 404 from 405 from 403 with this table, and finds a request's service in it.
    pub fn served_routes(&self) -> Vec<(String, String, String)> {
        let http = self.routes.iter().map(|route| {
            (
                route.http_method.clone(),
                route.template.shape(),
                route.service.clone(),
            )
        });
        let grpc = self
            .config
            .services
            .keys()
            .filter_map(|name| self.pool.get_service_by_name(name))
            .flat_map(|service| {
                service
                    .methods()
                    .map(|method| {
                        let path = format!("/{}/{}", service.full_name(), method.name());
                        ("POST".to_string(), path, service.full_name().to_string())
                    })
                    .collect::<Vec<_>>()
            });
        http.chain(grpc).collect()
    }

    /// Requests this filter leaves to the router: gRPC clients (passed through to their
    /// service), and CORS preflights when the CORS filter after it answers them.
    pub fn passes_through(&self, client: Client, cors_preflight: bool) -> bool {
        client == Client::Grpc || (cors_preflight && self.config.pass_cors_preflights)
    }

    /// Finds the route for a request; `path` may carry a query string.
    pub fn lookup(&self, http_method: &str, path: &str) -> Lookup<'_> {
        let table = self
            .routes
            .iter()
            .map(|route| (route.http_method.as_str(), &route.template));
        match edge_core::match_route(table, http_method, path) {
            RouteMatch::Found(index) => {
                let route = &self.routes[index];
                match route.template.matches(edge_core::path_only(path)) {
                    Some(bindings) => Lookup::Matched {
                        route,
                        index,
                        bindings,
                    },
                    // The path matched, but a variable's value is not valid percent-encoding.
                    None => Lookup::Unrouted(RouteError::NotFound),
                }
            }
            RouteMatch::MethodNotAllowed { allow } => {
                Lookup::Unrouted(RouteError::MethodNotAllowed { allow })
            }
            RouteMatch::NotFound => Lookup::Unrouted(RouteError::NotFound),
        }
    }

    /// The encoding of a request body from its `Content-Type`: the protobuf types are binary,
    /// `multipart/*` (a form upload, never JSON) is unsupported (`None`: 415), and anything else
    /// — none, `application/json`, curl's default `application/x-www-form-urlencoded`,
    /// `text/plain` — is read as JSON, as Envoy's transcoder and grpc-gateway do. `None` too for
    /// binary protobuf where the body target is not a message.
    pub fn request_encoding(&self, route: &Route, content_type: Option<&str>) -> Option<Encoding> {
        if route.raw_request {
            return Some(Encoding::Raw);
        }
        let media_type = content_type.unwrap_or_default().trim();
        let encoding = match Encoding::of_media_type(media_type) {
            Some(encoding) => encoding,
            None if is_multipart(media_type) => return None,
            None => Encoding::Json,
        };
        let binary_target_ok = match &route.body {
            BodyTarget::Field(field) => {
                matches!(field.kind(), Kind::Message(_)) && !field.is_list() && !field.is_map()
            }
            BodyTarget::None | BodyTarget::Whole => true,
        };
        (encoding == Encoding::Json || binary_target_ok).then_some(encoding)
    }

    /// The encoding of the response: what `Accept` asks for, else the request's own binary
    /// encoding, else JSON (also when `response_body` names a field that is not a message).
    pub fn response_encoding(
        &self,
        route: &Route,
        accept: Option<&str>,
        request: Option<Encoding>,
    ) -> Encoding {
        if route.raw_response {
            return Encoding::Raw;
        }
        let asked =
            accept.and_then(|accept| accept.split(',').filter_map(Encoding::of_media_type).next());
        let wanted = asked.or(request).unwrap_or(Encoding::Json);
        let binary_ok = route
            .response_body
            .as_ref()
            .is_none_or(|field| matches!(field.kind(), Kind::Message(_)) && !field.is_list());
        if wanted == Encoding::Protobuf && binary_ok {
            Encoding::Protobuf
        } else {
            Encoding::Json
        }
    }

    /// The serialized request message: body first, then query parameters, then path
    /// variables (which win, as in grpc-gateway).
    pub fn request_message(
        &self,
        route: &Route,
        bindings: &[(String, String)],
        query: Option<&str>,
        body: &[u8],
        encoding: Encoding,
    ) -> Result<Vec<u8>, Status> {
        let mut request = DynamicMessage::new(route.input.clone());
        let input = JsonInput {
            deny_unknown_fields: self.config.reject_unknown_json_fields,
        };
        match (&route.body, encoding) {
            (BodyTarget::None, _) => {}
            (BodyTarget::Whole, Encoding::Json) => message::merge_json(&mut request, body, input)?,
            // Raw: `body` is the `google.api.HttpBody` built from it (`request_messages`).
            (BodyTarget::Whole, Encoding::Protobuf | Encoding::Raw) => {
                message::merge_protobuf(&mut request, body)?
            }
            (BodyTarget::Field(field), Encoding::Json) => {
                message::merge_json_field(&mut request, field, body, input)?
            }
            (BodyTarget::Field(field), Encoding::Protobuf | Encoding::Raw) => {
                message::merge_protobuf_field(&mut request, field, body)?
            }
        }
        let pairs = match query {
            Some(query) => message::query_pairs(query, self.config.query_plus_as_space)?,
            None => Vec::new(),
        };
        let body_field = match &route.body {
            BodyTarget::Whole => None,
            BodyTarget::Field(field) => Some(field.name()),
            BodyTarget::None => None,
        };
        for (key, value) in pairs {
            let top = key.split('.').next().unwrap_or_default();
            let bound = bindings.iter().any(|(path, _)| path == &key)
                || body_field.is_some_and(|name| name == top);
            // With `body: "*"` every field comes from the body: a query parameter has no field.
            let known = !bound
                && !matches!(route.body, BodyTarget::Whole)
                && message::set_query_field(&mut request, &key, &value)?;
            if !known && !bound && self.config.reject_unknown_query_parameters {
                return Err(Status::new(
                    GrpcCode::InvalidArgument,
                    format!("unknown query parameter {key:?}"),
                ));
            }
        }
        finish(request, bindings)
    }

    /// The request's messages: its one message, or for a client-streaming method one per
    /// element of the JSON array body (none for an empty body), each with the query parameters
    /// and path variables, as Envoy's transcoder reads a stream. A raw body (`content_type`
    /// its own) fills its `google.api.HttpBody` as it is.
    pub fn request_messages(
        &self,
        route: &Route,
        bindings: &[(String, String)],
        query: Option<&str>,
        body: &[u8],
        encoding: Encoding,
        content_type: Option<&str>,
    ) -> Result<Vec<Vec<u8>>, Status> {
        if encoding == Encoding::Raw {
            let http_body = HttpBody {
                content_type: content_type.unwrap_or_default().to_string(),
                data: body.to_vec(),
            };
            let bytes = prost::Message::encode_to_vec(&http_body);
            return Ok(vec![
                self.request_message(route, bindings, query, &bytes, encoding)?
            ]);
        }
        if !route.client_streaming {
            return Ok(vec![
                self.request_message(route, bindings, query, body, encoding)?
            ]);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let not_an_array = || {
            Status::new(
                GrpcCode::InvalidArgument,
                format!(
                    "invalid JSON body: {} takes a stream: send a JSON array of messages",
                    route.grpc_path()
                ),
            )
        };
        let elements = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Array(elements)) => elements,
            Ok(_) => return Err(not_an_array()),
            Err(e) => {
                return Err(Status::new(
                    GrpcCode::InvalidArgument,
                    format!("invalid JSON body: {e}"),
                ))
            }
        };
        elements
            .iter()
            .enumerate()
            .map(|(index, element)| {
                let element = serde_json::to_vec(element).unwrap_or_default();
                self.request_message(route, bindings, query, &element, encoding)
                    .map_err(|status| {
                        Status::new(status.code, format!("message {index}: {}", status.message))
                    })
            })
            .collect()
    }

    /// One message of a server stream as one line of JSON (never indented: a line is a
    /// message in NDJSON and SSE).
    pub fn stream_message_json(&self, route: &Route, message: &[u8]) -> Result<Vec<u8>, Status> {
        let response = DynamicMessage::decode(route.output.clone(), message).map_err(|e| {
            Status::new(
                GrpcCode::Internal,
                format!("backend sent an undecodable stream message: {e}"),
            )
        })?;
        let print = PrintOptions {
            add_whitespace: false,
            ..self.config.print.clone()
        };
        message::to_json(&response, route.response_body.as_ref(), &print)
    }

    /// A raw answer (`route.raw_response`): the `google.api.HttpBody`'s bytes and content
    /// type (`application/octet-stream` when it names none).
    pub fn raw_response(&self, route: &Route, message: &[u8]) -> Result<(Vec<u8>, String), Status> {
        let undecodable = |e: prost::DecodeError| {
            Status::new(
                GrpcCode::Internal,
                format!("backend sent an undecodable response: {e}"),
            )
        };
        let http_body: HttpBody = match &route.response_body {
            None => prost::Message::decode(message).map_err(undecodable)?,
            Some(field) => {
                let response =
                    DynamicMessage::decode(route.output.clone(), message).map_err(undecodable)?;
                match response.get_field(field).as_message() {
                    Some(inner) => {
                        prost::Message::decode(prost::Message::encode_to_vec(inner).as_slice())
                            .map_err(undecodable)?
                    }
                    None => HttpBody::default(),
                }
            }
        };
        let content_type = if http_body.content_type.is_empty() {
            Encoding::Raw.content_type().to_string()
        } else {
            http_body.content_type
        };
        Ok((http_body.data, content_type))
    }

    /// The body for a successful response message.
    pub fn response_body(
        &self,
        route: &Route,
        message: &[u8],
        encoding: Encoding,
    ) -> Result<Vec<u8>, Status> {
        if encoding == Encoding::Protobuf && route.response_body.is_none() {
            return Ok(message.to_vec());
        }
        if encoding == Encoding::Raw {
            return self.raw_response(route, message).map(|(data, _)| data);
        }
        let response = DynamicMessage::decode(route.output.clone(), message).map_err(|e| {
            Status::new(
                GrpcCode::Internal,
                format!("backend sent an undecodable response: {e}"),
            )
        })?;
        match (encoding, &route.response_body) {
            (Encoding::Protobuf, Some(field)) => match response.get_field(field).as_message() {
                Some(inner) => Ok(prost::Message::encode_to_vec(inner)),
                None => Ok(Vec::new()),
            },
            _ => message::to_json(&response, route.response_body.as_ref(), &self.config.print),
        }
    }

    /// The error a backend returned, as clients see it: from `grpc-status-details-bin` (a
    /// base64 `google.rpc.Status`, details included) when present and valid, else from the
    /// status code and message.
    pub fn backend_error(&self, code: u32, message: String, details_bin: Option<&str>) -> Status {
        let decoded = details_bin.and_then(|encoded| {
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(encoded.trim().trim_end_matches('='))
                .ok()?;
            <tonic_types::Status as prost::Message>::decode(bytes.as_slice()).ok()
        });
        match decoded {
            Some(status) => {
                let details = status
                    .details
                    .iter()
                    .map(|any| {
                        message::any_to_json(
                            &self.pool,
                            &any.type_url,
                            &any.value,
                            &self.config.print,
                        )
                    })
                    .collect();
                let number = u32::try_from(status.code).unwrap_or(code);
                Status::new(GrpcCode::from_number(number), status.message).with_details(details)
            }
            None => Status::new(GrpcCode::from_number(code), message),
        }
    }

    /// The deadline of a backend call: the configured one, or the client's `grpc-timeout`
    /// when that is shorter.
    pub fn call_timeout(&self, grpc_timeout: Option<&str>) -> Duration {
        let configured = Duration::from_millis(self.config.timeout_ms);
        grpc_timeout
            .and_then(edge_core::parse_grpc_timeout)
            .map_or(configured, |client| client.min(configured))
    }
}

#[cfg(test)]
mod tests;

fn finish(mut request: DynamicMessage, bindings: &[(String, String)]) -> Result<Vec<u8>, Status> {
    for (field_path, value) in bindings {
        message::set_path_field(&mut request, field_path, value)?;
    }
    Ok(prost::Message::encode_to_vec(&request))
}

/// Whether `a.b.c` leads through singular message fields to a singular non-message field.
fn resolves(message: &MessageDescriptor, field_path: &str) -> bool {
    let (head, rest) = match field_path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (field_path, None),
    };
    let Some(field) = message.get_field_by_name(head) else {
        return false;
    };
    if field.is_list() || field.is_map() {
        return false;
    }
    match (field.kind(), rest) {
        (prost_reflect::Kind::Message(inner), Some(rest)) => resolves(&inner, rest),
        (prost_reflect::Kind::Message(_), None) | (_, Some(_)) => false,
        (_, None) => true,
    }
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The HTTP method and path template of a `HttpRule` (`get`, `post`, … or `custom`).
fn http_pattern(rule: &DynamicMessage) -> Option<(String, String)> {
    for method in ["get", "put", "post", "delete", "patch"] {
        if rule.has_field_by_name(method) {
            return Some((method.to_ascii_uppercase(), string_field(rule, method)));
        }
    }
    let custom = rule.get_field_by_name("custom")?;
    let custom = custom.as_message()?;
    Some((string_field(custom, "kind"), string_field(custom, "path")))
}
