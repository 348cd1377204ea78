//! The metrics each request produces. Envoy's stats have no labels of their own, so each label
//! is encoded in the stat name as `.edge_<label>.<value>`, and the bootstrap's `stats_tags`
//! (rendered by edgectl from [`LABELS`]) turns those back into Prometheus labels:
//! `edge_requests_total.edge_route./catalog/items.edge_method.GET.edge_status_class.2xx`
//! becomes `envoy_wasmcustom_edge_requests_total{route="/catalog/items",method="GET",status_class="2xx"}`.

use crate::Record;

pub const REQUESTS: &str = "edge_requests_total";
pub const DURATION: &str = "edge_request_duration_milliseconds";
pub const AUTH_DENIALS: &str = "edge_auth_denials_total";
pub const TRANSCODER_ERRORS: &str = "edge_transcoder_errors_total";
pub const SHIPPED_LINES: &str = "edge_access_log_shipped_lines_total";
pub const DROPPED_LINES: &str = "edge_access_log_dropped_lines_total";

/// Every metric the filter defines: what a stats matcher must keep (Istio drops the rest).
pub const NAMES: &[&str] = &[
    REQUESTS,
    DURATION,
    AUTH_DENIALS,
    TRANSCODER_ERRORS,
    SHIPPED_LINES,
    DROPPED_LINES,
];

/// Each family's labels, in the order its names carry them: what a host whose proxy defines
/// labelled metrics up front (a native module) defines.
pub const FAMILY_LABELS: &[(&str, &[&str])] = &[
    (REQUESTS, &["route", "method", "status_class", "backend"]),
    (DURATION, &["route", "method", "backend"]),
    (AUTH_DENIALS, &["reason"]),
    (TRANSCODER_ERRORS, &["kind"]),
    (SHIPPED_LINES, &[]),
    (DROPPED_LINES, &[]),
];

/// Where Envoy files a Wasm filter's own metrics (`wasmcustom.<name>`).
pub const ENVOY_NAMESPACE: &str = "wasmcustom";

/// Every label used, in the order they appear in names.
pub const LABELS: &[&str] = &[
    "route",
    "method",
    "status_class",
    "backend",
    "reason",
    "kind",
];

/// The deployment a request went to, short: `catalog-v2` for the local cluster `catalog-v2`
/// and for Istio's `outbound|50055||catalog-v2.catalog-v2.svc.cluster.local`; `none` when no
/// backend was called (a local reply).
pub fn backend_label(upstream_cluster: Option<&str>) -> &str {
    match upstream_cluster {
        None => "none",
        Some(cluster) => match cluster.strip_prefix("outbound|") {
            Some(rest) => {
                let host = rest.rsplit('|').next().unwrap_or(rest);
                host.split('.').next().unwrap_or(host)
            }
            None => cluster,
        },
    }
}

/// One observation for the proxy-wasm metrics API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sample {
    /// Add one to a counter.
    Count(String),
    /// Record a value in a histogram.
    Observe(String, u64),
}

/// Appends a label value that cannot break the name encoding: `.` (the separator) becomes
/// `_`, and anything outside a small safe set becomes `_` too. Bounded values only: routes are
/// templates, never raw paths, so a client cannot mint new series.
fn push_value(name: &mut String, raw: &str) {
    if raw.is_empty() {
        name.push_str("none");
        return;
    }
    name.extend(raw.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '/' | '{' | '}' | '_' | '-' | ':' | '*' | '=') {
            c
        } else {
            '_'
        }
    }));
}

/// Built in one buffer: this runs for every request.
fn name(metric: &str, labels: &[(&str, &str)]) -> String {
    let mut name = String::with_capacity(
        metric.len()
            + labels
                .iter()
                .map(|(l, v)| l.len() + v.len() + 8)
                .sum::<usize>(),
    );
    name.push_str(metric);
    for (label, raw) in labels {
        name.push_str(".edge_");
        name.push_str(label);
        name.push('.');
        push_value(&mut name, raw);
    }
    name
}

/// The samples for one request: request count and latency by route, plus auth denials by
/// reason and transcoding errors by kind when there were any.
pub fn samples(record: &Record) -> Vec<Sample> {
    let route = record.route.as_deref().unwrap_or("unmatched");
    let backend = backend_label(record.upstream_cluster.as_deref());
    let method = if ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        .contains(&record.method.as_str())
    {
        record.method.as_str()
    } else {
        "other"
    };
    let status_class = match record.status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "none",
    };
    let mut samples = vec![
        Sample::Count(name(
            REQUESTS,
            &[
                ("route", route),
                ("method", method),
                ("status_class", status_class),
                ("backend", backend),
            ],
        )),
        Sample::Observe(
            name(
                DURATION,
                &[("route", route), ("method", method), ("backend", backend)],
            ),
            record.duration_ms.round() as u64,
        ),
    ];
    if let Some(reason) = &record.auth_reason {
        samples.push(Sample::Count(name(AUTH_DENIALS, &[("reason", reason)])));
    }
    if let Some(kind) = record.transcode_error.as_deref() {
        samples.push(Sample::Count(name(TRANSCODER_ERRORS, &[("kind", kind)])));
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_encode_bounded_labels() {
        let record = Record {
            method: "GET".into(),
            route: Some("/catalog/items/{id}".into()),
            status: 404,
            duration_ms: 3.6,
            transcode_error: Some("no_route".into()),
            ..Default::default()
        };
        assert_eq!(
            samples(&record),
            vec![
                Sample::Count(
                    "edge_requests_total.edge_route./catalog/items/{id}.edge_method.GET.edge_status_class.4xx.edge_backend.none".into()
                ),
                Sample::Observe("edge_request_duration_milliseconds.edge_route./catalog/items/{id}.edge_method.GET.edge_backend.none".into(), 4),
                Sample::Count("edge_transcoder_errors_total.edge_kind.no_route".into()),
            ]
        );
        let odd = Record {
            method: "BREW".into(),
            auth_reason: Some("token.rejected\n".into()),
            ..Default::default()
        };
        let names: Vec<Sample> = samples(&odd);
        assert_eq!(
            names[0],
            Sample::Count(
                "edge_requests_total.edge_route.unmatched.edge_method.other.edge_status_class.none.edge_backend.none"
                    .into()
            )
        );
        assert_eq!(
            names[2],
            Sample::Count("edge_auth_denials_total.edge_reason.token_rejected_".into())
        );
    }

    #[test]
    fn backends_are_named_short_in_both_worlds() {
        assert_eq!(backend_label(None), "none");
        assert_eq!(backend_label(Some("catalog-v2")), "catalog-v2");
        assert_eq!(
            backend_label(Some(
                "outbound|50055||catalog-v2.catalog-v2.svc.cluster.local"
            )),
            "catalog-v2"
        );
    }

    #[test]
    fn every_sample_is_one_of_the_declared_names() {
        // NAMES is what Istio's proxyStatsMatcher keeps: a name missing there is dropped.
        let record = Record {
            auth_reason: Some("token_rejected".into()),
            transcode_error: Some("no_route".into()),
            ..Default::default()
        };
        for sample in samples(&record) {
            let (Sample::Count(name) | Sample::Observe(name, _)) = sample;
            let family = name.split('.').next().unwrap_or_default();
            assert!(NAMES.contains(&family), "{name} is not in NAMES");
            let labels: Vec<&str> = name
                .split(".edge_")
                .skip(1)
                .map(|pair| pair.split_once('.').unwrap().0)
                .collect();
            let declared = FAMILY_LABELS.iter().find(|(f, _)| *f == family).unwrap().1;
            assert_eq!(labels, declared, "{name}");
        }
        assert_eq!(FAMILY_LABELS.len(), NAMES.len());
    }
}
