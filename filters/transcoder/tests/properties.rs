//! Property tests (proptest) of the two parsers that face raw client input: the path-template
//! matcher and the request builder (path, query, JSON and protobuf bodies). Nothing may panic
//! (a panic in the filter kills its Wasm VM), every refusal is INVALID_ARGUMENT, and what is
//! accepted means what it says. `make test` runs the default 256 cases per property;
//! `make fuzz` runs many more (`PROPTEST_CASES`).

use base64::Engine;
use edge_core::GrpcCode;
use edge_core::PathTemplate;
use edge_transcoder::{Encoding, Lookup, Transcoder, TranscoderConfig};
use kitchen::v1::{Inner, Sink};
use proptest::prelude::*;
use prost::Message;

fn kitchen() -> Transcoder {
    let config: TranscoderConfig = serde_json::from_value(serde_json::json!({
        "descriptor_set": base64::engine::general_purpose::STANDARD.encode(kitchen::FILE_DESCRIPTOR_SET),
        "services": {"kitchen.v1.Kitchen": "kitchen"},
    }))
    .unwrap();
    Transcoder::new(config).unwrap()
}

/// One segment of a generated template, and how to fill it in a matching path.
#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Star,
    Variable,
}

fn literal() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,6}"
}

/// Values for variables: anything printable, including '/', '%', ' ' and non-ASCII.
fn value() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 /%:._~!$&'()*+,;=@é-]{1,12}"
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parts() -> impl Strategy<Value = Vec<Part>> {
    prop::collection::vec(
        prop_oneof![
            literal().prop_map(Part::Literal),
            Just(Part::Star),
            Just(Part::Variable),
        ],
        1..6,
    )
}

proptest! {
    // Failures are reported with their minimal input; nothing is written into the source tree.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn template_parser_never_panics(source in "[/a-z{}=*:.]{0,24}", path in "[/a-z%0-9:.]{0,24}") {
        if let Ok(template) = PathTemplate::parse(&source) {
            let _ = template.matches(&path);
            let _ = template.shape();
        }
    }

    #[test]
    fn generated_templates_match_their_own_paths(
        parts in parts(),
        values in prop::collection::vec(value(), 6),
        verb in prop::option::of(literal()),
        rest in prop::option::of(prop::collection::vec(value(), 0..3)),
    ) {
        let mut template = String::new();
        let mut path = String::new();
        let mut expected = Vec::new();
        for (index, part) in parts.iter().enumerate() {
            match part {
                Part::Literal(text) => {
                    template.push_str(&format!("/{text}"));
                    path.push_str(&format!("/{text}"));
                }
                Part::Star => {
                    template.push_str("/*");
                    path.push_str(&format!("/{}", encode(&values[index])));
                }
                Part::Variable => {
                    let name = format!("v{index}");
                    template.push_str(&format!("/{{{name}}}"));
                    path.push_str(&format!("/{}", encode(&values[index])));
                    expected.push((name, values[index].clone()));
                }
            }
        }
        if let Some(rest) = &rest {
            template.push_str("/{tail=**}");
            let encoded = rest.iter().map(|v| encode(v)).collect::<Vec<_>>().join("/");
            if !rest.is_empty() {
                path.push('/');
                path.push_str(&encoded);
            }
            // A multi-segment variable keeps %2F encoded: its own slashes stay distinguishable
            // from the separators; everything else is decoded.
            let tail = encoded
                .split("%2F")
                .map(|piece| edge_core::percent_decode(piece, true).unwrap())
                .collect::<Vec<_>>()
                .join("%2F");
            expected.push(("tail".to_string(), tail));
        }
        if let Some(verb) = &verb {
            template.push_str(&format!(":{verb}"));
            path.push_str(&format!(":{verb}"));
        }
        let parsed = PathTemplate::parse(&template).unwrap();
        prop_assert_eq!(parsed.matches(&path), Some(expected), "{} vs {}", template, path);
        // One more segment never matches a template without `**`.
        if rest.is_none() && verb.is_none() {
            prop_assert_eq!(parsed.matches(&format!("{path}/extra")), None);
        }
    }

    #[test]
    fn request_building_never_panics_and_refuses_with_invalid_argument(
        method in prop_oneof![Just("GET"), Just("POST"), Just("PATCH"), Just("PUT"), Just("DELETE"), Just("SEARCH")],
        path in prop_oneof![
            Just("/v1/sinks".to_string()),
            Just("/v1/sinks:search".to_string()),
            "/v1/sinks/[a-z%0-9:]{1,8}",
            "/v1/files(/[a-z%0-9]{0,4}){0,3}",
            "/v1/inner/[a-z]{1,4}/level/[-0-9a-z%]{1,4}",
        ],
        query in "([a-z_.]{1,12}=[a-zA-Z0-9%+,:.-]{0,10}&?){0,4}",
        body in prop_oneof![
            "[{}\\[\\]\":,a-z0-9 .-]{0,40}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..40),
        ],
        binary in any::<bool>(),
    ) {
        let t = kitchen();
        if let Lookup::Matched { route, bindings, .. } = t.lookup(method, &path) {
            let encoding = if binary { Encoding::Protobuf } else { Encoding::Json };
            if t.request_encoding(route, Some(encoding.content_type())).is_some() {
                if let Err(status) = t.request_message(route, &bindings, Some(&query), &body, encoding) {
                    prop_assert_eq!(status.code, GrpcCode::InvalidArgument, "{}", status.message);
                }
            }
        }
    }

    #[test]
    fn json_rendered_by_the_transcoder_reads_back_to_the_same_message(
        id in "[a-z0-9]{0,8}",
        int64_value in any::<i64>(),
        uint64_value in any::<u64>(),
        double_value in -1e9f64..1e9,
        bytes_value in prop::collection::vec(any::<u8>(), 0..16),
        tags in prop::collection::vec("[ -~é]{0,6}", 0..4),
        color in 0i32..3,
        name in prop::option::of("[ -~]{0,6}"),
    ) {
        let t = kitchen();
        let sent = Sink {
            id, int64_value, uint64_value, double_value, bytes_value, tags, color,
            inner: name.map(|name| Inner { name, ..Inner::default() }),
            ..Sink::default()
        };
        let Lookup::Matched { route: list, .. } = t.lookup("GET", "/v1/sinks") else { panic!("list route") };
        let json = t.response_body(list, &sent.encode_to_vec(), Encoding::Json).unwrap();
        let Lookup::Matched { route: create, bindings, .. } = t.lookup("POST", "/v1/sinks") else { panic!("create route") };
        let bytes = t.request_message(create, &bindings, None, &json, Encoding::Json).unwrap();
        prop_assert_eq!(Sink::decode(bytes.as_slice()).unwrap(), sent);
    }
}
