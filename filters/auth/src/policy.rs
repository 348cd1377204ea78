//! Route policy: which rule a request falls under, and the decision for it.

use crate::config::{AuthConfig, Rule};
use crate::keys::{Identity, KeySet, TokenError};
use edge_core::{GrpcCode, Status};
use serde::Deserialize;

/// What a matching rule requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// No token needed (signup, signin, public reads).
    Public,
    /// A valid token is needed, and the subject must not be on the rule's deny list.
    Authenticated,
}

/// A path pattern over `/`-separated segments: a literal, `*` (exactly one segment) or `**`
/// (any number of segments, only last). Matching is exact otherwise, so `/catalog/items` does
/// not match `/catalog/items/` nor `/Catalog/items`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

impl PathPattern {
    pub fn parse(source: &str) -> Result<Self, String> {
        let rest = source
            .strip_prefix('/')
            .ok_or_else(|| format!("path pattern {source:?} must start with '/'"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            segments.push(match *part {
                "**" if index + 1 == parts.len() => Segment::Rest,
                "**" => return Err(format!("path pattern {source:?}: '**' must be last")),
                "*" => Segment::One,
                literal if literal.contains('*') => {
                    return Err(format!(
                        "path pattern {source:?}: '*' must be a whole segment"
                    ))
                }
                literal => Segment::Literal(literal.to_string()),
            });
        }
        Ok(Self {
            segments,
            source: source.to_string(),
        })
    }

    /// Matches a path (without query string).
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::One => match parts.next() {
                    Some(part) if !part.is_empty() => {}
                    _ => return false,
                },
                Segment::Literal(literal) => match parts.next() {
                    Some(part) if part == literal => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl<'de> Deserialize<'de> for PathPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        PathPattern::parse(&source).map_err(serde::de::Error::custom)
    }
}

/// What the filter knows about a request when it decides.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path without the query string, after Envoy's normalization.
    pub path: &'a str,
    /// Every `Authorization` header value the client sent.
    pub authorization: &'a [String],
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Let the request through; `subject` is the verified caller, if a token was checked.
    Allow {
        subject: Option<String>,
    },
    Reject(Rejection),
}

/// A refused request: the status clients get, and a short reason for logs and metrics
/// (never the token itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub status: Status,
    pub reason: &'static str,
    /// `WWW-Authenticate` header for 401 answers (RFC 6750).
    pub www_authenticate: Option<String>,
}

impl Rejection {
    fn unauthenticated(error: TokenError) -> Self {
        let description = error.to_string();
        Self {
            www_authenticate: Some(match error {
                TokenError::Missing => "Bearer".to_string(),
                _ => format!("Bearer error=\"invalid_token\", error_description=\"{description}\""),
            }),
            status: Status::new(GrpcCode::Unauthenticated, description),
            reason: error.reason(),
        }
    }

    fn denied(reason: &'static str, message: &str) -> Self {
        Self {
            status: Status::new(GrpcCode::PermissionDenied, message),
            reason,
            www_authenticate: None,
        }
    }
}

/// Decides one request: finds the first matching rule, verifies the token if the rule needs
/// one, and applies the rule's deny list. `keys` is `None` until the first JWKS fetch
/// succeeded: protected routes then answer 503 (fail closed, never open).
pub fn authorize(config: &AuthConfig, keys: Option<&KeySet>, request: &Request<'_>) -> Outcome {
    let Some(rule) = matching_rule(config, request) else {
        return Outcome::Reject(Rejection::denied(
            "no_matching_rule",
            "no policy allows this route",
        ));
    };
    if rule.policy == Policy::Public {
        return Outcome::Allow { subject: None };
    }
    let token = match bearer_token(request.authorization) {
        Ok(token) => token,
        Err(error) => return Outcome::Reject(Rejection::unauthenticated(error)),
    };
    let Some(keys) = keys else {
        return Outcome::Reject(Rejection {
            status: Status::new(GrpcCode::Unavailable, "signing keys are not available yet"),
            reason: "keys_unavailable",
            www_authenticate: None,
        });
    };
    let Identity { subject } = match keys.verify(token, &config.into()) {
        Ok(identity) => identity,
        Err(error) => return Outcome::Reject(Rejection::unauthenticated(error)),
    };
    if rule.deny_subjects.iter().any(|denied| denied == &subject) {
        return Outcome::Reject(Rejection::denied(
            "subject_denied",
            "the caller is not allowed to perform this action",
        ));
    }
    Outcome::Allow {
        subject: Some(subject),
    }
}

fn matching_rule<'c>(config: &'c AuthConfig, request: &Request<'_>) -> Option<&'c Rule> {
    config.rules.iter().find(|rule| {
        (rule.methods.is_empty()
            || rule
                .methods
                .iter()
                .any(|method| method.eq_ignore_ascii_case(request.method)))
            && rule.path.matches(request.path)
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
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segments_exactly() {
        let cases = [
            ("/auth/signin", "/auth/signin", true),
            ("/auth/signin", "/auth/signin/", false),
            ("/auth/signin", "/Auth/signin", false),
            ("/catalog/items/*", "/catalog/items/42", true),
            ("/catalog/items/*", "/catalog/items/", false),
            ("/catalog/items/*", "/catalog/items/42/x", false),
            ("/catalog/**", "/catalog", true),
            ("/catalog/**", "/catalog/items/42", true),
            ("/catalog/**", "/catalogue", false),
            ("/**", "/anything/at/all", true),
        ];
        for (pattern, path, expected) in cases {
            let pattern = PathPattern::parse(pattern).unwrap();
            assert_eq!(pattern.matches(path), expected, "{pattern:?} vs {path}");
        }
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for bad in ["catalog", "/a/**/b", "/a/b*"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
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
        assert_eq!(
            bearer_token(&["Bearer a".into(), "Bearer b".into()]),
            Err(TokenError::Ambiguous)
        );
    }
}
