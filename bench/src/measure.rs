//! One case measured: the requests (and tokens) it sends, its load through Envoy or straight
//! to catalog, Envoy's CPU and RSS around it; and the medians over rounds the report reads.

use crate::chains::{Chain, Peer, Route};
use crate::load::{self, HttpRequest, Run};
use crate::plan::Plan;
use edge_e2e::{Edge, MOBILE_PHONE_ID};
use jwt_simple::prelude::*;
use std::collections::BTreeMap;

/// `count` valid tokens, one per made-up user, signed with the authority's current key (as
/// the authority would sign them).
/// A token each for the users numbered `users`.
pub(crate) fn many_tokens(
    edge: &Edge,
    users: std::ops::Range<usize>,
) -> std::sync::Arc<Vec<String>> {
    let key = edge.signing_key();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tokens = users
        .map(|n| {
            let mut claims = Claims::create(Duration::from_secs(3600))
                .with_issuer("authority")
                .with_audience("edge")
                .with_subject(format!("bench-user-{n}"));
            claims.issued_at = Some(UnixTimeStamp::from_secs(now));
            key.sign(claims).expect("sign a token")
        })
        .collect();
    std::sync::Arc::new(tokens)
}

/// A token for goldie, from the authority directly (chains without the transcoder cannot
/// route /auth/signin).
pub(crate) async fn token(edge: &Edge) -> String {
    use platform_proto::authority::{
        authority_service_client::AuthorityServiceClient, SigninRequest,
    };
    let mut authority = AuthorityServiceClient::connect(edge.service_url("authority"))
        .await
        .expect("connect to authority");
    authority
        .signin(SigninRequest {
            name: "goldie".into(),
        })
        .await
        .expect("signin")
        .into_inner()
        .access_token
}

pub(crate) fn request(route: Route, token: &str) -> HttpRequest {
    let bearer = vec![("authorization".to_string(), format!("Bearer {token}"))];
    // Without the transcoder the router sends the read to catalog on the catch-all route,
    // and tonic answers the unknown path with HTTP 200 (grpc-status 12): still a backend
    // round trip, so the filter alone is measured on a real route.
    match route {
        Route::List(items) => HttpRequest {
            method: reqwest::Method::GET,
            path: format!("/catalog/items?page_size={items}"),
            headers: Vec::new(),
            body: None,
            expect: 200,
            tokens: Default::default(),
        },
        // GrpcRead is sent by the gRPC load generator; this shape is never used for it.
        // ManyUsers gets its tokens in `measure`.
        Route::HotRead | Route::GrpcRead | Route::ManyUsers => HttpRequest {
            method: reqwest::Method::GET,
            path: format!("/catalog/items/{MOBILE_PHONE_ID}"),
            headers: bearer,
            body: None,
            expect: 200,
            tokens: Default::default(),
        },
        Route::Write => HttpRequest {
            method: reqwest::Method::POST,
            path: "/catalog/items".into(),
            headers: bearer,
            body: Some(r#"{"title":"Bench","price":1}"#.into()),
            expect: 200,
            tokens: Default::default(),
        },
        Route::Reject => HttpRequest {
            method: reqwest::Method::POST,
            path: "/catalog/items".into(),
            headers: Vec::new(),
            body: Some(r#"{"title":"Bench","price":1}"#.into()),
            expect: 401,
            tokens: Default::default(),
        },
    }
}

/// Steal as a share of all CPU time since the previous reading (`/proc/stat`).
fn cpu_totals() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    (values.iter().sum(), values.get(7).copied().unwrap_or(0))
}

#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) run: Run,
    pub(crate) envoy_cpu_us_per_request: Option<f64>,
    /// The kernel's part of it (system time): the sockets' work, the same traffic for every chain.
    pub(crate) envoy_system_us_per_request: Option<f64>,
    pub(crate) rss_kb: Option<(u64, u64)>,
    pub(crate) steal_percent: f64,
}

/// Loads `chain` on `route` through Envoy, or through `peer` when the chain is a proxy of its
/// own (whose process's CPU and RSS are then the ones read).
pub(crate) async fn measure(
    edge: &Edge,
    peer: Option<&Peer>,
    chain: Chain,
    route: Route,
    connections: usize,
    plan: &Plan,
    token: &str,
) -> Sample {
    let ticks_per_second = 100.0; // CLK_TCK on Linux
    let catalog = edge.service_url("catalog");
    let direct =
        |duration| load::grpc_get_item(&catalog, MOBILE_PHONE_ID, None, connections, duration);
    let through_envoy = |duration| {
        load::grpc_get_item(
            &edge.base_url,
            MOBILE_PHONE_ID,
            Some(token),
            connections,
            duration,
        )
    };
    let (base_url, pid) = match peer {
        Some(peer) => (peer.base_url.as_str(), peer.pid()),
        None => (edge.base_url.as_str(), edge.envoy_pid()),
    };
    let mut http = request(route, token);
    let mut warmup_http = http.clone();
    if route == Route::ManyUsers {
        // Half the users warm up, the other half are measured: every measured token is one
        // no worker has seen (the shared verified tokens would otherwise serve the warm-up's).
        http.headers.clear();
        warmup_http.headers.clear();
        warmup_http.tokens = many_tokens(edge, 0..plan.users / 2);
        http.tokens = many_tokens(edge, plan.users / 2..plan.users);
    }
    if chain == Chain::Direct {
        direct(plan.warmup).await;
    } else if route == Route::GrpcRead {
        through_envoy(plan.warmup).await;
    } else {
        load::http(base_url, &warmup_http, connections, plan.warmup).await;
    }
    let (rss_before, ticks_before, totals_before) = (
        edge_e2e::process_rss_kib(pid),
        edge_e2e::process_cpu_ticks_split(pid),
        cpu_totals(),
    );
    let run = if chain == Chain::Direct {
        direct(plan.measure).await
    } else if route == Route::GrpcRead {
        through_envoy(plan.measure).await
    } else {
        load::http(base_url, &http, connections, plan.measure).await
    };
    let (ticks_after, totals_after) = (edge_e2e::process_cpu_ticks_split(pid), cpu_totals());
    let all = totals_after.0.saturating_sub(totals_before.0).max(1) as f64;
    let steal_percent = 100.0 * totals_after.1.saturating_sub(totals_before.1) as f64 / all;
    let envoy = chain != Chain::Direct;
    let per_request =
        |ticks: u64| ticks as f64 / ticks_per_second * 1e6 / run.requests.max(1) as f64;
    Sample {
        envoy_cpu_us_per_request: envoy
            .then(|| per_request(ticks_after.0 + ticks_after.1 - ticks_before.0 - ticks_before.1)),
        envoy_system_us_per_request: envoy.then(|| per_request(ticks_after.1 - ticks_before.1)),
        rss_kb: envoy.then(|| (rss_before, edge_e2e::process_rss_kib(pid))),
        run,
        steal_percent,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub(crate) type Results = BTreeMap<(Route, usize, Chain), Vec<Sample>>;

pub(crate) fn spread(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> (f64, f64, f64) {
    spread_of(samples.iter().map(value).collect())
}

/// The median of `values`, with their min and max.
pub(crate) fn spread_of(mut values: Vec<f64>) -> (f64, f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    (median(&mut values), min, max)
}
