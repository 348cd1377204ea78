//! The README's first hour, as a newcomer lives it: `make run`, then every command of the
//! walkthrough block run literally with bash, each checked against its `#>` lines (`…` is a
//! wildcard; each expected line must appear, in order, in what the command printed). Then,
//! against the same `make run`, a crash under load: `kill -9` of `item` while requests flow,
//! and finally Ctrl-C. Likewise `make mesh` and the block of "Without a cluster", and
//! `EDGE_TARGET=native make run` and the block of "Which build".
//!
//! The commands say `localhost:8080` and `.run/`, so the test re-runs itself inside its own
//! network and mount namespaces (`unshare`): a private loopback and a private, empty `.run`,
//! so it neither collides with a developer's `make run` nor touches its data.

use edge_e2e::{run_schemathesis, schemathesis_summary, workspace_root, MOBILE_PHONE_ID};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INSIDE: &str = "EDGE_README_NAMESPACE";

#[test]
fn readme_walkthrough_runs_as_written_and_make_run_survives_a_crash() {
    let Some(root) =
        in_own_namespaces("readme_walkthrough_runs_as_written_and_make_run_survives_a_crash")
    else {
        return;
    };
    let mut edge = MakeRun::start(&root, "run", &[]);
    run_block(&root, "## Walkthrough", 15);
    docs_and_schemathesis_against_make_run(&root);
    crash_under_load(&edge);
    edge.interrupt();
}

/// "Without a cluster": `make mesh` (istiod configuring the gateway), then its block, which
/// changes an AuthorizationPolicy live.
#[test]
fn readme_make_mesh_runs_as_written() {
    let Some(root) = in_own_namespaces("readme_make_mesh_runs_as_written") else {
        return;
    };
    let mut edge = MakeRun::start(&root, "mesh", &[]);
    run_block(&root, "### Without a cluster: a local istiod", 5);
    edge.interrupt();
}

/// "Which build": `EDGE_TARGET=native make run`, then its block.
#[test]
fn readme_native_make_run_runs_as_written() {
    let Some(root) = in_own_namespaces("readme_native_make_run_runs_as_written") else {
        return;
    };
    let mut edge = MakeRun::start(&root, "run", &[("EDGE_TARGET", "native")]);
    run_block(&root, "## Which build: Wasm or native module", 3);
    edge.interrupt();
}

/// Runs the test named `test` again inside its own network and mount namespaces and returns
/// `None` once it has passed there; inside, sets the namespaces up (loopback up, a private
/// `.run`) and returns the repository's root.
fn in_own_namespaces(test: &str) -> Option<std::path::PathBuf> {
    if std::env::var_os(INSIDE).is_none() {
        // One at a time: each builds and starts a whole edge on two cores, and the crash
        // test's timings are the machine's.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let me = std::env::current_exe().expect("test binary");
        let mut unshare = Command::new("unshare");
        if !is_root() {
            unshare.arg("--map-root-user");
        }
        let status = unshare
            .args(["--net", "--mount", "--fork", "--"])
            .arg(me)
            .args(["--exact", test, "--nocapture"])
            .env(INSIDE, "1")
            .status()
            .expect("unshare (util-linux)");
        assert!(status.success(), "{test} failed inside its namespace");
        return None;
    }
    let root = workspace_root();
    std::env::set_current_dir(&root).expect("cd to the repository");
    must("ip", &["link", "set", "lo", "up"]);
    std::fs::create_dir_all(".run").expect("mkdir .run");
    must("mount", &["-t", "tmpfs", "edge-readme", ".run"]);
    Some(root)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

fn must(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "{program} {args:?}: {status:?}"
    );
}

/// `make run` (or `make mesh`), in its own process group so that the test can press Ctrl-C.
struct MakeRun {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl MakeRun {
    fn start(root: &Path, target: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new("make")
            .args(["-s", target])
            .envs(env.iter().copied())
            .current_dir(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("make run");
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("make run | {line}");
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        let mut edge = Self { child, output };
        // Up once it prints its banner's last line; a make that exits first has failed.
        let started = Instant::now();
        while !edge.text().contains("Stop: Ctrl-C") {
            if let Ok(Some(status)) = edge.child.try_wait() {
                panic!(
                    "make {target} exited ({status}) before the edge was up:\n{}",
                    edge.text()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "make {target} was not up within 600 s:\n{}",
                edge.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        edge
    }

    fn text(&self) -> String {
        self.output.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str, within: Duration) {
        let started = Instant::now();
        while !self.text().contains(needle) {
            assert!(
                started.elapsed() < within,
                "make run did not print {needle:?} within {within:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ctrl-C: SIGINT to the whole process group, as a terminal sends it.
    fn interrupt(&mut self) {
        let pids: Vec<String> = ["customer", "item", "authority", "catalog"]
            .iter()
            .filter_map(|name| std::fs::read_to_string(format!(".run/{name}.pid")).ok())
            .map(|pid| pid.trim().to_string())
            .collect();
        must("kill", &["-INT", "--", &format!("-{}", self.child.id())]);
        let started = Instant::now();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "make run did not stop on Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in &pids {
            let alive = Command::new("kill")
                .args(["-0", pid])
                .stderr(Stdio::null())
                .status();
            assert!(
                !alive.is_ok_and(|s| s.success()),
                "service pid {pid} still runs after Ctrl-C"
            );
        }
        assert!(
            std::net::TcpStream::connect("127.0.0.1:8080").is_err(),
            "Envoy still listens after Ctrl-C"
        );
        assert!(
            std::net::TcpStream::connect("127.0.0.1:15010").is_err(),
            "istiod still listens after Ctrl-C"
        );
        println!("Ctrl-C stopped everything in {:?}", started.elapsed());
    }
}

impl Drop for MakeRun {
    /// A failed assertion must not leave `make run` behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// One command of the walkthrough and the lines it must print.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The first `sh` block after `heading`: the same text `make run` (`make mesh`) prints.
fn block_steps(readme: &str, heading: &str) -> Vec<Step> {
    let section = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has a {heading:?} section"))
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("a sh block")
        .1
        .split_once("\n```")
        .expect("closed")
        .0;
    let mut steps: Vec<Step> = Vec::new();
    for line in block.lines() {
        if let Some(expected) = line.strip_prefix("#> ") {
            steps
                .last_mut()
                .expect("an expectation follows a command")
                .expected
                .push(expected.to_string());
        } else if !line.trim().is_empty() && !line.starts_with('#') {
            steps.push(Step {
                command: line.to_string(),
                expected: Vec::new(),
            });
        }
    }
    steps
}

/// `…` matches anything; otherwise the line must equal the pattern.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return line == pattern;
    }
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Runs every command of the block after `heading` (at least `at_least` of them) with bash,
/// as written, and checks each against its `#>` lines.
fn run_block(root: &Path, heading: &str, at_least: usize) {
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let steps = block_steps(&readme, heading);
    assert!(
        steps.len() >= at_least,
        "{} commands after {heading}",
        steps.len()
    );
    // The commands go to bash exactly as written; only markers are put between them.
    let mut script = String::new();
    for (index, step) in steps.iter().enumerate() {
        script.push_str(&format!(
            "printf '\\n@@step {index}\\n'\n{}\n",
            step.command
        ));
        script.push_str(&format!("printf '\\n@@end {index} %d\\n' $?\n"));
    }
    let output = Command::new("bash")
        .args(["-c", &script])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&output.stdout).replace('\r', "");
    let mut failures = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let printed = text
            .split_once(&format!("@@step {index}\n"))
            .and_then(|(_, rest)| rest.split_once(&format!("\n@@end {index} ")))
            .map(|(printed, status)| (printed.to_string(), status.lines().next().unwrap_or("")));
        let Some((printed, status)) = printed else {
            failures.push(format!("{}: did not run", step.command));
            continue;
        };
        if status != "0" {
            failures.push(format!("{}: exit status {status}\n{printed}", step.command));
        }
        let mut lines = printed.lines();
        for expected in &step.expected {
            if !lines.any(|line| line_matches(expected, line)) {
                failures.push(format!(
                    "{}\n  expected a line {expected:?} (in order) in:\n{printed}",
                    step.command
                ));
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "README {heading}, {} of {} commands failed:\n{}\n\n{}",
        failures.len(),
        steps.len(),
        failures.join("\n\n"),
        log_tails(root)
    );
    println!("README {heading}: all {} commands as written", steps.len());
}

/// The end of every log `make run` writes, for a failure's message: the `.run` of this test
/// lives in a private tmpfs that is gone once it ends.
fn log_tails(root: &Path) -> String {
    let mut logs: Vec<_> = std::fs::read_dir(root.join(".run"))
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    logs.retain(|path| path.extension().is_some_and(|e| e == "log"));
    logs.sort();
    logs.iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            format!("--- {} (last 40 lines)\n{tail}", path.display())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Clone)]
struct Answer {
    at: Duration,
    status: u16,
    json_status: bool,
    took: Duration,
}

/// `kill -9 item` while two clients run: one reads an item (catalog → item), one signs in
/// (authority → customer). Sign-ins never fail; reads answer JSON 5xx at once while item is
/// down and 200 again within 2 s of the supervisor's restart.
/// What `make run` serves beside the walkthrough: the API docs page on localhost:8081, the
/// storefront on localhost:3000 (in Chromium, listing items over each protocol), and the
/// description schemathesis is driven by (as the walkthrough's admin).
fn docs_and_schemathesis_against_make_run(root: &Path) {
    let glance = Command::new("node")
        .arg(root.join("tests/storefront/glance.cjs"))
        .arg("http://localhost:3000")
        .env("NODE_PATH", edge_e2e::storefront_dir().join("node_modules"))
        .output()
        .expect("node");
    assert!(
        glance.status.success(),
        "the storefront in Chromium: {}{}",
        String::from_utf8_lossy(&glance.stdout),
        String::from_utf8_lossy(&glance.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&glance.stdout).expect("glance JSON");
    eprintln!("make run's storefront: {seen}");
    for protocol in ["json", "connect", "grpc-web"] {
        assert!(seen[protocol]["items"].as_u64() >= Some(1), "{seen}");
        assert_eq!(seen[protocol]["errors"], serde_json::json!([]), "{seen}");
    }
    let page = Command::new("curl")
        .args(["-s", "localhost:8081/"])
        .output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&page.stdout).contains("swagger-ui-bundle.js"),
        "make run serves the docs page on localhost:8081"
    );
    let signin = Command::new("curl")
        .args([
            "-s",
            "-d",
            r#"{"name":"admin"}"#,
            "localhost:8080/auth/signin",
        ])
        .output()
        .expect("curl");
    let answer: serde_json::Value = serde_json::from_slice(&signin.stdout).expect("sign-in JSON");
    let token = answer["access_token"].as_str().expect("the admin's token");
    let (passed, output) =
        run_schemathesis("http://localhost:8080", token, "10", &root.join(".run"));
    println!(
        "schemathesis against make run: {}",
        schemathesis_summary(&output)
    );
    assert!(passed, "schemathesis against make run:\n{output}");
}

fn crash_under_load(edge: &MakeRun) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let old_pid = read_pid("item");
    let load = |path: &'static str, body: Option<&'static str>| {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        runtime.spawn(async move {
            let mut answers = Vec::new();
            while started.elapsed() < Duration::from_secs(9) {
                let sent = Instant::now();
                let url = format!("http://localhost:8080{path}");
                let request = match body {
                    Some(body) => client.post(url).body(body),
                    None => client.get(url),
                };
                let (status, json_status) = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body: serde_json::Value = response.json().await.unwrap_or_default();
                        (status, status == 200 || body["code"].is_u64())
                    }
                    Err(_) => (0, false),
                };
                answers.push(Answer {
                    at: started.elapsed(),
                    status,
                    json_status,
                    took: sent.elapsed(),
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        })
    };
    let reads = load(
        Box::leak(format!("/catalog/items/{MOBILE_PHONE_ID}").into_boxed_str()),
        None,
    );
    let signins = load("/auth/signin", Some(r#"{"name":"goldie"}"#));
    std::thread::sleep(Duration::from_secs(1));
    must("kill", &["-9", &old_pid]);
    let killed_at = started.elapsed();
    let mut restarted_at = None;
    while started.elapsed() < Duration::from_secs(8) && restarted_at.is_none() {
        let pid = read_pid("item");
        if pid != old_pid && !pid.is_empty() {
            restarted_at = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let restarted_at = restarted_at.expect("the supervisor restarted item");
    let reads = runtime.block_on(reads).expect("reads");
    let signins = runtime.block_on(signins).expect("sign-ins");
    edge.wait_for("edge: item exited", Duration::from_secs(1));

    assert!(
        signins.iter().all(|a| a.status == 200),
        "sign-ins failed while item was down: {:?}",
        signins
            .iter()
            .filter(|a| a.status != 200)
            .collect::<Vec<_>>()
    );
    let slowest = reads.iter().map(|a| a.took).max().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(2),
        "a read hung for {slowest:?}"
    );
    let down: Vec<&Answer> = reads.iter().filter(|a| a.status != 200).collect();
    assert!(
        !down.is_empty(),
        "no read saw item down: the kill did not land"
    );
    assert!(
        down.iter()
            .all(|a| (500..600).contains(&a.status) && a.json_status),
        "reads while item was down must be JSON 5xx: {down:?}"
    );
    let recovered_at = reads
        .iter()
        .find(|a| a.at > restarted_at && a.status == 200)
        .map(|a| a.at)
        .expect("reads succeed again after the restart");
    assert!(
        reads
            .iter()
            .filter(|a| a.at > recovered_at)
            .all(|a| a.status == 200),
        "reads failed again after recovering"
    );
    assert!(
        recovered_at - restarted_at < Duration::from_secs(2),
        "reads recovered {:?} after the restart",
        recovered_at - restarted_at
    );
    println!(
        "crash under load: killed at {killed_at:?}, restarted {:?} later, reads 200 again {:?} after that; {} reads ({} refused, slowest {slowest:?}), {} sign-ins all 200",
        restarted_at - killed_at,
        recovered_at - restarted_at,
        reads.len(),
        down.len(),
        signins.len()
    );
}

fn read_pid(name: &str) -> String {
    std::fs::read_to_string(format!(".run/{name}.pid"))
        .map(|pid| pid.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn expectation_wildcards() {
    assert!(line_matches("a…c", "abbbc"));
    assert!(line_matches(
        "{\"id\":\"…\",\"n\":1}",
        "{\"id\":\"x\",\"n\":1}"
    ));
    assert!(!line_matches(
        "{\"id\":\"…\",\"n\":1}",
        "{\"id\":\"x\",\"n\":2}"
    ));
    assert!(line_matches("HTTP/1.1 200 OK", "HTTP/1.1 200 OK"));
    assert!(!line_matches("HTTP/1.1 200 OK", "HTTP/1.1 200 OKAY"));
    assert!(line_matches(
        "[…\"t\":\"K\"…]",
        "[{\"t\":\"x\"},{\"t\":\"K\"}]"
    ));
    assert!(!line_matches("a…b…c", "acb"));
}
