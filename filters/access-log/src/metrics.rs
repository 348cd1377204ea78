//! The metrics each request produces. Under proxy-wasm each label is encoded in the stat name
//! as `.edge_<label>.<value>` ([`edge_core::metrics`]), and the bootstrap's `stats_tags`
//! (rendered by edgectl from [`LABELS`]) turns those back into Prometheus labels:
//! `edge_requests_total.edge_route./catalog/items.edge_method.GET.edge_status_class.2xx`
//! becomes `envoy_wasmcustom_edge_requests_total{route="/catalog/items",method="GET",status_class="2xx"}`.

use crate::Record;
use edge_core::host::Host;
use edge_core::metrics::{label_value, Observation};
use std::borrow::Cow;

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

/// The most labels a family has.
pub const MAX_LABELS: usize = 4;

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

/// One observation of one of [`FAMILY_LABELS`]' families, its label values made safe
/// ([`label_value`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample<'r> {
    pub family: &'static str,
    pub labels: Vec<(&'static str, Cow<'r, str>)>,
    pub observation: Observation,
}

impl Sample<'_> {
    /// Records the sample through `host`, its labels paired on the stack (a family has at
    /// most [`MAX_LABELS`]).
    pub fn record<H: Host>(&self, host: &H) {
        let mut pairs = [("", ""); MAX_LABELS];
        for (pair, (label, value)) in pairs.iter_mut().zip(&self.labels) {
            *pair = (label, value.as_ref());
        }
        let count = self.labels.len().min(MAX_LABELS);
        host.record_labelled(self.family, &pairs[..count], self.observation);
    }
}

/// The samples for one request: request count and latency by route, plus auth denials by
/// reason and transcoding errors by kind when there were any.
pub fn samples<'r>(record: &'r Record<'_>) -> Vec<Sample<'r>> {
    let route = label_value(record.route.as_deref().unwrap_or("unmatched"));
    let backend = label_value(backend_label(record.upstream_cluster.as_deref()));
    let method = if ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        .contains(&record.method.as_ref())
    {
        Cow::Borrowed(record.method.as_ref())
    } else {
        Cow::Borrowed("other")
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
        Sample {
            family: REQUESTS,
            labels: vec![
                ("route", route.clone()),
                ("method", method.clone()),
                ("status_class", Cow::Borrowed(status_class)),
                ("backend", backend.clone()),
            ],
            observation: Observation::Count,
        },
        Sample {
            family: DURATION,
            labels: vec![("route", route), ("method", method), ("backend", backend)],
            observation: Observation::Value(record.duration_ms.round() as u64),
        },
    ];
    if let Some(reason) = &record.auth_reason {
        samples.push(Sample {
            family: AUTH_DENIALS,
            labels: vec![("reason", label_value(reason))],
            observation: Observation::Count,
        });
    }
    if let Some(kind) = record.transcode_error.as_deref() {
        samples.push(Sample {
            family: TRANSCODER_ERRORS,
            labels: vec![("kind", label_value(kind))],
            observation: Observation::Count,
        });
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::metrics::labelled_name;

    /// The samples as a proxy-wasm host names them.
    fn names(record: &Record) -> Vec<(String, Observation)> {
        samples(record)
            .iter()
            .map(|sample| {
                let pairs: Vec<(&str, &str)> = sample
                    .labels
                    .iter()
                    .map(|(label, value)| (*label, value.as_ref()))
                    .collect();
                (labelled_name(sample.family, &pairs), sample.observation)
            })
            .collect()
    }

    #[test]
    fn no_family_has_more_labels_than_a_sample_pairs() {
        assert!(FAMILY_LABELS
            .iter()
            .all(|(_, labels)| labels.len() <= MAX_LABELS));
    }

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
            names(&record),
            vec![
                (
                    "edge_requests_total.edge_route./catalog/items/{id}.edge_method.GET.edge_status_class.4xx.edge_backend.none".into(),
                    Observation::Count
                ),
                ("edge_request_duration_milliseconds.edge_route./catalog/items/{id}.edge_method.GET.edge_backend.none".into(), Observation::Value(4)),
                ("edge_transcoder_errors_total.edge_kind.no_route".into(), Observation::Count),
            ]
        );
        let odd = Record {
            method: "BREW".into(),
            auth_reason: Some("token.rejected\n".into()),
            ..Default::default()
        };
        let odd = names(&odd);
        assert_eq!(
            odd[0].0,
            "edge_requests_total.edge_route.unmatched.edge_method.other.edge_status_class.none.edge_backend.none"
        );
        assert_eq!(
            odd[2].0,
            "edge_auth_denials_total.edge_reason.token_rejected_"
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
            let family = sample.family;
            assert!(NAMES.contains(&family), "{family} is not in NAMES");
            let labels: Vec<&str> = sample.labels.iter().map(|(label, _)| *label).collect();
            let declared = FAMILY_LABELS.iter().find(|(f, _)| *f == family).unwrap().1;
            assert_eq!(labels, declared, "{family}");
        }
        assert_eq!(FAMILY_LABELS.len(), NAMES.len());
    }
}
