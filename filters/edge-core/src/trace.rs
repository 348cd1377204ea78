//! W3C trace context across the edge. Envoy's tracer starts the edge span before any filter runs
//! and never shows it to Wasm; its backend calls get no trace context either (envoy#22028). So a
//! native `header_mutation` filter, which can read the active span, writes its ids into
//! [`EDGE_SPAN_HEADER`], and the transcoder makes its backend calls children of that span.
//! Filters hand the span's attributes back to Envoy as request headers, which its tracer reads
//! when the span ends (`custom_tags`): the matched route and auth's reason for a refusal.

/// `TRACE_ID-SPAN_ID` of the edge span (hex, 32 and 16 digits), set by the edge's own
/// `header_mutation` filter; a client's copy is overwritten there.
pub const EDGE_SPAN_HEADER: &str = "x-edge-span";

/// The matched route template, for the edge span's `http.route`.
pub const ROUTE_HEADER: &str = "x-edge-route";

/// Why auth refused a request, for the edge span's `edge.auth.reason`.
pub const AUTH_REASON_HEADER: &str = "x-edge-auth-reason";

/// The edge span's attributes taken from request headers: (attribute, header).
pub const SPAN_TAGS: [(&str, &str); 2] = [
    ("http.route", ROUTE_HEADER),
    ("edge.auth.reason", AUTH_REASON_HEADER),
];

/// The `traceparent` for a call the edge makes on the request's behalf: a child of the edge
/// span. The sampling decision is the client's when its `traceparent` is of the same trace
/// (Envoy's tracer keeps it), sampled otherwise (the edge traces every request it starts).
/// `None` when `edge_span` is not a well-formed [`EDGE_SPAN_HEADER`].
pub fn child_traceparent(edge_span: &str, incoming: Option<&str>) -> Option<String> {
    let (trace_id, span_id) = edge_span.split_once('-')?;
    if !is_id(trace_id, 32) || !is_id(span_id, 16) {
        return None;
    }
    let flags = incoming
        .and_then(parse_traceparent)
        .filter(|(incoming_trace, _)| incoming_trace.eq_ignore_ascii_case(trace_id))
        .map_or("01", |(_, flags)| flags);
    Some(format!(
        "00-{}-{}-{flags}",
        trace_id.to_ascii_lowercase(),
        span_id.to_ascii_lowercase()
    ))
}

/// The trace id of an [`EDGE_SPAN_HEADER`] value or of a `traceparent`.
pub fn trace_id_of(value: &str) -> Option<&str> {
    let value = value.trim();
    let candidate = match value.split_once('-') {
        Some(("00", rest)) => rest.split('-').next()?,
        Some((first, _)) => first,
        None => return None,
    };
    is_id(candidate, 32).then_some(candidate)
}

/// `00-TRACE-PARENT-FLAGS` → (trace id, flags).
fn parse_traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let well_formed = version == "00"
        && parts.next().is_none()
        && is_id(trace_id, 32)
        && is_id(parent_id, 16)
        && flags.len() == 2
        && flags.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then_some((trace_id, flags))
}

/// `len` hex digits, not all zero (W3C: an all-zero id is invalid).
fn is_id(value: &str, len: usize) -> bool {
    value.len() == len
        && value.bytes().all(|b| b.is_ascii_hexdigit())
        && value.bytes().any(|b| b != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const SPAN: &str = "b7ad6b7169203331";

    #[test]
    fn the_call_is_a_child_of_the_edge_span() {
        let edge_span = format!("{TRACE}-{SPAN}");
        assert_eq!(
            child_traceparent(&edge_span, None).as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        // The client's span is the edge span's parent, not the call's.
        let client = format!("00-{TRACE}-00f067aa0ba902b7-01");
        assert_eq!(
            child_traceparent(&edge_span, Some(&client)),
            Some(format!("00-{TRACE}-{SPAN}-01"))
        );
    }

    #[test]
    fn a_clients_decision_not_to_sample_holds() {
        let client = format!("00-{TRACE}-00f067aa0ba902b7-00");
        assert_eq!(
            child_traceparent(&format!("{TRACE}-{SPAN}"), Some(&client)),
            Some(format!("00-{TRACE}-{SPAN}-00"))
        );
        // Another trace's flags (or garbage) say nothing about this one.
        let other = "00-11111111111111111111111111111111-00f067aa0ba902b7-00";
        for incoming in [other, "garbage", ""] {
            assert_eq!(
                child_traceparent(&format!("{TRACE}-{SPAN}"), Some(incoming)),
                Some(format!("00-{TRACE}-{SPAN}-01")),
                "{incoming}"
            );
        }
    }

    #[test]
    fn malformed_edge_spans_are_ignored() {
        for bad in [
            "",
            "-",
            "--",
            TRACE,
            &format!("{TRACE}-"),
            &format!("{TRACE}-{SPAN}-01"),
            &format!("{TRACE}-0000000000000000"),
            &format!("00000000000000000000000000000000-{SPAN}"),
            &format!("{}-{SPAN}", TRACE.replace('a', "g")),
        ] {
            assert_eq!(child_traceparent(bad, None), None, "{bad:?}");
        }
    }

    #[test]
    fn trace_ids_of_both_forms() {
        assert_eq!(trace_id_of(&format!("{TRACE}-{SPAN}")), Some(TRACE));
        assert_eq!(trace_id_of(&format!("00-{TRACE}-{SPAN}-01")), Some(TRACE));
        assert_eq!(trace_id_of("garbage"), None);
        assert_eq!(trace_id_of("00-short-x-01"), None);
    }
}
