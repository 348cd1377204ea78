//! The access log's logic, free of proxy-wasm: the record written for each request and its
//! JSON form (serde_json escapes every value, so a header full of quotes or newlines cannot
//! forge a second log line).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod attributes;
pub mod metrics;
pub mod request;
pub mod shipping;

use attributes::Attributes;
use edge_core::{trace, Headers};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The access log's configuration (JSON in the Wasm plugin's `configuration`; may be empty).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Log the query string as part of `path` (off by default: queries can carry secrets).
    pub include_query: bool,
    /// Query parameters whose values are replaced by `REDACTED` when queries are logged.
    pub redact_query_params: Vec<String>,
    /// Proxies in front of Envoy whose `x-forwarded-for` entries are trusted: 0 logs the
    /// peer address; N logs the Nth address from the right of `x-forwarded-for`.
    pub trusted_xff_hops: usize,
    /// Start a W3C trace (`traceparent`) for requests that arrive without one.
    pub generate_traceparent: bool,
    /// Ship lines to a collector over gRPC instead of writing them to Envoy's log.
    pub collector: Option<CollectorConfig>,
    /// Hand each line to Envoy's own access logs instead of its log: the line is stored in
    /// the stream's filter state under this key, which an access log prints with
    /// `%FILTER_STATE(<key>:PLAIN)%` and writes off the worker thread (a file log's flush
    /// thread), or sends wherever Envoy's access loggers can. The native module only: Envoy
    /// runs its access logs before a Wasm filter's `on_log`, too early for the line.
    pub filter_state_key: Option<String>,
}

/// Batched shipping to `telemetry.LogCollector/Ship`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// The collector's Envoy cluster (HTTP/2).
    pub cluster: String,
    #[serde(default = "default_batch_lines")]
    pub batch_lines: usize,
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Lines a worker holds while the collector is slow or down; beyond this they are dropped
    /// (and counted), so memory stays bounded and requests never wait.
    #[serde(default = "default_max_buffered_lines")]
    pub max_buffered_lines: usize,
    #[serde(default = "default_collector_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_batch_lines() -> usize {
    100
}
fn default_flush_interval_ms() -> u64 {
    1000
}
fn default_max_buffered_lines() -> usize {
    10_000
}
fn default_collector_timeout_ms() -> u64 {
    2000
}

/// What the collector's `Ship` takes, generated from `proto/platform/telemetry.proto`.
pub use platform_proto::telemetry::LogBatch;

/// A worker's lines waiting to be shipped: bounded, oldest first.
#[derive(Debug, Default)]
pub struct LineBuffer {
    lines: std::collections::VecDeque<String>,
    capacity: usize,
}

impl LineBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: std::collections::VecDeque::new(),
            capacity,
        }
    }

    /// Queues a line; `false` when the buffer is full and the line was dropped.
    pub fn push(&mut self, line: String) -> bool {
        if self.lines.len() >= self.capacity {
            return false;
        }
        self.lines.push_back(line);
        true
    }

    /// Holds at most `capacity` lines from now on: any beyond it stay, and a line pushed
    /// meanwhile is refused, as when full.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Takes up to `max` lines, oldest first.
    pub fn take(&mut self, max: usize) -> Vec<String> {
        let count = max.min(self.lines.len());
        self.lines.drain(..count).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            include_query: false,
            redact_query_params: ["access_token", "token", "password", "secret", "code"]
                .map(String::from)
                .to_vec(),
            trusted_xff_hops: 0,
            generate_traceparent: true,
            collector: None,
            filter_state_key: None,
        }
    }
}

impl AccessLogConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let config: Self = serde_json::from_slice(bytes)
            .map_err(|e| format!("invalid access log configuration: {e}"))?;
        match (&config.filter_state_key, &config.collector) {
            (Some(key), _) if key.is_empty() => {
                Err("invalid access log configuration: filter_state_key is empty".to_string())
            }
            (Some(_), Some(_)) => Err(
                "invalid access log configuration: a line goes to the collector or to filter_state_key, not both"
                    .to_string(),
            ),
            _ => Ok(config),
        }
    }
}

/// One request, as logged, borrowing what it can from the request's headers and attributes
/// (each value copied was an allocation). Absent values are omitted from the JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record<'a> {
    pub time: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Cow<'a, str>>,
    pub method: Cow<'a, str>,
    pub path: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_method: Option<Cow<'a, str>>,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_reason: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_cluster: Option<Cow<'a, str>>,
    /// The transcoder's failure kind (for metrics; the line has the status).
    #[serde(skip)]
    pub transcode_error: Option<Cow<'a, str>>,
}

/// When a request started and how long it took, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    pub started_unix_nanos: u64,
    pub duration_nanos: u64,
}

impl<'a> Record<'a> {
    /// The line for one request: its headers as they arrived, Envoy's attributes with the
    /// other filters' notes, its timing, and the `traceparent` this filter started, if any.
    pub fn of(
        config: &AccessLogConfig,
        headers: &'a Headers,
        attributes: &'a Attributes,
        timing: Timing,
        started_trace: Option<&'a str>,
    ) -> Self {
        let header = |name: &str| headers.get(name).map(Cow::Borrowed);
        let present = |value: &'a str| (!value.is_empty()).then_some(Cow::Borrowed(value));
        let Attributes {
            status,
            bytes_in,
            bytes_out,
            peer,
            auth,
            transcode,
            grpc_status,
            upstream_cluster,
        } = attributes;
        Record {
            time: Cow::Owned(rfc3339_millis(timing.started_unix_nanos)),
            request_id: header("x-request-id"),
            method: header(":method").unwrap_or_default(),
            path: logged_path(headers.get(":path").unwrap_or_default(), config),
            route: present(&transcode.route),
            grpc_method: present(&transcode.grpc_method),
            // What the client was sent: this filter is the last to see the response.
            status: *status,
            grpc_status: *grpc_status,
            duration_ms: timing.duration_nanos as f64 / 1e6,
            upstream_ms: transcode.upstream_ms,
            bytes_in: *bytes_in,
            bytes_out: *bytes_out,
            subject: present(&auth.subject),
            auth_reason: present(&auth.reason),
            user_agent: header("user-agent"),
            client_ip: client_ip(
                headers.get("x-forwarded-for"),
                peer.as_deref(),
                config.trusted_xff_hops,
            )
            .map(Cow::Borrowed),
            // The edge span's trace when Envoy traces (the client's traceparent is only its
            // parent), else the traceparent this filter started or the client sent.
            trace_id: headers
                .get(trace::EDGE_SPAN_HEADER)
                .or_else(|| headers.get("traceparent"))
                .or(started_trace)
                .and_then(trace::trace_id_of)
                .map(Cow::Borrowed),
            upstream_cluster: upstream_cluster.as_deref().map(Cow::Borrowed),
            transcode_error: present(&transcode.error),
        }
    }

    /// The line: what `serde_json` makes of the record (its `Serialize` is the reference the
    /// tests hold this to), laid out field by field with the keys written as they are. Through
    /// the derived `Serialize`, each key was escaped like a value: ~170 instructions a field.
    pub fn to_json(&self) -> String {
        let mut line = Vec::with_capacity(512);
        // Serializing plain strings and numbers cannot fail; an empty object is the safe fallback.
        match self.write_fields(&mut line) {
            Ok(()) => String::from_utf8(line).unwrap_or_else(|_| "{}".to_string()),
            Err(_) => "{}".to_string(),
        }
    }

    fn write_fields(&self, line: &mut Vec<u8>) -> serde_json::Result<()> {
        /// `,"key":`, one literal: keys are field names, which need no escaping.
        macro_rules! key {
            ($name:literal) => {
                concat!(",\"", $name, "\":")
            };
        }
        /// `key` (from [`key!`]) and the value.
        fn field<T: LineValue + ?Sized>(
            line: &mut Vec<u8>,
            key: &str,
            value: &T,
        ) -> serde_json::Result<()> {
            line.extend_from_slice(key.as_bytes());
            value.write(line)
        }
        fn optional<T: LineValue>(
            line: &mut Vec<u8>,
            key: &str,
            value: &Option<T>,
        ) -> serde_json::Result<()> {
            value
                .as_ref()
                .map_or(Ok(()), |value| field(line, key, value))
        }
        line.extend_from_slice(b"{\"time\":");
        self.time.write(line)?;
        optional(line, key!("request_id"), &self.request_id)?;
        field(line, key!("method"), &self.method)?;
        field(line, key!("path"), &self.path)?;
        optional(line, key!("route"), &self.route)?;
        optional(line, key!("grpc_method"), &self.grpc_method)?;
        field(line, key!("status"), &self.status)?;
        optional(line, key!("grpc_status"), &self.grpc_status)?;
        field(line, key!("duration_ms"), &self.duration_ms)?;
        optional(line, key!("upstream_ms"), &self.upstream_ms)?;
        field(line, key!("bytes_in"), &self.bytes_in)?;
        field(line, key!("bytes_out"), &self.bytes_out)?;
        optional(line, key!("subject"), &self.subject)?;
        optional(line, key!("auth_reason"), &self.auth_reason)?;
        optional(line, key!("user_agent"), &self.user_agent)?;
        optional(line, key!("client_ip"), &self.client_ip)?;
        optional(line, key!("trace_id"), &self.trace_id)?;
        optional(line, key!("upstream_cluster"), &self.upstream_cluster)?;
        line.push(b'}');
        Ok(())
    }
}

/// A value of the line, written as serde_json writes it.
trait LineValue {
    fn write(&self, line: &mut Vec<u8>) -> serde_json::Result<()>;
}

impl LineValue for Cow<'_, str> {
    /// Quoted as it is when no byte needs escaping (nearly always), else by serde_json: the
    /// same bytes either way, since serde_json escapes only `"`, `\` and control characters.
    /// It looks each byte up in a table as it copies; one pass finds none to escape first.
    fn write(&self, line: &mut Vec<u8>) -> serde_json::Result<()> {
        let needs_escaping = self.bytes().fold(false, |found, byte| {
            found | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
        });
        if needs_escaping {
            return serde_json::to_writer(line, self);
        }
        line.reserve(self.len() + 2);
        line.push(b'"');
        line.extend_from_slice(self.as_bytes());
        line.push(b'"');
        Ok(())
    }
}

macro_rules! serde_line_value {
    ($($kind:ty),*) => {$(
        impl LineValue for $kind {
            fn write(&self, line: &mut Vec<u8>) -> serde_json::Result<()> {
                serde_json::to_writer(line, self)
            }
        }
    )*};
}
serde_line_value!(u16, u32, u64, f64);

/// The path to log: without the query string unless configured, and then with the values of
/// sensitive parameters redacted.
pub fn logged_path<'a>(path: &'a str, config: &AccessLogConfig) -> Cow<'a, str> {
    let Some((path, query)) = path.split_once('?') else {
        return Cow::Borrowed(path);
    };
    if !config.include_query {
        return Cow::Borrowed(path);
    }
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _))
                if config
                    .redact_query_params
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(name)) =>
            {
                format!("{name}=REDACTED")
            }
            _ => pair.to_string(),
        })
        .collect();
    Cow::Owned(format!("{path}?{}", query.join("&")))
}

/// The client's address: the peer (without port) with no trusted hops, else the
/// `trusted_hops`-th `x-forwarded-for` entry from the right (what the outermost trusted proxy
/// saw). `None` when there are fewer entries than trusted hops: the header was not set by them.
pub fn client_ip<'a>(
    forwarded_for: Option<&'a str>,
    peer: Option<&'a str>,
    trusted_hops: usize,
) -> Option<&'a str> {
    let Some(from_right) = trusted_hops.checked_sub(1) else {
        let peer = peer?;
        // "1.2.3.4:5678" or "[::1]:5678".
        let host = match peer.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => peer,
        };
        return Some(host.trim_start_matches('[').trim_end_matches(']'));
    };
    forwarded_for?
        .rsplit(',')
        .nth(from_right)
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// A W3C `traceparent` for a request that has none: the trace id is the request id's 32 hex
/// digits when it is a UUID (so logs and traces share an id), the span id comes from `seed`.
pub fn new_traceparent(request_id: &str, seed: u64) -> String {
    // Written into one array: chars collected and formatted cost ~4k instructions a request,
    // pushed one by one onto a `String` ~1.7k.
    const TRACE: std::ops::Range<usize> = 3..35;
    let mut parent = *b"00-00000000000000000000000000000000-0000000000000000-01";
    let mut digits = 0;
    let mut is_trace_id = true;
    for byte in request_id.bytes().filter(|byte| *byte != b'-') {
        match parent[TRACE].get_mut(digits) {
            Some(slot) if byte.is_ascii_hexdigit() => *slot = byte.to_ascii_lowercase(),
            _ => {
                is_trace_id = false;
                break;
            }
        }
        digits += 1;
    }
    if !(is_trace_id && digits == 32 && parent[TRACE].iter().any(|byte| *byte != b'0')) {
        write_hex(&mut parent[3..19], fnv1a(request_id.as_bytes(), 0));
        write_hex(&mut parent[19..35], fnv1a(request_id.as_bytes(), seed) | 1);
    }
    let span_id = fnv1a(&parent[TRACE], seed) | 1;
    write_hex(&mut parent[36..52], span_id);
    // ASCII throughout: the lossy case cannot happen.
    String::from_utf8(parent.to_vec()).unwrap_or_default()
}

/// `value` as lower-case hex digits filling `out` (16 of them for a `u64`).
fn write_hex(out: &mut [u8], value: u64) {
    for (at, slot) in out.iter_mut().rev().enumerate() {
        let nibble = (value >> (at * 4)) & 0xf;
        *slot = b"0123456789abcdef"[nibble as usize];
    }
}

/// FNV-1a, mixed with `seed`: enough to make span ids distinct, no dependency needed.
fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325 ^ seed, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Formats Unix time in nanoseconds as RFC 3339 UTC with milliseconds,
/// e.g. `2026-11-22T01:02:03.456Z`.
pub fn rfc3339_millis(unix_nanos: u64) -> String {
    let millis = unix_nanos / 1_000_000;
    let seconds = millis / 1000;
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    // Digit by digit: `format!` cost ~3k instructions a line.
    let mut time = String::with_capacity(24);
    let mut push = |value: u64, width: u32, separator: char| {
        for place in (0..width).rev() {
            let digit = value / 10u64.pow(place) % 10;
            time.push(char::from(b'0' + digit as u8));
        }
        time.push(separator);
    };
    push(year.clamp(0, 9999) as u64, 4, '-');
    push(u64::from(month), 2, '-');
    push(u64::from(day), 2, 'T');
    push(of_day / 3600, 2, ':');
    push(of_day % 3600 / 60, 2, ':');
    push(of_day % 60, 2, '.');
    push(millis % 1000, 3, 'Z');
    time
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::notes;

    #[test]
    fn a_record_joins_the_headers_the_notes_and_envoys_attributes() {
        let config = AccessLogConfig {
            trusted_xff_hops: 1,
            ..AccessLogConfig::default()
        };
        let headers = Headers::new(
            [
                (":method", "POST"),
                (":path", "/catalog/items?token=secret"),
                ("x-request-id", "r-1"),
                ("x-forwarded-for", "203.0.113.7"),
                ("user-agent", "curl/8"),
            ]
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        );
        let attributes = Attributes {
            status: 400,
            bytes_in: 12,
            peer: Some("127.0.0.1:5000".into()),
            auth: notes::AuthNote {
                subject: "ada".into(),
                reason: String::new(),
            },
            transcode: notes::TranscodeNote {
                route: "/catalog/items".into(),
                error: "bad_request".into(),
                ..Default::default()
            },
            ..Attributes::default()
        };
        let timing = Timing {
            started_unix_nanos: 951_782_400_123_456_789,
            duration_nanos: 2_500_000,
        };
        let started = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let record = Record::of(&config, &headers, &attributes, timing, Some(started));
        assert_eq!(record.time, "2000-02-29T00:00:00.123Z");
        assert_eq!(record.path, "/catalog/items", "no query by default");
        assert_eq!(record.route.as_deref(), Some("/catalog/items"));
        assert_eq!(record.duration_ms, 2.5);
        assert_eq!(record.subject.as_deref(), Some("ada"));
        assert_eq!(record.auth_reason, None);
        assert_eq!(record.client_ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(
            record.trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(record.transcode_error.as_deref(), Some("bad_request"));
        let line = record.to_json();
        assert!(
            !line.contains("transcode_error"),
            "for metrics only: {line}"
        );
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(951_782_400_123_456_789),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339_millis(1_795_316_645_999_000_000),
            "2026-11-22T03:04:05.999Z"
        );
    }

    #[test]
    fn hostile_values_stay_inside_one_json_line() {
        let record = Record {
            method: "GET".into(),
            path: "/x".into(),
            user_agent: Some("evil\n{\"status\":200}\"".into()),
            ..Default::default()
        };
        let line = record.to_json();
        assert!(!line.contains('\n'));
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["user_agent"], "evil\n{\"status\":200}\"");
        assert!(parsed.get("subject").is_none());
    }

    #[test]
    fn client_ip_from_peer_or_trusted_hops() {
        assert_eq!(client_ip(None, Some("10.0.0.7:5555"), 0), Some("10.0.0.7"));
        assert_eq!(client_ip(None, Some("[::1]:5555"), 0), Some("::1"));
        let xff = Some("6.6.6.6, 203.0.113.9, 10.0.0.1");
        assert_eq!(client_ip(xff, Some("10.0.0.2:1"), 1), Some("10.0.0.1"));
        assert_eq!(client_ip(xff, Some("10.0.0.2:1"), 2), Some("203.0.113.9"));
        assert_eq!(client_ip(xff, None, 4), None);
        assert_eq!(client_ip(None, None, 1), None);
    }

    #[test]
    fn traceparent_reuses_the_request_id() {
        let parent = new_traceparent("3F2504E0-4F89-11D3-9A0C-0305E82C3301", 7);
        assert!(
            parent.starts_with("00-3f2504e04f8911d39a0c0305e82c3301-"),
            "{parent}"
        );
        assert_eq!(parent.len(), 55);
        assert_eq!(
            edge_core::trace::trace_id_of(&parent),
            Some("3f2504e04f8911d39a0c0305e82c3301")
        );
        let odd = new_traceparent("not-a-uuid", 7);
        assert!(edge_core::trace::trace_id_of(&odd).is_some(), "{odd}");
        assert_ne!(new_traceparent("x", 1), new_traceparent("x", 2));
        // What the filter has always written for these (trace ids stay stable across builds).
        for (id, seed, parent) in [
            (
                "not-a-uuid",
                7,
                "00-e287cc0c0ba2f0c0f78bfe488b08cf2b-36b86a507bf9fe5d-01",
            ),
            (
                "x",
                1,
                "00-af63f54c86021707af63f44c86021555-f5592933aa297ae3-01",
            ),
            (
                "00000000-0000-0000-0000-000000000000",
                3,
                "00-7c384c6218f299f1e62dfe17efb38d43-09563606c53713ed-01",
            ),
            (
                "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
                9,
                "00-3f2504e04f8911d39a0c0305e82c3301-b8c366249e2c1511-01",
            ),
            (
                "3F2504E0-4F89-11D3-9A0C-0305E82C33011",
                9,
                "00-45d7d66aa1483823dd6c907aaa601c21-b0742e40ec7b3fe5-01",
            ),
            (
                "3F2504E0-4F89-11D3-9A0C-0305E82C330g",
                9,
                "00-8ccfc8c56501ea026dcb9c8eb34bd527-cfdbbc83c28b110d-01",
            ),
        ] {
            assert_eq!(new_traceparent(id, seed), parent, "{id}");
        }
    }

    #[test]
    fn line_buffer_is_bounded_and_fifo() {
        let mut buffer = LineBuffer::new(3);
        for line in ["a", "b", "c"] {
            assert!(buffer.push(line.into()));
        }
        assert!(!buffer.push("d".into()), "full: dropped");
        assert_eq!(buffer.take(2), ["a", "b"]);
        assert!(buffer.push("e".into()));
        assert_eq!(buffer.take(10), ["c", "e"]);
        assert!(buffer.is_empty());

        // A smaller capacity keeps what waits, and refuses more until it is shipped.
        for line in ["f", "g"] {
            assert!(buffer.push(line.into()));
        }
        buffer.set_capacity(1);
        assert!(!buffer.push("h".into()));
        assert_eq!(buffer.take(10), ["f", "g"]);
        assert!(buffer.push("i".into()));
    }

    #[test]
    fn query_is_dropped_unless_configured() {
        let default = AccessLogConfig::default();
        assert_eq!(logged_path("/a?token=secret", &default), "/a");
        let with_query = AccessLogConfig::from_json(br#"{"include_query":true}"#).unwrap();
        assert_eq!(logged_path("/a?b=c", &with_query), "/a?b=c");
        assert_eq!(
            logged_path("/a?b=c&access_token=xyz&Password=p", &with_query),
            "/a?b=c&access_token=REDACTED&Password=REDACTED"
        );
        assert!(AccessLogConfig::from_json(br#"{"bogus":1}"#).is_err());
        assert!(!AccessLogConfig::from_json(b"").unwrap().include_query);
    }

    #[test]
    fn a_line_goes_to_one_place() {
        let key = AccessLogConfig::from_json(br#"{"filter_state_key":"edge.access_log"}"#);
        assert_eq!(
            key.unwrap().filter_state_key.as_deref(),
            Some("edge.access_log")
        );
        let empty = AccessLogConfig::from_json(br#"{"filter_state_key":""}"#).unwrap_err();
        assert!(empty.contains("filter_state_key is empty"), "{empty}");
        let both = AccessLogConfig::from_json(
            br#"{"filter_state_key":"k","collector":{"cluster":"log-collector"}}"#,
        )
        .unwrap_err();
        assert!(both.contains("not both"), "{both}");
    }
}
