//! One request through the access log, for any host: what it notes when the request arrives
//! ([`arrive`]), and the line and the metrics it writes when the request ends
//! ([`depart`]). The glue adds only what is proxy-wasm's own: the CEL expression that reads
//! Envoy's attributes. Batches for the collector are shipped by [`crate::shipping`].

use crate::attributes::Attributes;
use crate::metrics::{samples, DROPPED_LINES};
use crate::{new_traceparent, AccessLogConfig, LineBuffer, Record, Timing};
use edge_core::host::{Host, Level};
use edge_core::Headers;
use std::time::Duration;

/// What the access log keeps from a request's arrival until it is logged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arrival {
    /// The proxy's clock when the headers arrived (the filter is first in the chain).
    pub started: Option<Duration>,
    /// The headers as the client sent them: the line logs the client's request.
    pub headers: Headers,
    /// The `traceparent` this filter started, if the request came without one.
    pub traceparent: Option<String>,
}

impl Arrival {
    /// The request headers as the filter after this one finds them: the client's, and the
    /// `traceparent` this filter added.
    pub fn forwarded_headers(&self) -> Headers {
        let mut headers = self.headers.clone();
        if let Some(traceparent) = &self.traceparent {
            headers.push("traceparent", traceparent);
        }
        headers
    }
}

/// Notes the request's arrival; starts a trace for a request without one when configured
/// (first in the chain, so it reaches the backend). `seen` differs between requests.
pub fn arrive<H: Host>(host: &H, config: &AccessLogConfig, seen: u64) -> Arrival {
    // The clock is one cheap host call; the `request.time` and `request.duration` attributes
    // would be two property reads, each far dearer.
    let started = host.now();
    // Unreadable headers are logged as absent (and a trace is started).
    let headers = host.request_headers().unwrap_or_default();
    let traceparent =
        (config.generate_traceparent && !headers.contains("traceparent")).then(|| {
            // Any value that differs between requests will do.
            let parent = new_traceparent(
                headers.get("x-request-id").unwrap_or_default(),
                seen ^ started.map_or(0, |now| now.as_nanos() as u64),
            );
            // Diagnostics only: without it the request still goes on, untraced. Added, not
            // set: the snapshot shows none to replace.
            let _ = host.add_request_header("traceparent", &parent);
            parent
        });
    Arrival {
        started,
        headers,
        traceparent,
    }
}

/// The request's timing: from its arrival by the proxy's clock, else (the proxy answered
/// before the filters saw the request) from the proxy's own attributes.
pub fn timing<H: Host>(host: &H, started: Option<Duration>) -> Timing {
    let int_property = |path: &[&str]| -> u64 {
        host.property(path)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map_or(0, u64::from_le_bytes)
    };
    match (started, host.now()) {
        (Some(started), Some(now)) => Timing {
            started_unix_nanos: started.as_nanos() as u64,
            duration_nanos: now.saturating_sub(started).as_nanos() as u64,
        },
        _ => Timing {
            started_unix_nanos: int_property(&["request", "time"]),
            duration_nanos: int_property(&["request", "duration"]),
        },
    }
}

/// Writes the request's line (to the proxy's log, or to `buffer` for the collector) and its
/// metrics.
pub fn depart<H: Host>(
    host: &H,
    config: &AccessLogConfig,
    arrival: &Arrival,
    attributes: Attributes,
    buffer: &mut LineBuffer,
) {
    let timing = timing(host, arrival.started);
    let record = Record::of(
        config,
        &arrival.headers,
        &attributes,
        timing,
        arrival.traceparent.as_deref(),
    );
    let line = record.to_json();
    if config.collector.is_some() {
        if !buffer.push(line) {
            host.increment_counter(DROPPED_LINES);
        }
    } else if let Some(key) = &config.filter_state_key {
        // Without a stream to hold it (none is known), the line still reaches Envoy's log.
        if host.set_filter_state(key, &line).is_err() {
            host.log(Level::Info, &line);
        }
    } else {
        host.log(Level::Info, &line);
    }
    for sample in samples(&record) {
        sample.record(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::host::{Call, HostError, RecordingHost};

    fn config(json: &str) -> AccessLogConfig {
        AccessLogConfig::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_request_without_a_trace_gets_one_from_its_request_id() {
        let host = RecordingHost::with_headers(&[
            (":method", "GET"),
            ("x-request-id", "0af76519-16cd-43dd-8448-eb211c80319c"),
        ]);
        host.now.set(Some(Duration::from_secs(7)));
        let arrival = arrive(&host, &config(r#"{"generate_traceparent": true}"#), 1);
        let parent = arrival.traceparent.clone().expect("started a trace");
        assert!(
            parent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{parent}"
        );
        assert_eq!(
            host.calls(),
            vec![Call::AddHeader("traceparent".into(), parent.clone())]
        );
        assert_eq!(arrival.started, Some(Duration::from_secs(7)));

        // What the next filter finds: the client's headers and the one added.
        let forwarded = RecordingHost::with_headers(&[
            (":method", "GET"),
            ("x-request-id", "0af76519-16cd-43dd-8448-eb211c80319c"),
            ("traceparent", &parent),
        ]);
        assert_eq!(arrival.forwarded_headers(), forwarded.headers);

        let traced = RecordingHost::with_headers(&[("traceparent", "00-ab-cd-01")]);
        let arrival = arrive(&traced, &config(r#"{"generate_traceparent": true}"#), 2);
        assert_eq!(arrival.traceparent, None);
        assert!(traced.calls().is_empty(), "the client's trace is kept");
        assert_eq!(arrival.forwarded_headers(), arrival.headers);
    }

    #[test]
    fn a_line_goes_to_the_log_with_its_metrics() {
        let host = RecordingHost::with_headers(&[(":method", "GET"), (":path", "/x?secret=1")]);
        let config = config(r#"{"generate_traceparent": false}"#);
        let mut arrival = arrive(&host, &config, 1);
        arrival.started = Some(Duration::from_millis(1_000));
        host.now.set(Some(Duration::from_millis(1_004)));
        let attributes = Attributes {
            status: 404,
            ..Attributes::default()
        };
        depart(
            &host,
            &config,
            &arrival,
            attributes,
            &mut LineBuffer::new(1),
        );
        let calls = host.calls();
        let Call::Log(Level::Info, line) = &calls[0] else {
            panic!("{calls:?}");
        };
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["path"], "/x", "no query by default");
        assert_eq!(
            (line["status"].as_u64(), line["duration_ms"].as_f64()),
            (Some(404), Some(4.0))
        );
        assert!(
            matches!(&calls[1], Call::Counter(name) if name.starts_with("edge_requests_total."))
        );
        assert!(
            matches!(&calls[2], Call::Histogram(name, 4) if name.starts_with("edge_request_duration_milliseconds."))
        );
    }

    #[test]
    fn without_its_arrival_a_request_is_timed_by_the_proxy_and_a_full_buffer_drops_lines() {
        let mut host = RecordingHost::default();
        host.properties
            .insert("request.time".into(), 5_000_000u64.to_le_bytes().to_vec());
        host.properties.insert(
            "request.duration".into(),
            2_000_000u64.to_le_bytes().to_vec(),
        );
        assert_eq!(
            timing(&host, None),
            Timing {
                started_unix_nanos: 5_000_000,
                duration_nanos: 2_000_000
            }
        );
        let config =
            config(r#"{"collector": {"cluster": "log-collector", "max_buffered_lines": 1}}"#);
        let mut buffer = LineBuffer::new(1);
        let arrival = Arrival::default();
        depart(&host, &config, &arrival, Attributes::default(), &mut buffer);
        assert!(!buffer.is_empty());
        depart(&host, &config, &arrival, Attributes::default(), &mut buffer);
        let dropped = host
            .calls()
            .iter()
            .filter(|call| matches!(call, Call::Counter(name) if name == DROPPED_LINES))
            .count();
        assert_eq!(dropped, 1, "the second line did not fit");
    }

    #[test]
    fn a_line_for_envoys_access_log_waits_in_filter_state_or_falls_back_to_the_log() {
        let config = config(r#"{"filter_state_key": "edge.access_log"}"#);
        let arrival = Arrival::default();
        let end = |host: &RecordingHost| {
            depart(
                host,
                &config,
                &arrival,
                Attributes::default(),
                &mut LineBuffer::new(0),
            )
        };
        let host = RecordingHost::default();
        end(&host);
        let calls = host.calls();
        let Call::SetFilterState(key, line) = &calls[0] else {
            panic!("{calls:?}");
        };
        assert_eq!(key, "edge.access_log");
        assert!(line.starts_with("{\"time\":"), "{line}");
        assert!(!calls.iter().any(|call| matches!(call, Call::Log(..))));

        // A host with no filter state for it (none known): the line is not lost.
        let host = RecordingHost {
            failing_filter_state: Some(HostError::UNIMPLEMENTED),
            ..RecordingHost::default()
        };
        end(&host);
        assert!(
            matches!(&host.calls()[0], Call::Log(Level::Info, line) if line.starts_with("{\"time\":"))
        );
    }
}
