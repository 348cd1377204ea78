//! `make bench`: the wasm edge measured against Envoy's native filters and against calling
//! catalog over gRPC directly, in one run on one machine, with the same release-built services.
//!
//! Envoy runs one worker pinned to CPU 0; this process (the load) and the services run on CPU 1.
//! Each round starts every configuration afresh, in rotating order; every run has a warm-up
//! that is discarded. Reported: medians over rounds with min–max, Envoy CPU µs per request
//! (the steady figure on these noisy VMs: whole-machine throughput moves by ±25% between runs,
//! Envoy's CPU per request does not), RSS before/after.
//!
//! `--smoke`: one short round, checks only that every configuration answers correctly.
//! `--only TEXT`: the full-length cases whose configuration or route contains TEXT, printed,
//! nothing written.
//! `--soak N`: N requests through the wasm chain, RSS every 100k; fails on growth > 10% or any
//! wrong answer.

mod core_costs;
mod instructions;
mod load;

use edge_e2e::otlp::TraceReceiver;
use edge_e2e::{Edge, Launch, Options, MOBILE_PHONE_ID};
use jwt_simple::prelude::*;
use load::{HttpRequest, Run};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration as StdDuration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Chain {
    Direct,
    Native,
    Wasm,
    AuthOnly,
    TranscoderOnly,
    AccessLogOnly,
    /// Envoy with no filter but the router.
    RouterOnly,
    OneEmpty,
    ThreeEmpty,
    CalloutGrpcStream,
    CalloutHttpCall,
    /// The bench filter making one kind of host call `PROBE_CALLS` times per request
    /// (`bench/filter`'s `probe` mode; the text is its configuration).
    Probe(&'static str),
    /// The full chains with 1000 more policy rules ahead of the real ones.
    WasmLargePolicy,
    NativeLargePolicy,
    /// The full chains with edge.json's tracing, exporting to an OTLP receiver in the bench.
    WasmTraced,
    NativeTraced,
    /// The full chains with 1000 more HTTP bindings in their transcoders' route tables.
    WasmManyRoutes,
    NativeManyRoutes,
}

impl Chain {
    fn name(self) -> &'static str {
        match self {
            Chain::Direct => "direct gRPC",
            Chain::Native => "native (jwt_authn + grpc_json_transcoder + file log)",
            Chain::Wasm => "wasm (access-log + auth + transcoder)",
            Chain::AuthOnly => "wasm auth alone",
            Chain::TranscoderOnly => "wasm transcoder alone",
            Chain::AccessLogOnly => "wasm access-log alone",
            Chain::RouterOnly => "Envoy, no filter (router only)",
            Chain::OneEmpty => "one empty Rust proxy-wasm filter",
            Chain::ThreeEmpty => "three empty Rust proxy-wasm filters",
            Chain::CalloutGrpcStream => "minimal callout filter, gRPC stream",
            Chain::CalloutHttpCall => "minimal callout filter, proxy_http_call",
            Chain::Probe(mode) => mode,
            Chain::WasmLargePolicy => "wasm, 1000 more policy rules",
            Chain::NativeLargePolicy => "native, 1000 more jwt_authn rules",
            Chain::WasmTraced => "wasm, tracing on",
            Chain::NativeTraced => "native, tracing on",
            Chain::WasmManyRoutes => "wasm, 1000 more HTTP bindings",
            Chain::NativeManyRoutes => "native, 1000 more HTTP bindings",
        }
    }

    fn native(self) -> bool {
        matches!(
            self,
            Chain::Native
                | Chain::NativeLargePolicy
                | Chain::NativeTraced
                | Chain::NativeManyRoutes
        )
    }

    fn many_routes(self) -> bool {
        matches!(self, Chain::WasmManyRoutes | Chain::NativeManyRoutes)
    }

    /// Envoy's tracer on (every other chain runs without it, like for like).
    fn traced(self) -> bool {
        matches!(self, Chain::WasmTraced | Chain::NativeTraced)
    }

    fn large_policy(self) -> bool {
        matches!(self, Chain::WasmLargePolicy | Chain::NativeLargePolicy)
    }

    /// Chains of the bench's own filter (`bench/filter`): how many, in which mode.
    fn bench_filters(self) -> Option<(usize, &'static str)> {
        match self {
            Chain::OneEmpty => Some((1, "empty")),
            Chain::ThreeEmpty => Some((3, "empty")),
            Chain::CalloutGrpcStream => Some((1, "grpc-stream")),
            Chain::CalloutHttpCall => Some((1, "http-call")),
            Chain::Probe(mode) => Some((1, mode)),
            _ => None,
        }
    }

    /// Which of our filters stay in the chain (None: all of them).
    fn keep(self) -> Option<&'static [&'static str]> {
        match self {
            Chain::AuthOnly => Some(&["edge.auth"]),
            Chain::TranscoderOnly => Some(&["edge.transcoder", "envoy.filters.http.buffer"]),
            Chain::AccessLogOnly => Some(&["edge.access-log"]),
            Chain::RouterOnly => Some(&[]),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    HotRead,
    Write,
    Reject,
    /// `catalog.CatalogService/GetItem` by a gRPC client through Envoy (pass-through), with a
    /// token: one route and one backend every chain can serve.
    GrpcRead,
    /// `GET /catalog/items?page_size=N` (public): the response grows with N.
    List(u32),
    /// The hot read by many different users, each with their own valid token.
    ManyUsers,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::HotRead => "GET /catalog/items/{id} (token)",
            Route::Write => "POST /catalog/items (token)",
            Route::Reject => "POST /catalog/items (no token: 401)",
            Route::GrpcRead => "gRPC GetItem through Envoy (token)",
            Route::List(10) => "GET /catalog/items?page_size=10",
            Route::List(100) => "GET /catalog/items?page_size=100",
            Route::List(_) => "GET /catalog/items?page_size=1000",
            Route::ManyUsers => "GET /catalog/items/{id}, 100k users (a token each)",
        }
    }
}

/// Page sizes of the response-size slope (1000 items are seeded for it).
const SLOPE_ITEMS: [u32; 3] = [10, 100, 1000];

/// The chains the decomposition compares on `Route::GrpcRead`, cheapest first.
const DECOMPOSITION: [Chain; 8] = [
    Chain::RouterOnly,
    Chain::OneEmpty,
    Chain::ThreeEmpty,
    Chain::AccessLogOnly,
    Chain::AuthOnly,
    Chain::TranscoderOnly,
    Chain::Wasm,
    Chain::Native,
];

struct Plan {
    rounds: usize,
    /// Distinct users (a token each) of `Route::ManyUsers`.
    users: usize,
    warmup: StdDuration,
    measure: StdDuration,
    /// (chain, route, connections) to run, per round.
    cases: Vec<(Chain, Route, usize)>,
    /// How long to load each chain before reading its RSS at two workers, and which chains;
    /// `None`: not measured.
    memory: Option<(StdDuration, &'static [Chain])>,
}

/// The whole configurations, whose RSS the target compares.
const MEMORY_WHOLE: &[Chain] = &[Chain::RouterOnly, Chain::Native, Chain::Wasm];

/// The whole configurations and their parts, to see where the wasm chain's memory goes.
const MEMORY_PARTS: &[Chain] = &[
    Chain::RouterOnly,
    Chain::Native,
    Chain::Wasm,
    Chain::OneEmpty,
    Chain::ThreeEmpty,
    Chain::AuthOnly,
    Chain::TranscoderOnly,
    Chain::AccessLogOnly,
];

fn full_plan() -> Plan {
    let mut cases = Vec::new();
    for connections in [1, 16, 64] {
        for chain in [Chain::Direct, Chain::Native, Chain::Wasm] {
            cases.push((chain, Route::HotRead, connections));
        }
    }
    for chain in [Chain::AuthOnly, Chain::TranscoderOnly, Chain::AccessLogOnly] {
        cases.push((chain, Route::HotRead, 16));
    }
    // The decomposition: every chain on the same gRPC route and backend, and the bare
    // callout mechanisms on the JSON read (they answer locally, as the transcoder does).
    for chain in DECOMPOSITION {
        cases.push((chain, Route::GrpcRead, 16));
    }
    for chain in [Chain::CalloutGrpcStream, Chain::CalloutHttpCall] {
        cases.push((chain, Route::HotRead, 16));
    }
    // Cost as work grows: response size, and policy size.
    for items in SLOPE_ITEMS {
        for chain in [Chain::Wasm, Chain::Native] {
            cases.push((chain, Route::List(items), 16));
        }
    }
    for chain in [
        Chain::WasmLargePolicy,
        Chain::NativeLargePolicy,
        Chain::WasmManyRoutes,
        Chain::NativeManyRoutes,
    ] {
        cases.push((chain, Route::HotRead, 16));
    }
    for chain in [Chain::Wasm, Chain::Native] {
        cases.push((chain, Route::ManyUsers, 16));
    }
    // What tracing adds: latency at one connection, Envoy CPU at 16.
    for connections in [1, 16] {
        for chain in [Chain::WasmTraced, Chain::NativeTraced] {
            cases.push((chain, Route::HotRead, connections));
        }
    }
    for route in [Route::Write, Route::Reject] {
        for connections in [1, 16, 64] {
            for chain in [Chain::Native, Chain::Wasm] {
                cases.push((chain, route, connections));
            }
        }
    }
    // 3 rounds × 2.5 s per case, plus a fresh edge per chain and round: about 6 minutes, so
    // that `make bench` with its wasm and release builds stays under 10 minutes here.
    Plan {
        rounds: 3,
        users: 100_000,
        warmup: StdDuration::from_millis(500),
        measure: StdDuration::from_millis(2000),
        cases,
        memory: Some((StdDuration::from_secs(2), MEMORY_PARTS)),
    }
}

fn smoke_plan() -> Plan {
    let mut plan = full_plan();
    plan.cases
        .retain(|(_, _, connections)| *connections != 1 && *connections != 64);
    plan.cases.iter_mut().for_each(|case| case.2 = 2);
    Plan {
        rounds: 1,
        // Signing 100k tokens in a debug build would take minutes; the smoke checks answers.
        users: 200,
        warmup: StdDuration::from_millis(200),
        measure: StdDuration::from_millis(800),
        cases: plan.cases,
        memory: Some((StdDuration::from_secs(1), MEMORY_WHOLE)),
    }
}

/// The bench's policy: reads need a token too, so the hot read pays for verification in both
/// chains (derived from the same edge.json, so the chains enforce the same rules).
fn bench_config(config: &mut edgectl::EdgeConfig, collector: Option<&str>) {
    // Like for like: the native chain has no CORS, mesh-policy (RBAC), rollout or rate limit
    // either (and one user's load would exceed any sane per-user limit). The acl lookup stays:
    // it is one shared-data read on writes, part of what our chain does. Tracing only where
    // the chain says so, both chains alike.
    match (collector, config.tracing.as_mut()) {
        (Some(collector), Some(tracing)) => tracing.collector = collector.to_string(),
        _ => config.tracing = None,
    }
    config.cors = None;
    config.authorization.clear();
    config.rollouts.clear();
    config.rate_limits.clear();
    if let Some(rules) = config.auth["rules"].as_array_mut() {
        rules.insert(
            0,
            json!({"methods": ["GET"], "path": "/catalog/items/*", "policy": "authenticated"}),
        );
        rules.insert(
            0,
            json!({"path": "/catalog.CatalogService/GetItem", "policy": "authenticated"}),
        );
    }
}

/// `count` policy rules ahead of the real ones, none matching the bench's requests: every
/// request is checked against all of them first.
fn add_rules(config: &mut edgectl::EdgeConfig, count: usize) {
    if let Some(rules) = config.auth["rules"].as_array_mut() {
        for n in 0..count {
            rules.insert(
                0,
                json!({"methods": ["GET"], "path": format!("/bench/policy/{n}/*"), "policy": "authenticated"}),
            );
        }
    }
}

/// HTTP bindings added for the route-table slope.
const EXTRA_BINDINGS: usize = 1000;

/// The service the extra bindings belong to (never called; requests still go to catalog).
const ROUTE_TABLE_SERVICE: &str = "bench.routes.RouteTableService";

/// The platform's descriptor set plus [`ROUTE_TABLE_SERVICE`] with `count` methods, each with
/// its own `google.api.http` binding: a route table that much larger, for both transcoders.
fn descriptor_with_bindings(count: usize, dir: &Path) -> Vec<u8> {
    let mut proto = String::from(
        "syntax = \"proto3\";\npackage bench.routes;\nimport \"google/api/annotations.proto\";\nimport \"platform/catalog.proto\";\nservice RouteTableService {\n",
    );
    for n in 0..count {
        proto.push_str(&format!(
            "  rpc Get{n}(catalog.GetItemRequest) returns (catalog.GetItemResponse) {{\n    option (google.api.http) = {{ get: \"/bench/routes/{n}/items/{{id}}\" }};\n  }}\n"
        ));
    }
    proto.push_str("}\n");
    std::fs::write(dir.join("bench_routes.proto"), proto).expect("write bench_routes.proto");
    let proto_root = edge_e2e::workspace_root().join("proto");
    let platform: Vec<String> = std::fs::read_dir(proto_root.join("platform"))
        .expect("proto/platform")
        .filter_map(|entry| entry.ok())
        .map(|entry| format!("platform/{}", entry.file_name().to_string_lossy()))
        .filter(|name| name.ends_with(".proto"))
        .collect();
    let mut compiler = protox::Compiler::new([proto_root, dir.to_path_buf()]).expect("protox");
    compiler.include_imports(true);
    compiler
        .open_files(
            platform
                .iter()
                .map(String::as_str)
                .chain(["bench_routes.proto"]),
        )
        .expect("compile the bench's bindings");
    compiler.encode_file_descriptor_set()
}

/// Gives the chain's transcoder (ours or Envoy's) `descriptor_set` and [`ROUTE_TABLE_SERVICE`]
/// to serve, on the catalog cluster.
fn add_bindings(bootstrap: &mut Value, descriptor_set: &[u8]) {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(descriptor_set);
    let filters = bootstrap
        .pointer_mut(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .and_then(Value::as_array_mut)
        .expect("http_filters");
    for filter in filters {
        match filter["name"].as_str().unwrap_or_default() {
            "edge.transcoder" => {
                let value = filter
                    .pointer_mut("/typed_config/config/configuration/value")
                    .expect("the transcoder's configuration");
                let mut config: Value =
                    serde_json::from_str(value.as_str().expect("JSON text")).expect("JSON");
                config["descriptor_set"] = json!(encoded);
                config["services"][ROUTE_TABLE_SERVICE] = json!("catalog");
                *value = json!(config.to_string());
            }
            "envoy.filters.http.grpc_json_transcoder" => {
                let config = &mut filter["typed_config"];
                config["proto_descriptor_bin"] = json!(encoded);
                config["services"]
                    .as_array_mut()
                    .expect("services")
                    .push(json!(ROUTE_TABLE_SERVICE));
            }
            _ => {}
        }
    }
}

fn jwks_from_key_dir(dir: &Path) -> String {
    let keys = dir.join("keys");
    let kid = std::fs::read_to_string(keys.join("current")).expect("current key");
    let pem = std::fs::read_to_string(keys.join(format!("{}.pem", kid.trim()))).expect("key");
    let key = ES256KeyPair::from_pem(&pem)
        .expect("ES256 key")
        .with_key_id(kid.trim());
    let jwk: Value = serde_json::from_str(&key.public_key().to_jwk()).expect("JWK");
    json!({ "keys": [jwk] }).to_string()
}

/// Where traced chains export: one receiver for the whole run.
static TRACE_RECEIVER: tokio::sync::OnceCell<TraceReceiver> = tokio::sync::OnceCell::const_new();

async fn start(chain: Chain) -> Edge {
    start_with_workers(chain, 1).await
}

async fn start_with_workers(chain: Chain, workers: usize) -> Edge {
    start_under(chain, workers, &[]).await
}

/// Starts `chain` with Envoy run under `wrapper` (a tool's command line; empty: none).
async fn start_under(chain: Chain, workers: usize, wrapper: &[String]) -> Edge {
    let root = edge_e2e::workspace_root();
    let collector = if chain.traced() {
        Some(
            TRACE_RECEIVER
                .get_or_init(TraceReceiver::start)
                .await
                .address
                .clone(),
        )
    } else {
        None
    };
    let collector_for_bootstrap = collector.clone();
    Edge::start_with(Options {
        envoy: Launch {
            cpu: Some(0),
            wrapper: wrapper.to_vec(),
            flags: Vec::new(),
        },
        workers,
        customize: Box::new(move |config| {
            bench_config(config, collector.as_deref());
            if chain.large_policy() {
                add_rules(config, 1000);
            }
        }),
        wait_for_keys: matches!(
            chain,
            Chain::Native
                | Chain::Wasm
                | Chain::AuthOnly
                | Chain::WasmLargePolicy
                | Chain::NativeLargePolicy
                | Chain::WasmTraced
                | Chain::NativeTraced
                | Chain::WasmManyRoutes
                | Chain::NativeManyRoutes
        ),
        bootstrap: Box::new(move |bootstrap, dir| {
            let mut config = edgectl::EdgeConfig::load(&root.join("envoy/edge.json")).expect("edge.json");
            bench_config(&mut config, collector_for_bootstrap.as_deref());
            if chain.large_policy() {
                add_rules(&mut config, 1000);
            }
            if chain.native() {
                let log = dir.join("native-access.log").display().to_string();
                *bootstrap = config
                    .native_bootstrap(bootstrap.clone(), &jwks_from_key_dir(dir), &log)
                    .expect("native bootstrap");
                if chain.many_routes() {
                    add_bindings(bootstrap, &descriptor_with_bindings(EXTRA_BINDINGS, dir));
                }
            } else if chain.many_routes() {
                add_bindings(bootstrap, &descriptor_with_bindings(EXTRA_BINDINGS, dir));
            } else if let Some((count, mode)) = chain.bench_filters() {
                let wasm_dir = Edge::wasm_dir().display().to_string();
                let mut filters: Vec<Value> = (0..count)
                    .map(|n| {
                        // One VM each, as each of our filters has its own.
                        let mut filter = edgectl::wasm_filter("bench", &wasm_dir, &json!(mode));
                        filter["name"] = json!(format!("edge.bench-{n}"));
                        filter["typed_config"]["config"]["vm_config"]["vm_id"] = json!(format!("bench-{n}"));
                        filter
                    })
                    .collect();
                filters.push(edgectl::router_filter());
                *bootstrap
                    .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters")
                    .expect("http_filters") = json!(filters);
            } else if let Some(keep) = chain.keep() {
                let filters = bootstrap
                    .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters")
                    .and_then(Value::as_array_mut)
                    .expect("http_filters");
                filters.retain(|f| {
                    let name = f["name"].as_str().unwrap_or_default();
                    keep.contains(&name) || name == "envoy.filters.http.router"
                });
            }
        }),
        ..Options::default()
    })
    .await
}

/// Requests counted per case by `--instructions` (each runs under callgrind, ~50× slower).
const INSTRUCTION_REQUESTS: u64 = 300;

const MEMORY_TITLE: &str = "Memory at two workers";

/// Envoy's RSS with two workers (the issue's memory target is set there: each Wasm filter has
/// a VM per worker besides the main thread's), after load on 16 connections has reached both
/// workers, for each of `chains`. The load's answers are checked like every case's. Envoy's
/// `/memory` splits the heap: what is in use, and what tcmalloc holds free (its page heap and
/// thread caches); the rest of the RSS is outside tcmalloc (V8's code space, the Wasm linear
/// memories, stacks).
async fn memory_at_two_workers(load: StdDuration, chains: &[Chain]) -> Result<String, String> {
    let mut rows = Vec::new();
    for &chain in chains {
        let edge = start_with_workers(chain, 2).await;
        let token = token(&edge).await;
        let run =
            load::grpc_get_item(&edge.base_url, MOBILE_PHONE_ID, Some(&token), 16, load).await;
        run.check(&format!("{} at 2 workers", chain.name()))?;
        // Envoy counts each worker's connections: both must have served some.
        let per_worker = edge
            .stats(r"^listener\..*\.worker_[0-9]+\.downstream_cx_total$")
            .await;
        let served = per_worker.iter().filter(|(_, count)| *count > 0).count();
        if served < 2 {
            return Err(format!(
                "{} at 2 workers: only {served} worker(s) got connections: {per_worker:?}",
                chain.name()
            ));
        }
        let mib = edge_e2e::process_rss_kib(edge.envoy_pid()) as f64 / 1024.0;
        let heap = tcmalloc_heap(&edge).await?;
        eprintln!(
            "2 workers: {:<45} RSS {mib:.0} MB after {} requests (heap in use {:.0} MB, held free {:.0} MB)",
            chain.name(),
            run.requests,
            heap.in_use,
            heap.held_free
        );
        rows.push((chain, mib, heap));
    }
    let native = rows
        .iter()
        .find(|(c, ..)| *c == Chain::Native)
        .map_or(0.0, |(_, mib, _)| *mib);
    let mut out = format!(
        "\n### {MEMORY_TITLE}\n\nEnvoy RSS with `--concurrency 2` after a gRPC client's `GetItem` with a token on 16 connections (the decomposition's route, which every configuration serves) has reached both workers. The target: the wasm chain at most 40 MB over the native one. From Envoy's `/memory`: the heap tcmalloc has handed out and still counts in use, and the free memory it holds (page heap and thread caches) without returning it to the system; the rest of the RSS is outside tcmalloc (V8's code space, the Wasm linear memories, stacks).\n\n| configuration | Envoy RSS MB | over native | heap in use MB | heap held free MB |\n|---|---:|---:|---:|---:|\n",
    );
    for (chain, mib, heap) in &rows {
        let _ = writeln!(
            out,
            "| {} | {mib:.0} | {:+.0} | {:.0} | {:.0} |",
            chain.name(),
            mib - native,
            heap.in_use,
            heap.held_free
        );
    }
    Ok(out)
}

/// tcmalloc's split of Envoy's heap, in MB.
struct Heap {
    in_use: f64,
    held_free: f64,
}

async fn tcmalloc_heap(edge: &Edge) -> Result<Heap, String> {
    let memory: Value = edge
        .http
        .get(format!("{}/memory", edge.admin_url))
        .send()
        .await
        .map_err(|e| format!("/memory: {e}"))?
        .json()
        .await
        .map_err(|e| format!("/memory: {e}"))?;
    // Envoy prints the counts as JSON strings.
    let mb = |field: &str| -> Result<f64, String> {
        memory[field]
            .as_str()
            .and_then(|n| n.parse::<f64>().ok())
            .map(|bytes| bytes / (1024.0 * 1024.0))
            .ok_or_else(|| format!("/memory has no {field}: {memory}"))
    };
    Ok(Heap {
        in_use: mb("allocated")?,
        held_free: mb("pageheap_free")? + mb("total_thread_cache")?,
    })
}

/// `count` valid tokens, one per made-up user, signed with the authority's current key (as
/// the authority would sign them).
fn many_tokens(edge: &Edge, count: usize) -> std::sync::Arc<Vec<String>> {
    let key = edge.signing_key();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tokens = (0..count)
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
async fn token(edge: &Edge) -> String {
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

fn request(route: Route, token: &str) -> HttpRequest {
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
struct Sample {
    run: Run,
    envoy_cpu_us_per_request: Option<f64>,
    rss_kb: Option<(u64, u64)>,
    steal_percent: f64,
}

async fn measure(
    edge: &Edge,
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
    let mut http = request(route, token);
    if route == Route::ManyUsers {
        http.headers.clear();
        http.tokens = many_tokens(edge, plan.users);
    }
    if chain == Chain::Direct {
        direct(plan.warmup).await;
    } else if route == Route::GrpcRead {
        through_envoy(plan.warmup).await;
    } else {
        load::http(&edge.base_url, &http, connections, plan.warmup).await;
    }
    let pid = edge.envoy_pid();
    let (rss_before, ticks_before, totals_before) = (
        edge_e2e::process_rss_kib(pid),
        edge_e2e::process_cpu_ticks(pid),
        cpu_totals(),
    );
    let run = if chain == Chain::Direct {
        direct(plan.measure).await
    } else if route == Route::GrpcRead {
        through_envoy(plan.measure).await
    } else {
        load::http(&edge.base_url, &http, connections, plan.measure).await
    };
    let (ticks_after, totals_after) = (edge_e2e::process_cpu_ticks(pid), cpu_totals());
    let all = totals_after.0.saturating_sub(totals_before.0).max(1) as f64;
    let steal_percent = 100.0 * totals_after.1.saturating_sub(totals_before.1) as f64 / all;
    let envoy = chain != Chain::Direct;
    Sample {
        envoy_cpu_us_per_request: envoy.then(|| {
            (ticks_after - ticks_before) as f64 / ticks_per_second * 1e6
                / run.requests.max(1) as f64
        }),
        rss_kb: envoy.then(|| (rss_before, edge_e2e::process_rss_kib(pid))),
        run,
        steal_percent,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

type Results = BTreeMap<(Route, usize, Chain), Vec<Sample>>;

fn spread(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> (f64, f64, f64) {
    let mut values: Vec<f64> = samples.iter().map(value).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    (median(&mut values), min, max)
}

fn report(results: &Results, plan: &Plan) -> (String, Value) {
    let mut out = String::new();
    let _ = writeln!(out, "| route | conns | configuration | req/s median (min–max) | p50 ms | p90 ms | p99 ms | max ms | Envoy CPU s / 10k req | Envoy RSS MB before→after | steal % |");
    let _ = writeln!(
        out,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut json_rows = Vec::new();
    for ((route, connections, chain), samples) in results {
        let (rps, rps_min, rps_max) = spread(samples, |s| s.run.rps());
        let p = |q: f64| spread(samples, |s| s.run.ms(q)).0;
        let max = spread(samples, |s| s.run.max_ms()).0;
        let cpu = samples
            .iter()
            .any(|s| s.envoy_cpu_us_per_request.is_some())
            .then(|| spread(samples, |s| s.envoy_cpu_us_per_request.unwrap_or(0.0)).0);
        let rss = samples
            .first()
            .and_then(|s| s.rss_kb)
            .zip(samples.last().and_then(|s| s.rss_kb));
        let steal = spread(samples, |s| s.steal_percent).0;
        let _ = writeln!(
            out,
            "| {} | {connections} | {} | {rps:.0} ({rps_min:.0}–{rps_max:.0}) | {:.2} | {:.2} | {:.2} | {max:.1} | {} | {} | {steal:.0} |",
            route.name(),
            chain.name(),
            p(0.5),
            p(0.9),
            p(0.99),
            cpu.map_or("–".into(), |us| format!("{:.2}", us / 100.0)),
            rss.map_or("–".into(), |((before, _), (_, after))| format!("{:.0}→{:.0}", before as f64 / 1024.0, after as f64 / 1024.0)),
        );
        json_rows.push(json!({
            "route": route.name(), "connections": connections, "configuration": chain.name(),
            "rps_median": rps, "rps_min": rps_min, "rps_max": rps_max,
            "p50_ms": p(0.5), "p90_ms": p(0.9), "p99_ms": p(0.99), "max_ms": max,
            "envoy_cpu_us_per_request": cpu, "steal_percent": steal,
            "rounds": samples.len(),
            "unexpected_answers": samples.iter().map(|s| s.run.unexpected).sum::<u64>(),
        }));
    }
    let get = |route, connections, chain| results.get(&(route, connections, chain));
    let ratio = |numerator: Option<f64>, denominator: Option<f64>| match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => format!("{:.2}", n / d),
        _ => "–".into(),
    };
    let rps = |route, connections, chain| {
        get(route, connections, chain).map(|s| spread(s, |x| x.run.rps()).0)
    };
    let quantile = |route, connections, chain, q: f64| {
        get(route, connections, chain).map(|s| spread(s, |x| x.run.ms(q)).0)
    };
    let cpu = |route, connections, chain| {
        get(route, connections, chain)
            .map(|s| spread(s, |x| x.envoy_cpu_us_per_request.unwrap_or(0.0)).0)
    };
    let _ = writeln!(out, "\n| ratio | value | target |\n|---|---:|---|");
    for connections in [16, 64] {
        let _ = writeln!(
            out,
            "| wasm / native throughput, hot read, {connections} conns | {} | ≥ 0.95 |",
            ratio(
                rps(Route::HotRead, connections, Chain::Wasm),
                rps(Route::HotRead, connections, Chain::Native)
            )
        );
        let _ = writeln!(
            out,
            "| wasm / native p99, hot read, {connections} conns | {} | ≤ 1.2 |",
            ratio(
                quantile(Route::HotRead, connections, Chain::Wasm, 0.99),
                quantile(Route::HotRead, connections, Chain::Native, 0.99)
            )
        );
        let _ = writeln!(
            out,
            "| wasm / native Envoy CPU per request, hot read, {connections} conns | {} | |",
            ratio(
                cpu(Route::HotRead, connections, Chain::Wasm),
                cpu(Route::HotRead, connections, Chain::Native)
            )
        );
    }
    for connections in [1, 16] {
        let _ = writeln!(
            out,
            "| edge (wasm) / direct p50, hot read, {connections} conns | {} | ≤ 2 |",
            ratio(
                quantile(Route::HotRead, connections, Chain::Wasm, 0.5),
                quantile(Route::HotRead, connections, Chain::Direct, 0.5)
            )
        );
    }
    for route in [Route::Write, Route::Reject] {
        for connections in [1, 16, 64] {
            let _ = writeln!(
                out,
                "| wasm / native throughput, {}, {connections} conns | {} | |",
                route.name(),
                ratio(
                    rps(route, connections, Chain::Wasm),
                    rps(route, connections, Chain::Native)
                )
            );
        }
        let _ = writeln!(
            out,
            "| wasm / native Envoy CPU per request, {}, 16 conns | {} | |",
            route.name(),
            ratio(cpu(route, 16, Chain::Wasm), cpu(route, 16, Chain::Native))
        );
    }
    let cpu_spread = |route, chain| {
        get(route, 16, chain).map(|s| spread(s, |x| x.envoy_cpu_us_per_request.unwrap_or(0.0)))
    };
    if let Some((router, _, _)) = cpu_spread(Route::GrpcRead, Chain::RouterOnly) {
        let _ = writeln!(
            out,
            "\n### Decomposition: Envoy CPU per request, by component\n\nOne route and one backend for all (a gRPC client's `GetItem` with a token through Envoy to catalog, 16 connections; every filter sees the request, our transcoder and the native one pass it through), then the bare callout mechanisms on the JSON read (one fixed `GetItem` call to catalog and a fixed local reply, no parsing). µs of Envoy CPU per request, median of rounds (min–max).\n\n| configuration | route | µs / request | over router only |\n|---|---|---:|---:|"
        );
        let rows = DECOMPOSITION
            .iter()
            .map(|chain| (Route::GrpcRead, *chain))
            .chain([
                (Route::HotRead, Chain::CalloutGrpcStream),
                (Route::HotRead, Chain::CalloutHttpCall),
                (Route::HotRead, Chain::Wasm),
                (Route::HotRead, Chain::Native),
            ]);
        for (route, chain) in rows {
            if let Some((median, low, high)) = cpu_spread(route, chain) {
                let _ = writeln!(
                    out,
                    "| {} | {} | {median:.0} ({low:.0}–{high:.0}) | {:+.0} |",
                    chain.name(),
                    route.name(),
                    median - router
                );
            }
        }
    }
    let cpu_of = |route, chain| cpu_spread(route, chain).map(|(median, _, _)| median);
    let _ = writeln!(
        out,
        "\n### Cost as work grows\n\nEnvoy CPU µs per request at 16 connections (median of rounds).\n\n| work | wasm | native | wasm / native |\n|---|---:|---:|---:|"
    );
    for items in SLOPE_ITEMS {
        let (wasm, native) = (
            cpu_of(Route::List(items), Chain::Wasm),
            cpu_of(Route::List(items), Chain::Native),
        );
        let _ = writeln!(
            out,
            "| ListItems, {items} items | {} | {} | {} |",
            wasm.map_or("–".into(), |v| format!("{v:.0}")),
            native.map_or("–".into(), |v| format!("{v:.0}")),
            ratio(wasm, native)
        );
    }
    let per_item = |chain| {
        cpu_of(Route::List(1000), chain)
            .zip(cpu_of(Route::List(10), chain))
            .map(|(large, small)| (large - small) / 990.0)
    };
    let _ = writeln!(
        out,
        "| slope: µs per item | {} | {} | {} |",
        per_item(Chain::Wasm).map_or("–".into(), |v| format!("{v:.2}")),
        per_item(Chain::Native).map_or("–".into(), |v| format!("{v:.2}")),
        ratio(per_item(Chain::Wasm), per_item(Chain::Native))
    );
    // What the larger configuration adds to the hot read's Envoy CPU per request.
    let added_cpu = |small, large| {
        cpu_of(Route::HotRead, large)
            .zip(cpu_of(Route::HotRead, small))
            .map(|(l, s): (f64, f64)| l - s)
    };
    let users = |chain| {
        cpu_of(Route::HotRead, chain)
            .zip(cpu_of(Route::ManyUsers, chain))
            .map(|(one, many): (f64, f64)| format!("{one:.0} → {many:.0}"))
            .unwrap_or_else(|| "–".into())
    };
    let _ = writeln!(
        out,
        "| hot read: 1 user → 100k users, one token each (verified-token caches miss) | {} | {} | |",
        users(Chain::Wasm),
        users(Chain::Native)
    );
    let rss_after = |chain| {
        get(Route::HotRead, 16, chain).map(|s| {
            spread(s, |x| {
                x.rss_kb.map_or(0.0, |(_, after)| after as f64 / 1024.0)
            })
            .0
        })
    };
    let more_rss = |small, large| {
        rss_after(large)
            .zip(rss_after(small))
            .map(|(l, s): (f64, f64)| l - s)
    };
    let _ = writeln!(
        out,
        "| slope: µs per 1000 more HTTP bindings in the route table (hot read) | {} | {} | |",
        added_cpu(Chain::Wasm, Chain::WasmManyRoutes).map_or("–".into(), |v| format!("{v:+.0}")),
        added_cpu(Chain::Native, Chain::NativeManyRoutes)
            .map_or("–".into(), |v| format!("{v:+.0}")),
    );
    let _ = writeln!(
        out,
        "| Envoy RSS MB with 1000 more HTTP bindings | {} | {} | |",
        more_rss(Chain::Wasm, Chain::WasmManyRoutes).map_or("–".into(), |v| format!("{v:+.1}")),
        more_rss(Chain::Native, Chain::NativeManyRoutes)
            .map_or("–".into(), |v| format!("{v:+.1}")),
    );
    let _ = writeln!(
        out,
        "| slope: µs per 1000 more policy rules (hot read) | {} | {} | |",
        added_cpu(Chain::Wasm, Chain::WasmLargePolicy).map_or("–".into(), |v| format!("{v:+.0}")),
        added_cpu(Chain::Native, Chain::NativeLargePolicy)
            .map_or("–".into(), |v| format!("{v:+.0}")),
    );
    let _ = writeln!(
        out,
        "\n### What tracing adds\n\nThe hot read with edge.json's `tracing` (Envoy's OpenTelemetry tracer, every request sampled, spans exported over OTLP/gRPC to a receiver in the bench; the services do not export here) against the same chain without it. Latency: p50 at 1 connection; Envoy CPU: µs per request at 16 connections (medians of rounds).\n\n| chain | p50 ms off → on | added µs | CPU µs off → on | added µs |\n|---|---:|---:|---:|---:|"
    );
    for (off, on) in [
        (Chain::Wasm, Chain::WasmTraced),
        (Chain::Native, Chain::NativeTraced),
    ] {
        let (p50_off, p50_on) = (
            quantile(Route::HotRead, 1, off, 0.5),
            quantile(Route::HotRead, 1, on, 0.5),
        );
        let (cpu_off, cpu_on) = (cpu_of(Route::HotRead, off), cpu_of(Route::HotRead, on));
        let pair = |a: Option<f64>, b: Option<f64>, digits: usize| match (a, b) {
            (Some(a), Some(b)) => format!("{a:.digits$} → {b:.digits$}"),
            _ => "–".into(),
        };
        let added = |a: Option<f64>, b: Option<f64>, scale: f64| {
            a.zip(b)
                .map_or("–".into(), |(a, b)| format!("{:+.0}", (b - a) * scale))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            on.name(),
            pair(p50_off, p50_on, 3),
            added(p50_off, p50_on, 1000.0),
            pair(cpu_off, cpu_on, 0),
            added(cpu_off, cpu_on, 1.0),
        );
    }
    let _ = writeln!(
        out,
        "\nRounds: {}; each run {} s warm-up (discarded) + {} s measured.",
        plan.rounds,
        plan.warmup.as_secs_f64(),
        plan.measure.as_secs_f64()
    );
    (out, json!({ "rows": json_rows }))
}

/// The host-side costs of the filters' pure cores, as a Markdown table.
fn core_table(timings: &[core_costs::Timing]) -> String {
    let mut table =
        String::from("| filter core, natively on the host (one call) | µs |\n|---|---|\n");
    for timing in timings {
        let _ = writeln!(
            table,
            "| {} | {:.2} |",
            timing.name,
            timing.ns_per_call / 1000.0
        );
    }
    table
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    format!("{cores} vCPU ({model}), {memory}")
}

fn wasm_sizes() -> String {
    ["auth", "transcoder", "access-log"]
        .iter()
        .map(|name| {
            let size = std::fs::metadata(Edge::wasm_dir().join(format!("{name}.wasm")))
                .map_or(0, |m| m.len());
            format!("{name}.wasm {:.0} KiB", size as f64 / 1024.0)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn bench(plan: Plan, smoke: bool) -> Result<(), String> {
    let mut chains: Vec<Chain> = plan.cases.iter().map(|c| c.0).collect();
    chains.sort();
    chains.dedup();
    let mut results: Results = BTreeMap::new();
    for round in 0..plan.rounds {
        // Rotate the order each round, so no configuration always runs on a warmer machine.
        let mut order = chains.clone();
        let shift = round % order.len().max(1);
        order.rotate_left(shift);
        for chain in order {
            let edge = start(chain).await;
            let token = token(&edge).await;
            if plan
                .cases
                .iter()
                .any(|(c, route, _)| *c == chain && matches!(route, Route::List(_)))
            {
                edge.seed_items(1000, "bench", |n| format!("Bench item {n}"))
                    .await;
            }
            for &(case_chain, route, connections) in &plan.cases {
                if case_chain != chain {
                    continue;
                }
                let sample = measure(&edge, chain, route, connections, &plan, &token).await;
                eprintln!(
                    "round {} {:<55} {:<38} c={connections:<3} {:>7.0} req/s p50 {:.2} ms p99 {:.2} ms{}",
                    round + 1,
                    chain.name(),
                    route.name(),
                    sample.run.rps(),
                    sample.run.ms(0.5),
                    sample.run.ms(0.99),
                    sample.envoy_cpu_us_per_request.map_or(String::new(), |us| format!(" envoy {us:.0} µs/req")),
                );
                results
                    .entry((route, connections, chain))
                    .or_default()
                    .push(sample);
            }
        }
    }
    let wrong: Vec<String> = results
        .iter()
        .filter(|(_, samples)| samples.iter().any(|s| !s.run.all_correct()))
        .map(|((route, connections, chain), samples)| {
            let bad: u64 = samples.iter().map(|s| s.run.unexpected).sum();
            format!(
                "{} / {} / {connections} conns: {bad} unexpected answers",
                chain.name(),
                route.name()
            )
        })
        .collect();
    let (table, json) = report(&results, &plan);
    println!("{table}");
    if !wrong.is_empty() {
        return Err(format!(
            "some configurations answered wrongly:\n{}",
            wrong.join("\n")
        ));
    }
    let memory = match plan.memory {
        Some((load, chains)) => memory_at_two_workers(load, chains).await?,
        None => String::new(),
    };
    println!("{memory}");
    if smoke {
        println!(
            "bench smoke: {} configurations answered correctly",
            results.len()
        );
        return Ok(());
    }
    let dir = edge_e2e::workspace_root().join("bench");
    let when = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = core_costs::profile(100_000, true)?;
    // The measured before/after of each change kept (kept by hand, from `--only` runs).
    let changes = std::fs::read_to_string(dir.join("CHANGES.md"))
        .map(|text| {
            format!(
                "\n## Changes kept, before and after (bench/CHANGES.md)\n\n{}",
                text.split_once('\n')
                    .map_or("", |(_, rest)| rest)
                    .trim_start()
            )
        })
        .unwrap_or_default();
    let text = format!(
        "# Benchmark results\n\nWritten by `make bench` on {when}.\n\nMachine: {}. Envoy 1.40.0, one worker pinned to CPU 0; load generator (closed loop, HTTP/1.1 keep-alive or h2 gRPC) and release-built services on CPU 1; loopback only. Filters: {}.\n\n{table}{memory}\n## The filters' own Rust, natively\n\nThe pure cores on the same inputs as the hot read (release build, host CPU; inside V8 expect a few times more). Compare with the Envoy CPU per request above: what is not here is Envoy's (host calls, the gRPC callout, the local reply).\n\n{}",
        machine(),
        wasm_sizes(),
        core_table(&cores)
    ) + &changes;
    std::fs::write(dir.join("RESULTS.md"), text).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    println!("wrote bench/RESULTS.md and bench/results.json");
    Ok(())
}

async fn soak(total: u64) -> Result<(), String> {
    let edge = start(Chain::Wasm).await;
    let token = token(&edge).await;
    let request = request(Route::HotRead, &token);
    let (mut sent, mut next_mark, mut baseline) = (0u64, 100_000u64, None::<u64>);
    let started = std::time::Instant::now();
    let mut report =
        String::from("| requests | Envoy RSS MB | since warm-up |\n|---:|---:|---:|\n");
    let outcome = loop {
        if sent >= total {
            break Ok(());
        }
        let run = load::http(&edge.base_url, &request, 16, StdDuration::from_secs(5)).await;
        sent += run.requests;
        if run.unexpected > 0 {
            break Err(format!(
                "{} wrong answers by {sent} requests",
                run.unexpected
            ));
        }
        let mut grew = None;
        while sent >= next_mark && next_mark <= total {
            let rss = edge_e2e::process_rss_kib(edge.envoy_pid());
            let growth = baseline.map_or(0.0, |b| 100.0 * (rss as f64 - b as f64) / b as f64);
            let line = format!(
                "| {next_mark} | {:.1} | {growth:+.1}% |",
                rss as f64 / 1024.0
            );
            println!("{line}");
            report.push_str(&line);
            report.push('\n');
            match baseline {
                Some(base) if rss as f64 > base as f64 * 1.10 => {
                    grew = Some(format!("Envoy RSS grew {growth:.1}% after warm-up"));
                }
                Some(_) => {}
                None => baseline = Some(rss),
            }
            next_mark += 100_000;
        }
        if let Some(error) = grew {
            break Err(error);
        }
    };
    let verdict = match &outcome {
        Ok(()) => format!("**Passed**: {sent} requests, every one answered correctly; RSS within 10% of the first reading."),
        Err(error) => format!("**Failed**: {error}."),
    };
    let text = format!(
        "# Soak\n\nWritten by `make soak`: the hot read through the wasm chain, 16 connections, {:.0} s. Machine: {}.\n\n{verdict}\n\n{report}",
        started.elapsed().as_secs_f64(),
        machine()
    );
    std::fs::write(edge_e2e::workspace_root().join("bench/SOAK.md"), text)
        .map_err(|e| e.to_string())?;
    println!("wrote bench/SOAK.md");
    outcome
}

/// Where Envoy's CPU goes under the hot read, by `perf` (sampling the pinned Envoy): by
/// shared object (the Envoy binary, the V8-compiled Wasm in anonymous memory, libc, the
/// kernel) and by symbol, for the wasm chain and the native one. Writes bench/PROFILE.md.
async fn perf_profile(seconds: u64) -> Result<(), String> {
    let mut text = String::from(
        "# Where Envoy's CPU goes (perf)\n\nWritten by `make profile`: the hot read (16 connections) through each chain, `perf record -g` on the Envoy process for a fixed time. Code that V8 compiled from our .wasm has no symbols: it shows as anonymous memory (`[unknown]`/`//anon`/`[JIT]`).\n",
    );
    for chain in [Chain::Wasm, Chain::Native] {
        let edge = start(chain).await;
        let token = token(&edge).await;
        let request = request(Route::HotRead, &token);
        load::http(&edge.base_url, &request, 16, StdDuration::from_secs(1)).await;
        let data = edge_e2e::workspace_root().join(format!("target/perf-{chain:?}.data"));
        let recorder = std::process::Command::new("perf")
            .args(["record", "-F", "499", "-g", "-o"])
            .arg(&data)
            .args([
                "-p",
                &edge.envoy_pid().to_string(),
                "--",
                "sleep",
                &seconds.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("perf record: {e} (install linux-perf)"))?;
        let run = load::http(
            &edge.base_url,
            &request,
            16,
            StdDuration::from_secs(seconds),
        )
        .await;
        let recorded = recorder.wait_with_output().map_err(|e| e.to_string())?;
        if !recorded.status.success() {
            return Err(format!("perf record failed ({})", recorded.status));
        }
        let report = |sort: &str| {
            std::process::Command::new("perf")
                .args([
                    "report",
                    "--no-children",
                    "--stdio",
                    "-g",
                    "none",
                    "--percent-limit",
                    "1",
                    "--sort",
                    sort,
                    "-i",
                ])
                .arg(&data)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .map_err(|e| e.to_string())
        };
        let _ = write!(
            text,
            "\n## {}\n\n{:.0} req/s while sampled.\n\nBy shared object:\n\n```\n{}\n```\n\nBy symbol (≥ 1%):\n\n```\n{}\n```\n",
            chain.name(),
            run.rps(),
            report("dso")?,
            report("dso,symbol")?
        );
    }
    let path = edge_e2e::workspace_root().join("bench/PROFILE.md");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    println!("wrote bench/PROFILE.md");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("--smoke") => bench(smoke_plan(), true).await,
        // Only the cases whose configuration or route names contain TEXT, printed, nothing
        // written: for trying a change to one component.
        Some("--only") => match args.get(1) {
            Some(text) => {
                let mut plan = full_plan();
                plan.cases.retain(|(chain, route, _)| {
                    chain.name().contains(text.as_str()) || route.name().contains(text.as_str())
                });
                plan.memory = plan.memory.filter(|_| MEMORY_TITLE.contains(text.as_str()));
                bench(plan, true).await
            }
            None => Err("--only needs a text to match".into()),
        },
        Some("--perf") => perf_profile(8).await,
        // Without TEXT every case, written to bench/INSTRUCTIONS.md; with it, only the cases
        // whose configuration or route contains TEXT, printed.
        Some("--instructions") => {
            let only = args.get(1).map_or("", String::as_str);
            instructions::report(INSTRUCTION_REQUESTS, only)
                .await
                .and_then(|text| {
                    println!("{text}");
                    if only.is_empty() {
                        let path = edge_e2e::workspace_root().join("bench/INSTRUCTIONS.md");
                        std::fs::write(&path, format!("# Instructions per request\n\nWritten by `make profile` (`edge-bench --instructions`).\n\n{text}"))
                            .map_err(|e| e.to_string())?;
                        println!("wrote bench/INSTRUCTIONS.md");
                    }
                    Ok(())
                })
        }
        // --core-hot leaves out the uncached ES256 verification (for callgrind: per-request
        // paths only).
        Some(mode @ ("--core" | "--core-hot")) => core_costs::profile(
            args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200_000),
            mode == "--core",
        )
        .map(|timings| println!("{}", core_table(&timings))),
        Some("--soak") => {
            soak(
                args.get(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1_000_000),
            )
            .await
        }
        None => bench(full_plan(), false).await,
        Some(other) => Err(format!(
            "unknown argument {other}; use --smoke, --only TEXT, --core [N], --core-hot [N], --perf, --instructions [TEXT] or --soak N"
        )),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
