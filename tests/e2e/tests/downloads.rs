//! Downloads: a server stream of `google.api.HttpBody` (the kitchen's `Bodies/Download`, parts
//! of text/plain) through the real Envoy 1.40. The native build passes each part on as it
//! comes, so a download is bounded by nothing the transcoder holds; the Wasm build collects a
//! GET's stream by a callout, up to `max_stream_bytes`. A failure is an error reply before the
//! first part and a cut-short body after it, never a complete-looking one.

use edge_e2e::{KitchenEdge, KITCHEN_MAX_STREAM};
use edgectl::Target;
use serde_json::Value;

/// The body of `parts` parts of the download `id`, as the backend sends them.
fn parts(id: &str, parts: usize) -> String {
    (0..parts).map(|i| format!("part {i} of {id}\n")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_native_build_passes_a_download_on_part_by_part_past_max_stream_bytes() {
    let edge = KitchenEdge::start(Target::Native).await;
    let expected = parts("big", 2000);
    assert!(
        expected.len() > 4 * KITCHEN_MAX_STREAM,
        "{}",
        expected.len()
    );
    let response = edge
        .http
        .get(edge.url("/v1/bodies/big:download?int32_value=2000"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.text().await.expect("the whole body"), expected);

    // Failed after three parts: the response is cut short (the client's read fails: of the
    // body, or of the whole answer when the reset came before Envoy wrote the headers), never
    // ended as if complete.
    let read = async {
        let response = edge
            .http
            .get(edge.url("/v1/bodies/d:download?int32_value=3&fault.code=13&fault.message=disk"))
            .send()
            .await?;
        assert_eq!(response.status(), 200, "the parts had started");
        response.text().await
    };
    let read = read.await;
    assert!(
        read.is_err(),
        "a failed download read as complete: {read:?}"
    );

    // Failed before any part: the JSON error, as any call's.
    let response = edge
        .http
        .get(edge.url("/v1/bodies/d:download?fault.code=5&fault.message=no+such+file"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.expect("a google.rpc.Status");
    assert_eq!(
        (&error["code"], &error["message"]),
        (&5.into(), &"no such file".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wasm_build_collects_a_download_up_to_max_stream_bytes() {
    let edge = KitchenEdge::start(Target::Wasm).await;
    let small = edge
        .http
        .get(edge.url("/v1/bodies/small:download?int32_value=3"))
        .send()
        .await
        .expect("GET");
    assert_eq!(small.status(), 200);
    assert_eq!(small.text().await.expect("body"), parts("small", 3));
    let big = edge
        .http
        .get(edge.url("/v1/bodies/big:download?int32_value=2000"))
        .send()
        .await
        .expect("GET");
    assert_eq!(big.status(), 429);
    let error: Value = big.json().await.expect("a google.rpc.Status");
    assert_eq!(error["code"], 8, "{error}");
}
