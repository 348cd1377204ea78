//! The auth filter's configuration, as JSON in the Wasm plugin's `configuration`.

use crate::policy::{PathPattern, Policy};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Where the signing keys come from.
    pub authority: AuthoritySource,
    /// Required `iss` claim; when absent, any issuer is accepted.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Tolerated clock difference for `exp`, `nbf` and `iat`.
    #[serde(default = "default_clock_skew_seconds")]
    pub clock_skew_seconds: u64,
    /// Tokens longer than this are rejected before any parsing.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Header that carries the verified subject to the backend (as gRPC metadata).
    #[serde(default = "default_subject_header")]
    pub subject_header: String,
    /// Route policies; the first rule that matches a request decides.
    pub rules: Vec<Rule>,
}

/// The authority service, reached with `dispatch_grpc_call`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthoritySource {
    /// The Envoy cluster of the authority (HTTP/2).
    pub cluster: String,
    #[serde(default = "default_authority_service")]
    pub service: String,
    #[serde(default = "default_authority_method")]
    pub method: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How often the keys are fetched again once they are known.
    #[serde(default = "default_refresh_seconds")]
    pub refresh_seconds: u64,
    /// How often a failed first fetch is retried (protected routes answer 503 meanwhile).
    #[serde(default = "default_retry_seconds")]
    pub retry_seconds: u64,
}

/// One route policy: requests whose method and normalized path match get `policy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// HTTP methods this rule applies to; empty means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path pattern: literal segments, `*` for one segment, `**` (last) for any rest.
    pub path: PathPattern,
    pub policy: Policy,
    /// The access control list: subjects refused this action even with a valid token.
    #[serde(default)]
    pub deny_subjects: Vec<String>,
}

impl AuthConfig {
    /// Parses and checks the configuration; the error says what is wrong, for Envoy's log.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let config: Self = serde_json::from_slice(bytes)
            .map_err(|e| format!("invalid auth configuration: {e}"))?;
        if config.rules.is_empty() {
            return Err(
                "invalid auth configuration: no rules (every request would be denied)".into(),
            );
        }
        edge_core::grpc_upstream(&config.authority.cluster)
            .map_err(|e| format!("invalid auth configuration: authority.{e}"))?;
        if config.authority.refresh_seconds == 0 || config.authority.retry_seconds == 0 {
            return Err(
                "invalid auth configuration: refresh/retry intervals must be positive".into(),
            );
        }
        Ok(config)
    }
}

fn default_clock_skew_seconds() -> u64 {
    60
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_subject_header() -> String {
    edge_core::USER_ID_HEADER.to_string()
}
fn default_authority_service() -> String {
    "authority.AuthorityService".to_string()
}
fn default_authority_method() -> String {
    "ListPublicKeys".to_string()
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_refresh_seconds() -> u64 {
    300
}
fn default_retry_seconds() -> u64 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_configuration_gets_defaults() {
        let config = AuthConfig::from_json(
            br#"{"authority":{"cluster":"authority"},
                 "rules":[{"path":"/**","policy":"authenticated"}]}"#,
        )
        .unwrap();
        assert_eq!(config.authority.service, "authority.AuthorityService");
        assert_eq!(config.clock_skew_seconds, 60);
        assert_eq!(config.subject_header, "x-user-id");
    }

    #[test]
    fn mistakes_are_reported_not_ignored() {
        let typo = br#"{"authority":{"cluster":"a"},"rulez":[]}"#;
        assert!(AuthConfig::from_json(typo).unwrap_err().contains("rulez"));
        let no_rules = br#"{"authority":{"cluster":"a"},"rules":[]}"#;
        assert!(AuthConfig::from_json(no_rules)
            .unwrap_err()
            .contains("no rules"));
        let bad_policy = br#"{"authority":{"cluster":"a"},"rules":[{"path":"/","policy":"open"}]}"#;
        assert!(AuthConfig::from_json(bad_policy).is_err());
    }
}
