//! Per-user rate limits (`rate_limits` in edge.json), run by Envoy's own `local_ratelimit`
//! filter: it keys a token bucket on any request header, and the auth filter, which runs
//! before it, has by then replaced the subject header with the verified subject (a client's
//! copy is always removed). Requests without a subject are keyed on the client address Envoy
//! saw (not `X-Forwarded-For`). The buckets are per Envoy process, shared by its workers.
//!
//! Envoy refills a bucket continuously: `requests` per `per_seconds` allows a burst of
//! `requests`, then one more every `per_seconds / requests`; `Retry-After` says that interval.

use edge_core::PathTemplate;
use serde::Deserialize;
use serde_json::{json, Value};

/// One route group's limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Names the group in the descriptors and Envoy's stats.
    pub name: String,
    /// The requests it covers, as auth rules name routes: methods (empty: any) and a path
    /// template without variables.
    pub routes: Vec<LimitedRoute>,
    /// The burst each subject (or client address) gets, refilled over `per_seconds`.
    pub requests: u32,
    pub per_seconds: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitedRoute {
    #[serde(default)]
    pub methods: Vec<String>,
    pub path: PathTemplate,
}

impl RateLimit {
    fn check(&self) -> Result<(), String> {
        let valid_name = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(format!(
                "rate_limits: name {:?} must be letters, digits, '-' or '_'",
                self.name
            ));
        }
        if self.requests == 0 || self.per_seconds == 0 || self.routes.is_empty() {
            return Err(format!(
                "rate_limits.{}: needs routes, and requests and per_seconds above zero",
                self.name
            ));
        }
        Ok(())
    }

    /// Seconds until a drained bucket holds a token again.
    pub fn retry_after_seconds(&self) -> u32 {
        self.per_seconds.div_ceil(self.requests).max(1)
    }

    fn bucket(&self) -> Value {
        json!({
            "max_tokens": self.requests,
            "tokens_per_fill": self.requests,
            "fill_interval": format!("{}s", self.per_seconds)
        })
    }
}

/// One `local_ratelimit` filter per group (each with its own `Retry-After` and stats,
/// `edge_rate_limit_<name>.*`), keyed on `subject_header`. Requests outside a group meet no
/// bucket of its filter (no default bucket is set).
pub fn rate_limit_filters(
    limits: &[RateLimit],
    subject_header: &str,
) -> Result<Vec<Value>, String> {
    let mut filters = Vec::new();
    for limit in limits {
        limit.check()?;
        let mut rate_limits = Vec::new();
        for route in &limit.routes {
            let mut headers = vec![json!({
                "name": ":path",
                "string_match": { "safe_regex": { "regex": route.path.to_regex() } }
            })];
            if !route.methods.is_empty() {
                headers.push(json!({
                    "name": ":method",
                    "string_match": { "safe_regex": { "regex": format!("^({})$", route.methods.join("|")) } }
                }));
            }
            let group = json!({ "header_value_match": {
                "descriptor_key": "group", "descriptor_value": limit.name, "headers": headers
            } });
            rate_limits.push(json!({ "actions": [
                group,
                { "request_headers": { "header_name": subject_header, "descriptor_key": "subject" } }
            ] }));
            rate_limits.push(json!({ "actions": [
                group,
                { "header_value_match": {
                    "descriptor_key": "anonymous", "descriptor_value": "true",
                    "headers": [{ "name": subject_header, "present_match": false }]
                } },
                { "remote_address": {} }
            ] }));
        }
        let percent = |what: &str| {
            json!({
                "default_value": { "numerator": 100, "denominator": "HUNDRED" },
                "runtime_key": format!("edge_rate_limit_{}.{what}", limit.name)
            })
        };
        filters.push(json!({
            "name": format!("edge.rate-limit.{}", limit.name),
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": format!("edge_rate_limit_{}", limit.name),
                "filter_enabled": percent("enabled"),
                "filter_enforced": percent("enforced"),
                "rate_limits": rate_limits,
                // An empty value is a wildcard: one bucket per distinct subject or address.
                "descriptors": [
                    {
                        "entries": [{ "key": "group", "value": limit.name }, { "key": "subject" }],
                        "token_bucket": limit.bucket()
                    },
                    {
                        "entries": [
                            { "key": "group", "value": limit.name },
                            { "key": "anonymous", "value": "true" },
                            { "key": "remote_address" }
                        ],
                        "token_bucket": limit.bucket()
                    }
                ],
                // A bucket per active subject or address; one pushed out of this cache would
                // start again full, so it is sized well above those active within a window.
                "max_dynamic_descriptors": 100000,
                "rate_limited_as_resource_exhausted": true,
                "response_headers_to_add": [{
                    "header": { "key": "retry-after", "value": limit.retry_after_seconds().to_string() },
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
                }]
            }
        }));
    }
    Ok(filters)
}

/// The connection manager's `local_reply_config`: Envoy's own 429 (the rate limit's) as each
/// client reads a refusal. gRPC clients are left alone: they get `grpc-status: 8`
/// (RESOURCE_EXHAUSTED) from the filter itself. gRPC-Web and Connect clients do not (Envoy
/// renders gRPC only for a request that came as gRPC, and theirs are made gRPC by later
/// filters), so they get their protocol's own: a trailers-only gRPC answer (HTTP 200, no body)
/// that `grpc_web` passes on as gRPC-Web, and Connect's error JSON. JSON clients get the
/// `google.rpc.Status` JSON every other error of the edge has.
pub fn local_reply_config() -> Value {
    const MESSAGE: &str = "too many requests: slow down and retry later";
    let too_many = json!({ "status_code_filter": { "comparison": {
        "op": "EQ", "value": { "default_value": 429, "runtime_key": "edge_rate_limit.status" }
    } } });
    let header = |name: &str, prefix: &str, invert: bool| {
        json!({ "header_filter": { "header": {
            "name": name,
            "string_match": { "prefix": prefix },
            "invert_match": invert,
            "treat_missing_header_as_empty": true
        } } })
    };
    let client = edge_core::CLIENT_CONTENT_TYPE_HEADER;
    json!({
        "mappers": [
            {
                "filter": { "and_filter": { "filters": [
                    too_many.clone(),
                    header(client, "application/grpc-web", false)
                ] } },
                "status_code": 200,
                "headers_to_add": [
                    { "header": { "key": "grpc-status", "value": "8" }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" },
                    { "header": { "key": "grpc-message", "value": MESSAGE }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" }
                ],
                "body_format_override": {
                    "text_format": "",
                    "content_type": "application/grpc"
                }
            },
            {
                // Connect: made gRPC, but not sent as gRPC (nor gRPC-Web).
                "filter": { "and_filter": { "filters": [
                    too_many.clone(),
                    header("content-type", "application/grpc", false),
                    header(client, "application/grpc", true)
                ] } },
                "body_format_override": {
                    "json_format": { "code": "resource_exhausted", "message": MESSAGE },
                    "content_type": "application/json"
                }
            },
            {
                "filter": { "and_filter": { "filters": [
                    too_many,
                    header("content-type", "application/grpc", true)
                ] } },
                "body_format_override": {
                    "json_format": { "code": 8, "message": MESSAGE },
                    "content_type": "application/json"
                }
            }
        ]
    })
}
