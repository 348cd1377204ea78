//! Jaeger (v2: the `jaeger` binary built from its module by `make`, memory storage) on free
//! loopback ports, as a user runs it with `make observe` (envoy/jaeger/jaeger.yaml): Envoy's
//! tracer and the services export OTLP/gRPC to it, and the tests read each trace back through
//! its HTTP query API (`/api/v3/traces/{id}`, OTLP's JSON), as its UI does.

use crate::otlp::ReceivedSpan;
use crate::{free_port, from_env_or, require, test_dir, workspace_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned Jaeger (`make jaeger`); `JAEGER_BIN` names another binary (make sets it).
pub fn jaeger_binary() -> PathBuf {
    let binary = from_env_or(
        "JAEGER_BIN",
        workspace_root().join("target/tools/jaeger-v1.75.0/jaeger"),
    );
    require(&binary, "Jaeger (make jaeger)")
}

/// Runs until dropped.
pub struct Jaeger {
    process: Child,
    /// `127.0.0.1:PORT`: its OTLP/gRPC receiver.
    pub address: String,
    /// `http://127.0.0.1:PORT`: its UI and query API.
    pub query_url: String,
    http: reqwest::Client,
}

impl Jaeger {
    pub async fn start() -> Jaeger {
        let dir = test_dir("jaeger");
        let (otlp, query, query_grpc) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(dir.join("jaeger.log")).expect("jaeger.log");
        let process = Command::new(jaeger_binary())
            .arg("--config")
            .arg(workspace_root().join("envoy/jaeger/jaeger.yaml"))
            .env("JAEGER_OTLP_PORT", otlp.to_string())
            .env("JAEGER_QUERY_PORT", query.to_string())
            .env("JAEGER_QUERY_GRPC_PORT", query_grpc.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start jaeger");
        let jaeger = Jaeger {
            process,
            address: format!("127.0.0.1:{otlp}"),
            query_url: format!("http://127.0.0.1:{query}"),
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        loop {
            let up = jaeger
                .http
                .get(format!("{}/api/services", jaeger.query_url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let otlp_up = std::net::TcpStream::connect(&jaeger.address).is_ok();
            if up && otlp_up {
                return jaeger;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Jaeger did not start: {}",
                std::fs::read_to_string(dir.join("jaeger.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, as `OTEL_EXPORTER_OTLP_ENDPOINT` wants it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The spans of trace `trace_id` as Jaeger serves them, once `done` says they are all
    /// there, or whatever it has after `timeout` (exporters batch: Envoy's every 5 s).
    pub async fn trace(
        &self,
        trace_id: &str,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.read_trace(trace_id).await;
            if done(&spans) || Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn read_trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        let Ok(response) = self
            .http
            .get(format!("{}/api/v3/traces/{trace_id}", self.query_url))
            .send()
            .await
        else {
            return Vec::new();
        };
        if !response.status().is_success() {
            return Vec::new();
        }
        let body: Value = response.json().await.unwrap_or_default();
        spans_of(&body["result"])
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// OTLP's JSON (`resourceSpans`) as [`ReceivedSpan`]s. Ids are hex, or base64 as protobuf's
/// JSON writes bytes: either is read.
fn spans_of(traces: &Value) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    for resource_spans in traces["resourceSpans"].as_array().into_iter().flatten() {
        let service = attributes(&resource_spans["resource"]["attributes"])
            .remove("service.name")
            .unwrap_or_default();
        for scope in resource_spans["scopeSpans"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for span in scope["spans"].as_array().into_iter().flatten() {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span["name"].as_str().unwrap_or_default().to_string(),
                    trace_id: id(&span["traceId"]),
                    span_id: id(&span["spanId"]),
                    parent_span_id: id(&span["parentSpanId"]),
                    kind: enum_number(&span["kind"], "SPAN_KIND_"),
                    attributes: attributes(&span["attributes"]),
                    status_code: enum_number(&span["status"]["code"], "STATUS_CODE_"),
                    start_unix_nanos: number(&span["startTimeUnixNano"]),
                    end_unix_nanos: number(&span["endTimeUnixNano"]),
                });
            }
        }
    }
    spans
}

fn id(value: &Value) -> String {
    let text = value.as_str().unwrap_or_default();
    if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return text.to_ascii_lowercase();
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// An OTLP enum as its number, whether written as one or by name.
fn enum_number(value: &Value, prefix: &str) -> i32 {
    if let Some(n) = value.as_i64() {
        return n as i32;
    }
    let names = match prefix {
        "SPAN_KIND_" => &[
            "UNSPECIFIED",
            "INTERNAL",
            "SERVER",
            "CLIENT",
            "PRODUCER",
            "CONSUMER",
        ][..],
        _ => &["UNSET", "OK", "ERROR"][..],
    };
    value
        .as_str()
        .and_then(|name| name.strip_prefix(prefix))
        .and_then(|name| names.iter().position(|n| *n == name))
        .unwrap_or(0) as i32
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_default()
}

fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let key = kv["key"].as_str()?.to_string();
            let value = &kv["value"];
            let text = ["stringValue", "intValue", "boolValue", "doubleValue"]
                .iter()
                .find_map(|kind| match &value[*kind] {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })?;
            Some((key, text))
        })
        .collect()
}
