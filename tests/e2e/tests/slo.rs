//! The SLOs of envoy/edge.json, proven with the real tools: the rendered rules pass
//! `promtool check rules`, the burn-rate alerts pass `promtool test rules` on synthetic series
//! (tests/slo), and a real Prometheus scraping a real edge computes the availability SLI that
//! the traffic had: the injected share of failures, within a stated tolerance.

use edge_e2e::{test_dir, workspace_root, Edge, MOBILE_PHONE_ID};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn promtool(args: &[&str]) -> (bool, String) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("promtool (Debian's prometheus package: make prometheus installs it)");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn rules_pass_promtool_check_and_the_alert_tests() {
    let (ok, output) = promtool(&["check", "rules", "envoy/prometheus/rules.yaml"]);
    assert!(ok, "{output}");
    let (ok, output) = promtool(&["check", "config", "envoy/prometheus/prometheus.yml"]);
    assert!(ok, "{output}");

    // The PrometheusRule in istio/ carries the same groups.
    let root = workspace_root();
    let config = edge_e2e::edge_json();
    let digests = edgectl::load_digests(&root.join("istio/base/wasm-digests.json")).unwrap();
    let objects = config.istio_objects(&digests).expect("render istio/");
    let dir = test_dir("slo-rules");
    let spec = dir.join("prometheus-rule-spec.yaml");
    std::fs::write(
        &spec,
        edgectl::to_yaml(&objects["slo-rules.yaml"][0]["spec"]),
    )
    .unwrap();
    let (ok, output) = promtool(&["check", "rules", spec.to_str().unwrap()]);
    assert!(ok, "PrometheusRule spec: {output}");

    let (ok, output) = promtool(&[
        "test",
        "rules",
        "tests/slo/availability.test.yaml",
        "tests/slo/latency.test.yaml",
    ]);
    assert!(ok, "{output}");

    // The tests can fail: with the ticket threshold ten times too high, the slow burn opens
    // no ticket.
    let rules = std::fs::read_to_string(root.join("envoy/prometheus/rules.yaml")).unwrap();
    let broken = rules.replace("} > 0.001 and", "} > 0.01 and");
    assert_ne!(broken, rules);
    std::fs::write(dir.join("rules.yaml"), broken).unwrap();
    let test = std::fs::read_to_string(root.join("tests/slo/availability.test.yaml"))
        .unwrap()
        .replace("../../envoy/prometheus/rules.yaml", "rules.yaml");
    std::fs::write(dir.join("availability.test.yaml"), test).unwrap();
    let (ok, output) = promtool(&[
        "test",
        "rules",
        dir.join("availability.test.yaml").to_str().unwrap(),
    ]);
    assert!(!ok, "a broken ticket threshold passed:\n{output}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A Prometheus scraping the test edge every second, evaluating the SLO rules every second.
struct Prometheus {
    child: Child,
    url: String,
}

impl Prometheus {
    fn start(edge: &Edge, dir: &std::path::Path) -> Self {
        let rules = std::fs::read_to_string(workspace_root().join("envoy/prometheus/rules.yaml"))
            .unwrap()
            .replace("interval: \"30s\"", "interval: \"1s\"");
        std::fs::write(dir.join("rules.yaml"), rules).unwrap();
        let admin = edge.admin_url.trim_start_matches("http://");
        // The product's scrape configuration, at test intervals.
        let config = edgectl::prometheus_config(admin, "1s", "1s");
        std::fs::write(dir.join("prometheus.yml"), edgectl::to_yaml(&config)).unwrap();
        // A free loopback port (Prometheus does not report one it picked itself).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (make prometheus installs it)");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn query(&self, http: &reqwest::Client, expr: &str) -> Option<f64> {
        let answer: Value = http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_measures_the_failures_the_clients_saw() {
    let mut edge = Edge::start().await;
    let dir = test_dir("slo-prometheus");
    let prometheus = Prometheus::start(&edge, &dir);
    let url = edge.url(&format!("/catalog/items/{MOBILE_PHONE_ID}"));
    let http = edge.http.clone();
    let read = |phase: Duration| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            let started = Instant::now();
            while started.elapsed() < phase {
                match http.get(&url).send().await.map(|r| r.status().as_u16()) {
                    Ok(200) => ok += 1,
                    Ok(status) if status >= 500 => failed += 1,
                    other => panic!("unexpected answer {other:?}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, failed)
        }
    };
    // Both series (200s and 5xx) exist and are scraped before the measured traffic, so that
    // rate() sees every request of it rather than starting a series mid-run.
    let (warm_ok, _) = read(Duration::from_millis(200)).await;
    edge.kill_service("catalog");
    let (_, warm_failed) = read(Duration::from_millis(100)).await;
    edge.restart_service("catalog");
    let scraped = |class: &'static str| {
        format!(
            r#"sum(edge_requests_total{{route="/catalog/items/{{id}}",status_class="{class}"}})"#
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while prometheus
        .query(&http, &scraped("5xx"))
        .await
        .unwrap_or_default()
        < f64::from(warm_failed)
        || prometheus
            .query(&http, &scraped("2xx"))
            .await
            .unwrap_or_default()
            < f64::from(warm_ok)
    {
        assert!(
            Instant::now() < deadline,
            "Prometheus does not scrape the edge"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Healthy, catalog down (every read a 503), healthy again.
    let (ok_1, failed_1) = read(Duration::from_secs(6)).await;
    edge.kill_service("catalog");
    let (ok_2, failed_2) = read(Duration::from_secs(4)).await;
    edge.restart_service("catalog");
    let (ok_3, failed_3) = read(Duration::from_secs(6)).await;
    let failed = f64::from(warm_failed + failed_1 + failed_2 + failed_3);
    let total = failed + f64::from(warm_ok + ok_1 + ok_2 + ok_3);
    let injected = failed / total;
    assert!(failed_2 > 0, "the outage produced no failures");

    // Wait for the last scrape and evaluation, then read the recording rule.
    let record = r#"slo:sli_availability_errors:ratio_rate5m{slo="catalog-reads"}"#;
    let counted = r#"sum(edge_requests_total{route="/catalog/items/{id}",method="GET"})"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    let measured = loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let seen = prometheus.query(&http, counted).await.unwrap_or_default();
        if seen >= total {
            if let Some(value) = prometheus.query(&http, record).await {
                break value;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no {record} (scraped {seen} of {total} requests); see {}",
            dir.join("prometheus.log").display()
        );
    };
    println!(
        "SLI: injected {:.4} ({failed} of {total} reads failed), Prometheus measured {measured:.4}",
        injected
    );
    // rate() extrapolates each series a little past its first and last samples; with both
    // series scraped before and after the traffic that moves the ratio by a point or two.
    assert!(
        (measured - injected).abs() <= 0.03,
        "SLI {measured} vs injected {injected}"
    );
    drop(prometheus);
    let _ = std::fs::remove_dir_all(dir);
}
