//! What the native target (issue #31) will rely on in Envoy 1.40's dynamic-module ABI, checked
//! with a test-only module (`tests/native-probe`) in the real Envoy in front of the real catalog:
//! a GET given a gRPC body in place and routed as the gRPC call (proxy-wasm cannot give a
//! bodiless request a body), a local reply, and a streaming callout the module ends itself (the
//! end of a client stream, which a Wasm filter cannot send: README, "WebSocket").

use edge_e2e::{native_probe_module, Edge, Options, MOBILE_PHONE_ID};
use platform_proto::catalog::{GetItemResponse, ListItemsResponse};
use prost::Message;
use serde_json::{json, Value};

async fn get(edge: &Edge, path: &str) -> reqwest::Response {
    edge.http.get(edge.url(path)).send().await.expect("the GET")
}

/// The one gRPC message of a unary answer.
fn message<M: Message + Default>(frame: &[u8]) -> M {
    assert!(frame.len() >= 5, "not a gRPC frame: {frame:?}");
    let length = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    M::decode(&frame[5..5 + length]).expect("a message")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dynamic_module_transcodes_a_get_in_place_replies_and_ends_its_own_stream() {
    let module = native_probe_module().display().to_string();
    let edge = Edge::start_with(Options {
        // Envoy with the probe module before the router, on make run's routes and clusters.
        bootstrap: Box::new(move |bootstrap: &mut Value, _dir| {
            let filters = json!([
                {
                    "name": "envoy.filters.http.dynamic_modules",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                        "dynamic_module_config": { "module": { "local": { "filename": module } } },
                        "filter_name": "probe",
                        "filter_config": {
                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": "catalog"
                        }
                    }
                },
                edgectl::router_filter()
            ]);
            *bootstrap
                .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters")
                .expect("http_filters") = filters;
        }),
        wait_for_keys: false,
        mesh: None,
        ..Options::default()
    })
    .await;

    // A bodiless GET, given the GetItem message in place, reached catalog through the router.
    let response = get(&edge, &format!("/probe/items/{MOBILE_PHONE_ID}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    let answer: GetItemResponse = message(&response.bytes().await.expect("body"));
    assert_eq!(answer.item.expect("an item").title, "Mobile Phone");
    // The id went with it: an unknown one is catalog's NOT_FOUND (trailers-only).
    let response = get(&edge, "/probe/items/no-such-item").await;
    assert_eq!(response.headers()["grpc-status"], "5");

    // A local reply: the module's status, headers and body.
    let response = get(&edge, "/probe/refuse").await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-native-probe"], "refused");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 7);

    // A streaming callout whose request the module sent in two pieces and ended itself:
    // catalog answered only once the stream had ended.
    let response = get(&edge, "/probe/list").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-grpc-status"], "0");
    let listed: ListItemsResponse = message(&response.bytes().await.expect("body"));
    assert!(
        listed.items.iter().any(|item| item.title == "Mobile Phone"),
        "{listed:?}"
    );
}
