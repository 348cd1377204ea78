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
