//! A real istiod (Istio's `pilot-discovery`, built by `make istiod`) without Kubernetes: it
//! reads the files `edgectl::write_mesh` wrote, watches them, and serves the gateway's Envoy
//! over plaintext xDS on loopback. Killed on drop.

use edgectl::IstiodPorts;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The istiod binary (`ISTIOD_BIN`, default where `make istiod` builds it).
pub fn istiod_binary() -> PathBuf {
    crate::require(
        &crate::from_env_or(
            "ISTIOD_BIN",
            crate::workspace_root().join("target/tools/istio-eed52ebb66ad/pilot-discovery"),
        ),
        "istiod (pilot-discovery)",
    )
}

/// A port nothing uses now, for a server that must be told its port before it binds it
/// (istiod's ports; the gateway's, which istiod reads from a Gateway resource). It is taken
/// below the kernel's ephemeral range (`ip_local_port_range`), from which every bind to port 0
/// and every outgoing connection gets theirs: a port picked from that range was now and then
/// taken by a connection before its server bound it (seen: the gateway's listener refused with
/// "Address already in use"). Ports are handed out in turn, so one test binary never gets the
/// same one twice.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = 10_000.min(ephemeral_low.saturating_sub(1_024)).max(1);
    let base = ephemeral_low - span;
    // Test binaries run one after the other; the pid spreads them anyway.
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..span {
        let turn = NEXT.fetch_add(1, Ordering::SeqCst);
        let Ok(port) = u16::try_from(base + start.wrapping_add(turn) % span) else {
            continue;
        };
        let free = |host: &str| std::net::TcpListener::bind((host, port)).is_ok();
        if free("0.0.0.0") && free("127.0.0.1") {
            return port;
        }
    }
    panic!("no free port below {ephemeral_low}");
}

pub struct Istiod {
    child: Child,
    log: PathBuf,
    /// `host:port` of its plaintext xDS.
    pub xds: String,
    /// Its debug endpoints.
    http_url: String,
    /// The files it watches.
    pub config_dir: PathBuf,
}

/// istiod's ports for one run, picked before it starts (it must be told them).
pub fn pick_istiod_ports() -> IstiodPorts {
    IstiodPorts {
        xds: free_port(),
        http: free_port(),
        monitoring: free_port(),
    }
}

impl Istiod {
    /// Starts istiod on `dir` (as written by `edgectl::write_mesh`) and returns once it is ready.
    pub async fn start(dir: &Path, ports: IstiodPorts) -> Istiod {
        let log = dir.join("istiod.log");
        // istiod logs to stdout.
        let file = std::fs::File::create(&log).expect("create istiod log");
        let child = edgectl::istiod_command(&istiod_binary(), dir, ports)
            .stdout(file.try_clone().expect("istiod log"))
            .stderr(file)
            .spawn()
            .expect("start istiod");
        let mut istiod = Istiod {
            child,
            log,
            xds: ports.xds_addr(),
            http_url: format!("http://127.0.0.1:{}", ports.http),
            config_dir: dir.join("istio"),
        };
        // istiod opens its xDS port once its caches are synced and its first push context is
        // built. (Its `/ready` also waits for the sidecar injector and config validation
        // webhooks, which run only in a cluster.)
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while tokio::net::TcpStream::connect(&istiod.xds).await.is_err() {
            istiod.check_alive();
            assert!(
                Instant::now() < deadline,
                "istiod never served xDS:\n{}",
                istiod.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        istiod
    }

    /// Waits until istiod holds an endpoint for every ServiceEntry of `overlay` (its file
    /// [`edgectl::OVERLAY`]); `false` if it never does. Now and then (once in some sixty starts
    /// here) this snapshot, reading files, builds its first push with every ServiceEntry's
    /// endpoints missing and never adds them; the ServiceEntries written again (a new
    /// annotation) are usually read whole, and when even that fails the caller starts a fresh
    /// istiod.
    pub async fn wait_for_endpoints(&mut self, http: &reqwest::Client, overlay: &[Value]) -> bool {
        let hosts: Vec<&str> = overlay
            .iter()
            .filter_map(|entry| entry["spec"]["hosts"][0].as_str())
            .collect();
        let has_endpoints = |shards: &Value, host: &str| {
            shards[host].as_object().is_some_and(|namespaces| {
                namespaces.values().any(|service| {
                    service["Shards"].as_object().is_some_and(|shards| {
                        shards
                            .values()
                            .any(|endpoints| endpoints.as_array().is_some_and(|e| !e.is_empty()))
                    })
                })
            })
        };
        for attempt in 1..=3 {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                let shards =
                    crate::fetch_json(http.get(format!("{}/debug/endpointShardz", self.http_url)))
                        .await
                        .unwrap_or_default();
                if hosts.iter().all(|host| has_endpoints(&shards, host)) {
                    return true;
                }
                self.check_alive();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let again: Vec<Value> = overlay
                .iter()
                .map(|entry| {
                    let mut entry = entry.clone();
                    entry["metadata"]["annotations"] =
                        serde_json::json!({ "edge-e2e/read-again": attempt.to_string() });
                    entry
                })
                .collect();
            self.write(edgectl::OVERLAY, &again);
        }
        false
    }

    /// Replaces one of the files istiod watches (`name` under its `istio/` directory).
    pub fn write(&self, name: &str, objects: &[Value]) {
        edgectl::write_istiod_file(&self.config_dir, name, objects).expect("write istiod's file");
    }

    /// Fails the test, with istiod's last words, if istiod has exited.
    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("istiod exited with {status}:\n{}", self.log_tail(30));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log_text();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Istiod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
