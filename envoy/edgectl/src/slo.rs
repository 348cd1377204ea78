//! Service-level objectives measured at the edge (`slos` in edge.json), rendered as Prometheus
//! rules: the SLIs as recording rules over the standard windows, and the multi-window,
//! multi-burn-rate alerts of the Google SRE workbook (chapter "Alerting on SLOs"): page when
//! the error budget burns 14.4× too fast over 1 h and 5 m, or 6× over 6 h and 30 m; open a
//! ticket when it burns 1× over 3 d and 6 h. The SLIs read the access-log filter's metrics.
//!
//! What counts as bad: for availability every 5xx the client saw, the edge's own 503s included
//! (a backend down or shed load is an outage to the user); 4xx are the client's (429 too: a
//! client over its limit is not the platform failing). For latency, a request slower than the
//! threshold, whatever its status.

use edge_access_log::metrics::{DURATION, REQUESTS};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Names the SLO in rules and alerts, e.g. `catalog-reads`.
    pub name: String,
    /// Route templates (as the access log names them) the SLO covers.
    pub routes: Vec<String>,
    /// HTTP methods it covers (gRPC clients call with POST); empty: all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Percent of requests that must not fail with a 5xx, e.g. 99.9.
    #[serde(default)]
    pub availability: Option<f64>,
    #[serde(default)]
    pub latency: Option<LatencyObjective>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyObjective {
    /// A bucket bound of the duration histogram (Envoy's default buckets).
    pub threshold_ms: u64,
    /// Percent of requests that must be at most that fast, e.g. 99.
    pub objective: f64,
}

/// Envoy's default histogram bucket bounds (ms): a latency threshold must be one of them, or
/// the SLI could not be computed from the histogram.
pub const BUCKETS: [u64; 18] = [
    1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000,
    1_800_000, 3_600_000,
];

/// The windows the SLIs are recorded over.
pub const WINDOWS: [&str; 7] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];

/// (severity, burn rate, long window, short window).
const BURNS: [(&str, f64, &str, &str); 3] = [
    ("page", 14.4, "1h", "5m"),
    ("page", 6.0, "6h", "30m"),
    ("ticket", 1.0, "3d", "6h"),
];

impl Slo {
    pub fn check(&self) -> Result<(), String> {
        let bad = |why: String| Err(format!("slos {}: {why}", self.name));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return bad("name must be letters, digits and '-'".into());
        }
        if self.routes.is_empty() {
            return bad("no routes".into());
        }
        for percent in self
            .availability
            .iter()
            .chain(self.latency.as_ref().map(|l| &l.objective))
        {
            if !(*percent > 0.0 && *percent < 100.0) {
                return bad(format!("objective {percent} must be between 0 and 100"));
            }
        }
        if let Some(latency) = &self.latency {
            if !BUCKETS.contains(&latency.threshold_ms) {
                return bad(format!(
                    "latency threshold {} ms is not a bucket bound of the histogram ({:?})",
                    latency.threshold_ms, BUCKETS
                ));
            }
        }
        if self.availability.is_none() && self.latency.is_none() {
            return bad("neither availability nor latency".into());
        }
        Ok(())
    }

    fn selector(&self) -> String {
        let routes: Vec<String> = self.routes.iter().map(|r| regex_quote(r)).collect();
        let mut selector = format!("route=~\"{}\"", routes.join("|"));
        if !self.methods.is_empty() {
            selector.push_str(&format!(",method=~\"{}\"", self.methods.join("|")));
        }
        selector
    }

    fn indicators(&self) -> Vec<Indicator> {
        let mut indicators = Vec::new();
        if let Some(objective) = self.availability {
            indicators.push(Indicator::Availability { objective });
        }
        if let Some(latency) = &self.latency {
            indicators.push(Indicator::Latency {
                objective: latency.objective,
                threshold_ms: latency.threshold_ms,
            });
        }
        indicators
    }
}

/// One SLI of an SLO, and how to compute its share of bad requests.
enum Indicator {
    Availability { objective: f64 },
    Latency { objective: f64, threshold_ms: u64 },
}

impl Indicator {
    fn kind(&self) -> &'static str {
        match self {
            Indicator::Availability { .. } => "availability",
            Indicator::Latency { .. } => "latency",
        }
    }

    fn objective(&self) -> f64 {
        match self {
            Indicator::Availability { objective } | Indicator::Latency { objective, .. } => {
                *objective
            }
        }
    }

    /// The share of bad requests among those `selector` picks, over `window`.
    fn bad_ratio(&self, selector: &str, window: &str) -> String {
        match self {
            Indicator::Availability { .. } => format!(
                "(sum(rate({REQUESTS}{{{selector},status_class=\"5xx\"}}[{window}])) or vector(0)) / sum(rate({REQUESTS}{{{selector}}}[{window}]))"
            ),
            Indicator::Latency { threshold_ms, .. } => format!(
                "1 - sum(rate({DURATION}_bucket{{{selector},le=\"{threshold_ms}\"}}[{window}])) / sum(rate({DURATION}_count{{{selector}}}[{window}]))"
            ),
        }
    }
}

/// Prometheus' regex metacharacters quoted, so a route template matches only itself.
fn regex_quote(text: &str) -> String {
    let mut quoted = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            quoted.push_str("\\\\");
        }
        quoted.push(c);
    }
    quoted
}

/// The recording rule holding an SLO's bad ratio over `window`.
pub fn record_name(kind: &str, window: &str) -> String {
    format!("slo:sli_{kind}_errors:ratio_rate{window}")
}

/// The rule groups (as Prometheus' rules file has them) for `slos`.
pub fn rule_groups(slos: &[Slo]) -> Result<Value, String> {
    let mut groups = Vec::new();
    for slo in slos {
        slo.check()?;
        let mut records = Vec::new();
        let mut alerts = Vec::new();
        let selector = slo.selector();
        for indicator in slo.indicators() {
            let (kind, objective) = (indicator.kind(), indicator.objective());
            let labels = json!({ "slo": slo.name, "objective": number(objective) });
            for window in WINDOWS {
                records.push(json!({
                    "record": record_name(kind, window),
                    "expr": indicator.bad_ratio(&selector, window),
                    "labels": labels
                }));
            }
            let budget = 1.0 - objective / 100.0;
            let sel = format!("{{slo=\"{}\"}}", slo.name);
            for severity in ["page", "ticket"] {
                let conditions: Vec<String> = BURNS
                    .iter()
                    .filter(|(s, ..)| *s == severity)
                    .map(|(_, burn, long, short)| {
                        let limit = number(burn * budget);
                        format!(
                            "({long_rule}{sel} > {limit} and {short_rule}{sel} > {limit})",
                            long_rule = record_name(kind, long),
                            short_rule = record_name(kind, short),
                        )
                    })
                    .collect();
                let title = title_case(&slo.name);
                let kind_title = title_case(kind);
                alerts.push(json!({
                    "alert": format!("{title}{kind_title}BudgetBurn"),
                    "expr": conditions.join(" or "),
                    "labels": { "severity": severity, "slo": slo.name, "sli": kind },
                    "annotations": {
                        "summary": format!(
                            "{} {kind} SLO ({objective}%): the error budget burns too fast ({severity})",
                            slo.name
                        )
                    }
                }));
            }
        }
        groups.push(json!({
            "name": format!("slo-{}", slo.name),
            "interval": "30s",
            "rules": records.into_iter().chain(alerts).collect::<Vec<_>>()
        }));
    }
    Ok(json!({ "groups": groups }))
}

/// A number as rules show it: no floating-point noise (`0.0144`, not `0.014400000000000013`).
fn number(value: f64) -> String {
    let text = format!("{value:.9}");
    let text = text.trim_end_matches('0');
    text.trim_end_matches('.').to_string()
}

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slo(json: Value) -> Slo {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn thresholds_must_be_bucket_bounds_and_objectives_sane() {
        let bad_threshold = slo(json!({ "name": "a", "routes": ["/x"],
            "latency": { "threshold_ms": 300, "objective": 99.0 } }));
        assert!(bad_threshold.check().unwrap_err().contains("bucket"));
        let bad_objective = slo(json!({ "name": "a", "routes": ["/x"], "availability": 100.0 }));
        assert!(bad_objective.check().is_err());
        let nothing = slo(json!({ "name": "a", "routes": ["/x"] }));
        assert!(nothing.check().is_err());
    }

    #[test]
    fn routes_are_matched_literally() {
        let s = slo(
            json!({ "name": "reads", "routes": ["/catalog/items/{id}"], "methods": ["GET"],
            "availability": 99.9 }),
        );
        assert_eq!(
            s.selector(),
            r#"route=~"/catalog/items/\\{id\\}",method=~"GET""#
        );
    }

    #[test]
    fn alerts_use_the_workbook_burn_rates() {
        let s = slo(json!({ "name": "catalog-reads", "routes": ["/x"], "availability": 99.9 }));
        let groups = rule_groups(&[s]).unwrap();
        let rules = groups["groups"][0]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), WINDOWS.len() + 2);
        let page = rules
            .iter()
            .find(|r| {
                r["alert"] == "CatalogReadsAvailabilityBudgetBurn"
                    && r["labels"]["severity"] == "page"
            })
            .unwrap();
        let expr = page["expr"].as_str().unwrap();
        assert!(
            expr.contains("ratio_rate1h{slo=\"catalog-reads\"} > 0.0144"),
            "{expr}"
        );
        assert!(
            expr.contains("ratio_rate30m{slo=\"catalog-reads\"} > 0.006"),
            "{expr}"
        );
    }
}
