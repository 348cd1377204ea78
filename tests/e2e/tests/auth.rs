//! The auth filter under attack, through the real Envoy and the real authority. Tokens with
//! chosen claims are signed with the authority's own key (read from its key directory, as its
//! operator could), so no test waits for a token to expire.

use edge_e2e::{Edge, Options, GOLDIE_ID};
use jwt_simple::prelude::*;
use platform_proto::authority::{
    key_admin_service_client::KeyAdminServiceClient, RetireKeyRequest, RotateSigningKeyRequest,
};
use platform_proto::catalog::{catalog_service_client::CatalogServiceClient, CreateItemRequest};
use serde_json::json;
use std::time::{Duration, Instant};

const ITEM: &str = r#"{"title":"Probe","price":1}"#;

/// (what is tried, extra headers, path, expected status).
type HeaderCase<'a> = (&'a str, Vec<(&'a str, String)>, &'a str, u16);

fn now() -> u64 {
    Clock::now_since_epoch().as_secs()
}

/// Claims as the authority issues them, for goldie, valid for an hour from now.
fn good_claims() -> JWTClaims<NoCustomClaims> {
    let mut claims = Claims::create(Duration::from_secs(3600).into())
        .with_issuer("authority")
        .with_audience("edge")
        .with_subject(GOLDIE_ID);
    claims.issued_at = Some(UnixTimeStamp::from_secs(now()));
    claims.expires_at = Some(UnixTimeStamp::from_secs(now() + 3600));
    claims
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

/// POST /catalog/items with the given extra headers: the protected write.
async fn create(edge: &Edge, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    edge.raw_request("POST", path, &all, ITEM).await
}

#[tokio::test]
async fn attack_suite() {
    let edge = Edge::start().await;
    let key = edge.signing_key();
    let kid = key.key_id().clone().unwrap();
    let sign = |claims: JWTClaims<NoCustomClaims>| key.sign(claims).unwrap();
    let good = sign(good_claims());
    let (good_header, good_payload, good_signature) = {
        let parts: Vec<&str> = good.split('.').collect();
        (
            parts[0].to_string(),
            parts[1].to_string(),
            parts[2].to_string(),
        )
    };
    let with = |change: &dyn Fn(&mut JWTClaims<NoCustomClaims>)| {
        let mut claims = good_claims();
        change(&mut claims);
        sign(claims)
    };
    let public_key_bytes = key.public_key().public_key().to_bytes_uncompressed();
    let evil_payload = b64(
        json!({"sub": GOLDIE_ID, "iss": "authority", "aud": "edge", "exp": now() + 600})
            .to_string()
            .as_bytes(),
    );

    let cases: Vec<(&str, String, u16)> = vec![
        (
            "baseline: the authority's own token shape",
            good.clone(),
            200,
        ),
        (
            "alg none",
            format!(
                "{}.{evil_payload}.",
                b64(json!({"alg": "none", "kid": kid}).to_string().as_bytes())
            ),
            401,
        ),
        (
            "HS256 signed with the public key",
            HS256Key::from_bytes(&public_key_bytes)
                .with_key_id(&kid)
                .authenticate(good_claims())
                .unwrap(),
            401,
        ),
        (
            "unknown kid",
            ES256KeyPair::generate()
                .with_key_id("not-a-known-kid")
                .sign(good_claims())
                .unwrap(),
            401,
        ),
        (
            "our kid, another algorithm (ES384)",
            ES384KeyPair::generate()
                .with_key_id(&kid)
                .sign(good_claims())
                .unwrap(),
            401,
        ),
        (
            "our kid, another ES256 key",
            ES256KeyPair::generate()
                .with_key_id(&kid)
                .sign(good_claims())
                .unwrap(),
            401,
        ),
        (
            "tampered payload",
            format!("{good_header}.{evil_payload}.{good_signature}"),
            401,
        ),
        (
            "tampered header",
            format!(
                "{}.{good_payload}.{good_signature}",
                b64(json!({"alg": "ES256", "kid": kid, "typ": "JWT", "x": 1})
                    .to_string()
                    .as_bytes())
            ),
            401,
        ),
        (
            "truncated signature",
            good[..good.len() - 10].to_string(),
            401,
        ),
        (
            "two segments only",
            format!("{good_header}.{good_payload}"),
            401,
        ),
        ("garbage", "definitely-not-a-jwt".to_string(), 401),
        ("oversized", format!("{good}{}", "A".repeat(9000)), 401),
        (
            "expired an hour ago",
            with(&|c| {
                c.issued_at = Some(UnixTimeStamp::from_secs(now() - 7200));
                c.expires_at = Some(UnixTimeStamp::from_secs(now() - 3600));
            }),
            401,
        ),
        (
            "expired beyond the 60 s skew",
            with(&|c| {
                c.issued_at = Some(UnixTimeStamp::from_secs(now() - 600));
                c.expires_at = Some(UnixTimeStamp::from_secs(now() - 120));
            }),
            401,
        ),
        (
            "expired within the skew",
            with(&|c| {
                c.issued_at = Some(UnixTimeStamp::from_secs(now() - 600));
                c.expires_at = Some(UnixTimeStamp::from_secs(now() - 20));
            }),
            200,
        ),
        (
            "nbf an hour ahead",
            with(&|c| c.invalid_before = Some(UnixTimeStamp::from_secs(now() + 3600))),
            401,
        ),
        (
            "iat ahead beyond the skew",
            with(&|c| c.issued_at = Some(UnixTimeStamp::from_secs(now() + 600))),
            401,
        ),
        (
            "wrong issuer",
            with(&|c| c.issuer = Some("mallory".into())),
            401,
        ),
        (
            "wrong audience",
            with(&|c| *c = c.clone().with_audience("elsewhere")),
            401,
        ),
        ("no audience", with(&|c| c.audiences = None), 401),
        ("no exp", with(&|c| c.expires_at = None), 401),
        ("no subject", with(&|c| c.subject = None), 401),
        (
            "valid for 30 days (max lifetime 1 day)",
            with(&|c| c.expires_at = Some(UnixTimeStamp::from_secs(now() + 30 * 86_400))),
            401,
        ),
    ];
    let mut failures = Vec::new();
    for (name, token, expected) in &cases {
        let (status, body) = create(
            &edge,
            "/catalog/items",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        if status != *expected {
            failures.push(format!("{name}: expected {expected}, got {status} {body}"));
        }
        if status == 401 && !body.contains("\"code\":16") {
            failures.push(format!(
                "{name}: 401 without google.rpc.Status body: {body}"
            ));
        }
    }

    let bearer = format!("Bearer {good}");
    let header_cases: Vec<HeaderCase> = vec![
        ("no token", vec![], "/catalog/items", 401),
        (
            "two Authorization headers",
            vec![
                ("authorization", bearer.clone()),
                ("authorization", bearer.clone()),
            ],
            "/catalog/items",
            401,
        ),
        (
            "token in the query string",
            vec![],
            &*Box::leak(format!("/catalog/items?access_token={good}").into_boxed_str()),
            401,
        ),
        (
            "Bearer with extra spaces",
            vec![("authorization", format!("Bearer    {good}"))],
            "/catalog/items",
            200,
        ),
        (
            "lowercase bearer",
            vec![("authorization", format!("bearer {good}"))],
            "/catalog/items",
            200,
        ),
        (
            "uppercase BEARER",
            vec![("authorization", format!("BEARER {good}"))],
            "/catalog/items",
            200,
        ),
        (
            "Basic scheme",
            vec![("authorization", format!("Basic {good}"))],
            "/catalog/items",
            401,
        ),
        (
            "empty Bearer",
            vec![("authorization", "Bearer ".to_string())],
            "/catalog/items",
            401,
        ),
        ("path trick //", vec![], "/catalog//items", 401),
        ("path trick /./", vec![], "/catalog/./items", 401),
        ("path trick /../", vec![], "/catalog/x/../items", 401),
        // Paths no rule and no route knows: refused before any backend, as unknown (404).
        ("path trick case", vec![], "/Catalog/items", 404),
        ("path trick %2F", vec![], "/%2Fcatalog/items", 404),
        (
            "path trick escaped separator",
            vec![],
            "/catalog%2Fitems",
            404,
        ),
        ("path trick trailing slash", vec![], "/catalog/items/", 404),
        // A route the edge serves that no rule covers: denied by default.
        (
            "served but unruled",
            vec![],
            "/authority.AuthorityService/ListPublicKeys",
            403,
        ),
    ];
    for (name, headers, path, expected) in &header_cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, body) = create(&edge, path, &headers).await;
        if status != *expected {
            failures.push(format!("{name}: expected {expected}, got {status} {body}"));
        }
    }

    // A spoofed identity header never reaches the backend: the item belongs to the token's
    // subject, not to whoever the header names.
    let (status, body) = create(
        &edge,
        "/catalog/items",
        &[("authorization", &bearer), ("x-user-id", "someone-else")],
    )
    .await;
    let created: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if status != 200 || created["item"]["customer_id"] != GOLDIE_ID {
        failures.push(format!("spoofed x-user-id: {status} {body}"));
    }
    let log = edge.envoy_log_text();
    assert!(!log.contains(&good), "the token reached Envoy's log");
    // Every case above was checked by BoringSSL's P-256 (Envoy's, or ring's in the native
    // module), not the pure-Rust one in the filter.
    assert!(
        log.contains("verifying token signatures with the host's verify_signature"),
        "Envoy 1.40 has verify_signature"
    );
    let total = cases.len() + header_cases.len() + 1;
    assert!(total >= 30, "{total} cases");
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn restrictions_and_required_claims_are_per_action() {
    let edge = Edge::start_with(Options {
        customize: Box::new(|config| {
            let rules = config.auth["rules"].as_array_mut().unwrap();
            // Listing becomes a protected action that needs the items:read scope.
            rules.insert(0, json!({"methods": ["GET"], "path": "/catalog/items", "policy": "authenticated", "require_claims": {"scope": "items:read"}}));
        }),
        ..Options::default()
    })
    .await;
    let key = edge.signing_key();
    let token_with_scope = |scope: &str| {
        let mut claims =
            Claims::with_custom_claims(json!({"scope": scope}), Duration::from_secs(600).into())
                .with_issuer("authority")
                .with_audience("edge")
                .with_subject(GOLDIE_ID);
        claims.issued_at = Some(UnixTimeStamp::from_secs(now()));
        key.sign(claims).unwrap()
    };
    // goldie is restricted from listing (creating items), as data in the acl service.
    let (_, admin) = edge.signup("admin").await;
    let restricted = edge
        .http
        .post(edge.url("/acl/restrictions"))
        .bearer_auth(admin)
        .json(&json!({"subject": GOLDIE_ID, "action": "list", "reason": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(restricted.status(), 200);
    let banned = format!("Bearer {}", edge.signin("goldie").await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let (status, body) = loop {
        let (status, body) = create(&edge, "/catalog/items", &[("authorization", &banned)]).await;
        if status != 200 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(status, 403, "restricted subject may not create: {body}");
    assert!(body.contains("\"code\":7"), "{body}");

    let reader = format!("Bearer {}", token_with_scope("items:read profile"));
    let (status, body) = edge
        .raw_request("GET", "/catalog/items", &[("authorization", &reader)], "")
        .await;
    assert_eq!(
        status, 200,
        "banned from creating, still allowed to list: {body}"
    );
    let no_scope = format!("Bearer {}", token_with_scope("profile"));
    let (status, body) = edge
        .raw_request("GET", "/catalog/items", &[("authorization", &no_scope)], "")
        .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn authority_down_before_first_fetch_fails_closed() {
    let edge = Edge::start_with(Options {
        authority_up: false,
        ..Options::default()
    })
    .await;
    let (status, body) = create(
        &edge,
        "/catalog/items",
        &[("authorization", "Bearer a.b.c")],
    )
    .await;
    assert_eq!(status, 503, "protected routes wait for keys: {body}");
    assert!(body.contains("\"code\":14"), "{body}");
    let (status, _) = edge.raw_request("GET", "/catalog/items", &[], "").await;
    assert_eq!(status, 200, "public routes do not need keys");
}

#[tokio::test]
async fn cached_keys_outlive_an_authority_outage() {
    let mut edge = Edge::start().await;
    let token = format!("Bearer {}", edge.signin("goldie").await);
    edge.kill_service("authority");
    let (status, body) = create(&edge, "/catalog/items", &[("authorization", &token)]).await;
    assert_eq!(status, 200, "{body}");
}

async fn eventually_status(edge: &Edge, token: &str, expected: u16) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (status, body) = create(
            edge,
            "/catalog/items",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        if status == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {expected}, still {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_until_retired() {
    let edge = Edge::start_with(Options {
        customize: Box::new(|config| {
            config.auth["authority"]["refresh_seconds"] = json!(1);
            config.auth["authority"]["min_refresh_seconds"] = json!(1);
        }),
        // Two workers, two VMs: each must learn every key (fetched by one, shared with the other).
        workers: 2,
        ..Options::default()
    })
    .await;
    let old_token = edge.signin("goldie").await;
    let old_kid = Token::decode_metadata(&old_token)
        .unwrap()
        .key_id()
        .unwrap()
        .to_string();
    let mut admin = KeyAdminServiceClient::connect(edge.service_url("authority"))
        .await
        .unwrap();
    let new_kid = admin
        .rotate_signing_key(RotateSigningKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .kid;
    assert_ne!(new_kid, old_kid);
    let new_token = edge.signin("goldie").await;
    assert_eq!(
        Token::decode_metadata(&new_token).unwrap().key_id(),
        Some(new_kid.as_str())
    );

    eventually_status(&edge, &new_token, 200).await;
    eventually_status(&edge, &old_token, 200).await;
    admin
        .retire_key(RetireKeyRequest { kid: old_kid })
        .await
        .unwrap();
    eventually_status(&edge, &old_token, 401).await;
    eventually_status(&edge, &new_token, 200).await;
}

#[tokio::test]
async fn grpc_clients_are_held_to_the_same_policy() {
    let edge = Edge::start().await;
    let mut client = CatalogServiceClient::connect(edge.base_url.clone())
        .await
        .unwrap();
    let request = || CreateItemRequest {
        title: "Via gRPC".into(),
        price: 3,
    };
    let refused = client.create_item(request()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    // A gRPC client reads the plain message (tonic percent-decodes grpc-message), not JSON.
    assert_eq!(refused.message(), "a bearer token is required");

    // A method no route serves is UNIMPLEMENTED for gRPC clients, as a gRPC server says.
    let mut grpc = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(edge.base_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    grpc.ready().await.unwrap();
    let unknown = grpc
        .unary::<_, CreateItemRequest, tonic_prost::ProstCodec<_, CreateItemRequest>>(
            tonic::Request::new(request()),
            http::uri::PathAndQuery::from_static("/catalog.CatalogService/NoSuchMethod"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unimplemented, "{unknown:?}");
    assert_eq!(
        unknown.message(),
        "unknown method /catalog.CatalogService/NoSuchMethod"
    );

    let token = edge.signin("goldie").await;
    let mut authorized = tonic::Request::new(request());
    authorized
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    authorized
        .metadata_mut()
        .insert("x-user-id", "someone-else".parse().unwrap());
    let item = client
        .create_item(authorized)
        .await
        .unwrap()
        .into_inner()
        .item
        .unwrap();
    assert_eq!(item.customer_id, GOLDIE_ID);
}

#[tokio::test]
async fn spoofed_identity_never_reaches_a_backend_on_public_routes() {
    // Make the write public for this test: catalog itself then says whether an identity
    // header reached it (it refuses a create without one, and would accept a leaked one).
    let edge = Edge::start_with(Options {
        customize: Box::new(|config| {
            let rules = config.auth["rules"].as_array_mut().unwrap();
            rules.insert(
                0,
                json!({"methods": ["POST"], "path": "/catalog/items", "policy": "public"}),
            );
        }),
        ..Options::default()
    })
    .await;
    let (status, body) = create(&edge, "/catalog/items", &[("x-user-id", GOLDIE_ID)]).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("no authenticated caller"),
        "refused by catalog, not the edge: {body}"
    );
}

/// The signatures Envoy checked so far (auth's counter, flushed on its 1 s timer): waits until
/// it has held still for two ticks.
async fn signature_checks(edge: &Edge) -> i64 {
    let name = "wasmcustom.edge_auth_signature_checks_total";
    let mut last = edge.stat(name).await.unwrap_or(0);
    loop {
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let now = edge.stat(name).await.unwrap_or(0);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// With two workers, one token is checked once for the whole proxy when the workers share
/// verified tokens (`shared_token_slots`), and once per worker without: 40 requests, each on a
/// new connection, so both workers serve some.
#[tokio::test]
async fn a_token_is_verified_once_per_proxy_not_once_per_worker() {
    for (slots, expected) in [(65_536, 1), (0, 2)] {
        let edge = Edge::start_with(Options {
            workers: 2,
            customize: Box::new(move |config| {
                config.auth["shared_token_slots"] = json!(slots);
            }),
            ..Options::default()
        })
        .await;
        let token = edge.signing_key().sign(good_claims()).unwrap();
        let before = signature_checks(&edge).await;
        for _ in 0..40 {
            // A client per request: a new connection each time, spread over the workers.
            let response = reqwest::Client::new()
                .get(edge.url("/acl/restrictions"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("an answer");
            // Verified, then refused for lack of the acl.admin scope.
            assert_eq!(response.status().as_u16(), 403);
        }
        let checked = signature_checks(&edge).await - before;
        assert_eq!(checked, expected, "shared_token_slots {slots}");
    }
}
