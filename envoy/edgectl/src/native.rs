//! The same edge built from Envoy's native filters, for the benchmarks.

use crate::EdgeConfig;
use base64::Engine;
use serde_json::{json, Value};

impl EdgeConfig {
    /// The same edge built from Envoy's native filters instead of ours, for benchmarks:
    /// `jwt_authn` (the authority's JWKS inline, verified tokens cached; `sub` forwarded as the
    /// subject header), `grpc_json_transcoder` (same descriptor, services and print options)
    /// and a JSON file access log. Routes that our policy makes `authenticated` require a JWT.
    /// It rewrites `bootstrap`, a rendering of [`EdgeConfig::envoy_bootstrap`], so both run with
    /// the same listener, clusters and ports. Rule paths become jwt_authn route matches: exact,
    /// a prefix, or the template as a regular expression.
    pub fn native_bootstrap(
        &self,
        mut bootstrap: Value,
        jwks: &str,
        access_log_path: &str,
    ) -> Result<Value, String> {
        let auth: edge_auth::AuthConfig =
            edge_auth::AuthConfig::from_json(self.auth.to_string().as_bytes())?;
        let public: Vec<String> = self
            .services
            .values()
            .filter(|service| service.public)
            .map(|service| service.grpc_service.clone())
            .collect();
        let requirement_rules: Vec<Value> = auth
            .rules
            .iter()
            .filter(|rule| rule.policy == edge_auth::config::Policy::Authenticated)
            .map(|rule| {
                let pattern = rule.path.as_str();
                let path_match = match pattern
                    .strip_suffix("/**")
                    .or_else(|| pattern.strip_suffix("/*"))
                {
                    Some(prefix) if !prefix.contains('*') => {
                        json!({ "prefix": format!("{prefix}/") })
                    }
                    None if !pattern.contains('*') => json!({ "path": pattern }),
                    // Segment wildcards and verbs: the same template as a regular expression.
                    _ => json!({ "safe_regex": { "regex": rule.path.to_regex() } }),
                };
                (path_match, rule.methods.clone())
            })
            .flat_map(|(path_match, methods)| {
                let methods = if methods.is_empty() {
                    vec![String::new()]
                } else {
                    methods
                };
                methods.into_iter().map(move |method| {
                    let mut matcher = path_match.clone();
                    if !method.is_empty() {
                        matcher["headers"] =
                            json!([{ "name": ":method", "string_match": { "exact": method } }]);
                    }
                    json!({ "match": matcher, "requires": { "provider_name": "authority" } })
                })
            })
            .collect();
        let jwt_authn = json!({
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": { "authority": {
                    "issuer": auth.issuer.clone().unwrap_or_default(),
                    "audiences": auth.audiences.clone(),
                    "local_jwks": { "inline_string": jwks },
                    "forward": false,
                    "claim_to_headers": [{ "header_name": auth.subject_header.clone(), "claim_name": "sub" }],
                    "clock_skew_seconds": auth.clock_skew_seconds,
                    "jwt_cache_config": { "jwt_cache_size": 1000 }
                } },
                "rules": requirement_rules
            }
        });
        let transcoder = json!({
            "name": "envoy.filters.http.grpc_json_transcoder",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
                "proto_descriptor_bin": base64::engine::general_purpose::STANDARD.encode(platform_proto::FILE_DESCRIPTOR_SET),
                "services": public,
                "convert_grpc_status": true,
                // It holds a whole response to transcode it; by default only as much as the
                // edge's connection buffer (32 KiB), too little for a page of 1000 items.
                "max_response_body_size": 16777216,
                "print_options": { "preserve_proto_field_names": true }
            }
        });
        let router = json!({
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
        });
        let manager = bootstrap
            .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
            .ok_or("bootstrap has no connection manager")?;
        manager["http_filters"] = json!([jwt_authn, transcoder, router]);
        manager["access_log"] = json!([{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": access_log_path,
                // Our line's fields, each from its nearest Envoy operator (the transcoder's
                // HTTP template and gRPC method have none).
                "log_format": { "json_format": {
                    "time": "%START_TIME%", "request_id": "%REQ(X-REQUEST-ID)%", "method": "%REQ(:METHOD)%",
                    "path": "%REQ(:PATH)%", "route": "%ROUTE_NAME%", "status": "%RESPONSE_CODE%",
                    "grpc_status": "%GRPC_STATUS_NUMBER%", "duration_ms": "%DURATION%",
                    "upstream_ms": "%RESPONSE_DURATION%", "bytes_in": "%BYTES_RECEIVED%",
                    "bytes_out": "%BYTES_SENT%", "subject": "%REQ(X-USER-ID)%",
                    "auth_reason": "%RESPONSE_CODE_DETAILS%", "user_agent": "%REQ(USER-AGENT)%",
                    "client_ip": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "trace_id": "%TRACE_ID%",
                    "upstream_cluster": "%UPSTREAM_CLUSTER%"
                } }
            }
        }]);
        // The native transcoder rewrites the request to gRPC and lets the router send it, so
        // the HTTP paths need routes to the services (ours answer locally instead).
        let routes = manager
            .pointer_mut("/route_config/virtual_hosts/0/routes")
            .and_then(Value::as_array_mut)
            .ok_or("bootstrap has no routes")?;
        for (name, service) in self.services.iter().filter(|(_, s)| s.public) {
            routes.insert(
                0,
                json!({
                    "match": { "prefix": format!("/{}/", service.grpc_service) },
                    "route": { "cluster": name, "timeout": "30s" }
                }),
            );
        }
        Ok(bootstrap)
    }
}
