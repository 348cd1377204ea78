//! A closed-loop load generator: a fixed number of connections, each sending its next request
//! as soon as the previous answer arrived, latencies in an HDR histogram.

use hdrhistogram::Histogram;
use platform_proto::catalog::{catalog_service_client::CatalogServiceClient, GetItemRequest};
use std::time::{Duration, Instant};

/// One HTTP request shape and the status a correct edge answers it with.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: reqwest::Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub expect: u16,
    /// Bearer tokens used in turn, one per request (empty: `headers` alone).
    pub tokens: std::sync::Arc<Vec<String>>,
}

/// How long a run lasts: a time, or a number of requests on each connection.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    For(Duration),
    Requests(u64),
}

impl From<Duration> for Budget {
    fn from(duration: Duration) -> Self {
        Budget::For(duration)
    }
}

impl Budget {
    /// Whether a connection that started at `started` and has sent `sent` requests goes on.
    fn goes_on(self, started: Instant, sent: u64) -> bool {
        match self {
            Budget::For(duration) => started.elapsed() < duration,
            Budget::Requests(count) => sent < count,
        }
    }
}

/// What one measured run saw.
#[derive(Debug, Default)]
pub struct Run {
    pub requests: u64,
    pub unexpected: u64,
    pub elapsed: Duration,
    pub latency: Option<Histogram<u64>>,
}

impl Run {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(quantile) as f64 / 1000.0)
    }

    /// Whether there were requests and every one was answered as expected.
    pub fn all_correct(&self) -> bool {
        self.requests > 0 && self.unexpected == 0
    }

    /// `all_correct`, or an error naming `what` ran.
    pub fn check(&self, what: &str) -> Result<(), String> {
        if self.all_correct() {
            Ok(())
        } else {
            Err(format!(
                "{what}: {} unexpected answers of {}",
                self.unexpected, self.requests
            ))
        }
    }

    pub fn max_ms(&self) -> f64 {
        self.latency
            .as_ref()
            .map_or(0.0, |h| h.max() as f64 / 1000.0)
    }
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 60 s, 3 significant digits: fixed, valid bounds.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What one connection saw.
struct Tally {
    requests: u64,
    unexpected: u64,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            requests: 0,
            unexpected: 0,
            latency: histogram(),
        }
    }

    fn record(&mut self, sent: Instant, ok: bool) {
        let _ = self
            .latency
            .record(sent.elapsed().as_micros().max(1) as u64);
        self.requests += 1;
        self.unexpected += u64::from(!ok);
    }
}

/// Waits for every connection's task and adds up what they saw.
async fn gather(tasks: Vec<tokio::task::JoinHandle<Tally>>, started: Instant) -> Run {
    let mut run = Run {
        latency: Some(histogram()),
        ..Run::default()
    };
    for task in tasks {
        if let Ok(tally) = task.await {
            run.requests += tally.requests;
            run.unexpected += tally.unexpected;
            if let Some(latency) = run.latency.as_mut() {
                let _ = latency.add(tally.latency);
            }
        }
    }
    run.elapsed = started.elapsed();
    run
}

/// HTTP/1.1 load against `base` (e.g. `http://127.0.0.1:8080`): `connections` clients, each with
/// one keep-alive connection, for the `budget`.
pub async fn http(
    base: &str,
    request: &HttpRequest,
    connections: usize,
    budget: impl Into<Budget>,
) -> Run {
    let budget = budget.into();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let client = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let request = request.clone();
        let url = format!("{base}{}", request.path);
        // Each connection starts its own share of the tokens: none is sent twice until every
        // connection has used its share.
        let mut turn = connection * request.tokens.len() / connections;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            while budget.goes_on(started, tally.requests) {
                let mut builder = client.request(request.method.clone(), &url);
                for (name, value) in &request.headers {
                    builder = builder.header(name, value);
                }
                if !request.tokens.is_empty() {
                    turn = (turn + 1) % request.tokens.len();
                    builder = builder.bearer_auth(&request.tokens[turn]);
                }
                if let Some(body) = &request.body {
                    builder = builder
                        .header("content-type", "application/json")
                        .body(body.clone());
                }
                let sent = Instant::now();
                let ok = match builder.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        response.bytes().await.is_ok() && status == request.expect
                    }
                    Err(_) => false,
                };
                tally.record(sent, ok);
            }
            tally
        }));
    }
    gather(tasks, started).await
}

/// gRPC `GetItem` load against catalog or the edge at `target`, over `connections` HTTP/2
/// connections, for the `budget`.
pub async fn grpc_get_item(
    target: &str,
    item_id: &str,
    bearer: Option<&str>,
    connections: usize,
    budget: impl Into<Budget>,
) -> Run {
    let budget = budget.into();
    let authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
        bearer.and_then(|token| format!("Bearer {token}").parse().ok());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let mut client = CatalogServiceClient::connect(target.to_string())
            .await
            .expect("connect to catalog");
        let id = item_id.to_string();
        let authorization = authorization.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            while budget.goes_on(started, tally.requests) {
                let sent = Instant::now();
                let mut request = tonic::Request::new(GetItemRequest { id: id.clone() });
                if let Some(value) = &authorization {
                    request
                        .metadata_mut()
                        .insert("authorization", value.clone());
                }
                let ok = client.get_item(request).await.is_ok();
                tally.record(sent, ok);
            }
            tally
        }));
    }
    gather(tasks, started).await
}
