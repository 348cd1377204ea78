//! The connection manager's `local_reply_config`: Envoy's own replies as each client reads
//! an error of the edge.

use serde_json::{json, Value};

/// The mappers, first match wins: the rate limit's 429 (when `rate_limited`), and Envoy's
/// replies to a call the transcoder sent on through the router (its backend failing).
pub fn local_reply_config(rate_limited: bool) -> Value {
    let mut mappers = if rate_limited {
        rate_limit_mappers()
    } else {
        Vec::new()
    };
    mappers.extend(transcoded_mappers());
    json!({ "mappers": mappers })
}

/// A call the transcoder sent on through the router was a JSON client's: Envoy's own reply to
/// it (the backend unreachable, reset, or too slow) is the `google.rpc.Status` JSON the
/// transcoder answers with. Mostly the transcoder rewrites it itself; these are the replies
/// Envoy sends straight to the client, past the filters (once the backend's response had
/// started).
fn transcoded_mappers() -> Vec<Value> {
    let transcoded = json!({ "header_filter": { "header": {
        "name": edge_core::TRANSCODED_HEADER,
        "present_match": true
    } } });
    let status = |status: u16| {
        json!({ "status_code_filter": { "comparison": {
            "op": "EQ", "value": { "default_value": status, "runtime_key": "edge_transcoded.status" }
        } } })
    };
    // The backend reset the call (after its response had started, for one): a 502, as the
    // transcoder answers a reset when it calls out, where Envoy's router says 503.
    let reset = json!({ "response_flag_filter": { "flags": ["UR", "UC", "UPE"] } });
    [
        (
            reset,
            502,
            14,
            "the backend reset the call before its answer was complete",
        ),
        (status(502), 502, 14, "the backend's answer was not valid"),
        (status(503), 503, 14, "the backend is unavailable"),
        (status(504), 504, 4, "the backend did not answer in time"),
    ]
    .into_iter()
    .map(|(filter, http_status, code, message)| {
        json!({
            "filter": { "and_filter": { "filters": [filter, transcoded.clone()] } },
            "status_code": http_status,
            "body_format_override": {
                "json_format": { "code": code, "message": message },
                "content_type": "application/json"
            }
        })
    })
    .collect()
}

/// The rate limit's 429 as each client reads a refusal. gRPC clients are left alone: they get `grpc-status: 8`
/// (RESOURCE_EXHAUSTED) from the filter itself. gRPC-Web and Connect clients do not (Envoy
/// renders gRPC only for a request that came as gRPC, and theirs are made gRPC by later
/// filters), so they get their protocol's own: a trailers-only gRPC answer (HTTP 200, no body)
/// that `grpc_web` passes on as gRPC-Web, and Connect's error JSON. JSON clients get the
/// `google.rpc.Status` JSON every other error of the edge has.
fn rate_limit_mappers() -> Vec<Value> {
    const MESSAGE: &str = "too many requests: slow down and retry later";
    let too_many = json!({ "status_code_filter": { "comparison": {
        "op": "EQ", "value": { "default_value": 429, "runtime_key": "edge_rate_limit.status" }
    } } });
    let header = |name: &str, prefix: &str, invert: bool| {
        json!({ "header_filter": { "header": {
            "name": name,
            "string_match": { "prefix": prefix },
            "invert_match": invert,
            "treat_missing_header_as_empty": true
        } } })
    };
    let client = edge_core::CLIENT_CONTENT_TYPE_HEADER;
    vec![
        json!({
            "filter": { "and_filter": { "filters": [
                too_many.clone(),
                header(client, "application/grpc-web", false)
            ] } },
            "status_code": 200,
            "headers_to_add": [
                { "header": { "key": "grpc-status", "value": "8" }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" },
                { "header": { "key": "grpc-message", "value": MESSAGE }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" }
            ],
            "body_format_override": {
                "text_format": "",
                "content_type": "application/grpc"
            }
        }),
        json!({
            // Connect: made gRPC, but not sent as gRPC (nor gRPC-Web).
            "filter": { "and_filter": { "filters": [
                too_many.clone(),
                header("content-type", "application/grpc", false),
                header(client, "application/grpc", true)
            ] } },
            "body_format_override": {
                "json_format": { "code": "resource_exhausted", "message": MESSAGE },
                "content_type": "application/json"
            }
        }),
        json!({
            "filter": { "and_filter": { "filters": [
                too_many,
                header("content-type", "application/grpc", true)
            ] } },
            "body_format_override": {
                "json_format": { "code": 8, "message": MESSAGE },
                "content_type": "application/json"
            }
        }),
    ]
}
