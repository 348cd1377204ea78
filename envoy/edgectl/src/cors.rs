//! `cors` in `envoy/edge.json`: which browser origins may call the edge. Rendered as Envoy's
//! own CORS filter policy locally and as the VirtualService `corsPolicy` in Istio (which Istio
//! turns into the same Envoy policy), so browsers get the same answers from both.

use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`); `*` allows any origin.
    pub allow_origins: Vec<String>,
    #[serde(default = "default_methods")]
    pub allow_methods: Vec<String>,
    #[serde(default = "default_headers")]
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read.
    #[serde(default = "default_expose_headers")]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight's answer.
    #[serde(default = "default_max_age_seconds")]
    pub max_age_seconds: u64,
    /// Cookies and `Authorization` on cross-origin requests (never with `*`).
    #[serde(default)]
    pub allow_credentials: bool,
}

impl CorsSettings {
    pub fn check(&self) -> Result<(), String> {
        if self.allow_origins.is_empty() {
            return Err("cors.allow_origins is empty: remove `cors` to allow no origin".into());
        }
        if self.allow_credentials && self.allow_origins.iter().any(|o| o == "*") {
            return Err("cors: allow_credentials cannot go with the origin \"*\"".into());
        }
        Ok(())
    }

    /// `envoy.extensions.filters.http.cors.v3.CorsPolicy`, for the virtual host's
    /// `typed_per_filter_config`.
    pub fn envoy_policy(&self) -> Value {
        let origins: Vec<Value> = self
            .allow_origins
            .iter()
            .map(|origin| match origin.as_str() {
                "*" => json!({ "safe_regex": { "regex": ".*" } }),
                exact => json!({ "exact": exact }),
            })
            .collect();
        json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": origins,
            "allow_methods": self.allow_methods.join(","),
            "allow_headers": self.allow_headers.join(","),
            "expose_headers": self.expose_headers.join(","),
            "max_age": self.max_age_seconds.to_string(),
            "allow_credentials": self.allow_credentials,
            // A preflight from an origin not allowed is answered here too (without the allow
            // headers), never passed on to the filters and backends.
            "forward_not_matching_preflights": false
        })
    }

    /// The VirtualService route's `corsPolicy`.
    pub fn istio_policy(&self) -> Value {
        let origins: Vec<Value> = self
            .allow_origins
            .iter()
            .map(|origin| match origin.as_str() {
                "*" => json!({ "regex": ".*" }),
                exact => json!({ "exact": exact }),
            })
            .collect();
        json!({
            "allowOrigins": origins,
            "allowMethods": self.allow_methods,
            "allowHeaders": self.allow_headers,
            "exposeHeaders": self.expose_headers,
            "maxAge": format!("{}s", self.max_age_seconds),
            "allowCredentials": self.allow_credentials,
            "unmatchedPreflights": "IGNORE"
        })
    }
}

fn default_methods() -> Vec<String> {
    ["GET", "POST", "PUT", "PATCH", "DELETE"]
        .map(String::from)
        .to_vec()
}

fn default_headers() -> Vec<String> {
    ["authorization", "content-type", "x-request-id"]
        .map(String::from)
        .to_vec()
}

fn default_expose_headers() -> Vec<String> {
    ["x-request-id", "www-authenticate"]
        .map(String::from)
        .to_vec()
}

fn default_max_age_seconds() -> u64 {
    600
}
