//! A whole edge for one test: the four services and Envoy with the filters' `.wasm` module, on
//! ports the OS picks (so test runs never collide), configured by `edgectl` from
//! `envoy/edge.json` exactly as `make run` is. Everything is stopped when the [`Edge`] drops.
//!
//! Binaries come from `EDGE_BIN_DIR` (default `target/debug`), filters from `EDGE_WASM_DIR`
//! (default `target/filters`), Envoy from `ENVOY_BIN`; `make test` builds and sets them all.
//! A missing piece fails the test with a message; nothing is skipped.

mod envoy;
mod istiod;
pub mod jaeger;
pub mod otlp;
mod postgres;

use edgectl::{EdgeConfig, FilterModule, MeshTopology, MeshVariant, Target, Topology};
pub use envoy::{envoy_binary, EnvoyProcess, Launch};
pub use istiod::{free_port, pick_istiod_ports, Istiod};
pub use postgres::Postgres;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const GOLDIE_ID: &str = "7c0cde05-4df0-47f4-94c4-978dd9f56e5c";
pub const MOBILE_PHONE_ID: &str = "e0e58243-4138-48e5-8aba-448a8888e2ff";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the native module's counts can take to reach Envoy's stats: held up to a second
/// (filters/native/src/access_log.rs), then the main thread's tick.
const COUNTS_SETTLE: Duration = Duration::from_millis(1500);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `envoy/edge.json`, as the edge starts from it.
pub fn edge_json() -> EdgeConfig {
    EdgeConfig::load(&workspace_root().join("envoy/edge.json")).expect("envoy/edge.json")
}

/// A directory for one test's files, removed by the caller when it passes.
pub fn test_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{kind}-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("create test directory");
    dir
}

fn from_env_or(variable: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(variable).map_or(default, PathBuf::from)
}

/// The API docs page as `make api-docs` builds it (Swagger UI), and playwright-core beside it.
pub fn api_docs_dir() -> PathBuf {
    require(
        &workspace_root().join("target/tools/api-docs"),
        "the API docs page",
    )
}

/// The storefront as `make run` serves it (`web/storefront/build.sh` builds it).
pub fn storefront_dir() -> PathBuf {
    require(
        &workspace_root().join("target/tools/storefront"),
        "the storefront page",
    )
}

/// A static site served on a free loopback port (Python's `http.server`, as `make run` serves
/// its pages), stopped when dropped however the test ends.
pub struct StaticSite {
    process: Child,
    /// `http://localhost:PORT`: a browser origin `cors` must allow.
    pub origin: String,
}

impl StaticSite {
    /// Serves `dir` on `port` (a free one, so that a test can allow its origin first).
    pub async fn start(dir: &Path, port: u16) -> StaticSite {
        let process = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let site = StaticSite {
            process,
            origin: format!("http://localhost:{port}"),
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the static server for {} did not start",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        site
    }
}

impl Drop for StaticSite {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A tool of the OpenAPI checks (`openapi-spec-validator`, `schemathesis`), from the virtualenv
/// `make test` installs (`EDGE_OPENAPI_TOOLS` names another `bin` directory).
pub fn openapi_tool(name: &str) -> PathBuf {
    let bin = from_env_or(
        "EDGE_OPENAPI_TOOLS",
        workspace_root().join("target/tools/openapi/bin"),
    );
    require(&bin.join(name), name)
}

/// The test-only dynamic module (`tests/native-probe`), as `make` builds it next to the
/// services' binaries.
pub fn native_probe_module() -> PathBuf {
    let bin_dir = from_env_or("EDGE_BIN_DIR", workspace_root().join("target/debug"));
    require(
        &bin_dir.join("libedge_native_probe.so"),
        "native probe module",
    )
}

/// grpcurl, as `make` builds it (`GRPCURL_BIN` names another).
pub fn grpcurl() -> PathBuf {
    let bin = from_env_or(
        "GRPCURL_BIN",
        workspace_root().join("target/tools/bin/grpcurl"),
    );
    require(&bin, "grpcurl")
}

/// Runs schemathesis against the edge at `base_url`, driven by the document it serves, with
/// `token` as the bearer, `examples` per operation and phase, its cache in `dir`: no 5xx, every
/// status, content type, header and body as documented, no documented route refused as
/// unrouted (`tests/openapi/checks.py`). The watch is left out: it lasts up to `wait_seconds`
/// by design. Returns whether it passed, and its output.
pub fn run_schemathesis(base_url: &str, token: &str, examples: &str, dir: &Path) -> (bool, String) {
    let run = std::process::Command::new(openapi_tool("schemathesis"))
        .args([
            "run",
            &format!("{base_url}/openapi.json"),
            "--url",
            base_url,
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", examples, "--seed", "1"])
        .args(["--request-timeout", "15", "--no-color"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance,documented_routes_are_served",
        ])
        .args(["--exclude-operation-id", "CatalogService_WatchItems"])
        .args(["--exclude-operation-id", "CatalogService_WatchItems_2"])
        .current_dir(dir)
        .env("PYTHONPATH", workspace_root().join("tests/openapi"))
        .env("SCHEMATHESIS_HOOKS", "checks")
        .output()
        .expect("run schemathesis");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    (run.status.success(), output)
}

/// schemathesis's own summary lines: operations selected and tested, cases generated and passed.
pub fn schemathesis_summary(output: &str) -> String {
    output
        .lines()
        .map(str::trim)
        .filter(|line| {
            line.starts_with("Selected:")
                || line.starts_with("Tested:")
                || line.ends_with("passed")
                || line.contains("failures")
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn require(path: &Path, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {} — run the tests with `make test`, which builds it",
        path.display()
    );
    path.to_path_buf()
}

/// A service process and the address it listens on.
struct Service {
    child: Child,
    addr: String,
    /// The program it runs (a second deployment runs another's: `catalog-v2` runs `catalog`).
    binary: String,
    /// The services it calls (edge.json's `calls`), told where they are when it starts.
    calls: Vec<String>,
}

/// A service never outlives its test, even when the test fails before the edge is up.
impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Edge {
    services: BTreeMap<String, Service>,
    /// Services whose database is not their SQLite file (kept for restarts).
    database_urls: BTreeMap<String, String>,
    /// Each service's extra environment: every service's (`Options::service_env`) and what
    /// edge.json gives it alone (`edgectl service-env NAME`), kept for restarts.
    own_env: BTreeMap<String, Vec<(String, String)>>,
    envoy: EnvoyProcess,
    /// The control plane the gateway takes its configuration from, when run through istiod,
    /// and where its files say things are.
    pub istiod: Option<(Istiod, MeshTopology)>,
    pub dir: PathBuf,
    pub base_url: String,
    pub admin_url: String,
    pub http: reqwest::Client,
    /// The filters' build this edge runs.
    pub module: FilterModule,
}

static RUN: AtomicUsize = AtomicUsize::new(0);

/// A change to the rendered Envoy bootstrap, given the test's directory.
pub type BootstrapEdit = Box<dyn FnOnce(&mut Value, &Path)>;

/// How a test wants its edge.
pub struct Options {
    /// Changes to `envoy/edge.json` for this test only (e.g. a shorter key refresh).
    pub customize: Box<dyn FnOnce(&mut EdgeConfig)>,
    /// Whether the authority is up when Envoy starts (false: the first key fetch fails).
    pub authority_up: bool,
    /// Changes to the rendered Envoy bootstrap (e.g. an extra test-only filter).
    pub bootstrap: BootstrapEdit,
    /// Envoy worker threads (each has its own Wasm VMs).
    pub workers: usize,
    /// How Envoy is run (a CPU to pin it to, a tool to run it under).
    pub envoy: Launch,
    /// Wait for the auth filter's keys before returning (chains without auth have none).
    pub wait_for_keys: bool,
    /// `DATABASE_URL` of a service instead of its SQLite file (e.g. PostgreSQL).
    pub database_urls: BTreeMap<String, String>,
    /// Envoy discovers the filters' configurations from watched files (ECDS), so that
    /// [`Edge::apply`] changes them live; otherwise they are inline in the bootstrap.
    pub live_config: bool,
    /// Extra environment of every service (e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub service_env: Vec<(String, String)>,
    /// Envoy runs as Istio's ingress gateway, configured by a real istiod from `istio/` (the
    /// WasmPlugin or the EnvoyFilter variant) instead of the local bootstrap. Default: the
    /// `EDGE_MESH` environment variable (`istiod`, `istiod-envoyfilter`), as `make test` sets it.
    pub mesh: Option<MeshVariant>,
    /// Which build of the filters Envoy loads (default: `EDGE_TARGET`, else Wasm).
    pub target: Target,
}

/// The mesh `EDGE_MESH` asks for: `istiod` (the WasmPlugin variant) or `istiod-envoyfilter`.
pub fn mesh_from_env() -> Option<MeshVariant> {
    match std::env::var("EDGE_MESH").as_deref() {
        Ok("istiod") => Some(MeshVariant::WasmPlugin),
        Ok("istiod-envoyfilter") => Some(MeshVariant::EnvoyFilter),
        Ok("istiod-native") => Some(MeshVariant::NativeEnvoyFilter),
        Ok("") | Err(_) => None,
        Ok(other) => {
            panic!("EDGE_MESH={other}: use istiod, istiod-envoyfilter or istiod-native")
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            customize: Box::new(|_| {}),
            authority_up: true,
            bootstrap: Box::new(|_, _| {}),
            workers: 1,
            // A test reads the line of a request it just made: each is flushed at once (a
            // gateway's flush thread waits for 64 KB or a second).
            envoy: Launch {
                flags: vec!["--file-flush-min-size-kb".into(), "0".into()],
                ..Launch::default()
            },
            wait_for_keys: true,
            database_urls: BTreeMap::new(),
            live_config: false,
            service_env: Vec::new(),
            mesh: mesh_from_env(),
            target: Target::from_env().unwrap_or_else(|e| panic!("{e}")),
        }
    }
}

impl Edge {
    /// Starts everything and returns once the edge answers and the auth filter has its keys.
    pub async fn start() -> Edge {
        Self::start_with(Options::default()).await
    }

    /// Starts everything as `options` says; returns once the edge answers (and, with the
    /// authority up, once the auth filter has its keys).
    pub async fn start_with(options: Options) -> Edge {
        let root = workspace_root();
        let bin_dir = from_env_or("EDGE_BIN_DIR", root.join("target/debug"));
        let wasm_dir = Self::wasm_dir();
        // Istio's native variant loads the native module whatever EDGE_TARGET says.
        let target = match options.mesh {
            Some(MeshVariant::NativeEnvoyFilter) => Target::Native,
            _ => options.target,
        };
        let module = FilterModule::new(target, wasm_dir.display().to_string());
        require(Path::new(&module.path()), "filter");
        let dir = test_dir("edge-e2e");
        let mut config = edge_json();
        (options.customize)(&mut config);
        // Each service after the services it calls (edge.json's `calls`), as `make run` does.
        let names: Vec<String> = config
            .start_order()
            .expect("services start in some order")
            .into_iter()
            .map(str::to_string)
            .collect();
        let own_env: BTreeMap<String, Vec<(String, String)>> = names
            .iter()
            .map(|name| {
                let mut env = options.service_env.clone();
                env.extend(config.own_env(name).expect("edge.json's services check"));
                (name.clone(), env)
            })
            .collect();
        let mut services = BTreeMap::new();
        for name in &names {
            let addrs: BTreeMap<String, String> = services
                .iter()
                .map(|(n, s): (&String, &Service)| (n.clone(), s.addr.clone()))
                .collect();
            let database = options.database_urls.get(name).map(String::as_str);
            let declared = &config.services[name];
            let service = start_service_at(
                &bin_dir,
                (name, declared.binary(name), &declared.calls),
                &dir,
                &addrs,
                ("127.0.0.1:0", database),
                &own_env[name],
            );
            services.insert(name.to_string(), service);
        }

        let service_addrs: BTreeMap<String, String> = services
            .iter()
            .map(|(n, s)| (n.clone(), s.addr.clone()))
            .collect();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("HTTP client");
        let (mut bootstrap, istiod) = match options.mesh {
            Some(variant) => {
                let ports = pick_istiod_ports();
                let topology = MeshTopology {
                    istiod: ports.xds_addr(),
                    gateway_port: free_port(),
                    admin_port: 0,
                    wasm_dir: std::fs::canonicalize(&wasm_dir)
                        .expect("the filters' directory")
                        .display()
                        .to_string(),
                    service_addrs,
                    variant,
                };
                let digests = edgectl::load_digests(&root.join("istio/base/wasm-digests.json"))
                    .expect("istio/base/wasm-digests.json");
                let mesh_dir = dir.join("mesh");
                edgectl::write_mesh(&config, &digests, &topology, &mesh_dir)
                    .expect("render istiod's files");
                let mut istiod = Istiod::start(&mesh_dir, ports).await;
                let overlay = config
                    .istiod_files(&digests, &topology)
                    .expect("render istiod's files")
                    .remove(edgectl::OVERLAY)
                    .expect("the overlay");
                for start in 1.. {
                    if istiod.wait_for_endpoints(&http, &overlay).await {
                        break;
                    }
                    assert!(
                        start < 3,
                        "istiod has no endpoints after {start} starts:\n{}",
                        istiod.log_tail(30)
                    );
                    drop(istiod);
                    istiod = Istiod::start(&mesh_dir, ports).await;
                }
                let bootstrap = config
                    .gateway_bootstrap(&topology)
                    .expect("render the gateway's bootstrap");
                (bootstrap, Some((istiod, topology)))
            }
            None => {
                let topology = Topology {
                    listen_port: 0,
                    admin_port: 0,
                    module: module.clone(),
                    service_addrs,
                    xds_dir: options
                        .live_config
                        .then(|| dir.join("xds").display().to_string()),
                };
                if let Some(xds) = &topology.xds_dir {
                    let files = config
                        .xds_files(&topology.module)
                        .expect("render ECDS files");
                    edgectl::write_xds(Path::new(xds), &files).expect("write ECDS files");
                }
                let bootstrap = config
                    .envoy_bootstrap(&topology)
                    .expect("render Envoy config");
                (bootstrap, None)
            }
        };
        (options.bootstrap)(&mut bootstrap, &dir);
        if !options.authority_up {
            let authority = services.get_mut("authority").expect("authority");
            let _ = authority.child.kill();
            let _ = authority.child.wait();
        }
        let mut launch = options.envoy.clone();
        if istiod.is_some() {
            launch
                .flags
                .extend(edgectl::GATEWAY_ENVOY_FLAGS.map(String::from));
        }
        let mut envoy =
            EnvoyProcess::start(&bootstrap, &dir, options.workers, &launch, &http).await;
        // The local bootstrap's listener is `ingress`; istiod's gateway has one listener.
        let listeners = envoy.listener_ports(&http).await;
        let port = match &istiod {
            None => listeners["ingress"],
            Some(_) => {
                assert_eq!(listeners.len(), 1, "istiod's listeners: {listeners:?}");
                listeners.into_values().next().expect("one listener")
            }
        };
        let mut edge = Edge {
            services,
            database_urls: options.database_urls,
            own_env,
            base_url: format!("http://127.0.0.1:{port}"),
            admin_url: envoy.admin_url.clone(),
            envoy,
            istiod,
            dir,
            http,
            module,
        };
        edge.wait_until_ready(options.authority_up && options.wait_for_keys)
            .await;
        edge
    }

    async fn wait_until_ready(&mut self, expect_keys: bool) {
        let deadline = Instant::now() + self.envoy.startup_timeout;
        // Keys loaded: a bad token is refused with 401 (before: 503, keys unavailable). Without
        // an authority, ready means the public routes answer.
        loop {
            let request = if expect_keys {
                self.http
                    .post(self.url("/catalog/items"))
                    .header("authorization", "Bearer not-a-token")
                    .body("{}")
            } else {
                self.http.get(self.url("/catalog/items"))
            };
            let status = request.send().await.map(|r| r.status().as_u16());
            // Without keys to wait for, any answer means the listener and filters are up.
            let ready = if expect_keys {
                matches!(status, Ok(401))
            } else {
                status.is_ok()
            };
            if ready {
                break;
            }
            self.envoy.check_alive();
            assert!(
                Instant::now() < deadline,
                "the edge never became ready (last: {status:?}):\n{}",
                self.envoy_log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Pushes a new filter configuration to the running Envoy (an edge started with
    /// `live_config`), as `edgectl policy apply` does for `make run`.
    pub fn apply(&self, config: &EdgeConfig) {
        edgectl::apply_policy(
            config,
            &self.module,
            &self.dir.join("xds"),
            self.admin_url.trim_start_matches("http://"),
            Duration::from_secs(10),
        )
        .expect("Envoy takes the new configuration");
    }

    /// A service's process id.
    pub fn service_pid(&self, name: &str) -> u32 {
        self.services[name].child.id()
    }

    /// Envoy's process id (for CPU time and memory readings).
    pub fn envoy_pid(&self) -> u32 {
        self.envoy.pid()
    }

    /// The `service.name` of the edge's spans: edge.json's locally, Istio's own name for the
    /// gateway when it runs through istiod.
    /// Whether JSON calls go on through Envoy's router, as gRPC clients' do (the native
    /// module transcodes in place): the router's span and replies are then theirs too.
    pub fn transcodes_in_place(&self) -> bool {
        self.module.target == Target::Native
    }

    pub fn edge_span_service(&self) -> String {
        let config = edge_json();
        match &self.istiod {
            Some(_) => config.gateway_trace_service().expect("the gateway's name"),
            None => config.tracing.expect("edge.json traces").service_name,
        }
    }

    /// What istiod would be given for `config` in this run (a gateway run through istiod).
    pub fn istiod_files(&self, config: &EdgeConfig) -> edgectl::Objects {
        let (_, topology) = self.istiod.as_ref().expect("an edge run through istiod");
        let digests = edgectl::load_digests(&workspace_root().join("istio/base/wasm-digests.json"))
            .expect("istio/base/wasm-digests.json");
        config
            .istiod_files(&digests, topology)
            .expect("render istiod's files")
    }

    /// Replaces one of the files istiod watches, as `kubectl apply` of it would in a cluster.
    pub fn write_istiod_file(&self, name: &str, objects: &[Value]) {
        let (istiod, _) = self.istiod.as_ref().expect("an edge run through istiod");
        istiod.write(name, objects);
    }

    /// Where the built filters are (`EDGE_WASM_DIR`): the Wasm module and the native one.
    pub fn wasm_dir() -> PathBuf {
        from_env_or("EDGE_WASM_DIR", workspace_root().join("target/filters"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `http://host:port` of a service, for calling it directly with gRPC.
    pub fn service_url(&self, name: &str) -> String {
        format!("http://{}", self.services[name].addr)
    }

    /// What a service has logged so far.
    pub fn service_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// [`Self::metric`] once the filters' counts of the requests already answered have reached
    /// Envoy: the native module holds a second's counts and hands them over each second; the
    /// Wasm filters' reach it at once.
    pub async fn counted_metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        if self.module.target == Target::Native {
            tokio::time::sleep(COUNTS_SETTLE).await;
        }
        self.metric(name, labels).await
    }

    /// The value of one Prometheus series at Envoy's `/stats/prometheus` (0 when absent).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self
            .http
            .get(format!("{}/stats/prometheus", self.admin_url))
            .send()
            .await
            .expect("admin")
            .text()
            .await
            .expect("metrics");
        // A dynamic module's metrics keep their namespace in Prometheus names (a Wasm
        // filter's lose it): the native build's `edge_…` is `envoy_wasmcustom_edge_…`.
        text.lines()
            .map(|line| line.strip_prefix("envoy_wasmcustom_").unwrap_or(line))
            .filter(|line| {
                line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
            })
            .filter(|line| {
                labels
                    .iter()
                    .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn envoy_log_text(&self) -> String {
        self.envoy.log_text()
    }

    /// Every access-log record Envoy has written so far: the Wasm build's, in Envoy's log after
    /// `access-log: `; the native build's, alone on a line from Envoy's access log.
    pub fn access_log(&self) -> Vec<Value> {
        self.envoy_log_text()
            .lines()
            .filter_map(|line| match line.split_once(" access-log: ") {
                Some((_, json)) => Some(json),
                None => line.starts_with("{\"time\":").then_some(line),
            })
            .map(|json| {
                serde_json::from_str(json).unwrap_or_else(|e| panic!("bad log line {json}: {e}"))
            })
            .collect()
    }

    /// Stops one service (SIGKILL, no chance to flush anything), to test what clients see when
    /// a backend is down and that acknowledged writes are on disk.
    pub fn kill_service(&mut self, name: &str) {
        let service = self.services.get_mut(name).expect("known service");
        let _ = service.child.kill();
        let _ = service.child.wait();
    }

    /// Starts a killed service again on the same address, with the same database.
    pub fn restart_service(&mut self, name: &str) {
        let bin_dir = from_env_or("EDGE_BIN_DIR", workspace_root().join("target/debug"));
        let addr = self.services[name].addr.clone();
        let others: BTreeMap<String, String> = self
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.addr.clone()))
            .collect();
        let database = self.database_urls.get(name).map(String::as_str);
        let binary = self.services[name].binary.clone();
        let calls = self.services[name].calls.clone();
        let service = start_service_at(
            &bin_dir,
            (name, &binary, &calls),
            &self.dir,
            &others,
            (&addr, database),
            &self.own_env[name],
        );
        self.services.insert(name.to_string(), service);
    }

    /// The authority's current signing key, as the authority's operator could read it from
    /// `KEY_DIR`: lets tests issue tokens with the claims they choose (expired, not yet valid…).
    pub fn signing_key(&self) -> jwt_simple::prelude::ES256KeyPair {
        use jwt_simple::prelude::ES256KeyPair;
        let keys = self.dir.join("keys");
        let kid = std::fs::read_to_string(keys.join("current")).expect("current key");
        let pem =
            std::fs::read_to_string(keys.join(format!("{}.pem", kid.trim()))).expect("key file");
        ES256KeyPair::from_pem(&pem)
            .expect("ES256 key")
            .with_key_id(kid.trim())
    }

    /// Sends one HTTP/1.1 request exactly as given (no client-side path normalization, any
    /// headers, duplicates included) and returns the status and body.
    pub async fn raw_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base_url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to Envoy");
        let mut request = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request.push_str("host: edge\r\n");
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut response))
            .await
            .expect("response within 15 s")
            .expect("read");
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {response:?}"));
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// Envoy's counters and gauges whose names match `filter` (a regex, as the admin API
    /// takes it), as (name, value).
    pub async fn stats(&self, filter: &str) -> Vec<(String, i64)> {
        let text = self
            .http
            .get(format!("{}/stats", self.admin_url))
            .query(&[("filter", filter)])
            .send()
            .await
            .expect("admin")
            .text()
            .await
            .expect("stats");
        text.lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(": ")?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// One stat by its exact name, `None` while Envoy has not created it.
    pub async fn stat(&self, name: &str) -> Option<i64> {
        let exact = format!("^{}$", name.replace('.', "\\."));
        self.stats(&exact)
            .await
            .into_iter()
            .find_map(|(found, value)| (found == name).then_some(value))
    }

    /// `count` more items owned by `owner`, titled by `title(n)`, straight into the item
    /// service (8 callers at once).
    pub async fn seed_items(&self, count: usize, owner: &str, title: fn(usize) -> String) {
        let mut writers = tokio::task::JoinSet::new();
        for worker in 0..8 {
            let item = self.service_url("item");
            let owner = owner.to_string();
            writers.spawn(async move {
                let mut client =
                    platform_proto::item::item_service_client::ItemServiceClient::connect(item)
                        .await
                        .expect("connect to item");
                for n in (worker..count).step_by(8) {
                    client
                        .create_item(platform_proto::item::CreateItemRequest {
                            customer_id: owner.clone(),
                            title: title(n),
                            price: 100,
                        })
                        .await
                        .expect("seed an item");
                }
            });
        }
        writers.join_all().await;
    }

    /// Lists an item as `token`'s customer: the status and the JSON answer.
    pub async fn create_item(&self, token: &str, title: &str, price: i64) -> (u16, Value) {
        json_of(
            self.http
                .post(self.url("/catalog/items"))
                .bearer_auth(token)
                .json(&serde_json::json!({ "title": title, "price": price }))
                .send()
                .await
                .expect("create item"),
        )
        .await
    }

    /// The status a public read of item `id` answers with.
    pub async fn item_status(&self, id: &str) -> u16 {
        self.http
            .get(self.url(&format!("/catalog/items/{id}")))
            .send()
            .await
            .expect("GET an item")
            .status()
            .as_u16()
    }

    /// Signs a new customer up (through the edge, as a client would) and in: (id, token).
    pub async fn signup(&self, name: &str) -> (String, String) {
        let response = self
            .http
            .post(self.url("/auth/signup"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .expect("signup");
        let status = response.status();
        let body: Value = response.json().await.expect("signup JSON");
        assert_eq!(status, 200, "signup of {name}: {body}");
        let id = body["customer"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no customer id in {body}"))
            .to_string();
        (id, self.signin(name).await)
    }

    /// The `access_token` for an existing customer.
    pub async fn signin(&self, name: &str) -> String {
        let response: Value = self
            .http
            .post(self.url("/auth/signin"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .expect("signin")
            .json()
            .await
            .expect("signin JSON");
        response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {response}"))
            .to_string()
    }

    /// Waits (10 s at most) until auth holds the acl's restrictions: until its first copy, an
    /// action the acl guards is refused with 503 ("restrictions are not available yet"), and
    /// readiness only waits for the keys. The probe is a listing with a malformed body, which
    /// auth then lets through to the transcoder's 400: nothing is created.
    pub async fn wait_for_restrictions(&self, bearer: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self
                .http
                .post(self.url("/catalog/items"))
                .header("authorization", bearer)
                .header("content-type", "application/json")
                .body("{")
                .send()
                .await
                .map(|response| response.status().as_u16());
            if matches!(status, Ok(status) if status != 503) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "auth never had the restrictions (last: {status:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The JSON a request answers with, or `None` (no answer, not JSON): for polling admin pages.
pub(crate) async fn fetch_json(request: reqwest::RequestBuilder) -> Option<Value> {
    request.send().await.ok()?.json().await.ok()
}

/// What Envoy holds per connection in [`KitchenEdge`], as at the edge; the transcoder is told it.
pub const KITCHEN_BUFFER_LIMIT: usize = 32 * 1024;
/// The most of a server stream [`KitchenEdge`]'s transcoder holds (`max_stream_bytes`).
pub const KITCHEN_MAX_STREAM: usize = 4096;

/// The kitchen backend on `port` as Envoy's cluster `kitchen` (gRPC: HTTP/2).
pub fn kitchen_cluster(port: u16) -> Value {
    serde_json::json!({
        "name": "kitchen",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} }
            }
        },
        "load_assignment": { "cluster_name": "kitchen", "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
            "socket_address": { "address": "127.0.0.1", "port_value": port }
        } } }] }] }
    })
}

/// Envoy with our transcoder (of `target`) and the router in front of the kitchen backend (the
/// test-only API with streams each way and `google.api.HttpBody`), on a connection manager
/// that lets WebSocket upgrades through (as Istio's gateway and the local edge do).
pub struct KitchenEdge {
    _envoy: EnvoyProcess,
    pub port: u16,
    pub http: reqwest::Client,
    dir: PathBuf,
    backend: tokio::task::JoinHandle<()>,
}

impl Drop for KitchenEdge {
    fn drop(&mut self) {
        self.backend.abort();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl KitchenEdge {
    pub async fn start(target: Target) -> KitchenEdge {
        use base64::Engine;
        let backend_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the kitchen backend");
        let backend_port = backend_listener.local_addr().expect("address").port();
        let backend = tokio::spawn(async move {
            kitchen::serve(backend_listener).await.expect("kitchen");
        });
        let dir = test_dir("kitchen-edge");
        let transcoder = serde_json::json!({
            "descriptor_set": base64::engine::general_purpose::STANDARD
                .encode(kitchen::FILE_DESCRIPTOR_SET),
            "services": {
                "kitchen.v1.Streams": "kitchen",
                "kitchen.v1.Kitchen": "kitchen",
                "kitchen.v1.Bodies": "kitchen"
            },
            "max_body_bytes": 4096,
            "max_stream_bytes": KITCHEN_MAX_STREAM,
            "buffer_limit_bytes": KITCHEN_BUFFER_LIMIT,
            "forward_headers": ["x-kitchen-tag"]
        });
        let module = FilterModule::new(target, Edge::wasm_dir().display().to_string());
        let bootstrap = serde_json::json!({
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
            "static_resources": {
                "listeners": [{
                    "name": "edge",
                    "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                    "per_connection_buffer_limit_bytes": KITCHEN_BUFFER_LIMIT,
                    "filter_chains": [{ "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "edge",
                            "upgrade_configs": [{ "upgrade_type": "websocket" }],
                            "route_config": { "virtual_hosts": [{
                                "name": "edge", "domains": ["*"],
                                "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "kitchen", "timeout": "10s" } }]
                            }] },
                            "http_filters": [
                                module.filter("transcoder", &transcoder),
                                edgectl::buffer_filter(),
                                edgectl::router_filter()
                            ]
                        }
                    }] }]
                }],
                "clusters": [kitchen_cluster(backend_port)]
            }
        });
        let http = reqwest::Client::new();
        let mut envoy = EnvoyProcess::start(&bootstrap, &dir, 1, &Launch::default(), &http).await;
        let port = envoy.listener_ports(&http).await["edge"];
        KitchenEdge {
            _envoy: envoy,
            port,
            http,
            dir,
            backend,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// A WebSocket to the edge, as a client library opens one.
pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `url` (`ws://…`) with `headers`, as a client library does: the
/// handshake's answer is checked by the library (`101`, `Upgrade`, `Sec-WebSocket-Accept`).
pub async fn connect_websocket(
    url: &str,
    headers: &[(&'static str, &str)],
) -> Result<WebSocket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("a WebSocket request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, value.parse().expect("header value"));
    }
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("the upgrade is answered within 10 s")
    .map(|(socket, _)| socket)
}

/// The next text frame from the edge (within 10 s).
pub async fn next_websocket_text(socket: &mut WebSocket) -> String {
    use tokio_stream::StreamExt;
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .expect("a frame within 10 s")
        .expect("the socket is open")
        .expect("a frame");
    match frame {
        tokio_tungstenite::tungstenite::Message::Text(text) => text.to_string(),
        other => panic!("not a text frame: {other:?}"),
    }
}

/// The refusal of a WebSocket upgrade: its HTTP status and `google.rpc.Status` body.
pub fn websocket_refusal(
    connected: Result<WebSocket, tokio_tungstenite::tungstenite::Error>,
) -> (u16, Value) {
    match connected {
        Ok(_) => panic!("upgraded"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let status = serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
            (response.status().as_u16(), status)
        }
        Err(other) => panic!("{other}"),
    }
}

/// The JSON values of an NDJSON body, a line each.
pub fn ndjson_lines(body: &str) -> Vec<Value> {
    body.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// A response's status and JSON body; a body that is not JSON fails the test, with the text.
pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    (status, body)
}

/// A process's CPU time so far (user + system) in clock ticks (100 a second on Linux), from
/// /proc: how tests and the bench measure Envoy's CPU per request.
pub fn process_cpu_ticks(pid: u32) -> u64 {
    let (user, system) = process_cpu_ticks_split(pid);
    user + system
}

/// A process's user and system CPU time so far, in clock ticks ([`process_cpu_ticks`]).
pub fn process_cpu_ticks_split(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or("", |(_, rest)| rest)
        .split(' ')
        .collect();
    let field = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field(11), field(12))
}

/// A process's resident memory in KiB (`VmRSS`), 0 if unreadable.
pub fn process_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The first column of a query on a service's SQLite file, as text: what was committed.
pub async fn sqlite_strings(file: &Path, query: &str) -> Vec<String> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", file.display());
    let mut connection = sqlx::SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    let rows: Vec<(String,)> = sqlx::query_as(query)
        .fetch_all(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    rows.into_iter().map(|(value,)| value).collect()
}

/// The Envoy cluster name of a service in this run: the service's name locally, Istio's
/// `outbound|PORT||HOST` when the gateway runs through istiod.
pub fn cluster_name(service: &str) -> String {
    if mesh_from_env().is_some() {
        let config = edge_json();
        config.istio_cluster(service)
    } else {
        service.to_string()
    }
}

/// Starts a service on `listen_addr` (port 0: the OS picks) with the addresses of the services
/// it calls from `started`, and waits for its `listening on ADDR` line.
fn start_service_at(
    bin_dir: &Path,
    (name, binary, calls): (&str, &str, &[String]),
    dir: &Path,
    started: &BTreeMap<String, String>,
    (listen_addr, database_url): (&str, Option<&str>),
    env: &[(String, String)],
) -> Service {
    let mut command = Command::new(require(&bin_dir.join(binary), "service binary"));
    let sqlite = format!("sqlite://{}/{name}.db", dir.display());
    command
        .env("LISTEN_ADDR", listen_addr)
        .env("DATABASE_URL", database_url.unwrap_or(&sqlite))
        .env("KEY_DIR", dir.join("keys"))
        .env("COLLECTOR_FILE", dir.join("collected.log"))
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).expect("service log"));
    for dependency in calls {
        if let Some(addr) = started.get(dependency) {
            command.env(
                edgectl::address_variable(dependency),
                format!("http://{addr}"),
            );
        }
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    // The service prints one line once it serves: `listening on ADDR`.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(STARTUP_TIMEOUT).unwrap_or_default();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            panic!("{name} did not start (said {line:?}):\n{log}")
        })
        .to_string();
    Service {
        child,
        addr,
        binary: binary.to_string(),
        calls: calls.to_vec(),
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        for service in self.services.values_mut() {
            let _ = service.child.kill();
            let _ = service.child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
