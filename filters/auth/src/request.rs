//! One request through the auth filter, for any host: the headers the host read become a
//! [`Plan`] (header edits, the note for the access log, a refusal), which [`handle`] carries
//! out through [`Host`] without deciding anything itself.

use crate::acl::Restrictions;
use crate::config::AuthConfig;
use crate::keys::{KeySet, TokenError};
use crate::policy::{authorize, Outcome, Reason, Rejection, Request};
use edge_core::host::{Flow, Host, HostError, Level};
use edge_core::notes::{self, AuthNote};
use edge_core::{trace, Client, GrpcCode, Headers, LocalReply};
use std::borrow::Cow;

/// A change to the request's headers, in the order the plan lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit<'a> {
    Remove(Cow<'a, str>),
    Set(Cow<'a, str>, String),
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<'a> {
    pub edits: Vec<Edit<'a>>,
    /// For the access log (filter state); `None` for an anonymous request let through.
    pub note: Option<AuthNote>,
    /// Answer with this instead of letting the request through.
    pub reject: Option<Rejection>,
    /// Tag the edge span with the refusal's reason: the request has one (Envoy traces it).
    pub tag_span: bool,
}

impl Plan<'_> {
    /// A token named a key we do not hold: fetch the JWKS early (the authority may have
    /// rotated its keys).
    pub fn wants_new_keys(&self) -> bool {
        self.reject
            .as_ref()
            .is_some_and(|rejection| rejection.reason == Reason::Token(TokenError::UnknownKeyId))
    }
}

/// The decision for the request these headers describe.
pub fn decide(
    config: &AuthConfig,
    keys: Option<&KeySet>,
    restrictions: &dyn Restrictions,
    client: Client,
    headers: &Headers,
) -> Outcome {
    let method = headers.get(":method").unwrap_or_default();
    let path = headers.get(":path").unwrap_or_default();
    let authorization = headers.all("authorization");
    let cookies = if config.token_cookies.is_empty() {
        Vec::new()
    } else {
        headers.all("cookie")
    };
    let cors_preflight = edge_core::is_cors_preflight(
        method,
        headers.get("origin"),
        headers.get("access-control-request-method"),
    );
    let request_id = if config.rollouts.is_empty() {
        None
    } else {
        headers.get("x-request-id")
    };
    authorize(
        config,
        keys,
        restrictions,
        &Request {
            method,
            path,
            authorization: &authorization,
            cookies: &cookies,
            client,
            cors_preflight,
            request_id,
        },
    )
}

/// The plan for a decision on a request with these headers.
pub fn plan<'a>(config: &'a AuthConfig, headers: &Headers, outcome: Outcome) -> Plan<'a> {
    // A client must never choose its identity or its backend: drop its copies first (the
    // backend header means something only while a rollout routes on it). Only those it sent:
    // a removal is a host call, and the snapshot says what is there.
    let mut edits: Vec<Edit<'a>> = std::iter::once(&config.subject_header)
        .chain(config.forward_claims.values())
        .chain((!config.rollouts.is_empty()).then_some(&config.backend_header))
        .filter(|name| headers.contains(name))
        .map(|name| Edit::Remove(Cow::Borrowed(name.as_str())))
        .collect();
    match outcome {
        Outcome::Allow {
            subject,
            forward,
            backend,
        } => {
            if let Some(cluster) = backend {
                edits.push(Edit::Set(Cow::Borrowed(&config.backend_header), cluster));
            }
            let Some(subject) = subject else {
                return Plan {
                    edits,
                    note: None,
                    reject: None,
                    tag_span: false,
                };
            };
            edits.push(Edit::Set(
                Cow::Borrowed(&config.subject_header),
                subject.clone(),
            ));
            edits.extend(
                forward
                    .into_iter()
                    .map(|(header, value)| Edit::Set(Cow::Owned(header), value)),
            );
            if !config.keep_authorization && headers.contains("authorization") {
                // The backends trust the identity headers; the token stays at the edge.
                edits.push(Edit::Remove(Cow::Borrowed("authorization")));
            }
            Plan {
                edits,
                note: Some(AuthNote {
                    subject,
                    reason: String::new(),
                }),
                reject: None,
                tag_span: false,
            }
        }
        Outcome::Reject(rejection) => Plan {
            edits,
            note: Some(AuthNote {
                subject: String::new(),
                reason: rejection.reason.as_str().to_string(),
            }),
            reject: Some(rejection),
            // Without a span there is nothing to tag: a header edit is a host call.
            tag_span: headers.contains(trace::EDGE_SPAN_HEADER),
        },
    }
}

/// Reads the request, decides, and carries the plan out. Unreadable headers, and edits the
/// host refuses, fail closed with a 500: without them the client's copies of the identity
/// headers could not be removed. Returns whether the request goes on, and whether keys are wanted early.
pub fn handle<H: Host>(
    host: &H,
    config: &AuthConfig,
    keys: Option<&KeySet>,
    restrictions: &dyn Restrictions,
) -> (Flow, bool) {
    let headers = host.request_headers();
    let client = Client::of_content_type(
        headers
            .as_ref()
            .ok()
            .and_then(|headers| headers.get("content-type")),
    );
    let carried = headers.and_then(|headers| {
        let outcome = decide(config, keys, restrictions, client, &headers);
        let plan = plan(config, &headers, outcome);
        carry_out(host, &plan, client).map(|verdict| (verdict, plan.wants_new_keys()))
    });
    carried.unwrap_or_else(|error| {
        host.log(Level::Error, &format!("auth failed closed: {error}"));
        let reply = LocalReply::error(GrpcCode::Internal, "authentication could not be performed");
        host.send_reply(&reply, client, "edge_auth_failed_closed");
        (Flow::Pause, false)
    })
}

fn carry_out<H: Host>(host: &H, plan: &Plan<'_>, client: Client) -> Result<Flow, HostError> {
    for edit in &plan.edits {
        match edit {
            Edit::Remove(name) => host.remove_request_header(name)?,
            Edit::Set(name, value) => host.set_request_header(name, value)?,
        }
    }
    if let Some(note) = &plan.note {
        host.set_property(&[notes::AUTH], &notes::encode(note))?;
    }
    let Some(rejection) = &plan.reject else {
        // The headers changed, and a rollout's routes match on them: Envoy 1.40 recomputes
        // the route after a Wasm header change for ABI 0.2.1 modules, so asking again
        // (`clear_route_cache`) would cost 6.6k instructions for nothing. Envoy stopped doing
        // it for newer ABIs; tests/e2e/tests/rollout.rs (gRPC clients follow auth's choice)
        // fails if a bump ever loses it.
        return Ok(Flow::Continue);
    };
    // For the edge span (Envoy's tracer reads it when the span ends); the request goes no
    // further. Diagnostics only: a failure must not turn the refusal into a 500.
    if plan.tag_span {
        let _ = host.set_request_header(trace::AUTH_REASON_HEADER, rejection.reason.as_str());
    }
    host.send_reply(&rejection.reply, client, &rejection.reason.details());
    Ok(Flow::Pause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoRestrictions;
    use edge_core::host::{Call, RecordingHost};

    fn config(json: &str) -> AuthConfig {
        AuthConfig::from_json(json.as_bytes()).unwrap()
    }

    const PUBLIC: &str = r#"{
        "authority": {"cluster": "authority"},
        "rules": [
            {"path": "/public/**", "policy": "public"},
            {"path": "/**", "policy": "authenticated"}
        ],
        "forward_claims": {"email": "x-user-email"}
    }"#;

    #[test]
    fn an_anonymous_public_request_loses_the_identity_headers_it_forged() {
        let config = config(PUBLIC);
        let host = RecordingHost::with_headers(&[
            (":method", "GET"),
            (":path", "/public/items"),
            ("x-user-id", "admin"),
            ("x-user-email", "admin@example.com"),
        ]);
        let verdict = handle(&host, &config, None, &NoRestrictions);
        assert_eq!(verdict, (Flow::Continue, false));
        assert_eq!(
            host.calls(),
            vec![
                Call::RemoveHeader("x-user-id".into()),
                Call::RemoveHeader("x-user-email".into()),
            ]
        );
    }

    #[test]
    fn a_refusal_is_noted_traced_and_answered_with_its_details() {
        let config = config(PUBLIC);
        let host = RecordingHost::with_headers(&[
            (":method", "GET"),
            (":path", "/items"),
            ("content-type", "application/grpc"),
            (
                trace::EDGE_SPAN_HEADER,
                "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            ),
        ]);
        assert_eq!(
            handle(&host, &config, None, &NoRestrictions),
            (Flow::Pause, false)
        );
        let calls = host.calls();
        let note = AuthNote {
            subject: String::new(),
            reason: "token_missing".into(),
        };
        assert_eq!(
            calls,
            vec![
                Call::SetProperty(notes::AUTH.into(), notes::encode(&note)),
                Call::SetHeader(trace::AUTH_REASON_HEADER.into(), "token_missing".into()),
                Call::Reply {
                    http_status: 401,
                    status: edge_core::Status::new(
                        GrpcCode::Unauthenticated,
                        "a bearer token is required"
                    ),
                    client: Client::Grpc,
                    details: "edge_auth_token_missing".into(),
                },
            ]
        );
        // Untraced, there is no span to tag.
        let untraced = RecordingHost::with_headers(&[(":method", "GET"), (":path", "/items")]);
        handle(&untraced, &config, None, &NoRestrictions);
        assert!(
            !untraced
                .calls()
                .iter()
                .any(|call| matches!(call, Call::SetHeader(..))),
            "{:?}",
            untraced.calls()
        );
    }

    #[test]
    fn a_host_that_refuses_edits_fails_closed() {
        let config = config(PUBLIC);
        let mut host = RecordingHost::with_headers(&[
            (":method", "GET"),
            (":path", "/public/x"),
            ("x-user-id", "a"),
        ]);
        host.failing_header_writes = Some(HostError::BAD_ARGUMENT);
        assert_eq!(
            handle(&host, &config, None, &NoRestrictions),
            (Flow::Pause, false)
        );
        let calls = host.calls();
        assert!(
            matches!(&calls[0], Call::Log(Level::Error, message) if message.contains("BadArgument"))
        );
        assert!(
            matches!(&calls[1], Call::Reply { http_status: 500, details, .. } if details == "edge_auth_failed_closed"),
            "{calls:?}"
        );
    }

    /// A key set holding `k1`, and tokens signed by `k1` or by a key named `rotated`.
    fn keys_and_tokens() -> (KeySet, String, String) {
        use jwt_simple::prelude::*;
        let key = ES256KeyPair::generate().with_key_id("k1");
        let jwk: serde_json::Value = serde_json::from_str(&key.public_key().to_jwk()).unwrap();
        let keys = KeySet::from_jwks(&serde_json::json!({ "keys": [jwk] }).to_string()).unwrap();
        let claims = || {
            Claims::with_custom_claims(
                serde_json::json!({"email": "ada@example.com"}),
                Duration::from_secs(600),
            )
            .with_subject("ada")
        };
        let valid = key.sign(claims()).unwrap();
        let rotated = ES256KeyPair::generate()
            .with_key_id("rotated")
            .sign(claims())
            .unwrap();
        (keys, valid, rotated)
    }

    #[test]
    fn a_verified_request_carries_its_identity_and_not_its_token() {
        let config = config(PUBLIC);
        let (keys, token, _) = keys_and_tokens();
        let host = RecordingHost::with_headers(&[
            (":method", "GET"),
            (":path", "/items"),
            ("authorization", &format!("Bearer {token}")),
            ("x-user-id", "admin"),
        ]);
        assert_eq!(
            handle(&host, &config, Some(&keys), &NoRestrictions),
            (Flow::Continue, false)
        );
        let note = AuthNote {
            subject: "ada".into(),
            reason: String::new(),
        };
        assert_eq!(
            host.calls(),
            vec![
                Call::RemoveHeader("x-user-id".into()),
                Call::SetHeader("x-user-id".into(), "ada".into()),
                Call::SetHeader("x-user-email".into(), "ada@example.com".into()),
                Call::RemoveHeader("authorization".into()),
                Call::SetProperty(notes::AUTH.into(), notes::encode(&note)),
            ]
        );
    }

    #[test]
    fn an_unknown_key_asks_for_keys_early() {
        let config = config(PUBLIC);
        let (keys, _, rotated) = keys_and_tokens();
        let host = RecordingHost::with_headers(&[
            (":method", "GET"),
            (":path", "/items"),
            ("authorization", &format!("Bearer {rotated}")),
        ]);
        assert_eq!(
            handle(&host, &config, Some(&keys), &NoRestrictions),
            (Flow::Pause, true)
        );
    }
}
