//! The auth filter's configuration, as JSON in the Wasm plugin's `configuration`.

use crate::acl::AclSource;
use edge_core::{PathTemplate, Rollout};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Where the signing keys come from.
    pub authority: AuthoritySource,
    /// Required `iss` claim; when absent, any issuer is accepted.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values; when non-empty, a token must name one of them.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Longest accepted lifetime (`exp` − `iat`); tokens valid for longer are refused.
    #[serde(default)]
    pub max_lifetime_seconds: Option<u64>,
    /// Tolerated clock difference for `exp`, `nbf` and `iat`.
    #[serde(default = "default_clock_skew_seconds")]
    pub clock_skew_seconds: u64,
    /// Tokens longer than this are rejected before any parsing.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Verified tokens shared by every worker (Envoy's shared data), so that a token is
    /// verified once per proxy rather than once per worker: at most this many, each slot
    /// ~300 bytes when filled. 0: each worker keeps only its own 1024.
    #[serde(default = "default_shared_token_slots")]
    pub shared_token_slots: u32,
    /// Header that carries the verified subject to the backend (as gRPC metadata).
    #[serde(default = "default_subject_header")]
    pub subject_header: String,
    /// Further claims forwarded to the backend: claim name → header name. Like the subject
    /// header, any client-sent copy is removed on every request.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// Pass `Authorization` on to the backend (default: removed once verified).
    #[serde(default)]
    pub keep_authorization: bool,
    /// Cookies that may carry the token instead of `Authorization` (none by default).
    #[serde(default)]
    pub token_cookies: Vec<String>,
    /// Route policies; the first rule that matches a request decides.
    pub rules: Vec<Rule>,
    /// The policy for requests no rule matches (default `deny`: fail closed).
    #[serde(default = "default_unmatched_policy")]
    pub unmatched_policy: Policy,
    /// Every route the edge serves (`edgectl` renders them from the transcoder's bindings and
    /// the public gRPC methods). A request no rule matches gets 404 when no route has its path,
    /// 405 when only its method is wrong, and `unmatched_policy` otherwise. Empty: every
    /// unmatched request gets `unmatched_policy`.
    #[serde(default)]
    pub routes: Vec<ServedRoute>,
    /// Backends moving to a new deployment, and how far (see [`Rollout`]). The decision goes
    /// to the transcoder and the router in `backend_header`.
    #[serde(default)]
    pub rollouts: Vec<Rollout>,
    /// The request header carrying a rollout's choice (the new deployment's cluster). Any
    /// client-sent copy is removed on every request: clients never pick their backend.
    #[serde(default = "default_backend_header")]
    pub backend_header: String,
    /// The acl service whose restrictions rules with an `action` enforce.
    #[serde(default)]
    pub acl: Option<AclSource>,
}

/// What a matching rule requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// No token needed (signup, signin, public reads).
    Public,
    /// A valid token is needed, with the rule's required claims, and the subject must not be
    /// restricted from the rule's action.
    Authenticated,
    /// Nobody, token or not.
    Deny,
}

/// One route of the edge: an HTTP method and a path template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServedRoute {
    pub method: String,
    pub path: PathTemplate,
    /// The gRPC service behind the route (for rollouts).
    #[serde(default)]
    pub service: Option<String>,
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
    /// A token with an unknown `kid` triggers a fetch, but at most once per this interval, so
    /// a flood of random kids cannot hammer the authority.
    #[serde(default = "default_min_refresh_seconds")]
    pub min_refresh_seconds: u64,
}

/// One route policy: requests whose method and normalized path match get `policy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// HTTP methods this rule applies to; empty means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// A path template without variables: literal segments, `*` for one segment, `**`
    /// (last) for any rest, an optional `:verb`.
    #[serde(deserialize_with = "template_without_variables")]
    pub path: PathTemplate,
    pub policy: Policy,
    /// The action this route performs (`list`, `buy`, …), for the acl service's restrictions:
    /// a subject restricted from it gets 403 even with a valid token.
    #[serde(default)]
    pub action: Option<String>,
    /// Claims the token must carry: claim → required value. A list claim, or a
    /// space-separated string such as OAuth's `scope`, must contain the value.
    #[serde(default)]
    pub require_claims: BTreeMap<String, String>,
}

impl AuthConfig {
    /// Every cluster the filter calls out to (the authority's, the acl's).
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.authority.cluster.as_str())
            .chain(self.acl.iter().map(|acl| acl.cluster.as_str()))
    }

    /// Parses and checks the configuration; the error says what is wrong, for Envoy's log.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let config: Self = serde_json::from_slice(bytes)
            .map_err(|e| format!("invalid auth configuration: {e}"))?;
        if config.rules.is_empty() {
            return Err(
                "invalid auth configuration: no rules (every request would be denied)".into(),
            );
        }
        let mut headers: Vec<&str> = config.forward_claims.values().map(String::as_str).collect();
        headers.push(&config.subject_header);
        headers.push(&config.backend_header);
        for rollout in &config.rollouts {
            rollout
                .check()
                .map_err(|e| format!("invalid auth configuration: {e}"))?;
        }
        if let Some(bad) = headers.iter().find(|h| {
            h.is_empty()
                || h.starts_with(':')
                || h.eq_ignore_ascii_case("authorization")
                || h.bytes().any(|b| b.is_ascii_uppercase())
        }) {
            return Err(format!(
                "invalid auth configuration: {bad:?} cannot carry identity (use a lowercase, non-pseudo, non-Authorization header)"
            ));
        }
        match &config.acl {
            Some(_) => {}
            None => {
                if let Some(rule) = config.rules.iter().find(|rule| rule.action.is_some()) {
                    return Err(format!(
                        "invalid auth configuration: rule {:?} names an action but no acl service is configured",
                        rule.path.as_str()
                    ));
                }
            }
        }
        if let Some(rule) = config
            .rules
            .iter()
            .find(|rule| rule.action.is_some() && rule.policy != Policy::Authenticated)
        {
            return Err(format!(
                "invalid auth configuration: rule {:?} has an action, so it must be authenticated (restrictions are per subject)",
                rule.path.as_str()
            ));
        }
        if config.authority.refresh_seconds == 0 || config.authority.retry_seconds == 0 {
            return Err(
                "invalid auth configuration: refresh/retry intervals must be positive".into(),
            );
        }
        Ok(config)
    }
}

fn template_without_variables<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<PathTemplate, D::Error> {
    let template = PathTemplate::deserialize(deserializer)?;
    if template.field_paths().next().is_some() {
        return Err(serde::de::Error::custom(format!(
            "policy path {:?}: use '*' or '**' instead of variables",
            template.as_str()
        )));
    }
    Ok(template)
}

fn default_backend_header() -> String {
    edge_core::BACKEND_HEADER.to_string()
}

fn default_clock_skew_seconds() -> u64 {
    60
}
fn default_shared_token_slots() -> u32 {
    65_536
}

fn default_max_token_bytes() -> usize {
    8192
}
fn default_subject_header() -> String {
    edge_core::USER_ID_HEADER.to_string()
}
fn default_unmatched_policy() -> Policy {
    Policy::Deny
}
fn default_min_refresh_seconds() -> u64 {
    10
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
        let bad_policy =
            br#"{"authority":{"cluster":"a"},"rules":[{"path":"/a","policy":"open"}]}"#;
        assert!(AuthConfig::from_json(bad_policy).is_err());
        for bad_path in ["catalog", "/a/**/b", "/a/b*", "/a/{id}"] {
            let json = format!(
                r#"{{"authority":{{"cluster":"a"}},"rules":[{{"path":"{bad_path}","policy":"public"}}]}}"#
            );
            assert!(
                AuthConfig::from_json(json.as_bytes()).is_err(),
                "{bad_path}"
            );
        }
    }
}
