//! Host tests of the transcoder core against the platform's real descriptor set.

use super::*;
use platform_proto::catalog::{CreateItemRequest, GetItemRequest, Item, ListItemsResponse};
use prost::Message;
use serde_json::json;

fn config(services: &[(&str, &str)]) -> TranscoderConfig {
    let descriptor_set =
        base64::engine::general_purpose::STANDARD.encode(platform_proto::FILE_DESCRIPTOR_SET);
    serde_json::from_value(json!({
        "descriptor_set": descriptor_set,
        "services": services.iter().map(|(s, c)| (s.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap()
}

fn transcoder() -> Transcoder {
    Transcoder::new(config(&[
        ("catalog.CatalogService", "catalog"),
        ("authority.AuthorityService", "authority"),
    ]))
    .unwrap()
}

fn matched<'a>(t: &'a Transcoder, method: &str, path: &str) -> (&'a Route, Vec<(String, String)>) {
    match t.lookup(method, path) {
        Lookup::Matched {
            route,
            index,
            bindings,
        } => {
            assert!(
                std::ptr::eq(&t.routes()[index], route),
                "index names the route"
            );
            (route, bindings)
        }
        other => panic!("{method} {path}: {other:?}"),
    }
}

#[test]
fn routes_come_from_annotations_of_listed_services_only() {
    let t = transcoder();
    let mut routes: Vec<String> = t
        .routes()
        .iter()
        .map(|r| {
            format!(
                "{} {} -> {} @{}",
                r.http_method,
                r.template.as_str(),
                r.grpc_path(),
                r.cluster
            )
        })
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            "GET /catalog/items -> /catalog.CatalogService/ListItems @catalog",
            "GET /catalog/items/{id} -> /catalog.CatalogService/GetItem @catalog",
            "POST /auth/signin -> /authority.AuthorityService/Signin @authority",
            "POST /auth/signup -> /authority.AuthorityService/Signup @authority",
            "POST /catalog/items -> /catalog.CatalogService/CreateItem @catalog",
        ]
    );
    let only_catalog = Transcoder::new(config(&[("catalog.CatalogService", "c")])).unwrap();
    assert!(matches!(
        only_catalog.lookup("POST", "/auth/signin"),
        Lookup::NotFound
    ));
}

#[test]
fn lookup_distinguishes_unknown_path_from_wrong_method() {
    let t = transcoder();
    assert!(matches!(t.lookup("GET", "/nope"), Lookup::NotFound));
    assert!(matches!(
        t.lookup("DELETE", "/catalog/items/1"),
        Lookup::MethodNotAllowed
    ));
    assert!(matches!(
        t.lookup("PUT", "/auth/signup"),
        Lookup::MethodNotAllowed
    ));
    let (route, bindings) = matched(&t, "GET", "/catalog/items/abc?x=1");
    assert_eq!(route.method, "GetItem");
    assert_eq!(bindings, vec![("id".to_string(), "abc".to_string())]);
}

#[test]
fn request_from_body_and_path() {
    let t = transcoder();
    let (route, bindings) = matched(&t, "POST", "/catalog/items");
    let bytes = t
        .request_message(
            route,
            &bindings,
            None,
            br#"{"title":"Desk","price":"1500","unknown":1}"#,
        )
        .unwrap();
    let request = CreateItemRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!((request.title.as_str(), request.price), ("Desk", 1500));

    let (route, bindings) = matched(&t, "GET", "/catalog/items/it%2D1");
    let bytes = t
        .request_message(route, &bindings, Some("id=ignored"), b"")
        .unwrap();
    assert_eq!(GetItemRequest::decode(bytes.as_slice()).unwrap().id, "it-1");
}

#[test]
fn bad_json_is_invalid_argument() {
    let t = transcoder();
    let (route, bindings) = matched(&t, "POST", "/catalog/items");
    for body in [&b"{"[..], b"{\"price\":\"abc\"}", b"[1]", b"{} trailing"] {
        let status = t.request_message(route, &bindings, None, body).unwrap_err();
        assert_eq!(
            status.code,
            GrpcCode::InvalidArgument,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert!(
            status.message.starts_with("invalid JSON body"),
            "{}",
            status.message
        );
    }
}

#[test]
fn response_uses_proto_names_int64_strings_and_omits_defaults() {
    let t = transcoder();
    let (route, _) = matched(&t, "GET", "/catalog/items");
    let response = ListItemsResponse {
        items: vec![
            Item {
                id: "1".into(),
                customer_id: "c".into(),
                customer_name: "goldie".into(),
                title: "Laptop".into(),
                price: 20000,
            },
            Item::default(),
        ],
    };
    let json: serde_json::Value =
        serde_json::from_slice(&t.response_json(route, &response.encode_to_vec()).unwrap())
            .unwrap();
    assert_eq!(
        json,
        json!({"items": [
            {"id": "1", "customer_id": "c", "customer_name": "goldie", "title": "Laptop", "price": "20000"},
            {}
        ]})
    );
    let garbage = t.response_json(route, &[0xff, 0xff, 0xff]).unwrap_err();
    assert_eq!(garbage.code, GrpcCode::Internal);
}

#[test]
fn configuration_errors_name_the_problem() {
    let missing = Transcoder::new(config(&[("nope.Service", "x")]))
        .err()
        .unwrap();
    assert!(missing.contains("nope.Service"), "{missing}");
    let mut bad = config(&[]);
    bad.descriptor_set = "%%%".into();
    assert!(Transcoder::new(bad).err().unwrap().contains("base64"));
}
