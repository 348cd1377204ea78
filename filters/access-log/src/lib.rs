//! The access log's logic, free of proxy-wasm: the record written for each request and its
//! JSON form (serde_json escapes every value, so a header full of quotes or newlines cannot
//! forge a second log line).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use serde::{Deserialize, Serialize};

/// The access log's configuration (JSON in the Wasm plugin's `configuration`; may be empty).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Log the query string as part of `path` (off by default: queries can carry secrets).
    pub include_query: bool,
}

impl AccessLogConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(bytes).map_err(|e| format!("invalid access log configuration: {e}"))
    }
}

/// One request, as logged. Absent values are omitted from the JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_method: Option<String>,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    pub duration_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_cluster: Option<String>,
}

impl Record {
    pub fn to_json(&self) -> String {
        // Serializing plain strings and numbers cannot fail; an empty object is the safe fallback.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }
}

/// The path to log: without the query string unless configured.
pub fn logged_path(path: &str, config: &AccessLogConfig) -> String {
    if config.include_query {
        path.to_string()
    } else {
        path.split_once('?')
            .map_or(path, |(path, _)| path)
            .to_string()
    }
}

/// Formats Unix time in nanoseconds as RFC 3339 UTC with milliseconds,
/// e.g. `2026-11-22T01:02:03.456Z`.
pub fn rfc3339_millis(unix_nanos: u64) -> String {
    let millis = unix_nanos / 1_000_000;
    let seconds = millis / 1000;
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        millis % 1000
    )
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
    fn query_is_dropped_unless_configured() {
        let default = AccessLogConfig::default();
        assert_eq!(logged_path("/a?token=secret", &default), "/a");
        let with_query = AccessLogConfig::from_json(br#"{"include_query":true}"#).unwrap();
        assert_eq!(logged_path("/a?b=c", &with_query), "/a?b=c");
        assert!(AccessLogConfig::from_json(br#"{"bogus":1}"#).is_err());
        assert!(!AccessLogConfig::from_json(b"").unwrap().include_query);
    }
}
