//! What the bench compares and how each is started: the chains (Envoy configurations, and
//! calling catalog directly), the routes they serve, and the edge a chain runs in, with
//! edge.json's policy trimmed to what both full chains do and the chain's filters in Envoy's
//! bootstrap.

use edge_e2e::otlp::TraceReceiver;
use edge_e2e::{Edge, Launch, Options};
use edgectl::Target;
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Chain {
    Direct,
    Native,
    Wasm,
    /// Our three filters built as an Envoy dynamic module (`libedge_native.so`), from the same
    /// cores and configuration as `Wasm`.
    Module,
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
    /// grpc-gateway's generated reverse proxy with a golang-jwt check (`bench/grpc-gateway`),
    /// a Go process of its own in front of catalog: the peer a team would pick for JSON.
    GrpcGateway,
}

impl Chain {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Chain::Direct => "direct gRPC",
            Chain::Native => "native (jwt_authn + grpc_json_transcoder + file log)",
            Chain::Wasm => "wasm (access-log + auth + transcoder)",
            Chain::Module => "module (the same three filters as a dynamic module)",
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
            Chain::GrpcGateway => "grpc-gateway v2.34.0 + golang-jwt (Go process, not Envoy)",
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
            // Envoy stands by unused: the peer is its own proxy.
            Chain::RouterOnly | Chain::GrpcGateway => Some(&[]),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Route {
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
    pub(crate) fn name(self) -> &'static str {
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
pub(crate) const SLOPE_ITEMS: [u32; 3] = [10, 100, 1000];

/// The chains the decomposition compares on `Route::GrpcRead`, cheapest first.
pub(crate) const DECOMPOSITION: [Chain; 8] = [
    Chain::RouterOnly,
    Chain::OneEmpty,
    Chain::ThreeEmpty,
    Chain::AccessLogOnly,
    Chain::AuthOnly,
    Chain::TranscoderOnly,
    Chain::Wasm,
    Chain::Native,
];

/// The bench's policy: reads need a token too, so the hot read pays for verification in both
/// chains (derived from the same edge.json, so the chains enforce the same rules).
pub(crate) fn bench_config(config: &mut edgectl::EdgeConfig, collector: Option<&str>) {
    // Like for like: the native chain has no CORS, browser protocols (gRPC-Web and Connect:
    // three more Envoy filters on every request), mesh-policy (RBAC), rollout or rate limit
    // either (and one user's load would exceed any sane per-user limit). The acl lookup stays:
    // it is one shared-data read on writes, part of what our chain does. Tracing only where
    // the chain says so, both chains alike: untraced, our access log starts no `traceparent`
    // either, as Envoy starts no trace without a tracer.
    match (collector, config.tracing.as_mut()) {
        (Some(collector), Some(tracing)) => tracing.collector = collector.to_string(),
        _ => {
            config.tracing = None;
            config.access_log["generate_traceparent"] = json!(false);
        }
    }
    config.cors = None;
    config.web_protocols.clear();
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

/// A proxy that is not Envoy, in front of the chain's services: the grpc-gateway peer, pinned
/// like Envoy (CPU 0, one thread running Go code at a time, as Envoy's one worker).
pub(crate) struct Peer {
    child: std::process::Child,
    pub(crate) base_url: String,
}

impl Peer {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer `make bench` builds (`bench/grpc-gateway/build.sh`; `GRPC_GATEWAY_PEER_BIN` names
/// another), run beside `edge`'s services when `chain` is one; `None` for Envoy's chains.
pub(crate) fn start_peer(chain: Chain, edge: &Edge) -> Option<Peer> {
    use std::io::BufRead;
    if chain != Chain::GrpcGateway {
        return None;
    }
    let binary = std::env::var_os("GRPC_GATEWAY_PEER_BIN").map_or_else(
        || edge_e2e::workspace_root().join("target/tools/grpc-gateway-peer/peer"),
        std::path::PathBuf::from,
    );
    assert!(
        binary.exists(),
        "{} is missing: make bench builds it",
        binary.display()
    );
    let jwks = edge.dir.join("peer-jwks.json");
    std::fs::write(&jwks, jwks_from_key_dir(&edge.dir)).expect("write the peer's JWKS");
    let catalog = edge.service_url("catalog");
    let mut child = std::process::Command::new("taskset")
        .args(["-c", "0"])
        .arg(&binary)
        .arg("-catalog")
        .arg(catalog.trim_start_matches("http://"))
        .arg("-jwks")
        .arg(&jwks)
        .env("GOMAXPROCS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start the grpc-gateway peer");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the grpc-gateway peer said {line:?}"))
        .to_string();
    Some(Peer {
        child,
        base_url: format!("http://{addr}"),
    })
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

pub(crate) async fn start(chain: Chain) -> Edge {
    start_with_workers(chain, 1).await
}

pub(crate) async fn start_with_workers(chain: Chain, workers: usize) -> Edge {
    start_under(chain, workers, &[]).await
}

/// Starts `chain` with Envoy run under `wrapper` (a tool's command line; empty: none).
pub(crate) async fn start_under(chain: Chain, workers: usize, wrapper: &[String]) -> Edge {
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
                | Chain::Module
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
                let module = format!("{wasm_dir}/bench.wasm");
                let mut filters: Vec<Value> = (0..count)
                    .map(|n| {
                        // Same code, no vm_id: one VM for all, as our three filters share one.
                        let mut filter = edgectl::wasm_filter("bench", &wasm_dir, &json!(mode));
                        filter["name"] = json!(format!("edge.bench-{n}"));
                        filter["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = json!(module);
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
        target: if chain == Chain::Module {
            Target::Native
        } else {
            Target::Wasm
        },
        ..Options::default()
    })
    .await
}
