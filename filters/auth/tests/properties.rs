//! Property tests (proptest) of the auth filter's decision, which faces raw client input: any
//! `Authorization` header or cookie, any path. Nothing may panic (a panic kills the filter's
//! Wasm VM), no made-up token passes, and which rule decides a request is exactly what a naive
//! reading of the rules says. `make test` runs 256 cases per property; `make fuzz` many more.

use base64::Engine;
use edge_auth::{authorize, AuthConfig, KeySet, NoRestrictions, Outcome, Request};
use edge_core::Client;
use jwt_simple::prelude::*;
use proptest::prelude::*;
use serde_json::json;

fn keys() -> (ES256KeyPair, KeySet) {
    let key = ES256KeyPair::generate().with_key_id("k1");
    let jwk: serde_json::Value = serde_json::from_str(&key.public_key().to_jwk()).unwrap();
    let keys = KeySet::from_jwks(&json!({ "keys": [jwk] }).to_string()).unwrap();
    (key, keys)
}

fn protected() -> AuthConfig {
    AuthConfig::from_json(
        json!({
            "authority": {"cluster": "authority"},
            "issuer": "authority",
            "token_cookies": ["session"],
            "rules": [{"path": "/**", "policy": "authenticated"}]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Token-shaped strings: three base64url parts, the first two often valid JSON with the
/// fields a verifier looks at (`alg`, `kid`, `exp`, …) set to odd values.
fn token() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        "[ -~]{0,40}".prop_map(|s| b64(s.as_bytes())),
        (
            prop_oneof!["ES256", "none", "HS256", "RS256", ""],
            prop_oneof!["k1", "k2", "", "../k1"]
        )
            .prop_map(
                |(alg, kid)| b64(json!({"alg": alg, "kid": kid, "typ": "JWT"})
                    .to_string()
                    .as_bytes())
            ),
    ];
    let payload = prop_oneof![
        "[ -~]{0,60}".prop_map(|s| b64(s.as_bytes())),
        (any::<i64>(), any::<i64>(), "[a-z]{0,6}").prop_map(|(exp, nbf, sub)| b64(
            json!({"iss": "authority", "sub": sub, "exp": exp, "nbf": nbf})
                .to_string()
                .as_bytes()
        )),
    ];
    let signature = prop::collection::vec(any::<u8>(), 0..80).prop_map(|bytes| b64(&bytes));
    (header, payload, signature).prop_map(|(h, p, s)| format!("{h}.{p}.{s}"))
}

fn decide(
    config: &AuthConfig,
    keys: &KeySet,
    authorization: &[String],
    cookies: &[String],
) -> Outcome {
    authorize(
        config,
        Some(keys),
        &NoRestrictions,
        &Request {
            method: "GET",
            path: "/anything",
            authorization,
            cookies,
            client: Client::Http,
            cors_preflight: false,
            request_id: None,
        },
    )
}

proptest! {
    #[test]
    fn no_made_up_token_passes(token in token(), scheme in prop_oneof!["Bearer ", "bearer ", "Basic ", "", "Bearer  "]) {
        let (_, keys) = keys();
        let config = protected();
        let outcome = decide(&config, &keys, &[format!("{scheme}{token}")], &[]);
        match outcome {
            Outcome::Reject(rejection) => prop_assert_eq!(rejection.reply.http_status, 401),
            allowed => prop_assert!(false, "allowed: {allowed:?}"),
        }
        let cookie = format!("theme=x; session={token}");
        prop_assert!(matches!(decide(&config, &keys, &[], &[cookie]), Outcome::Reject(_)));
    }

    #[test]
    fn any_header_bytes_are_refused_without_panic(values in prop::collection::vec("\\PC{0,200}", 0..3), cookies in prop::collection::vec("\\PC{0,200}", 0..3)) {
        let (_, keys) = keys();
        let config = protected();
        prop_assert!(matches!(decide(&config, &keys, &values, &cookies), Outcome::Reject(_)));
    }

    #[test]
    fn a_real_token_with_a_flipped_bit_is_refused(position in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (key, keys) = keys();
        let config = protected();
        let claims = Claims::create(Duration::from_secs(600)).with_issuer("authority").with_subject("alice");
        let token = key.sign(claims).unwrap();
        let allowed = matches!(
            decide(&config, &keys, &[format!("Bearer {token}")], &[]),
            Outcome::Allow { .. }
        );
        prop_assert!(allowed, "the genuine token passes");
        let mut bytes = token.clone().into_bytes();
        let at = position.index(bytes.len());
        bytes[at] ^= 1 << bit;
        let flipped = String::from_utf8_lossy(&bytes).into_owned();
        // A flip of a base64 character's unused low bits decodes to the same bytes: the same
        // token, rightly accepted. Anything else must be refused.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_allow_trailing_bits(true)
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let decoded = |text: &str| -> Option<Vec<Vec<u8>>> {
            text.split('.').map(|part| lenient.decode(part).ok()).collect()
        };
        let same = decoded(&flipped).is_some() && decoded(&flipped) == decoded(&token);
        let outcome = decide(&config, &keys, &[format!("Bearer {flipped}")], &[]);
        if !same {
            prop_assert!(matches!(outcome, Outcome::Reject(_)), "accepted {flipped}");
        }
    }
}

/// A rule, as generated: methods (empty: any), a template, public or deny.
#[derive(Debug, Clone)]
struct Rule {
    methods: Vec<&'static str>,
    segments: Vec<&'static str>,
    verb: Option<&'static str>,
    public: bool,
}

impl Rule {
    fn template(&self) -> String {
        let mut template = format!("/{}", self.segments.join("/"));
        if let Some(verb) = self.verb {
            template.push(':');
            template.push_str(verb);
        }
        template
    }
}

fn rule() -> impl Strategy<Value = Rule> {
    let methods = prop::sample::subsequence(vec!["GET", "POST", "DELETE"], 0..=2);
    let segments = (
        prop::collection::vec(
            prop_oneof![Just("a"), Just("b"), Just("c"), Just("*")],
            1..=3,
        ),
        any::<bool>(),
    )
        .prop_map(|(mut segments, rest)| {
            if rest {
                segments.push("**");
            }
            segments
        });
    (
        methods,
        segments,
        prop::option::weighted(0.2, Just("v")),
        any::<bool>(),
    )
        .prop_map(|(methods, segments, verb, public)| Rule {
            methods,
            segments,
            verb,
            public,
        })
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof!["a", "b", "c", "x", ""], 1..=4),
        prop::option::weighted(0.2, Just(":v")),
        prop::option::weighted(0.2, Just("?q=/a")),
    )
        .prop_map(|(segments, verb, query)| {
            format!(
                "/{}{}{}",
                segments.join("/"),
                verb.unwrap_or(""),
                query.unwrap_or("")
            )
        })
}

/// The naive reading: segment by segment, `*` one non-empty segment, `**` whatever is left.
fn naive_match(rule: &Rule, path: &str) -> bool {
    fn segments(template: &[&str], path: &[&str]) -> bool {
        match template.first() {
            None => path.is_empty(),
            Some(&"**") => true,
            Some(&"*") => {
                path.first().is_some_and(|p| !p.is_empty()) && segments(&template[1..], &path[1..])
            }
            Some(literal) => path.first() == Some(literal) && segments(&template[1..], &path[1..]),
        }
    }
    let path = path.split('?').next().unwrap_or(path);
    let Some(path) = path.strip_prefix('/') else {
        return false;
    };
    let path = match rule.verb {
        Some(verb) => match path.strip_suffix(&format!(":{verb}")) {
            Some(path) => path,
            None => return false,
        },
        None => path,
    };
    let parts: Vec<&str> = path.split('/').collect();
    segments(&rule.segments, &parts)
}

proptest! {
    #[test]
    fn the_first_matching_rule_decides_as_a_naive_reading_says(
        rules in prop::collection::vec(rule(), 1..6),
        method in prop_oneof![Just("GET"), Just("POST"), Just("DELETE")],
        path in path(),
    ) {
        let config = AuthConfig::from_json(
            json!({
                "authority": {"cluster": "authority"},
                "rules": rules.iter().map(|r| json!({
                    "methods": r.methods,
                    "path": r.template(),
                    "policy": if r.public { "public" } else { "deny" }
                })).collect::<Vec<_>>()
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let expected = rules
            .iter()
            .find(|r| (r.methods.is_empty() || r.methods.contains(&method)) && naive_match(r, &path))
            .is_some_and(|r| r.public);
        let outcome = authorize(&config, None, &NoRestrictions, &Request {
            method,
            path: &path,
            authorization: &[],
            cookies: &[],
            client: Client::Http,
            cors_preflight: false,
            request_id: None,
        });
        let allowed = matches!(outcome, Outcome::Allow { .. });
        prop_assert_eq!(allowed, expected, "{:?} {} {}", rules, method, path);
    }
}
