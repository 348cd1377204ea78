//! The filters' pure cores, timed natively on the host (`edge-bench --core`, and under
//! callgrind with `make profile`): how much of a filter's per-request cost is our own Rust
//! (matching, JWT policy, JSON⇄protobuf, log formatting) rather than Envoy's host calls,
//! callouts and local replies. Inputs are those of the bench's hot read.

use edge_e2e::{GOLDIE_ID, MOBILE_PHONE_ID};
use jwt_simple::prelude::*;
use prost::Message;
use serde_json::{json, Value};
use std::hint::black_box;
use std::time::Instant;

/// One timed operation: name and nanoseconds per call.
pub struct Timing {
    pub name: &'static str,
    pub ns_per_call: f64,
}

fn time(name: &'static str, iterations: u32, mut call: impl FnMut()) -> Timing {
    for _ in 0..iterations / 10 {
        call();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        call();
    }
    Timing {
        name,
        ns_per_call: started.elapsed().as_nanos() as f64 / f64::from(iterations),
    }
}

/// Times each core `iterations` times; `uncached_es256` adds the (slow) signature
/// verification of a token seen for the first time.
pub fn profile(iterations: u32, uncached_es256: bool) -> Result<Vec<Timing>, String> {
    let root = edge_e2e::workspace_root();
    let mut config = edgectl::EdgeConfig::load(&root.join("envoy/edge.json"))?;
    crate::chains::bench_config(&mut config, None);
    let filters = config.filter_configs(str::to_string)?;
    let mut timings = Vec::new();

    // Transcoder: route lookup, request message from the path, response JSON.
    let transcoder = edge_transcoder::Transcoder::new(
        serde_json::from_value(filters.transcoder.clone()).map_err(|e| e.to_string())?,
    )?;
    let path = format!("/catalog/items/{MOBILE_PHONE_ID}");
    let response = platform_proto::catalog::GetItemResponse {
        item: Some(platform_proto::catalog::Item {
            id: MOBILE_PHONE_ID.into(),
            customer_id: GOLDIE_ID.into(),
            customer_name: "goldie".into(),
            title: "Mobile Phone".into(),
            price: 10000,
            sold: false,
        }),
    }
    .encode_to_vec();
    let hot_read = || -> Result<usize, String> {
        let edge_transcoder::Lookup::Matched {
            route, bindings, ..
        } = transcoder.lookup("GET", &path)
        else {
            return Err("no route for the hot read".into());
        };
        let encoding = edge_transcoder::Encoding::Json;
        let request = transcoder
            .request_message(route, &bindings, None, b"", encoding)
            .map_err(|s| s.message)?;
        let json = transcoder
            .response_body(route, &response, encoding)
            .map_err(|s| s.message)?;
        Ok(request.len() + json.len())
    };
    hot_read()?;
    timings.push(time(
        "transcoder: lookup + request + response JSON",
        iterations,
        || {
            black_box(hot_read().ok());
        },
    ));
    let parts = transcoder.lookup("GET", &path);
    timings.push(time("transcoder: route lookup only", iterations, || {
        black_box(transcoder.lookup("GET", &path));
    }));
    if let edge_transcoder::Lookup::Matched { route, .. } = parts {
        timings.push(time("transcoder: response JSON only", iterations, || {
            black_box(
                transcoder
                    .response_body(route, &response, edge_transcoder::Encoding::Json)
                    .ok(),
            );
        }));
    }

    // Auth: policy + a token already verified (the cache hit every request after the first).
    let key = ES256KeyPair::generate().with_key_id("bench");
    let jwk: Value = serde_json::from_str(&key.public_key().to_jwk()).map_err(|e| e.to_string())?;
    let keys = edge_auth::KeySet::from_jwks(&json!({ "keys": [jwk] }).to_string())?;
    let auth = edge_auth::AuthConfig::from_json(filters.auth.to_string().as_bytes())?;
    let claims = Claims::create(jwt_simple::prelude::Duration::from_hours(1))
        .with_issuer("authority")
        .with_audience("edge")
        .with_subject(GOLDIE_ID);
    let token = key.sign(claims).map_err(|e| e.to_string())?;
    let authorization = vec![format!("Bearer {token}")];
    let request = edge_auth::Request {
        method: "GET",
        path: &path,
        authorization: &authorization,
        cookies: &[],
        client: edge_auth::Client::Http,
        cors_preflight: false,
        request_id: None,
    };
    let allowed =
        |outcome: &edge_auth::Outcome| matches!(outcome, edge_auth::Outcome::Allow { .. });
    if !allowed(&edge_auth::authorize(
        &auth,
        Some(&keys),
        &edge_auth::NoRestrictions,
        &request,
    )) {
        return Err("the bench token is refused".into());
    }
    timings.push(time("auth: policy + cached token", iterations, || {
        black_box(edge_auth::authorize(
            &auth,
            Some(&keys),
            &edge_auth::NoRestrictions,
            &request,
        ));
    }));
    // Distinct tokens (each its own jti): every call misses the cache and verifies ES256.
    let signed = if uncached_es256 { iterations / 50 } else { 0 };
    let distinct: Vec<Vec<String>> = (0..signed)
        .map(|n| {
            let claims = Claims::create(jwt_simple::prelude::Duration::from_hours(1))
                .with_issuer("authority")
                .with_audience("edge")
                .with_subject(GOLDIE_ID)
                .with_jwt_id(format!("bench-{n}"));
            key.sign(claims)
                .map(|token| vec![format!("Bearer {token}")])
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut next = distinct.iter().cycle();
    if uncached_es256 {
        timings.push(time(
            "auth: policy + ES256 verification (uncached)",
            signed,
            || {
                if let Some(authorization) = next.next() {
                    let request = edge_auth::Request {
                        authorization,
                        ..request.clone()
                    };
                    black_box(edge_auth::authorize(
                        &auth,
                        Some(&keys),
                        &edge_auth::NoRestrictions,
                        &request,
                    ));
                }
            },
        ));
    }

    // Access log: the record's JSON line and its metric samples.
    let record = edge_access_log::Record {
        time: edge_access_log::rfc3339_millis(1_790_000_000_123_000_000).into(),
        request_id: Some("4f9c2a52-5b0e-4d0e-9b6a-0a3c6f1f5e21".into()),
        method: "GET".into(),
        path: path.as_str().into(),
        route: Some("/catalog/items/{id}".into()),
        grpc_method: Some("/catalog.CatalogService/GetItem".into()),
        status: 200,
        grpc_status: Some(0),
        duration_ms: 1.234,
        upstream_ms: Some(0.9),
        bytes_in: 0,
        bytes_out: 140,
        subject: Some(GOLDIE_ID.into()),
        user_agent: Some("curl/8.5.0".into()),
        client_ip: Some("127.0.0.1".into()),
        trace_id: Some("4f9c2a525b0e4d0e9b6a0a3c6f1f5e21".into()),
        upstream_cluster: Some("catalog".into()),
        ..edge_access_log::Record::default()
    };
    timings.push(time(
        "access log: JSON line + metric samples",
        iterations,
        || {
            black_box(record.to_json());
            black_box(edge_access_log::metrics::samples(&record));
        },
    ));
    Ok(timings)
}
