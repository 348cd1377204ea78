//! Labelled metrics, one grammar for every host. Envoy's stats made by a proxy-wasm filter
//! have no labels of their own, so each label is encoded in the stat name as
//! `.edge_<label>.<value>` ([`labelled_name`]) and the bootstrap's `stats_tags` (rendered by
//! edgectl) turn those back into Prometheus labels; a host whose proxy defines labelled
//! metrics (a native module) passes the values as they are. Values are made safe for the
//! name encoding either way ([`label_value`]), so both give the same series.

use std::borrow::Cow;

/// One observation of a labelled family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Add one to a counter.
    Count,
    /// Record a value in a histogram.
    Value(u64),
}

/// A label value that cannot break the name encoding: `.` (the separator) and anything
/// outside a small safe set become `_`, and an empty value reads `none`. Borrowed when it is
/// already safe, as values nearly always are. Bounded values only: routes are templates,
/// never raw paths, so a client cannot mint new series.
pub fn label_value(raw: &str) -> Cow<'_, str> {
    let safe = |c: u8| {
        c.is_ascii_alphanumeric()
            || matches!(c, b'/' | b'{' | b'}' | b'_' | b'-' | b':' | b'*' | b'=')
    };
    if raw.is_empty() {
        Cow::Borrowed("none")
    } else if raw.bytes().all(safe) {
        // Every safe character is ASCII: checking bytes decodes nothing.
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(
            raw.chars()
                .map(|c| {
                    if u8::try_from(c).is_ok_and(safe) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
        )
    }
}

/// `family` with its `labels` (name, value) encoded in the stat name, built in one buffer.
pub fn labelled_name(family: &str, labels: &[(&str, &str)]) -> String {
    let mut name = String::with_capacity(
        family.len()
            + labels
                .iter()
                .map(|(label, value)| label.len() + value.len() + 8)
                .sum::<usize>(),
    );
    name.push_str(family);
    for (label, value) in labels {
        name.push_str(".edge_");
        name.push_str(label);
        name.push('.');
        name.push_str(&label_value(value));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_safe_label_values() {
        assert_eq!(
            labelled_name(
                "edge_x_total",
                &[("route", "/a/{id}"), ("reason", "token.rejected\n")]
            ),
            "edge_x_total.edge_route./a/{id}.edge_reason.token_rejected_"
        );
        assert_eq!(
            labelled_name("edge_y_total", &[("kind", "")]),
            "edge_y_total.edge_kind.none"
        );
        assert!(matches!(label_value("GET"), Cow::Borrowed("GET")));
    }
}
