//! Native glue of the access log: notes the request's arrival, and when the stream completes
//! (before Envoy's own access logs) reads Envoy's attributes directly — one cheap call each,
//! where the Wasm glue compiles a CEL expression to save host calls — and writes the line and
//! its labelled metrics.

use crate::{FilterConfig, StreamFilter};
use edge_access_log::attributes::{Attributes, Read};
use edge_access_log::metrics::{self, FAMILY_LABELS};
use edge_access_log::request::{arrive, depart, Arrival};
use edge_access_log::{AccessLogConfig, LineBuffer};
use edge_core::host::Host;
use edge_core::notes;
use edge_native_host::abi::{attribute, status, EnvoyConfig, EnvoyFilter};
use edge_native_host::{Family, MetricKind, Metrics, NativeHost, Scope};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) const NAME: &str = "access-log";

struct Config {
    config: Arc<AccessLogConfig>,
    metrics: Arc<Metrics>,
    /// Mixed into generated span ids so that they differ between requests.
    requests_seen: AtomicU64,
}

pub(crate) fn configure(
    envoy: EnvoyConfig,
    config: &[u8],
) -> Result<Box<dyn FilterConfig>, String> {
    let config = AccessLogConfig::from_json(config)?;
    if config.collector.is_some() {
        return Err(
            "access-log: the native module does not ship to a collector yet; use the Wasm module for `collector`"
                .into(),
        );
    }
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
    Ok(Box::new(Config {
        config: Arc::new(config),
        // SAFETY: `envoy` is the configuration of the hook being run.
        #[allow(unsafe_code)]
        metrics: Arc::new(unsafe { Metrics::define(envoy, &families) }),
        requests_seen: AtomicU64::new(0),
    }))
}

impl FilterConfig for Config {
    fn new_filter(&self, envoy: EnvoyFilter) -> Box<dyn StreamFilter> {
        let seen = self.requests_seen.fetch_add(1, Ordering::Relaxed);
        Box::new(AccessLog {
            host: NativeHost::new(NAME, Scope::Filter(envoy), self.metrics.clone()),
            config: self.config.clone(),
            seen,
            arrival: None,
        })
    }
}

struct AccessLog {
    host: NativeHost,
    config: Arc<AccessLogConfig>,
    seen: u64,
    /// `None`: Envoy answered before the filters saw the request.
    arrival: Option<Arrival>,
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
        self.arrival = Some(arrive(&self.host, &self.config, self.seen));
        status::CONTINUE
    }

    fn complete(&mut self) {
        let arrival = self.arrival.take().unwrap_or_else(|| Arrival {
            headers: self.host.request_headers().unwrap_or_default(),
            ..Arrival::default()
        });
        let attributes = self.attributes();
        // No collector: lines go to Envoy's log, the buffer stays empty.
        depart(
            &self.host,
            &self.config,
            &arrival,
            attributes,
            &mut LineBuffer::new(0),
        );
    }
}
