//! One Envoy process with a given bootstrap, on ports the OS picks: started, waited for
//! (admin address, then every listener's port), and killed on drop.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Under a tool such as callgrind, Envoy and V8 start many times slower.
const WRAPPED_STARTUP_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one readiness probe of the admin interface may wait for its answer before it is
/// retried on a new connection: one connection that is never answered (a CI run once waited
/// its whole startup timeout on the first one while Envoy itself had started in 2 s) must not
/// use up the time the next one would have been answered in.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const WRAPPED_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// How Envoy is run: pinned to a CPU (benchmarks keep it apart from the load generator), and
/// under a tool (e.g. `valgrind --tool=callgrind …`, for instructions per request).
#[derive(Clone, Debug, Default)]
pub struct Launch {
    pub cpu: Option<usize>,
    /// A command and its arguments that Envoy's command line is appended to.
    pub wrapper: Vec<String>,
    /// Further Envoy flags (the gateway's: `edgectl::GATEWAY_ENVOY_FLAGS`); every Envoy has
    /// pilot-agent's `edgectl::ACCESS_LOG_FLUSH_FLAGS`.
    pub flags: Vec<String>,
}

impl Launch {
    /// How long Envoy may take to start and, for the edge, to become ready.
    pub fn startup_timeout(&self) -> Duration {
        if self.wrapper.is_empty() {
            STARTUP_TIMEOUT
        } else {
            WRAPPED_STARTUP_TIMEOUT
        }
    }

    fn probe_timeout(&self) -> Duration {
        if self.wrapper.is_empty() {
            PROBE_TIMEOUT
        } else {
            WRAPPED_PROBE_TIMEOUT
        }
    }
}

pub struct EnvoyProcess {
    child: Child,
    log: PathBuf,
    pub admin_url: String,
    pub startup_timeout: Duration,
    probe_timeout: Duration,
}

/// The Envoy binary (`ENVOY_BIN`, default where `make envoy` installs it).
pub fn envoy_binary() -> PathBuf {
    crate::require(
        &crate::from_env_or(
            "ENVOY_BIN",
            crate::workspace_root().join("target/tools/envoy-1.40.0/envoy/_bin/envoy"),
        ),
        "envoy",
    )
}

impl EnvoyProcess {
    /// Writes `bootstrap` into `dir` and starts Envoy on it with `workers` worker threads, as
    /// `launch` says; returns once the admin interface answers.
    pub async fn start(
        bootstrap: &Value,
        dir: &Path,
        workers: usize,
        launch: &Launch,
        http: &reqwest::Client,
    ) -> Self {
        let config_path = dir.join("envoy.yaml");
        std::fs::write(&config_path, edgectl::to_yaml(bootstrap)).expect("write Envoy config");
        let admin_path = dir.join("admin-address");
        let log = dir.join("envoy.log");
        let binary = envoy_binary();
        let mut line: Vec<std::ffi::OsString> = Vec::new();
        if let Some(cpu) = launch.cpu {
            line.extend(["taskset".into(), "-c".into(), cpu.to_string().into()]);
        }
        line.extend(launch.wrapper.iter().map(Into::into));
        line.push(binary.into());
        let log_file = std::fs::File::create(&log).expect("create Envoy log");
        let mut command = Command::new(&line[0]);
        command.args(&line[1..]);
        let child = command
            .arg("-c")
            .arg(&config_path)
            .args(["--use-dynamic-base-id", "-l", "info", "--concurrency"])
            .arg(workers.to_string())
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(edgectl::ACCESS_LOG_FLUSH_FLAGS)
            .args(&launch.flags)
            // Its access logs' lines (stdout) and its own log in one file, one offset.
            .stdout(log_file.try_clone().expect("share Envoy log"))
            .stderr(log_file)
            .spawn()
            .expect("start envoy");
        let mut envoy = EnvoyProcess {
            child,
            log,
            admin_url: String::new(),
            startup_timeout: launch.startup_timeout(),
            probe_timeout: launch.probe_timeout(),
        };
        let deadline = Instant::now() + envoy.startup_timeout;
        let admin = loop {
            if let Ok(address) = std::fs::read_to_string(&admin_path) {
                if !address.trim().is_empty() {
                    break address.trim().to_string();
                }
            }
            envoy.wait_a_little(deadline, "Envoy did not start").await;
        };
        envoy.admin_url = format!("http://{admin}");
        // The admin address file is written before the admin listener accepts.
        while http
            .get(&envoy.admin_url)
            .timeout(envoy.probe_timeout)
            .send()
            .await
            .is_err()
        {
            envoy
                .wait_a_little(deadline, "Envoy's admin never answered")
                .await;
        }
        envoy
    }

    /// Starts Envoy on a bootstrap it must refuse; returns its log once it has exited.
    pub async fn refuses(bootstrap: &Value, dir: &Path) -> String {
        let config_path = dir.join("refused.yaml");
        std::fs::write(&config_path, edgectl::to_yaml(bootstrap)).expect("write Envoy config");
        let output = tokio::time::timeout(
            STARTUP_TIMEOUT,
            tokio::process::Command::new(envoy_binary())
                .arg("-c")
                .arg(&config_path)
                .args(["--use-dynamic-base-id", "-l", "info", "--concurrency", "1"])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("Envoy should exit on a bad configuration, not serve")
        .expect("run envoy");
        assert!(!output.status.success(), "Envoy accepted the configuration");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    async fn wait_a_little(&mut self, deadline: Instant, what: &str) {
        self.check_alive();
        assert!(Instant::now() < deadline, "{what}:\n{}", self.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// The port of every listener by name, once all of them are bound.
    pub async fn listener_ports(
        &mut self,
        http: &reqwest::Client,
    ) -> std::collections::BTreeMap<String, u16> {
        let deadline = Instant::now() + self.startup_timeout;
        loop {
            let listeners = crate::fetch_json(
                http.get(format!("{}/listeners?format=json", self.admin_url))
                    .timeout(self.probe_timeout),
            )
            .await;
            let ports: Option<std::collections::BTreeMap<String, u16>> = listeners
                .as_ref()
                .and_then(|l| l.get("listener_statuses")?.as_array())
                .filter(|statuses| !statuses.is_empty())
                .and_then(|statuses| {
                    statuses
                        .iter()
                        .map(|status| {
                            let name = status.get("name")?.as_str()?.to_string();
                            let port = status
                                .pointer("/local_address/socket_address/port_value")?
                                .as_u64()
                                .and_then(|p| u16::try_from(p).ok())
                                .filter(|p| *p != 0)?;
                            Some((name, port))
                        })
                        .collect()
                });
            if let Some(ports) = ports {
                return ports;
            }
            self.wait_a_little(deadline, "Envoy has no listener").await;
        }
    }

    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            // The end of the log says why; the start is Envoy listing its extensions.
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            panic!("Envoy exited with {status}:\n{tail}");
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
