//! Envoy learns why a filter answered: each local reply carries its response-code details
//! (`%RESPONSE_CODE_DETAILS%` in Envoy's own access logs, Istio's default format included), read
//! back here from Envoy's file access logger added to the local bootstrap for this test.

use edge_e2e::{Edge, Options};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

const ENVOY_LOG: &str = "envoy-access.log";

/// Envoy's own access log on the edge's connection manager: request id, status, details.
fn with_envoy_access_log(bootstrap: &mut Value, dir: &Path) {
    let manager = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"];
    assert!(
        manager.is_object(),
        "the local bootstrap's connection manager"
    );
    manager["access_log"] = json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": dir.join(ENVOY_LOG),
            "log_format": { "text_format_source": {
                "inline_string": "%REQ(X-REQUEST-ID)% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS%\n"
            } }
        }
    }]);
}

/// (status, details) by request id, as Envoy logged them.
fn envoy_log(edge: &Edge) -> BTreeMap<String, (String, String)> {
    std::fs::read_to_string(edge.dir.join(ENVOY_LOG))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            Some((
                fields.next()?.to_string(),
                (fields.next()?.to_string(), fields.next()?.to_string()),
            ))
        })
        .collect()
}

#[tokio::test]
async fn envoy_is_told_which_filter_answered_and_why() {
    let edge = Edge::start_with(Options {
        bootstrap: Box::new(with_envoy_access_log),
        // The gateway istiod configures has its own access logging (Istio's Telemetry).
        mesh: None,
        ..Options::default()
    })
    .await;
    let (_, token) = edge.signup("details").await;
    let requests = [
        ("listed", edge.http.get(edge.url("/catalog/items"))),
        (
            "anonymous",
            edge.http
                .post(edge.url("/catalog/items"))
                .json(&json!({"title": "x"})),
        ),
        ("unrouted", edge.http.get(edge.url("/no/such/route"))),
        (
            "malformed",
            edge.http
                .post(edge.url("/catalog/items"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{"),
        ),
        (
            "missing",
            edge.http.get(edge.url("/catalog/items/no-such-item")),
        ),
    ];
    for (id, request) in requests {
        request
            .header("x-request-id", id)
            .send()
            .await
            .expect("answered");
    }
    let wanted = [
        ("listed", "200", "via_upstream"),
        ("anonymous", "401", "edge_auth_token_missing"),
        ("unrouted", "404", "edge_auth_no_route"),
        ("malformed", "400", "edge_transcoder_bad_request"),
        // The backend's own NOT_FOUND, carried to the client.
        ("missing", "404", "via_upstream"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let logged = loop {
        let logged = envoy_log(&edge);
        if wanted.iter().all(|(id, ..)| logged.contains_key(*id))
            || std::time::Instant::now() > deadline
        {
            break logged;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    for (id, status, details) in wanted {
        assert_eq!(
            logged.get(id),
            Some(&(status.to_string(), details.to_string())),
            "{id}: {logged:?}"
        );
    }
}
