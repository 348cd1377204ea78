//! gRPC clients' own tool through the edge: grpcurl discovers the API by reflection (routed to
//! the service edge.json names, which describes the public services and nothing else), calls
//! a method with a token, and is refused one without, with the status the policy gives.

use edge_e2e::{grpcurl, Edge};
use std::process::Output;

/// `grpcurl -plaintext FLAGS EDGE WHAT`, as a user types it.
fn run(edge: &Edge, flags: &[&str], what: &[&str]) -> Output {
    std::process::Command::new(grpcurl())
        .arg("-plaintext")
        .args(flags)
        .arg(edge.base_url.trim_start_matches("http://"))
        .args(what)
        .output()
        .expect("run grpcurl")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_describes_and_calls_the_public_api_through_the_edge() {
    let edge = Edge::start().await;

    // Listed: the public services (whichever server implements them) and reflection; not the
    // internal ones, nor the answering server's health (the edge does not route it).
    let listed = run(&edge, &[], &["list"]);
    let (out, err) = text(&listed);
    assert!(listed.status.success(), "list: {err}");
    let services: Vec<&str> = out.lines().collect();
    assert_eq!(
        services,
        [
            "acl.AclService",
            "authority.AuthorityService",
            "catalog.CatalogService",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ],
        "{out}"
    );

    // Described with its HTTP bindings: the descriptor bytes are the protos' own.
    let described = run(
        &edge,
        &[],
        &["describe", "catalog.CatalogService.CreateItem"],
    );
    let (out, err) = text(&described);
    assert!(described.status.success(), "describe: {err}");
    assert!(
        out.contains("rpc CreateItem ( .catalog.CreateItemRequest )"),
        "{out}"
    );
    assert!(out.contains(r#"post: "/catalog/items""#), "{out}");

    // An internal service is not described through the edge.
    let hidden = run(&edge, &[], &["describe", "item.ItemService"]);
    let (_, err) = text(&hidden);
    assert!(!hidden.status.success(), "item.ItemService was described");
    assert!(err.contains("Symbol not found"), "{err}");

    // v1alpha (Postman, Evans and older grpcurl) is routed too: grpcurl asks v1 first.
    use tonic_reflection::pb::v1alpha as alpha;
    let channel = tonic::transport::Endpoint::from_shared(edge.base_url.clone())
        .expect("the edge's URL")
        .connect()
        .await
        .expect("connect to the edge");
    let mut old = alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let answer = old
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1alpha through the edge")
        .into_inner()
        .message()
        .await
        .expect("an answer")
        .expect("a message");
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("v1alpha: {answer:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "authority.AuthorityService"),
        "{list:?}"
    );

    // A call with a token: the owner is the token's subject, as over JSON.
    let (id, token) = edge.signup("grpcurl-user").await;
    let bearer = format!("authorization: bearer {token}");
    let created = run(
        &edge,
        &["-H", &bearer, "-d", r#"{"title":"Pen","price":100}"#],
        &["catalog.CatalogService/CreateItem"],
    );
    let (out, err) = text(&created);
    assert!(created.status.success(), "CreateItem: {err}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("grpcurl prints JSON");
    assert_eq!(answer["item"]["title"], "Pen", "{out}");
    assert_eq!(answer["item"]["customerId"], id.as_str(), "{out}");

    // Refused without one: Unauthenticated with the policy's message; grpcurl exits 64 + code.
    let refused = run(
        &edge,
        &["-d", r#"{"id":"x"}"#],
        &["catalog.CatalogService/PurchaseItem"],
    );
    let (_, err) = text(&refused);
    assert_eq!(refused.status.code(), Some(64 + 16), "{err}");
    assert!(err.contains("Code: Unauthenticated"), "{err}");
    assert!(err.contains("Message: a bearer token is required"), "{err}");
}
