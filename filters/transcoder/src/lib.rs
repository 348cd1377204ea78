//! The transcoder's logic, free of proxy-wasm so that it is tested on the host: a route table
//! built from the `google.api.http` annotations of a descriptor set, the request message built
//! from path, query and JSON body, and the JSON rendering of the response.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod config;
mod message;
pub mod template;

use base64::Engine;
pub use config::{PrintOptions, TranscoderConfig};
use edge_core::{GrpcCode, Status};
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, MessageDescriptor, Value};
use template::PathTemplate;

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
    /// `cluster` encoded for `dispatch_grpc_call` (see `edge_core::grpc_upstream`).
    pub upstream: String,
    pub body: BodyTarget,
    /// `response_body`: render only this field of the response.
    pub response_body: Option<FieldDescriptor>,
    input: MessageDescriptor,
    output: MessageDescriptor,
}

impl Route {
    /// `/package.Service/Method`, the gRPC path (for logs).
    pub fn grpc_path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
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
    /// The path matches a route, but not with this method (405).
    MethodNotAllowed,
    NotFound,
}

pub struct Transcoder {
    routes: Vec<Route>,
    pub config: TranscoderConfig,
}

impl Transcoder {
    /// Builds the route table; any problem (bad descriptor, bad template, a listed service
    /// missing, two identical bindings) is an error saying what is wrong.
    pub fn new(config: TranscoderConfig) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(config.descriptor_set.trim())
            .map_err(|e| format!("descriptor_set is not base64: {e}"))?;
        let pool = DescriptorPool::decode(bytes.as_slice())
            .map_err(|e| format!("descriptor_set is not a valid FileDescriptorSet: {e}"))?;
        let http = pool
            .get_extension_by_name("google.api.http")
            .ok_or("descriptor_set lacks google/api/annotations.proto (google.api.http)")?;
        let mut routes = Vec::new();
        for (service_name, cluster) in &config.services {
            let service = pool
                .get_service_by_name(service_name)
                .ok_or_else(|| format!("service {service_name} is not in descriptor_set"))?;
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&http) {
                    continue;
                }
                if method.is_client_streaming() || method.is_server_streaming() {
                    return Err(format!(
                        "{}: streaming methods cannot be transcoded",
                        method.full_name()
                    ));
                }
                let rule = options.get_extension(&http);
                let Some(rule) = rule.as_message() else {
                    continue;
                };
                let mut rules = vec![rule.clone()];
                if let Some(additional) = rule
                    .get_field_by_name("additional_bindings")
                    .and_then(|v| v.as_list().map(<[Value]>::to_vec))
                {
                    rules.extend(additional.iter().filter_map(|v| v.as_message().cloned()));
                }
                for rule in &rules {
                    let context = format!("{} ({})", method.full_name(), service_name);
                    let (http_method, path) = http_pattern(rule)
                        .ok_or_else(|| format!("{context}: google.api.http rule has no pattern"))?;
                    let template =
                        PathTemplate::parse(&path).map_err(|e| format!("{context}: {e}"))?;
                    for field_path in template.field_paths() {
                        if !resolves(&method.input(), field_path) {
                            return Err(format!(
                                "{context}: path variable {{{field_path}}} names no singular scalar field of {}",
                                method.input().full_name()
                            ));
                        }
                    }
                    let body = match string_field(rule, "body").as_str() {
                        "" => BodyTarget::None,
                        "*" => BodyTarget::Whole,
                        name => {
                            BodyTarget::Field(method.input().get_field_by_name(name).ok_or_else(
                                || format!("{context}: body field {name:?} is not in the request"),
                            )?)
                        }
                    };
                    let response_body = match string_field(rule, "response_body").as_str() {
                        "" => None,
                        name => Some(method.output().get_field_by_name(name).ok_or_else(|| {
                            format!("{context}: response_body {name:?} is not in the response")
                        })?),
                    };
                    if routes.iter().any(|r: &Route| {
                        r.http_method == http_method && r.template.as_str() == template.as_str()
                    }) {
                        return Err(format!("{context}: {http_method} {path} is bound twice"));
                    }
                    routes.push(Route {
                        http_method,
                        template,
                        service: service.full_name().to_string(),
                        method: method.name().to_string(),
                        cluster: cluster.clone(),
                        upstream: edge_core::grpc_upstream(cluster)
                            .map_err(|e| format!("{context}: {e}"))?,
                        body,
                        response_body,
                        input: method.input(),
                        output: method.output(),
                    });
                }
            }
        }
        // Most specific first; the sort is stable, so equal ones keep descriptor order.
        routes.sort_by_key(|route| std::cmp::Reverse(route.template.specificity()));
        Ok(Self { routes, config })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the route for a request; `path` may carry a query string.
    pub fn lookup(&self, http_method: &str, path: &str) -> Lookup<'_> {
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        let mut path_matched = false;
        for (index, route) in self.routes.iter().enumerate() {
            if let Some(bindings) = route.template.matches(path) {
                if route.http_method.eq_ignore_ascii_case(http_method) {
                    return Lookup::Matched {
                        route,
                        index,
                        bindings,
                    };
                }
                path_matched = true;
            }
        }
        if path_matched {
            Lookup::MethodNotAllowed
        } else {
            Lookup::NotFound
        }
    }

    /// The serialized request message: JSON body first, then query parameters, then path
    /// variables (which win, as in grpc-gateway).
    pub fn request_message(
        &self,
        route: &Route,
        bindings: &[(String, String)],
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Vec<u8>, Status> {
        let mut request = DynamicMessage::new(route.input.clone());
        match &route.body {
            BodyTarget::None => {}
            BodyTarget::Whole => message::merge_json(&mut request, body)?,
            BodyTarget::Field(field) => message::merge_json_field(&mut request, field, body)?,
        }
        if let Some(query) = query {
            let body_field = match &route.body {
                BodyTarget::Whole => return finish(request, bindings),
                BodyTarget::Field(field) => Some(field.name()),
                BodyTarget::None => None,
            };
            for (key, value) in message::query_pairs(query)? {
                let top = key.split('.').next().unwrap_or_default();
                let bound = bindings.iter().any(|(path, _)| path == &key)
                    || body_field.is_some_and(|name| name == top);
                if !bound {
                    message::set_query_field(&mut request, &key, &value)?;
                }
            }
        }
        finish(request, bindings)
    }

    /// The JSON body for a successful response message.
    pub fn response_json(&self, route: &Route, message: &[u8]) -> Result<Vec<u8>, Status> {
        let response = DynamicMessage::decode(route.output.clone(), message).map_err(|e| {
            Status::new(
                GrpcCode::Internal,
                format!("backend sent an undecodable response: {e}"),
            )
        })?;
        message::to_json(&response, route.response_body.as_ref(), &self.config.print)
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
