//! The API description the edge serves (`GET /openapi.json`): what `edgectl openapi` renders,
//! valid OpenAPI 3.1 by `openapi-spec-validator`, stating the live auth policy (a policy change
//! changes it, nothing restarts), and true to the edge's answers by schemathesis, driven by it
//! against the real chain (every operation but the long-lived watch, a bounded number of
//! examples: no 5xx, every status, content type, header and body as documented, no documented
//! route refused as unrouted). And the docs page (Swagger UI over that document), loaded in
//! headless Chromium: it lists every operation.

use edge_e2e::{
    api_docs_dir, edge_json, free_port, openapi_tool, run_schemathesis, schemathesis_summary,
    workspace_root, Edge, Options, StaticSite,
};
use serde_json::Value;
use std::process::Command;

/// Examples per operation and phase in `make test`; `make fuzz` sets many more.
fn examples() -> String {
    std::env::var("EDGE_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into())
}

async fn served(edge: &Edge) -> Value {
    let response = edge
        .http
        .get(edge.url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.expect("a JSON document")
}

fn operation<'d>(document: &'d Value, path: &str, method: &str) -> &'d Value {
    let operation = &document["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    operation
}

#[tokio::test]
async fn the_served_description_is_valid_follows_live_policy_and_holds_under_schemathesis() {
    let edge = Edge::start_with(Options {
        live_config: true,
        ..Options::default()
    })
    .await;
    let document = served(&edge).await;
    assert_eq!(
        document,
        edge_json().openapi().expect("edgectl openapi"),
        "the edge serves what edgectl renders"
    );

    let file = edge.dir.join("openapi.json");
    std::fs::write(&file, document.to_string()).expect("write the document");
    let validated = Command::new(openapi_tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        validated.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    // Security as the policy says: public reads, a bearer token for writes (with the acl
    // action and the rate limit named), the acl.admin scope for the acl's routes.
    let list = operation(&document, "/catalog/items", "get");
    assert_eq!(list["security"], serde_json::json!([]));
    assert!(list["responses"].get("401").is_none());
    let create = operation(&document, "/catalog/items", "post");
    assert_eq!(create["security"], serde_json::json!([{ "bearer": [] }]));
    assert_eq!(create["x-edge-acl-action"], "list");
    assert_eq!(create["x-edge-rate-limit"]["name"], "listings");
    for status in ["401", "403", "429", "413", "415"] {
        assert!(create["responses"].get(status).is_some(), "{status}");
    }
    let restrict = operation(&document, "/acl/restrictions", "post");
    assert_eq!(
        restrict["security"],
        serde_json::json!([{ "bearer": ["scope=acl.admin"] }])
    );
    let image = operation(&document, "/catalog/items/{id}/image", "get");
    assert!(image["responses"]["200"]["content"].get("*/*").is_some());
    let watch = operation(&document, "/catalog/items:watch", "post");
    assert!(watch["responses"]["200"]["content"]
        .get("application/x-ndjson")
        .is_some());
    let purchase = operation(&document, "/catalog/items/{id}:purchase", "post");
    assert!(purchase["description"]
        .as_str()
        .is_some_and(|text| text.contains("FAILED_PRECONDITION")));

    // A policy change (reads need a token) is in the served document at once.
    let envoy = edge.envoy_pid();
    let mut private = edge_json();
    for rule in private.auth["rules"].as_array_mut().expect("rules") {
        if rule["path"] == "/catalog/items" && rule["methods"] == serde_json::json!(["GET"]) {
            rule["policy"] = "authenticated".into();
        }
    }
    edge.apply(&private);
    let changed = served(&edge).await;
    let list = operation(&changed, "/catalog/items", "get");
    assert_eq!(list["security"], serde_json::json!([{ "bearer": [] }]));
    assert!(list["responses"].get("401").is_some());
    assert_eq!(edge.envoy_pid(), envoy, "nothing restarted");
    edge.apply(&edge_json());

    // schemathesis, as the admin (whose token carries acl.admin), driven by the document.
    let (_, token) = edge.signup("admin").await;
    let (passed, output) = run_schemathesis(&edge.base_url, &token, &examples(), &edge.dir);
    println!("schemathesis: {}", schemathesis_summary(&output));
    assert!(passed, "schemathesis found failures:\n{output}");
}

#[tokio::test]
async fn the_docs_page_lists_every_operation_in_chromium() {
    let port = free_port();
    let page_origin = format!("http://localhost:{port}");
    let edge = Edge::start_with(Options {
        // The page's origin may read the edge's description (make run's is localhost:8081).
        customize: Box::new(move |config| {
            if let Some(cors) = config.cors.as_mut() {
                cors.allow_origins.push(page_origin);
            }
        }),
        ..Options::default()
    })
    .await;
    let docs = api_docs_dir();
    let site = StaticSite::start(&docs.join("site"), port).await;
    let origin = &site.origin;

    let screenshot = std::env::var("EDGE_DOCS_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| edge.dir.join("docs.png"));
    let page = format!("{origin}/?url={}", edge.url("/openapi.json"));
    let run = Command::new("node")
        .arg(workspace_root().join("tests/openapi/docs-page.cjs"))
        .arg(&page)
        .arg(&screenshot)
        .env("NODE_PATH", docs.join("node_modules"))
        .output()
        .expect("run node");
    assert!(
        run.status.success(),
        "the docs page in Chromium: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: Value = serde_json::from_slice(&run.stdout).expect("the page's JSON report");
    assert_eq!(seen["errors"], serde_json::json!([]), "script errors");
    assert!(
        seen["title"]
            .as_str()
            .is_some_and(|title| title.contains("Marketplace API")),
        "{seen}"
    );
    let mut listed: Vec<String> = seen["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|operation| operation.as_str().unwrap_or_default().to_string())
        .collect();
    listed.sort();
    let document = edge_json().openapi().expect("edgectl openapi");
    let mut documented: Vec<String> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .expect("operations")
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    documented.sort();
    assert_eq!(
        listed, documented,
        "the page lists every documented operation"
    );
    assert!(std::fs::metadata(&screenshot).is_ok_and(|file| file.len() > 10_000));
}
