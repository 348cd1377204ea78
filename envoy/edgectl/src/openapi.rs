//! `edgectl openapi`: the API the edge serves, as OpenAPI 3.1, from what the edge runs on — the
//! transcoder's bindings (the same route table the filter builds), the proto3 JSON mapping of
//! their messages, the protos' comments, and the auth policy and rate limits that decide who
//! may call each route. The transcoder serves it (`transcoder.openapi.path` in edge.json), so a
//! policy change changes the served document with no restart.

use crate::RateLimit;
use edge_auth::config::Rule;
use edge_auth::{AuthConfig, Policy};
use edge_transcoder::{BodyTarget, Route, Transcoder};
use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// `transcoder.openapi` in edge.json.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiSettings {
    /// Where the edge serves the document (`GET`); the auth policy must make it public.
    pub path: String,
    #[serde(default = "default_title")]
    pub title: String,
    #[serde(default = "default_version")]
    pub version: String,
}

fn default_title() -> String {
    "Edge API".into()
}

fn default_version() -> String {
    "1".into()
}

const STATUS: &str = "google.rpc.Status";
/// Query parameters reach this deep into nested messages (`a.b.c`).
const MAX_QUERY_DEPTH: usize = 3;

/// The policy inputs the document states per route.
pub struct Policies<'a> {
    pub auth: &'a AuthConfig,
    pub rate_limits: &'a [RateLimit],
    /// Mesh-level AuthorizationPolicies exist (Istio's RBAC): any route can answer 403.
    pub authorization: bool,
}

/// The OpenAPI 3.1 document of every HTTP binding `transcoder` serves.
pub fn document(settings: &OpenApiSettings, transcoder: &Transcoder, policies: &Policies) -> Value {
    let mut schemas = Schemas::new(transcoder.config.print.preserve_proto_field_names);
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut operation_ids: BTreeSet<String> = BTreeSet::new();
    let mut tags: BTreeMap<String, Option<String>> = BTreeMap::new();
    // Descriptor order: the route table is sorted by specificity, which readers do not want.
    let mut routes: Vec<&Route> = transcoder.routes().iter().collect();
    routes.sort_by_key(|route| (route.service.clone(), route.template.as_str().to_string()));
    for route in routes {
        let (path, variables) = route.template.named_variables();
        let service = route
            .input()
            .parent_pool()
            .get_service_by_name(&route.service);
        let method = service
            .as_ref()
            .and_then(|service| service.methods().find(|m| m.name() == route.method));
        tags.entry(route.service.clone()).or_insert_with(|| {
            service
                .as_ref()
                .and_then(|s| comments(s.parent_file_descriptor_proto(), s.path()))
        });
        let mut operation = Map::new();
        operation.insert("tags".into(), json!([route.service]));
        operation.insert(
            "operationId".into(),
            json!(unique_id(&mut operation_ids, route)),
        );
        operation.insert(
            "summary".into(),
            json!(format!("{} ({})", route.method, route.grpc_path())),
        );
        if let Some(text) =
            method.and_then(|m| comments(m.parent_file().file_descriptor_proto(), m.path()))
        {
            operation.insert("description".into(), json!(text));
        }
        let parameters = parameters(&mut schemas, route, &variables);
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(body) = request_body(&mut schemas, route) {
            operation.insert("requestBody".into(), body);
        }
        let rule = rule_for(policies.auth, route);
        let policy = rule.map_or(policies.auth.unmatched_policy, |rule| rule.policy);
        operation.insert(
            "responses".into(),
            responses(&mut schemas, route, policy, rule, policies),
        );
        match (policy, rule) {
            (Policy::Authenticated, rule) => {
                let roles: Vec<String> = rule
                    .map(|rule| {
                        rule.require_claims
                            .iter()
                            .map(|(claim, value)| format!("{claim}={value}"))
                            .collect()
                    })
                    .unwrap_or_default();
                operation.insert("security".into(), json!([{ "bearer": roles }]));
                if let Some(action) = rule.and_then(|rule| rule.action.as_deref()) {
                    operation.insert("x-edge-acl-action".into(), json!(action));
                }
            }
            (Policy::Public, _) => {
                operation.insert("security".into(), json!([]));
            }
            (Policy::Deny, _) => {
                operation.insert("x-edge-denied".into(), json!(true));
            }
        }
        if let Some(limit) = rate_limit(policies.rate_limits, route) {
            operation.insert(
                "x-edge-rate-limit".into(),
                json!({ "name": limit.name, "requests": limit.requests, "per_seconds": limit.per_seconds }),
            );
        }
        paths.entry(path).or_default().insert(
            route.http_method.to_ascii_lowercase(),
            Value::Object(operation),
        );
    }
    let tags: Vec<Value> = tags
        .into_iter()
        .map(|(name, description)| match description {
            Some(description) => json!({ "name": name, "description": description }),
            None => json!({ "name": name }),
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": { "title": settings.title, "version": settings.version },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": schemas.finish(),
            "responses": error_responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A token from the authority service (`POST /auth/signin`). Roles listed on an operation are claims the token must carry (`scope=acl.admin`)."
                }
            }
        }
    })
}

/// `Service_Method`, with `_2`, `_3`… for a method's further bindings.
fn unique_id(taken: &mut BTreeSet<String>, route: &Route) -> String {
    let service = route.service.rsplit('.').next().unwrap_or(&route.service);
    let base = format!("{service}_{}", route.method);
    let mut id = base.clone();
    let mut n = 1;
    while !taken.insert(id.clone()) {
        n += 1;
        id = format!("{base}_{n}");
    }
    id
}

/// The leading (or trailing) comment of the element at `path` in `file`, trimmed.
fn comments(file: &prost_types::FileDescriptorProto, path: &[i32]) -> Option<String> {
    let location = file
        .source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|location| location.path == path)?;
    let text = location
        .leading_comments
        .as_deref()
        .or(location.trailing_comments.as_deref())?;
    let text = text
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string();
    (!text.is_empty()).then_some(text)
}

/// The auth rule for a route, as the filter decides it for a path the route matches.
fn rule_for<'a>(auth: &'a AuthConfig, route: &Route) -> Option<&'a Rule> {
    edge_auth::policy::matching_rule(auth, &route.http_method, &route.template.sample("x"))
}

fn rate_limit<'a>(limits: &'a [RateLimit], route: &Route) -> Option<&'a RateLimit> {
    let sample = route.template.sample("x");
    limits.iter().find(|limit| {
        limit.routes.iter().any(|limited| {
            (limited.methods.is_empty()
                || limited
                    .methods
                    .iter()
                    .any(|method| method.eq_ignore_ascii_case(&route.http_method)))
                && limited.path.is_match(&sample)
        })
    })
}

/// Path parameters, then query parameters: every field the path and the body leave, by the
/// name a client may use (nested ones as `a.b`).
fn parameters(
    schemas: &mut Schemas,
    route: &Route,
    variables: &[(String, Option<String>)],
) -> Vec<Value> {
    let input = route.input();
    let mut parameters = Vec::new();
    for (field_path, captures) in variables {
        let mut schema = field_at(input, field_path)
            .map(|field| schemas.field(&field))
            .unwrap_or_else(|| json!({ "type": "string" }));
        let mut description = None;
        if let Some(captures) = captures {
            description = Some(format!(
                "Captures `{captures}` of the path (slashes included), which an OpenAPI path parameter cannot express."
            ));
            if let Value::Object(schema) = &mut schema {
                schema.remove("pattern");
            }
        }
        let mut parameter = json!({
            "name": field_path, "in": "path", "required": true, "schema": schema
        });
        if let Some(description) = description {
            parameter["description"] = json!(description);
        }
        parameters.push(parameter);
    }
    if matches!(route.body, BodyTarget::Whole) || route.client_streaming {
        return parameters;
    }
    let bound: BTreeSet<&str> = variables.iter().map(|(path, _)| path.as_str()).collect();
    let body_field = match &route.body {
        BodyTarget::Field(field) => Some(field.name().to_string()),
        _ => None,
    };
    let mut seen = vec![input.full_name().to_string()];
    query_parameters(
        schemas,
        input,
        "",
        &bound,
        body_field.as_deref(),
        &mut seen,
        &mut parameters,
    );
    parameters
}

fn query_parameters(
    schemas: &mut Schemas,
    message: &MessageDescriptor,
    prefix: &str,
    bound: &BTreeSet<&str>,
    body_field: Option<&str>,
    seen: &mut Vec<String>,
    out: &mut Vec<Value>,
) {
    for field in message.fields() {
        let name = format!("{prefix}{}", field.name());
        if bound.contains(name.as_str()) || (prefix.is_empty() && body_field == Some(field.name()))
        {
            continue;
        }
        if field.is_map() {
            continue;
        }
        match field.kind() {
            Kind::Message(inner) if !is_scalar_like(&inner) => {
                // A nested message's fields, as `a.b`; repeated messages cannot be queried.
                if field.is_list()
                    || seen.len() >= MAX_QUERY_DEPTH
                    || seen.iter().any(|name| name == inner.full_name())
                {
                    continue;
                }
                seen.push(inner.full_name().to_string());
                query_parameters(
                    schemas,
                    &inner,
                    &format!("{name}."),
                    bound,
                    body_field,
                    seen,
                    out,
                );
                seen.pop();
            }
            _ => {
                let mut parameter = json!({
                    "name": name, "in": "query", "schema": schemas.field(&field)
                });
                if field.is_list() {
                    parameter["style"] = json!("form");
                    parameter["explode"] = json!(true);
                }
                if let Some(text) =
                    comments(field.parent_file().file_descriptor_proto(), field.path())
                {
                    parameter["description"] = json!(text);
                }
                out.push(parameter);
            }
        }
    }
}

/// The field a path variable names (`a.b`: field `b` of message field `a`).
fn field_at(message: &MessageDescriptor, field_path: &str) -> Option<FieldDescriptor> {
    let mut message = message.clone();
    let mut parts = field_path.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = message.get_field_by_name(part)?;
        if parts.peek().is_none() {
            return Some(field);
        }
        match field.kind() {
            Kind::Message(inner) => message = inner,
            _ => return None,
        }
    }
    None
}

/// A message that proto3 JSON writes as one value (a timestamp, a wrapper), not an object.
fn is_scalar_like(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

const BINARY: &str = "application/x-protobuf";

fn binary_schema() -> Value {
    json!({ "type": "string", "format": "binary" })
}

fn request_body(schemas: &mut Schemas, route: &Route) -> Option<Value> {
    let message_schema = match &route.body {
        BodyTarget::None => return None,
        BodyTarget::Whole => schemas.message(route.input()),
        BodyTarget::Field(field) => schemas.field(field),
    };
    let content = if route.raw_request {
        json!({ "*/*": { "schema": binary_schema() } })
    } else if route.client_streaming {
        json!({ "application/json": { "schema": { "type": "array", "items": message_schema } } })
    } else {
        json!({
            "application/json": { "schema": message_schema },
            BINARY: { "schema": binary_schema() }
        })
    };
    let description = match (&route.body, route.raw_request, route.client_streaming) {
        (_, true, _) => "The bytes as they are, of any content type (google.api.HttpBody).",
        (_, _, true) => "The stream's messages, as one JSON array.",
        (BodyTarget::Field(_), ..) => {
            "The `body` field of the request message, as JSON or binary protobuf."
        }
        _ => "The request message, as JSON or binary protobuf.",
    };
    Some(json!({ "description": description, "content": content }))
}

fn responses(
    schemas: &mut Schemas,
    route: &Route,
    policy: Policy,
    rule: Option<&Rule>,
    policies: &Policies,
) -> Value {
    let message_schema = match &route.response_body {
        Some(field) => schemas.field(field),
        None => schemas.message(route.output()),
    };
    let status_ref = json!({ "$ref": format!("#/components/schemas/{STATUS}") });
    schemas.status();
    let content = if route.raw_response {
        json!({ "*/*": { "schema": binary_schema() } })
    } else if route.server_streaming {
        json!({
            "application/x-ndjson": { "schema": {
                "description": "One JSON object a line: `{\"result\": message}`, and on failure a last `{\"error\": Status}`.",
                "oneOf": [
                    { "type": "object", "properties": { "result": message_schema }, "required": ["result"] },
                    { "type": "object", "properties": { "error": status_ref }, "required": ["error"] }
                ]
            } },
            "text/event-stream": { "schema": {
                "type": "string",
                "description": "A `data:` event per message; a failure is a last `event: error` with the Status."
            } },
            "application/json": { "schema": {
                "type": "array",
                "description": "Every message, then the Status as a last element on failure (`Accept: application/json`).",
                "items": message_schema
            } }
        })
    } else {
        json!({
            "application/json": { "schema": message_schema },
            BINARY: { "schema": binary_schema() }
        })
    };
    let description = if route.server_streaming {
        "The stream: NDJSON by default, server-sent events or a JSON array as `Accept` asks."
    } else {
        "OK"
    };
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({ "description": description, "content": content }),
    );
    let error = |name: &str| json!({ "$ref": format!("#/components/responses/{name}") });
    responses.insert("400".into(), error("BadRequest"));
    let restricted =
        rule.is_some_and(|rule| rule.action.is_some() || !rule.require_claims.is_empty());
    if policy == Policy::Authenticated {
        responses.insert("401".into(), error("Unauthenticated"));
    }
    if policy == Policy::Deny || restricted || policies.authorization {
        responses.insert("403".into(), error("PermissionDenied"));
    }
    responses.insert("404".into(), error("NotFound"));
    responses.insert("409".into(), error("Conflict"));
    if !matches!(route.body, BodyTarget::None) {
        responses.insert("413".into(), error("BodyTooLarge"));
        responses.insert("415".into(), error("UnsupportedMediaType"));
    }
    if rate_limit(policies.rate_limits, route).is_some() {
        responses.insert("429".into(), error("TooManyRequests"));
    }
    responses.insert("500".into(), error("Internal"));
    responses.insert("503".into(), error("Unavailable"));
    responses.insert("504".into(), error("DeadlineExceeded"));
    Value::Object(responses)
}

/// The error replies, each a `google.rpc.Status` (RBAC's 403 is Envoy's plain text).
fn error_responses() -> Value {
    let status = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{STATUS}") } } }
        })
    };
    let mut forbidden = status("The token lacks a claim the route requires, the account is restricted from the route's action (acl), or a mesh policy denies the request (then `RBAC: access denied`, text/plain).");
    forbidden["content"]["text/plain"] = json!({ "schema": { "type": "string" } });
    let mut limited = status("Too many requests from this caller for the route's rate limit.");
    limited["headers"] = json!({
        "retry-after": { "description": "Seconds until a request may succeed.", "schema": { "type": "integer" } }
    });
    let mut unauthenticated = status("No valid bearer token.");
    unauthenticated["headers"] = json!({
        "www-authenticate": { "description": "RFC 6750's challenge.", "schema": { "type": "string" } }
    });
    json!({
        "BadRequest": status("The request cannot be read into the method's message (bad JSON, a wrong type, an unknown enum name, two members of a oneof), or the backend refused it (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE)."),
        "Unauthenticated": unauthenticated,
        "PermissionDenied": forbidden,
        "NotFound": status("No such resource (NOT_FOUND from the backend)."),
        "BodyTooLarge": status("The request body is larger than the edge accepts."),
        "UnsupportedMediaType": status("A body that is neither JSON nor binary protobuf."),
        "TooManyRequests": limited,
        "Unavailable": status("The backend cannot be reached."),
        "DeadlineExceeded": status("The backend did not answer in time."),
        "Conflict": status("ALREADY_EXISTS or ABORTED from the backend."),
        "Internal": status("INTERNAL, UNKNOWN or DATA_LOSS from the backend, or an answer the edge could not read.")
    })
}

/// The schemas of the messages the document refers to, by full name.
struct Schemas {
    defs: BTreeMap<String, Value>,
    proto_names: bool,
}

impl Schemas {
    fn new(proto_names: bool) -> Self {
        Self {
            defs: BTreeMap::new(),
            proto_names,
        }
    }

    fn finish(self) -> Value {
        json!(self.defs)
    }

    fn status(&mut self) {
        self.defs.entry(STATUS.into()).or_insert_with(|| {
            json!({
                "type": "object",
                "description": "The error model of gRPC and Google APIs (google/rpc/status.proto), as proto3 JSON.",
                "properties": {
                    "code": { "type": "integer", "format": "int32", "description": "A google.rpc.Code." },
                    "message": { "type": "string" },
                    "details": { "type": "array", "items": {
                        "type": "object",
                        "properties": { "@type": { "type": "string" } },
                        "required": ["@type"]
                    } }
                }
            })
        });
    }

    /// A reference to a message's schema (or its JSON form, for well-known types).
    fn message(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(schema) = well_known(message.full_name()) {
            return schema;
        }
        let name = message.full_name().to_string();
        if !self.defs.contains_key(&name) {
            // Placed first, so that a message that contains itself refers to itself.
            self.defs.insert(name.clone(), json!({}));
            let mut properties = Map::new();
            for field in message.fields() {
                let key = if self.proto_names {
                    field.name().to_string()
                } else {
                    field.json_name().to_string()
                };
                let mut schema = self.field(&field);
                if let Some(text) =
                    comments(field.parent_file().file_descriptor_proto(), field.path())
                {
                    schema = with_description(schema, text);
                }
                properties.insert(key, schema);
            }
            let mut schema = json!({ "type": "object", "properties": properties });
            if let Some(text) = comments(message.parent_file_descriptor_proto(), message.path()) {
                schema["description"] = json!(text);
            }
            self.defs.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            if let Kind::Message(entry) = field.kind() {
                let value = entry.map_entry_value_field();
                return json!({ "type": "object", "additionalProperties": self.kind(&value.kind()) });
            }
        }
        let item = self.kind(&field.kind());
        if field.cardinality() == Cardinality::Repeated {
            json!({ "type": "array", "items": item })
        } else {
            item
        }
    }

    fn kind(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({ "type": "number" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({ "type": "integer", "minimum": 0, "maximum": 4_294_967_295u64 })
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]+$" })
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]+$" })
            }
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
            Kind::Enum(descriptor) => {
                if descriptor.full_name() == "google.protobuf.NullValue" {
                    return json!({ "type": "null" });
                }
                let names: Vec<String> =
                    descriptor.values().map(|v| v.name().to_string()).collect();
                json!({ "type": "string", "enum": names })
            }
            Kind::Message(message) => self.message(message),
        }
    }
}

fn with_description(schema: Value, text: String) -> Value {
    match schema {
        // Beside a `$ref`, other keywords apply too in OpenAPI 3.1 (JSON Schema 2020-12).
        Value::Object(mut map) => {
            map.insert("description".into(), json!(text));
            Value::Object(map)
        }
        other => other,
    }
}

/// The proto3 JSON form of the well-known types.
fn well_known(full_name: &str) -> Option<Value> {
    let nullable = |schema: Value| {
        let mut schema = schema;
        let kind = schema["type"].clone();
        schema["type"] = json!([kind, "null"]);
        schema
    };
    Some(match full_name {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => {
            json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$" })
        }
        "google.protobuf.FieldMask" => json!({ "type": "string" }),
        "google.protobuf.Struct" => json!({ "type": "object" }),
        "google.protobuf.ListValue" => json!({ "type": "array" }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.Empty" => json!({ "type": "object" }),
        "google.protobuf.Any" => json!({
            "type": "object", "properties": { "@type": { "type": "string" } }, "required": ["@type"]
        }),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => {
            nullable(json!({ "type": "number" }))
        }
        "google.protobuf.Int64Value" => {
            nullable(json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]+$" }))
        }
        "google.protobuf.UInt64Value" => {
            nullable(json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]+$" }))
        }
        "google.protobuf.Int32Value" => nullable(json!({ "type": "integer", "format": "int32" })),
        "google.protobuf.UInt32Value" => {
            nullable(json!({ "type": "integer", "minimum": 0, "maximum": 4_294_967_295u64 }))
        }
        "google.protobuf.BoolValue" => nullable(json!({ "type": "boolean" })),
        "google.protobuf.StringValue" => nullable(json!({ "type": "string" })),
        "google.protobuf.BytesValue" => {
            nullable(json!({ "type": "string", "contentEncoding": "base64" }))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EdgeConfig;

    fn platform() -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge.json");
        EdgeConfig::load(&path).unwrap().openapi().unwrap()
    }

    #[test]
    fn parameters_bodies_and_schemas_follow_the_bindings_and_proto3_json() {
        let document = platform();
        let list = &document["paths"]["/catalog/items"]["get"];
        let names: Vec<&str> = list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["page_size", "page_token"]);
        assert_eq!(
            list["parameters"][0]["schema"],
            json!({ "type": "integer", "format": "int32" })
        );
        assert!(list.get("requestBody").is_none());
        let get = &document["paths"]["/catalog/items/{id}"]["get"];
        assert_eq!(
            get["parameters"],
            json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }])
        );
        let item = &document["components"]["schemas"]["catalog.Item"];
        assert_eq!(item["properties"]["price"]["format"], "int64");
        assert_eq!(item["properties"]["price"]["type"], "string");
        assert_eq!(item["properties"]["sold"]["type"], "boolean");
        assert_eq!(
            item["properties"]["sold"]["description"],
            "Bought by someone: no longer for sale."
        );
        let put = &document["paths"]["/catalog/items/{id}/image"]["put"];
        assert_eq!(
            put["requestBody"]["content"]["*/*"]["schema"],
            json!({ "type": "string", "format": "binary" })
        );
        let create = &document["paths"]["/catalog/items"]["post"];
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/catalog.CreateItemRequest"
        );
        let ids: BTreeSet<&str> = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|path| path.as_object().unwrap().values())
            .map(|operation| operation["operationId"].as_str().unwrap())
            .collect();
        assert!(ids.contains("CatalogService_WatchItems"));
        assert!(ids.contains("CatalogService_WatchItems_2"), "{ids:?}");
    }

    #[test]
    fn well_known_types_have_their_json_forms() {
        assert_eq!(
            well_known("google.protobuf.Timestamp"),
            Some(json!({ "type": "string", "format": "date-time" }))
        );
        assert_eq!(
            well_known("google.protobuf.BoolValue"),
            Some(json!({ "type": ["boolean", "null"] }))
        );
        assert_eq!(well_known("google.protobuf.Value"), Some(json!({})));
        assert_eq!(well_known("catalog.Item"), None);
    }
}
