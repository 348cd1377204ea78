//! Host tests of the transcoder core against the platform's real descriptor set.

use super::*;
use platform_proto::catalog::{
    CreateItemRequest, GetItemRequest, GetItemResponse, Item, ListItemsResponse,
};
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

pub(crate) fn transcoder() -> Transcoder {
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
            "GET /catalog/items/{id}/image -> /catalog.CatalogService/GetItemImage @catalog",
            "GET /catalog/items:watch -> /catalog.CatalogService/WatchItems @catalog",
            "POST /auth/signin -> /authority.AuthorityService/Signin @authority",
            "POST /auth/signup -> /authority.AuthorityService/Signup @authority",
            "POST /catalog/items -> /catalog.CatalogService/CreateItem @catalog",
            "POST /catalog/items/{id}:purchase -> /catalog.CatalogService/PurchaseItem @catalog",
            "POST /catalog/items:batchCreate -> /catalog.CatalogService/CreateItems @catalog",
            "POST /catalog/items:watch -> /catalog.CatalogService/WatchItems @catalog",
            "PUT /catalog/items/{id}/image -> /catalog.CatalogService/PutItemImage @catalog",
        ]
    );
    let only_catalog = Transcoder::new(config(&[("catalog.CatalogService", "c")])).unwrap();
    assert!(matches!(
        only_catalog.lookup("POST", "/auth/signin"),
        Lookup::Unrouted(RouteError::NotFound)
    ));
}

#[test]
fn lookup_distinguishes_unknown_path_from_wrong_method() {
    let t = transcoder();
    assert!(matches!(
        t.lookup("GET", "/nope"),
        Lookup::Unrouted(RouteError::NotFound)
    ));
    assert!(matches!(
        t.lookup("DELETE", "/catalog/items/1"),
        Lookup::Unrouted(RouteError::MethodNotAllowed { allow }) if allow == "GET"
    ));
    assert!(matches!(
        t.lookup("PUT", "/auth/signup"),
        Lookup::Unrouted(RouteError::MethodNotAllowed { .. })
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
            Encoding::Json,
        )
        .unwrap();
    let request = CreateItemRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!((request.title.as_str(), request.price), ("Desk", 1500));

    let (route, bindings) = matched(&t, "GET", "/catalog/items/it%2D1");
    let bytes = t
        .request_message(route, &bindings, Some("id=ignored"), b"", Encoding::Json)
        .unwrap();
    assert_eq!(GetItemRequest::decode(bytes.as_slice()).unwrap().id, "it-1");
}

#[test]
fn bad_json_is_invalid_argument() {
    let t = transcoder();
    let (route, bindings) = matched(&t, "POST", "/catalog/items");
    for body in [&b"{"[..], b"{\"price\":\"abc\"}", b"[1]", b"{} trailing"] {
        let status = t
            .request_message(route, &bindings, None, body, Encoding::Json)
            .unwrap_err();
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
                sold: false,
            },
            Item::default(),
        ],
        next_page_token: String::new(),
    };
    let json: serde_json::Value = serde_json::from_slice(
        &t.response_body(route, &response.encode_to_vec(), Encoding::Json)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        json,
        json!({"items": [
            {"id": "1", "customer_id": "c", "customer_name": "goldie", "title": "Laptop", "price": "20000"},
            {}
        ]})
    );
    let garbage = t
        .response_body(route, &[0xff, 0xff, 0xff], Encoding::Json)
        .unwrap_err();
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

mod kitchen_api {
    //! The test-only kitchen API: every feature of google.api.http.
    use super::*;
    use kitchen::v1::{Color, Inner, Sink};

    fn kitchen_config(extra: serde_json::Value) -> TranscoderConfig {
        let mut config = json!({
            "descriptor_set": base64::engine::general_purpose::STANDARD.encode(kitchen::FILE_DESCRIPTOR_SET),
            "services": {"kitchen.v1.Kitchen": "kitchen", "kitchen.v1.Extras": "kitchen"},
        });
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            config.extend(extra.clone());
        }
        serde_json::from_value(config).unwrap()
    }

    fn kitchen(extra: serde_json::Value) -> Transcoder {
        Transcoder::new(kitchen_config(extra)).unwrap()
    }

    /// Transcodes a request and decodes what the backend would receive.
    fn sink(
        t: &Transcoder,
        method: &str,
        path_and_query: &str,
        body: &str,
    ) -> Result<Sink, Status> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let (route, bindings) = matched(t, method, path);
        let bytes = t.request_message(route, &bindings, query, body.as_bytes(), Encoding::Json)?;
        Ok(Sink::decode(bytes.as_slice()).unwrap())
    }

    #[test]
    fn every_binding_kind_routes() {
        let t = kitchen(json!({}));
        let cases = [
            ("GET", "/v1/sinks/a", "Get"),
            ("GET", "/v1/shelves/s/sinks/a", "Get"),
            ("GET", "/v1/sinks", "List"),
            ("POST", "/v1/sinks", "Create"),
            ("PATCH", "/v1/sinks/a", "Update"),
            ("PUT", "/v1/sinks/a", "Replace"),
            ("DELETE", "/v1/sinks/a", "Delete"),
            ("GET", "/v1/rooms/r/sinks/a", "Named"),
            ("GET", "/v1/files/a/b/c", "Files"),
            ("GET", "/v1/inner/n/level/3", "Nested"),
            ("POST", "/v1/sinks/a:wash", "Wash"),
            ("GET", "/v1/sinks/a/tags", "Tags"),
            ("SEARCH", "/v1/sinks:search", "Search"),
        ];
        for (method, path, expected) in cases {
            match t.lookup(method, path) {
                Lookup::Matched { route, .. } => {
                    assert_eq!(route.method, expected, "{method} {path}")
                }
                other => panic!("{method} {path}: {other:?}"),
            }
        }
        assert!(matches!(
            t.lookup("POST", "/v1/sinks/a"),
            Lookup::Unrouted(RouteError::MethodNotAllowed { .. })
        ));
        assert!(matches!(
            t.lookup("GET", "/v2/sinks"),
            Lookup::Unrouted(RouteError::NotFound)
        ));
        assert!(matches!(
            t.lookup("POST", "/v1/sinks:dry"),
            Lookup::Unrouted(RouteError::NotFound)
        ));
    }

    #[test]
    fn path_variables_fill_nested_and_multi_segment_fields() {
        let t = kitchen(json!({}));
        let named = sink(&t, "GET", "/v1/rooms/r1/sinks/k%2F1", "").unwrap();
        assert_eq!(named.name, "rooms/r1/sinks/k%2F1");
        let files = sink(&t, "GET", "/v1/files/a/b%20c/d", "").unwrap();
        assert_eq!(files.path, "a/b c/d");
        let nested = sink(&t, "GET", "/v1/inner/bob/level/7", "").unwrap();
        assert_eq!(
            nested.inner,
            Some(Inner {
                name: "bob".into(),
                level: 7,
                child: None
            })
        );
        let bad_level = sink(&t, "GET", "/v1/inner/bob/level/seven", "").unwrap_err();
        assert_eq!(bad_level.code, GrpcCode::InvalidArgument);
    }

    #[test]
    fn query_parameters_map_to_fields_of_every_kind() {
        let t = kitchen(json!({}));
        let s = sink(
            &t,
            "GET",
            "/v1/sinks?int32_value=-3&int64Value=9007199254740993&uint64_value=18446744073709551615\
             &double_value=2.5&float_value=1.25&bool_value=true&bytes_value=aGk%3D&color=GREEN\
             &inner.name=in&inner.child.level=2&tags=a&tags=b+c&numbers=1&numbers=2&colors=RED&colors=2\
             &created_at=2024-01-02T03:04:05Z&ttl=1.5s&update_mask=a,b.c&maybe_count=4\
             &maybe_note=hi&text=t&camelCaseName=cc&sint_value=-9&fixed_value=5&unknown=1",
            "",
        )
        .unwrap();
        assert_eq!(s.int32_value, -3);
        assert_eq!(s.int64_value, 9_007_199_254_740_993);
        assert_eq!(s.uint64_value, u64::MAX);
        assert_eq!(
            (s.double_value, s.float_value, s.bool_value),
            (2.5, 1.25, true)
        );
        assert_eq!(s.bytes_value, b"hi");
        assert_eq!(s.color, Color::Green as i32);
        let inner = s.inner.unwrap();
        assert_eq!(inner.name, "in");
        assert_eq!(inner.child.unwrap().level, 2);
        assert_eq!(s.tags, ["a", "b c"]);
        assert_eq!(s.numbers, [1, 2]);
        assert_eq!(s.colors, [Color::Red as i32, Color::Green as i32]);
        assert_eq!(s.created_at.unwrap().seconds, 1_704_164_645);
        let ttl = s.ttl.unwrap();
        assert_eq!((ttl.seconds, ttl.nanos), (1, 500_000_000));
        assert_eq!(s.update_mask.unwrap().paths, ["a", "b.c"]);
        assert_eq!(s.maybe_count, Some(4));
        assert_eq!(s.maybe_note.as_deref(), Some("hi"));
        assert_eq!(s.choice, Some(kitchen::v1::sink::Choice::Text("t".into())));
        assert_eq!(
            (s.camel_case_name.as_str(), s.sint_value, s.fixed_value),
            ("cc", -9, 5)
        );
    }

    #[test]
    fn bad_query_values_are_invalid_argument_naming_the_field() {
        let t = kitchen(json!({}));
        for query in [
            "int32_value=x",
            "int32_value=4294967296",
            "bool_value=yes",
            "color=PURPLE",
            "created_at=yesterday",
            "counts=1",
            "tags.x=1",
            "int32_value=%zz",
        ] {
            let status = sink(&t, "GET", &format!("/v1/sinks?{query}"), "").unwrap_err();
            assert_eq!(status.code, GrpcCode::InvalidArgument, "{query}");
            let field = query.split(['=', '.']).next().unwrap();
            assert!(
                status.message.contains(field) || status.message.contains("malformed"),
                "{query}: {}",
                status.message
            );
        }
    }

    #[test]
    fn plus_and_unknown_parameters_are_configurable() {
        let literal_plus = kitchen(json!({"query_plus_as_space": false}));
        assert_eq!(
            sink(&literal_plus, "GET", "/v1/sinks?tags=a+b", "")
                .unwrap()
                .tags,
            ["a+b"]
        );
        let strict = kitchen(json!({"reject_unknown_query_parameters": true}));
        let status = sink(&strict, "GET", "/v1/sinks?nope=1", "").unwrap_err();
        assert_eq!(status.message, "unknown query parameter \"nope\"");
        // With body "*" the body fills every field: no query parameter can bind.
        assert!(sink(&strict, "POST", "/v1/sinks?id=1", "{}").is_err());
        assert_eq!(
            sink(&kitchen(json!({})), "POST", "/v1/sinks?id=1", "{}")
                .unwrap()
                .id,
            ""
        );
    }

    #[test]
    fn json_bodies_accept_both_names_and_unknown_fields_are_configurable() {
        let t = kitchen(json!({}));
        let s = sink(
            &t,
            "POST",
            "/v1/sinks",
            r#"{"camelCaseName":"a","int64_value":"5","extra":1}"#,
        )
        .unwrap();
        assert_eq!((s.camel_case_name.as_str(), s.int64_value), ("a", 5));
        let strict = kitchen(json!({"reject_unknown_json_fields": true}));
        let status = sink(&strict, "POST", "/v1/sinks", r#"{"extra":1}"#).unwrap_err();
        assert!(status.message.contains("extra"), "{}", status.message);
        // body: "inner" — the JSON is the Inner message; path variables still apply.
        let s = sink(&t, "PATCH", "/v1/sinks/k", r#"{"name":"n","level":2}"#).unwrap();
        assert_eq!((s.id.as_str(), s.inner.unwrap().level), ("k", 2));
        // Path variables win over the body.
        assert_eq!(
            sink(&t, "PUT", "/v1/sinks/path", r#"{"id":"body"}"#)
                .unwrap()
                .id,
            "path"
        );
        let status = sink(&t, "POST", "/v1/sinks", r#"{"id":"a","int32_value":"x"}"#).unwrap_err();
        assert!(
            status.message.contains("field int32_value:"),
            "{}",
            status.message
        );
        let status = sink(
            &t,
            "POST",
            "/v1/sinks",
            r#"{"inner":{"child":{"level":true}}}"#,
        )
        .unwrap_err();
        assert!(
            status.message.contains("field inner.child.level:"),
            "{}",
            status.message
        );
    }

    #[test]
    fn binary_protobuf_clients_use_the_same_routes() {
        let t = kitchen(json!({}));
        let (create, _) = matched(&t, "POST", "/v1/sinks");
        assert_eq!(
            t.request_encoding(create, Some("application/x-protobuf")),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            t.request_encoding(create, Some("application/json; charset=utf-8")),
            Some(Encoding::Json)
        );
        assert_eq!(t.request_encoding(create, None), Some(Encoding::Json));
        // Whatever is not protobuf or a form upload is read as JSON (curl -d's default too).
        for json in ["text/plain", "application/x-www-form-urlencoded", ""] {
            assert_eq!(
                t.request_encoding(create, Some(json)),
                Some(Encoding::Json),
                "{json}"
            );
        }
        assert_eq!(
            t.request_encoding(create, Some("multipart/form-data; boundary=x")),
            None
        );
        let sent = Sink {
            id: "p".into(),
            int64_value: 7,
            ..Sink::default()
        };
        let bytes = t
            .request_message(create, &[], None, &sent.encode_to_vec(), Encoding::Protobuf)
            .unwrap();
        assert_eq!(Sink::decode(bytes.as_slice()).unwrap(), sent);
        let garbage = t.request_message(create, &[], None, &[0xff, 0xff], Encoding::Protobuf);
        assert_eq!(garbage.unwrap_err().code, GrpcCode::InvalidArgument);

        assert_eq!(
            t.response_encoding(create, Some("application/x-protobuf"), None),
            Encoding::Protobuf
        );
        assert_eq!(
            t.response_encoding(create, None, Some(Encoding::Protobuf)),
            Encoding::Protobuf
        );
        assert_eq!(
            t.response_encoding(create, Some("application/json"), Some(Encoding::Protobuf)),
            Encoding::Json
        );
        assert_eq!(
            t.response_body(create, &sent.encode_to_vec(), Encoding::Protobuf)
                .unwrap(),
            sent.encode_to_vec()
        );
        // response_body: "tags" is not a message: JSON whatever the client asks.
        let (tags, _) = matched(&t, "GET", "/v1/sinks/a/tags");
        assert_eq!(
            t.response_encoding(tags, Some("application/x-protobuf"), None),
            Encoding::Json
        );
        let (inner, _) = matched(&t, "GET", "/v1/sinks/a/inner");
        let with_inner = Sink {
            inner: Some(Inner {
                name: "i".into(),
                ..Inner::default()
            }),
            ..Sink::default()
        };
        let body = t
            .response_body(inner, &with_inner.encode_to_vec(), Encoding::Protobuf)
            .unwrap();
        assert_eq!(Inner::decode(body.as_slice()).unwrap().name, "i");
    }

    #[test]
    fn print_options_shape_the_response() {
        let sample = Sink {
            camel_case_name: "c".into(),
            color: Color::Red as i32,
            tags: vec!["t".into()],
            ..Sink::default()
        };
        let render = |print: serde_json::Value, path: &str| {
            let t = kitchen(json!({"print": print}));
            let (route, _) = matched(&t, "GET", path);
            let body = t
                .response_body(route, &sample.encode_to_vec(), Encoding::Json)
                .unwrap();
            String::from_utf8(body).unwrap()
        };
        let default: serde_json::Value =
            serde_json::from_str(&render(json!({}), "/v1/sinks")).unwrap();
        assert_eq!(
            default,
            json!({"camel_case_name": "c", "color": "RED", "tags": ["t"]})
        );
        let camel: serde_json::Value = serde_json::from_str(&render(
            json!({"preserve_proto_field_names": false, "always_print_enums_as_ints": true}),
            "/v1/sinks",
        ))
        .unwrap();
        assert_eq!(
            camel,
            json!({"camelCaseName": "c", "color": 1, "tags": ["t"]})
        );
        let all: serde_json::Value = serde_json::from_str(&render(
            json!({"always_print_primitive_fields": true}),
            "/v1/sinks",
        ))
        .unwrap();
        assert_eq!(all["int64_value"], json!("0"));
        assert_eq!(all["bool_value"], json!(false));
        assert!(render(json!({"add_whitespace": true}), "/v1/sinks").contains("\n  "));
        assert_eq!(render(json!({}), "/v1/sinks/a/tags"), r#"["t"]"#);
    }

    /// What a client sends is read or refused, never silently dropped (proto3 JSON, and
    /// Envoy's transcoder: a 400 naming the field).
    #[test]
    fn client_input_is_refused_rather_than_dropped() {
        let lenient = kitchen(json!({}));
        let strict = kitchen(json!({"reject_unknown_json_fields": true}));
        // Two members of one oneof in the query: setting the second would clear the first.
        let status = sink(&lenient, "GET", "/v1/sinks/a?text=t&number=1", "").unwrap_err();
        assert_eq!(status.code, GrpcCode::InvalidArgument);
        assert!(
            status.message.contains("number") && status.message.contains("oneof choice"),
            "{}",
            status.message
        );
        assert_eq!(
            sink(&lenient, "GET", "/v1/sinks/a?number=1", "")
                .unwrap()
                .choice,
            Some(kitchen::v1::sink::Choice::Number(1))
        );
        // An enum name the enum lacks, where unknown fields are dropped and where they are not,
        // alone, in a list and inside an unknown field's neighbour.
        for t in [&lenient, &strict] {
            for (body, field) in [
                (r#"{"color":"PURPLE"}"#, "color"),
                (r#"{"colors":["RED","PURPLE"]}"#, "colors"),
            ] {
                let status = sink(t, "POST", "/v1/sinks", body).unwrap_err();
                assert!(
                    status.message.contains(&format!("field {field}"))
                        && status.message.contains("PURPLE"),
                    "{body}: {}",
                    status.message
                );
            }
        }
        let s = sink(
            &lenient,
            "POST",
            "/v1/sinks",
            r#"{"color":"GREEN","extra":"PURPLE"}"#,
        )
        .unwrap();
        assert_eq!(s.color, Color::Green as i32);
        // `body: "inner"` given `null` leaves the field unset, not an empty message.
        assert_eq!(
            sink(&lenient, "PATCH", "/v1/sinks/k", "null")
                .unwrap()
                .inner,
            None
        );
        assert!(sink(&lenient, "PATCH", "/v1/sinks/k", "{}")
            .unwrap()
            .inner
            .is_some());
    }

    #[test]
    fn numbers_and_response_body_print_as_protojson_does() {
        let t = kitchen(json!({}));
        let render = |path: &str, sent: &Sink| {
            let (route, _) = matched(&t, "GET", path);
            let body = t
                .response_body(route, &sent.encode_to_vec(), Encoding::Json)
                .unwrap();
            String::from_utf8(body).unwrap()
        };
        let numbers = Sink {
            double_value: 1000.0,
            float_value: 3.0,
            int32_value: 7,
            ..Sink::default()
        };
        assert_eq!(
            render("/v1/sinks", &numbers),
            r#"{"int32_value":7,"double_value":1000,"float_value":3}"#
        );
        let fractions = Sink {
            double_value: -0.25,
            float_value: 1.5,
            ..Sink::default()
        };
        assert_eq!(
            render("/v1/sinks", &fractions),
            r#"{"double_value":-0.25,"float_value":1.5}"#
        );
        // response_body: the field as the message prints it (defaults inside left out), and an
        // unset field as its default.
        let with_inner = Sink {
            inner: Some(Inner {
                name: "i".into(),
                ..Inner::default()
            }),
            ..Sink::default()
        };
        assert_eq!(render("/v1/sinks/a/inner", &with_inner), r#"{"name":"i"}"#);
        assert_eq!(render("/v1/sinks/a/inner", &Sink::default()), "{}");
        assert_eq!(render("/v1/sinks/a/tags", &Sink::default()), "[]");
    }

    #[test]
    fn backend_errors_carry_decoded_details() {
        use kitchen::v1::ErrorInfo;
        let t = kitchen(json!({}));
        let info = ErrorInfo {
            reason: "R".into(),
            domain: "d".into(),
            ..ErrorInfo::default()
        };
        let status = tonic_types::Status {
            code: 10,
            message: "conflict".into(),
            details: vec![
                prost_types::Any {
                    type_url: "type.googleapis.com/kitchen.v1.ErrorInfo".into(),
                    value: info.encode_to_vec(),
                },
                prost_types::Any {
                    type_url: "type.googleapis.com/not.Known".into(),
                    value: vec![1, 2],
                },
            ],
        };
        let header =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
        let error = t.backend_error(10, "ignored".into(), Some(&header));
        let body: serde_json::Value = serde_json::from_str(&error.to_json()).unwrap();
        assert_eq!(
            body,
            json!({"code": 10, "message": "conflict", "details": [
                {"@type": "type.googleapis.com/kitchen.v1.ErrorInfo", "reason": "R", "domain": "d"},
                {"@type": "type.googleapis.com/not.Known", "value": "AQI="},
            ]})
        );
        let plain = t.backend_error(5, "gone".into(), Some("!!not base64"));
        assert_eq!(plain, Status::new(GrpcCode::NotFound, "gone"));
    }

    #[test]
    fn ambiguous_and_unworkable_configurations_are_refused() {
        // Two services binding the same shape: refused, naming both.
        let mut config = kitchen_config(json!({}));
        config
            .services
            .insert("kitchen.v1.Shadow".into(), "kitchen".into());
        let error = Transcoder::new(config.clone()).err().unwrap();
        assert!(
            error.contains("ambiguous") && error.contains("/v1/sinks/{id}"),
            "{error}"
        );
        config.services.remove("kitchen.v1.Shadow");
        config.forward_headers = vec!["connection".into()];
        assert!(Transcoder::new(config.clone())
            .err()
            .unwrap()
            .contains("hop-by-hop"));
        config.forward_headers = vec!["X-Upper".into()];
        assert!(Transcoder::new(config.clone())
            .err()
            .unwrap()
            .contains("lowercase"));
        config.forward_headers = vec![];
        config.response_headers = vec!["grpc-status".into()];
        assert!(Transcoder::new(config).is_err());
    }

    #[test]
    fn grpc_timeout_shortens_the_deadline_only() {
        let t = kitchen(json!({"timeout_ms": 2000}));
        assert_eq!(t.call_timeout(None), Duration::from_secs(2));
        assert_eq!(t.call_timeout(Some("500m")), Duration::from_millis(500));
        assert_eq!(t.call_timeout(Some("1H")), Duration::from_secs(2));
        assert_eq!(t.call_timeout(Some("100u")), Duration::from_micros(100));
        for bad in ["", "m", "123456789S", "5x", "-1S", "1.5S"] {
            assert_eq!(t.call_timeout(Some(bad)), Duration::from_secs(2), "{bad:?}");
        }
    }
}

mod finished_calls {
    use super::*;
    use crate::FinishedCall;
    use std::time::Duration;

    fn call<'a>(grpc_status: u32, response: Option<Result<&'a [u8], &'a str>>) -> FinishedCall<'a> {
        FinishedCall {
            grpc_status,
            grpc_message: "item%20gone {via_upstream}",
            details_bin: None,
            response,
            elapsed: Duration::from_millis(5),
            timeout: Duration::from_millis(100),
            reset: false,
        }
    }

    #[test]
    fn each_way_a_call_ends() {
        let t = transcoder();
        let (route, _) = matched(&t, "GET", "/catalog/items/abc");
        let item = GetItemResponse {
            item: Some(Item {
                id: "abc".into(),
                ..Item::default()
            }),
        }
        .encode_to_vec();

        let body = t
            .finish_call(route, Encoding::Json, call(0, Some(Ok(&item))))
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            json!({"item": {"id": "abc"}})
        );

        let silent = t
            .finish_call(route, Encoding::Json, call(0, None))
            .unwrap_err();
        assert_eq!(
            (silent.reply.http_status, silent.kind),
            (500, Some(FailureKind::BadResponse))
        );

        let gone = t
            .finish_call(route, Encoding::Json, call(5, None))
            .unwrap_err();
        assert_eq!(gone.reply.http_status, 404);
        assert_eq!(gone.reply.status.message, "item gone");
        assert_eq!(gone.kind, None);

        let late = FinishedCall {
            elapsed: Duration::from_millis(100),
            ..call(1, None)
        };
        let late = t.finish_call(route, Encoding::Json, late).unwrap_err();
        assert_eq!(late.reply.http_status, 504);
        assert_eq!(
            late.reply.status.message,
            "the backend did not answer within 100 ms"
        );

        let backend_deadline = t
            .finish_call(route, Encoding::Json, call(4, None))
            .unwrap_err();
        assert_eq!(
            (
                backend_deadline.reply.http_status,
                backend_deadline.reply.status.message.as_str()
            ),
            (504, "item gone")
        );

        let unauthenticated = t
            .finish_call(route, Encoding::Json, call(16, None))
            .unwrap_err();
        assert_eq!(
            unauthenticated.reply.headers,
            vec![("www-authenticate".to_string(), "Bearer".to_string())]
        );
    }
}

#[test]
fn served_routes_cover_bindings_and_grpc_methods() {
    let served = transcoder().served_routes();
    let has = |method: &str, path: &str| served.iter().any(|(m, p, _)| m == method && p == path);
    assert!(has("GET", "/catalog/items/*"));
    assert!(has("POST", "/catalog/items"));
    assert!(has("POST", "/catalog.CatalogService/GetItem"));
    assert!(has("POST", "/authority.AuthorityService/Signin"));
    assert!(served
        .iter()
        .any(|(_, p, s)| p == "/catalog/items/*" && s == "catalog.CatalogService"));
    for (_, path, _) in &served {
        assert!(edge_core::PathTemplate::parse(path).is_ok(), "{path}");
    }
}
