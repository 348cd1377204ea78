//! Route policy: which rule a request falls under, and the decision for it.

use crate::acl::Restrictions;
use crate::config::{AuthConfig, Policy, Rule};
use crate::keys::{Identity, KeySet, TokenError};
use edge_core::{match_route, path_only, Client, GrpcCode, LocalReply, RouteError, RouteMatch};

/// What the filter knows about a request when it decides.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// `:path` as Envoy normalized it; a query string is ignored.
    pub path: &'a str,
    /// Every `Authorization` header value the client sent.
    pub authorization: &'a [String],
    /// Every `Cookie` header value the client sent.
    pub cookies: &'a [String],
    /// gRPC clients are told an unknown method is UNIMPLEMENTED, as a gRPC server would.
    pub client: Client,
    /// A CORS preflight: no credentials by design, so it passes to Envoy's CORS filter, which
    /// Istio places after the Wasm filters.
    pub cors_preflight: bool,
    /// `x-request-id`: places anonymous requests on a rollout (read only when there is one).
    pub request_id: Option<&'a str>,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Let the request through; `subject` is the verified caller, if a token was checked, and
    /// `forward` the configured claims as (header, value), and `backend` the cluster a
    /// rollout sends the request to (`None`: the stable deployment).
    Allow {
        subject: Option<String>,
        forward: Vec<(String, String)>,
        backend: Option<String>,
    },
    Reject(Rejection),
}

/// A refused request: the reply clients get, and why (never the token itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reply: LocalReply,
    pub reason: Reason,
}

/// Why auth refused a request: one name for the access log, the edge span, metrics and
/// Envoy's response-code details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Token(TokenError),
    /// No rule covers the request and no route of the edge serves it.
    NoRoute,
    /// The path is served, with other methods.
    MethodNotAllowed,
    /// No rule matched and `unmatched_policy` is deny.
    NoMatchingRule,
    /// The matching rule's policy is deny.
    RouteDenied,
    /// No JWKS fetched yet.
    KeysUnavailable,
    /// The token lacks a claim the rule requires.
    ClaimMissing,
    /// The acl restricts the subject from the rule's action.
    SubjectRestricted,
    /// The acl copy is not loaded (yet) or unreadable.
    AclUnavailable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Token(error) => error.reason(),
            Reason::NoRoute => "no_route",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::NoMatchingRule => "no_matching_rule",
            Reason::RouteDenied => "route_denied",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::ClaimMissing => "claim_missing",
            Reason::SubjectRestricted => "subject_restricted",
            Reason::AclUnavailable => "acl_unavailable",
        }
    }

    /// Envoy's response-code details for the local reply (`%RESPONSE_CODE_DETAILS%`), in its
    /// own filters' style (`jwt_authn_access_denied`, `rbac_access_denied…`).
    pub fn details(self) -> String {
        // Pushed, not `format!`ed: ~450 instructions less on every refusal.
        const PREFIX: &str = "edge_auth_";
        let reason = self.as_str();
        let mut details = String::with_capacity(PREFIX.len() + reason.len());
        details.push_str(PREFIX);
        details.push_str(reason);
        details
    }
}

impl Rejection {
    fn unauthenticated(error: TokenError) -> Self {
        let description = error.to_string();
        // RFC 6750's challenge: why the token was refused, unless there was none.
        let challenge = match error {
            TokenError::Missing => "Bearer".to_string(),
            _ => format!("Bearer error=\"invalid_token\", error_description=\"{description}\""),
        };
        Self {
            reply: LocalReply::error(GrpcCode::Unauthenticated, description)
                .with_header("www-authenticate", challenge),
            reason: Reason::Token(error),
        }
    }

    /// The subject is restricted from the rule's action (the acl's data). The reply names the
    /// action in a machine-readable `ErrorInfo`; the operator's reason stays internal.
    fn restricted(action: &str) -> Self {
        let status = edge_core::Status::new(
            GrpcCode::PermissionDenied,
            format!("your account may not {action} at the moment"),
        )
        .with_details(vec![serde_json::json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RESTRICTED",
            "domain": "edge",
            "metadata": { "action": action },
        })]);
        Self {
            reply: LocalReply::new(status),
            reason: Reason::SubjectRestricted,
        }
    }

    fn denied(reason: Reason, message: &str) -> Self {
        Self {
            reply: LocalReply::error(GrpcCode::PermissionDenied, message),
            reason,
        }
    }

    /// A request that no rule covers and no route of the edge serves.
    fn unrouted(request: &Request<'_>, error: RouteError) -> Self {
        Self {
            reply: error.reply(request.client, request.method, request.path),
            reason: match error {
                RouteError::NotFound => Reason::NoRoute,
                RouteError::MethodNotAllowed { .. } => Reason::MethodNotAllowed,
            },
        }
    }
}

/// Decides one request: finds the first matching rule, verifies the token if the rule needs
/// one, and applies the rule's deny list. A request no rule matches is 404/405 when no route
/// of the edge serves it, else `unmatched_policy` decides. `keys` is `None` until the first
/// JWKS fetch succeeded: protected routes then answer 503 (fail closed, never open).
pub fn authorize(
    config: &AuthConfig,
    keys: Option<&KeySet>,
    restrictions: &dyn Restrictions,
    request: &Request<'_>,
) -> Outcome {
    match admit(config, keys, restrictions, request) {
        Outcome::Allow {
            subject, forward, ..
        } if !config.rollouts.is_empty() && !request.cors_preflight => {
            let backend = rollout_backend(config, keys, request, subject.as_deref());
            Outcome::Allow {
                subject,
                forward,
                backend,
            }
        }
        outcome => outcome,
    }
}

/// The decision without rollouts: which rule, which identity, or why not.
fn admit(
    config: &AuthConfig,
    keys: Option<&KeySet>,
    restrictions: &dyn Restrictions,
    request: &Request<'_>,
) -> Outcome {
    if request.cors_preflight {
        return Outcome::Allow {
            subject: None,
            forward: Vec::new(),
            backend: None,
        };
    }
    let rule = matching_rule(config, request.method, request.path);
    if rule.is_none() && !config.routes.is_empty() {
        let routes = config
            .routes
            .iter()
            .map(|route| (route.method.as_str(), &route.path));
        if let Some(error) = RouteError::of(match_route(routes, request.method, request.path)) {
            return Outcome::Reject(Rejection::unrouted(request, error));
        }
    }
    match rule.map_or(config.unmatched_policy, |rule| rule.policy) {
        Policy::Public => {
            return Outcome::Allow {
                subject: None,
                forward: Vec::new(),
                backend: None,
            }
        }
        Policy::Deny if rule.is_none() => {
            return Outcome::Reject(Rejection::denied(
                Reason::NoMatchingRule,
                "no policy allows this route",
            ))
        }
        Policy::Deny => {
            return Outcome::Reject(Rejection::denied(
                Reason::RouteDenied,
                "this route is closed",
            ))
        }
        Policy::Authenticated => {}
    }
    let token = match find_token(config, request) {
        Ok(token) => token,
        Err(error) => return Outcome::Reject(Rejection::unauthenticated(error)),
    };
    let Some(keys) = keys else {
        return Outcome::Reject(Rejection {
            reply: LocalReply::error(GrpcCode::Unavailable, "signing keys are not available yet"),
            reason: Reason::KeysUnavailable,
        });
    };
    let identity = match keys.verify(token, &config.into()) {
        Ok(identity) => identity,
        Err(error) => return Outcome::Reject(Rejection::unauthenticated(error)),
    };
    let Identity { subject, claims } = identity.as_ref();
    if let Some(rule) = rule {
        if let Some(claim) = rule
            .require_claims
            .iter()
            .find(|(claim, wanted)| !claim_has(claims.get(claim.as_str()), wanted))
            .map(|(claim, _)| claim)
        {
            return Outcome::Reject(Rejection::denied(
                Reason::ClaimMissing,
                &format!("the token lacks the {claim} this action requires"),
            ));
        }
        if let Some(action) = &rule.action {
            match restrictions.restricted(subject, action) {
                Some(false) => {}
                Some(true) => return Outcome::Reject(Rejection::restricted(action)),
                None => {
                    return Outcome::Reject(Rejection {
                        reply: LocalReply::error(
                            GrpcCode::Unavailable,
                            "restrictions are not available yet",
                        ),
                        reason: Reason::AclUnavailable,
                    })
                }
            }
        }
    }
    let forward = config
        .forward_claims
        .iter()
        .filter_map(|(claim, header)| Some((header.clone(), claim_text(claims.get(claim)?)?)))
        .collect();
    Outcome::Allow {
        subject: Some(subject.clone()),
        forward,
        backend: None,
    }
}

/// Where a rollout sends an allowed request: the new deployment's cluster, or `None` for the
/// stable one. The key is the verified subject; on public routes a valid token still places
/// its user (without forwarding the identity), and anonymous requests are split by request id.
fn rollout_backend(
    config: &AuthConfig,
    keys: Option<&KeySet>,
    request: &Request<'_>,
    subject: Option<&str>,
) -> Option<String> {
    let path = path_only(request.path);
    let (service, read) = match request.client {
        Client::Grpc => {
            let (service, method) = path.strip_prefix('/')?.split_once('/')?;
            let rollout = config.rollouts.iter().find(|r| r.service == service)?;
            (service.to_string(), rollout.reads(method))
        }
        Client::Http => {
            let routes = config
                .routes
                .iter()
                .map(|route| (route.method.as_str(), &route.path));
            let RouteMatch::Found(index) = match_route(routes, request.method, path) else {
                return None;
            };
            let read = matches!(request.method, "GET" | "HEAD");
            (config.routes.get(index)?.service.clone()?, read)
        }
    };
    let rollout = config.rollouts.iter().find(|r| r.service == service)?;
    if !rollout.moves(read) {
        return None;
    }
    let verified;
    let key = match subject {
        Some(subject) => subject,
        None => {
            verified = find_token(config, request)
                .ok()
                .zip(keys)
                .and_then(|(token, keys)| keys.verify(token, &config.into()).ok());
            match &verified {
                Some(identity) => identity.subject.as_str(),
                None => request.request_id?,
            }
        }
    };
    rollout.takes(read, key).then(|| rollout.cluster.clone())
}

/// Whether a claim holds `wanted`: equal, an element of a list, or a word of a space-separated
/// string (OAuth `scope`).
fn claim_has(claim: Option<&serde_json::Value>, wanted: &str) -> bool {
    match claim {
        Some(serde_json::Value::String(text)) => {
            text == wanted || text.split(' ').any(|w| w == wanted)
        }
        Some(serde_json::Value::Array(items)) => {
            items.iter().any(|item| item.as_str() == Some(wanted))
        }
        Some(other @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_))) => {
            let text = other.to_string();
            text == wanted
        }
        _ => false,
    }
}

/// A claim as a header value: strings as they are, scalars as JSON, lists space-separated;
/// objects are not forwarded.
fn claim_text(claim: &serde_json::Value) -> Option<String> {
    let text = match claim {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Bool(_) | serde_json::Value::Number(_) => claim.to_string(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| item.to_string())
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => return None,
    };
    // A header value must not smuggle a line break.
    (!text.contains(['\r', '\n'])).then_some(text)
}

/// The one token of the request: from `Authorization: Bearer`, or from a configured cookie.
/// More than one (two headers, or a header and a cookie) is refused rather than guessed at.
fn find_token<'r>(config: &AuthConfig, request: &'r Request<'_>) -> Result<&'r str, TokenError> {
    let mut from_cookies = request
        .cookies
        .iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            config
                .token_cookies
                .iter()
                .any(|wanted| wanted == name)
                .then_some(value.trim())
        });
    let cookie = from_cookies.next();
    if from_cookies.next().is_some() {
        return Err(TokenError::Ambiguous);
    }
    match (request.authorization.is_empty(), cookie) {
        (true, Some(token)) if !token.is_empty() => Ok(token),
        (true, _) => bearer_token(request.authorization),
        (false, None) => bearer_token(request.authorization),
        (false, Some(_)) => Err(TokenError::Ambiguous),
    }
}

/// The rule that decides a request: the first whose methods and path template match (a query
/// string is ignored). The API description (`edgectl openapi`) states each route's with it.
pub fn matching_rule<'c>(config: &'c AuthConfig, method: &str, path: &str) -> Option<&'c Rule> {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    config.rules.iter().find(|rule| {
        (rule.methods.is_empty()
            || rule
                .methods
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(method)))
            && rule.path.is_match(path)
    })
}

/// The token of the one `Authorization: Bearer <token>` header (scheme case-insensitive, as
/// RFC 7235 says). Two headers are refused rather than guessing which one counts.
fn bearer_token(values: &[String]) -> Result<&str, TokenError> {
    let value = match values {
        [] => return Err(TokenError::Missing),
        [value] => value.trim(),
        _ => return Err(TokenError::Ambiguous),
    };
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() || has_whitespace(token) {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

/// Whether `text` holds whitespace (as `char::is_whitespace` has it). A token is ASCII: its
/// bytes are tested eight at a time for any below `!` (ASCII whitespace is `\t`..=`\r` and
/// space), and only such a token is looked at byte by byte (byte by byte throughout, a
/// 300-byte token cost ~3k instructions; char by char ~4k).
fn has_whitespace(text: &str) -> bool {
    if !text.is_ascii() {
        return text.contains(char::is_whitespace);
    }
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);
    let is_space = |byte: &u8| matches!(byte, b'\t'..=b'\r' | b' ');
    let mut words = text.as_bytes().chunks_exact(8);
    // Any byte of an ASCII word below 0x21 (the bit trick is exact for bytes below 0x80).
    let low = words.by_ref().any(|word| {
        let word = word.try_into().map_or(0, u64::from_le_bytes);
        word.wrapping_sub(ONES * 0x21) & !word & HIGH_BITS != 0
    });
    (low && text.bytes().any(|byte| is_space(&byte))) || words.remainder().iter().any(is_space)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_found_at_every_place_of_a_token_and_nothing_else_is() {
        let naive = |text: &str| text.contains(char::is_whitespace);
        for length in 0..40 {
            let token = "eyJ0".repeat(10)[..length].to_string();
            assert!(!has_whitespace(&token), "{token:?}");
            for at in 0..length {
                for odd in [
                    '\t', '\n', '\u{0b}', '\u{0c}', '\r', ' ', '\u{01}', '\u{1f}', '!', '\u{7f}',
                ] {
                    let mut bytes = token.clone().into_bytes();
                    bytes[at] = odd as u8;
                    let text = String::from_utf8(bytes).unwrap();
                    assert_eq!(has_whitespace(&text), naive(&text), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn bearer_extraction() {
        let one = |v: &str| vec![v.to_string()];
        assert_eq!(bearer_token(&one("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(&one("bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(&one("BEARER   abc ")), Ok("abc"));
        assert_eq!(bearer_token(&[]), Err(TokenError::Missing));
        assert_eq!(bearer_token(&one("Basic abc")), Err(TokenError::NotBearer));
        assert_eq!(bearer_token(&one("Bearer")), Err(TokenError::NotBearer));
        assert_eq!(bearer_token(&one("Bearer a b")), Err(TokenError::Malformed));
        for odd in ["a\tb", "a\u{0b}b", "a\u{0c}b", "a\u{a0}b", "a\u{2003}b"] {
            assert_eq!(
                bearer_token(&one(&format!("Bearer {odd}"))),
                Err(TokenError::Malformed),
                "{odd:?}"
            );
        }
        assert_eq!(
            bearer_token(&["Bearer a".into(), "Bearer b".into()]),
            Err(TokenError::Ambiguous)
        );
    }

    mod decisions {
        use super::super::*;
        use crate::keys::KeySet;
        use crate::NoRestrictions;
        use jwt_simple::prelude::*;
        use serde_json::json;

        struct Fixture {
            config: AuthConfig,
            keys: KeySet,
            key: ES256KeyPair,
        }

        fn fixture() -> Fixture {
            let key = ES256KeyPair::generate().with_key_id("k1");
            let jwk: serde_json::Value = serde_json::from_str(&key.public_key().to_jwk()).unwrap();
            let keys = KeySet::from_jwks(&json!({ "keys": [jwk] }).to_string()).unwrap();
            let config = AuthConfig::from_json(
                json!({
                    "authority": {"cluster": "authority"},
                    "issuer": "authority",
                    "forward_claims": {"scope": "x-scope"},
                    "token_cookies": ["session"],
                    "acl": {"cluster": "acl"},
                    "rules": [
                        {"path": "/public/**", "policy": "public"},
                        {"path": "/closed", "policy": "deny"},
                        {"methods": ["POST"], "path": "/items", "policy": "authenticated",
                         "action": "list", "require_claims": {"scope": "items:write"}},
                        {"path": "/items", "policy": "authenticated"}
                    ]
                })
                .to_string()
                .as_bytes(),
            )
            .unwrap();
            Fixture { config, keys, key }
        }

        impl Fixture {
            fn token(&self, subject: &str, scope: &str) -> String {
                let claims =
                    Claims::with_custom_claims(json!({"scope": scope}), Duration::from_secs(600))
                        .with_issuer("authority")
                        .with_subject(subject);
                self.key.sign(claims).unwrap()
            }

            fn decide(
                &self,
                method: &str,
                path: &str,
                authorization: &[String],
                cookies: &[String],
            ) -> Outcome {
                authorize(
                    &self.config,
                    Some(&self.keys),
                    &Banned("banned"),
                    &Request {
                        method,
                        path,
                        authorization,
                        cookies,
                        client: Client::Http,
                        cors_preflight: false,
                        request_id: None,
                    },
                )
            }
        }

        /// The acl's copy, faked: one subject restricted from `list`.
        struct Banned(&'static str);

        impl Restrictions for Banned {
            fn restricted(&self, subject: &str, action: &str) -> Option<bool> {
                Some(subject == self.0 && action == "list")
            }
        }

        /// A copy not loaded yet.
        struct NotLoaded;

        impl Restrictions for NotLoaded {
            fn restricted(&self, _subject: &str, _action: &str) -> Option<bool> {
                None
            }
        }

        fn reason(outcome: &Outcome) -> &'static str {
            match outcome {
                Outcome::Reject(rejection) => rejection.reason.as_str(),
                Outcome::Allow { .. } => "allowed",
            }
        }

        #[test]
        fn rules_in_order_with_acl_and_claims() {
            let f = fixture();
            let bearer = |token: String| vec![format!("Bearer {token}")];
            let writer = bearer(f.token("alice", "items:read items:write"));
            let reader = bearer(f.token("alice", "items:read"));
            let banned = bearer(f.token("banned", "items:write"));

            assert_eq!(reason(&f.decide("GET", "/public/x?y", &[], &[])), "allowed");
            assert_eq!(
                reason(&f.decide("GET", "/closed", &writer, &[])),
                "route_denied"
            );
            assert_eq!(
                reason(&f.decide("GET", "/elsewhere", &writer, &[])),
                "no_matching_rule"
            );
            assert_eq!(
                reason(&f.decide("POST", "/items", &[], &[])),
                "token_missing"
            );
            assert_eq!(
                reason(&f.decide("POST", "/items", &reader, &[])),
                "claim_missing"
            );
            match f.decide("POST", "/items", &banned, &[]) {
                Outcome::Reject(rejection) => {
                    assert_eq!(rejection.reason, Reason::SubjectRestricted);
                    assert_eq!(rejection.reply.http_status, 403);
                    let body = rejection.reply.status.to_json();
                    assert!(body.contains(r#""reason":"RESTRICTED""#), "{body}");
                    assert!(body.contains(r#""action":"list""#), "{body}");
                }
                other => panic!("{other:?}"),
            }
            // No copy of the restrictions yet: fail closed, as without keys.
            let outcome = authorize(
                &f.config,
                Some(&f.keys),
                &NotLoaded,
                &Request {
                    method: "POST",
                    path: "/items",
                    authorization: &writer,
                    cookies: &[],
                    client: Client::Http,
                    cors_preflight: false,
                    request_id: None,
                },
            );
            assert_eq!(reason(&outcome), "acl_unavailable");
            // The ban is per action: the banned subject may still list.
            assert_eq!(reason(&f.decide("GET", "/items", &banned, &[])), "allowed");
            match f.decide("POST", "/items", &writer, &[]) {
                Outcome::Allow {
                    subject, forward, ..
                } => {
                    assert_eq!(subject.as_deref(), Some("alice"));
                    assert_eq!(
                        forward,
                        vec![("x-scope".to_string(), "items:read items:write".to_string())]
                    );
                }
                other => panic!("{other:?}"),
            }
        }

        #[test]
        fn tokens_from_cookies_and_ambiguity() {
            let f = fixture();
            let token = f.token("alice", "");
            let cookie = vec![format!("theme=dark; session={token}")];
            assert_eq!(reason(&f.decide("GET", "/items", &[], &cookie)), "allowed");
            let both = vec![format!("Bearer {token}")];
            assert_eq!(
                reason(&f.decide("GET", "/items", &both, &cookie)),
                "token_ambiguous"
            );
            let twice = vec![format!("session={token}; session={token}")];
            assert_eq!(
                reason(&f.decide("GET", "/items", &[], &twice)),
                "token_ambiguous"
            );
        }

        #[test]
        fn no_keys_yet_is_503_and_unmatched_policy_is_configurable() {
            let mut f = fixture();
            let token = vec![format!("Bearer {}", f.token("alice", ""))];
            let outcome = authorize(
                &f.config,
                None,
                &NoRestrictions,
                &Request {
                    method: "GET",
                    path: "/items",
                    authorization: &token,
                    cookies: &[],
                    client: Client::Http,
                    cors_preflight: false,
                    request_id: None,
                },
            );
            match outcome {
                Outcome::Reject(r) => assert_eq!(r.reply.http_status, 503),
                other => panic!("{other:?}"),
            }
            f.config.unmatched_policy = Policy::Public;
            assert_eq!(reason(&f.decide("GET", "/elsewhere", &[], &[])), "allowed");
        }

        #[test]
        fn unmatched_requests_the_edge_does_not_serve_are_404_or_405() {
            let mut f = fixture();
            f.config.routes = [
                ("GET", "/things"),
                ("POST", "/things"),
                ("DELETE", "/things/*"),
                ("POST", "/pkg.Service/Method"),
            ]
            .into_iter()
            .map(|(method, path)| crate::config::ServedRoute {
                method: method.into(),
                path: edge_core::PathTemplate::parse(path).unwrap(),
                service: None,
            })
            .collect();
            let reply = |method: &str, path: &str, client: Client| match authorize(
                &f.config,
                Some(&f.keys),
                &NoRestrictions,
                &Request {
                    method,
                    path,
                    authorization: &[],
                    cookies: &[],
                    client,
                    cors_preflight: false,
                    request_id: None,
                },
            ) {
                Outcome::Reject(rejection) => (rejection.reason.as_str(), rejection.reply),
                other => panic!("{other:?}"),
            };

            let (reason, not_found) = reply("GET", "/no/such/route?x=1", Client::Http);
            assert_eq!(reason, "no_route");
            assert_eq!(not_found.http_status, 404);
            assert_eq!(not_found.status.message, "no route for GET /no/such/route");

            let (reason, wrong_method) = reply("PUT", "/things", Client::Http);
            assert_eq!(reason, "method_not_allowed");
            assert_eq!(wrong_method.http_status, 405);
            assert_eq!(
                wrong_method.headers,
                vec![("allow".to_string(), "GET, POST".to_string())]
            );

            let (_, unknown_grpc) = reply("POST", "/pkg.Service/Nope", Client::Grpc);
            assert_eq!(unknown_grpc.status.code, GrpcCode::Unimplemented);

            // Served, but no rule covers it: still denied by default.
            assert_eq!(
                reply("DELETE", "/things/1", Client::Http).0,
                "no_matching_rule"
            );
            assert_eq!(
                reply("POST", "/pkg.Service/Method", Client::Grpc).0,
                "no_matching_rule"
            );
            // A rule decides before the route table does.
            assert_eq!(reason_of(&f, "GET", "/public/anything"), "allowed");
        }

        #[test]
        fn rollouts_choose_by_user_for_reads_and_writes_apart() {
            let mut f = fixture();
            f.config.routes = [("GET", "/items"), ("POST", "/items")]
                .into_iter()
                .map(|(method, path)| crate::config::ServedRoute {
                    method: method.into(),
                    path: edge_core::PathTemplate::parse(path).unwrap(),
                    service: Some("pkg.Items".into()),
                })
                .collect();
            let rollout = |reads: f64, writes: f64| edge_core::Rollout {
                service: "pkg.Items".into(),
                cluster: "items-v2".into(),
                reads_percent: reads,
                writes_percent: writes,
                salt: "s".into(),
                read_methods: vec!["Get".into()],
            };
            let writer = vec![format!("Bearer {}", f.token("alice", "items:write"))];
            let backend = |f: &Fixture, method: &str, path: &str, client: Client| match authorize(
                &f.config,
                Some(&f.keys),
                &NoRestrictions,
                &Request {
                    method,
                    path,
                    authorization: &writer,
                    cookies: &[],
                    client,
                    cors_preflight: false,
                    request_id: Some("r-1"),
                },
            ) {
                Outcome::Allow { backend, .. } => backend,
                other => panic!("{other:?}"),
            };
            f.config.rollouts = vec![rollout(100.0, 0.0)];
            assert_eq!(
                backend(&f, "GET", "/items", Client::Http).as_deref(),
                Some("items-v2")
            );
            assert_eq!(
                backend(&f, "POST", "/items", Client::Http),
                None,
                "writes stay"
            );
            f.config.rollouts = vec![rollout(0.0, 100.0)];
            assert_eq!(backend(&f, "GET", "/items", Client::Http), None);
            assert_eq!(
                backend(&f, "POST", "/items", Client::Http).as_deref(),
                Some("items-v2")
            );
            // gRPC clients: reads are the listed methods.
            f.config.rules.insert(
                0,
                serde_json::from_value(
                    serde_json::json!({"path": "/pkg.Items/*", "policy": "public"}),
                )
                .unwrap(),
            );
            assert_eq!(
                backend(&f, "POST", "/pkg.Items/Get", Client::Grpc),
                None,
                "a read at 0% reads"
            );
            assert_eq!(
                backend(&f, "POST", "/pkg.Items/Put", Client::Grpc).as_deref(),
                Some("items-v2")
            );
            // The same user, the same answer, whatever the request.
            f.config.rollouts = vec![rollout(50.0, 0.0)];
            let first = backend(&f, "GET", "/items", Client::Http);
            for _ in 0..5 {
                assert_eq!(backend(&f, "GET", "/items?page=2", Client::Http), first);
            }

            // Anonymous requests (a public read without a token) are split per request id.
            f.config.rules.insert(
                0,
                serde_json::from_value(serde_json::json!({"path": "/items", "policy": "public"}))
                    .unwrap(),
            );
            let anonymous = |id: &str| match authorize(
                &f.config,
                Some(&f.keys),
                &NoRestrictions,
                &Request {
                    method: "GET",
                    path: "/items",
                    authorization: &[],
                    cookies: &[],
                    client: Client::Http,
                    cors_preflight: false,
                    request_id: Some(id),
                },
            ) {
                Outcome::Allow { backend, .. } => backend.is_some(),
                other => panic!("{other:?}"),
            };
            let moved = (0..1000)
                .filter(|i| anonymous(&format!("request-{i}")))
                .count();
            assert!(
                (400..=600).contains(&moved),
                "{moved} of 1000 anonymous requests"
            );
            assert_eq!(anonymous("request-7"), anonymous("request-7"));
        }

        fn reason_of(f: &Fixture, method: &str, path: &str) -> &'static str {
            reason(&f.decide(method, path, &[], &[]))
        }
    }
}
