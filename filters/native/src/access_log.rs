//! Native glue of the access log: notes the request's arrival, and when the stream completes
//! (before Envoy's own access logs) reads Envoy's attributes directly — one cheap call each,
//! where the Wasm glue compiles a CEL expression to save host calls — and writes the line and
//! its labelled metrics. Its counts wait in the module and reach Envoy's stats each second,
//! from the main thread ([`Metrics::hold_counts`]); its histogram values go at once. With a
//! collector, lines wait in one buffer for the whole process (the Wasm build keeps one per
//! worker), shipped from the main thread every `flush_interval_ms` by config-level callouts;
//! a configuration that replaces another takes over its waiting lines.

use crate::ticker::Ticker;
use crate::{FilterConfig, StreamFilter};
use edge_access_log::attributes::{Attributes, Read};
use edge_access_log::metrics::{self, FAMILY_LABELS};
use edge_access_log::request::{arrive, depart, Arrival};
use edge_access_log::shipping::Shipping;
use edge_access_log::{AccessLogConfig, CollectorConfig, LineBuffer};
use edge_core::host::Host;
use edge_core::notes;
use edge_native_host::abi::{attribute, status, EnvoyConfig, EnvoyFilter};
use edge_native_host::notes::StreamNotes;
use edge_native_host::{CallPart, Delivery, Family, MetricKind, Metrics, NativeHost, Scope};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

pub(crate) const NAME: &str = "access-log";

pub(crate) struct Config {
    config: Arc<AccessLogConfig>,
    metrics: Arc<Metrics>,
    /// Mixed into generated span ids so that they differ between requests.
    requests_seen: AtomicU64,
    /// Lines waiting for the collector (empty without one).
    buffer: Arc<Mutex<LineBuffer>>,
    /// The batch in flight, and the main thread's host that ships it.
    shipping: RefCell<Shipping>,
    host: NativeHost,
    /// When lines were last shipped (ticks come more often when counts are due sooner).
    last_shipped: Cell<Instant>,
    _ticker: Ticker,
}

/// The scheduler event of the access log's ticks.
pub(crate) const TICK_EVENT: u64 = 2;

/// How long a stream's counts may wait in the module before Envoy's stats have them.
const COUNTS_PERIOD: Duration = Duration::from_secs(1);

impl Drop for Config {
    /// Envoy destroys its configuration after this (and the filters before): the counts held
    /// since the last tick still reach its stats.
    fn drop(&mut self) {
        self.metrics.flush();
    }
}

pub(crate) fn configure(envoy: EnvoyConfig, config: &[u8]) -> Result<Config, String> {
    let config = AccessLogConfig::from_json(config)?;
    let families: Vec<Family> = FAMILY_LABELS
        .iter()
        .map(|(name, labels)| Family {
            name,
            kind: if *name == metrics::DURATION {
                MetricKind::Histogram
            } else {
                MetricKind::Counter
            },
            labels,
        })
        .collect();
    // SAFETY: `envoy` is the configuration of the hook being run.
    #[allow(unsafe_code)]
    let metrics = Arc::new(unsafe { Metrics::define(envoy, &families) }.hold_counts(envoy));
    let buffer = waiting_lines(config.collector.as_ref());
    // The held counts go to Envoy every second; lines to the collector as often as it says.
    let period = config
        .collector
        .as_ref()
        .map_or(COUNTS_PERIOD, |collector| {
            COUNTS_PERIOD.min(Duration::from_millis(collector.flush_interval_ms))
        });
    Ok(Config {
        config: Arc::new(config),
        host: NativeHost::new(NAME, Scope::Config(envoy), metrics.clone()),
        metrics,
        requests_seen: AtomicU64::new(0),
        buffer,
        shipping: RefCell::default(),
        last_shipped: Cell::new(Instant::now()),
        _ticker: Ticker::start(envoy, period, TICK_EVENT),
    })
}

impl Config {
    pub(crate) fn filter(&self, envoy: EnvoyFilter) -> AccessLog {
        let seen = self.requests_seen.fetch_add(1, Ordering::Relaxed);
        AccessLog {
            host: NativeHost::new(NAME, Scope::Filter(envoy), self.metrics.clone())
                .with_notes(Some(StreamNotes::open())),
            config: self.config.clone(),
            seen,
            arrival: None,
            buffer: self.buffer.clone(),
        }
    }
}

/// The lines waiting for each collector, by its cluster, for as long as a configuration ships
/// to it: a configuration that replaces another (ECDS: a policy change replaces auth's and so
/// the access log's, see `pair`) takes over the lines it had not shipped yet.
static WAITING_LINES: Mutex<Vec<(String, Weak<Mutex<LineBuffer>>)>> = Mutex::new(Vec::new());

/// The buffer for `collector`'s lines: the one already there, if any (holding at most the new
/// capacity from now on). Without a collector, an empty one nothing ships from.
fn waiting_lines(collector: Option<&CollectorConfig>) -> Arc<Mutex<LineBuffer>> {
    let Some(collector) = collector else {
        return Arc::new(Mutex::new(LineBuffer::new(0)));
    };
    let fresh = || Arc::new(Mutex::new(LineBuffer::new(collector.max_buffered_lines)));
    let Ok(mut waiting) = WAITING_LINES.lock() else {
        return fresh();
    };
    waiting.retain(|(_, buffer)| buffer.strong_count() > 0);
    let kept = waiting
        .iter()
        .filter(|(cluster, _)| *cluster == collector.cluster)
        .find_map(|(_, buffer)| buffer.upgrade());
    if let Some(buffer) = kept {
        if let Ok(mut lines) = buffer.lock() {
            lines.set_capacity(collector.max_buffered_lines);
        }
        return buffer;
    }
    let buffer = fresh();
    waiting.push((collector.cluster.clone(), Arc::downgrade(&buffer)));
    buffer
}

impl FilterConfig for Config {
    fn new_filter(&self, envoy: EnvoyFilter) -> Box<dyn StreamFilter> {
        Box::new(self.filter(envoy))
    }

    fn scheduled(&self, _event: u64) {
        self.metrics.flush();
        let (Some(collector), Ok(mut shipping)) =
            (&self.config.collector, self.shipping.try_borrow_mut())
        else {
            return;
        };
        // A tick a little early still ships: ticks and the interval are alike.
        let due = Duration::from_millis(collector.flush_interval_ms).mul_f64(0.9);
        if self.last_shipped.get().elapsed() < due {
            return;
        }
        self.last_shipped.set(Instant::now());
        if let Ok(mut buffer) = self.buffer.lock() {
            shipping.flush(&self.host, collector, &mut buffer);
        }
    }

    fn call(&self, stream: u64, part: CallPart<'_>) {
        let Ok(mut shipping) = self.shipping.try_borrow_mut() else {
            return;
        };
        let host = &self.host;
        host.on_call(stream, part, |token, delivery| {
            if let Delivery::Close(status) = delivery {
                shipping.on_answer(host, token, status);
            }
        });
    }
}

pub(crate) struct AccessLog {
    host: NativeHost,
    config: Arc<AccessLogConfig>,
    seen: u64,
    /// `None`: Envoy answered before the filters saw the request.
    pub(crate) arrival: Option<Arrival>,
    buffer: Arc<Mutex<LineBuffer>>,
}

impl AccessLog {
    fn attributes(&self) -> Attributes {
        let host = &self.host;
        let int = |id| host.attribute_int(id).unwrap_or_default();
        // Only a request the router sent on names its cluster.
        let routed_cluster = host
            .attribute_string(attribute::UPSTREAM_ADDRESS)
            .and_then(|_| host.attribute_string(attribute::XDS_CLUSTER_NAME));
        Attributes::read(
            Read {
                status: int(attribute::RESPONSE_CODE),
                bytes_in: int(attribute::REQUEST_TOTAL_SIZE),
                bytes_out: int(attribute::RESPONSE_TOTAL_SIZE),
                peer: host.attribute_string(attribute::SOURCE_ADDRESS),
                grpc_status: host
                    .attribute_int(attribute::RESPONSE_GRPC_STATUS)
                    .and_then(|status| u32::try_from(status).ok()),
                routed_cluster,
            },
            &host.note(notes::AUTH).unwrap_or_default(),
            &host.note(notes::TRANSCODE).unwrap_or_default(),
        )
    }
}

impl StreamFilter for AccessLog {
    fn request_headers(&mut self, _end_of_stream: bool) -> u32 {
        self.host.close_notes();
        self.arrival = Some(arrive(&self.host, &self.config, self.seen));
        status::CONTINUE
    }

    fn complete(&mut self) {
        self.host.close_notes();
        let arrival = self.arrival.take().unwrap_or_else(|| Arrival {
            headers: self.host.request_headers().unwrap_or_default(),
            ..Arrival::default()
        });
        let attributes = self.attributes();
        // Without a collector the line goes to Envoy's log and the buffer stays empty.
        let Ok(mut buffer) = self.buffer.lock() else {
            return;
        };
        depart(&self.host, &self.config, &arrival, attributes, &mut buffer);
    }
}
