//! Property test of the access log's output: whatever bytes a client puts in its path or user
//! agent, the record is exactly one line of valid JSON that says what was received.

use edge_access_log::{logged_path, AccessLogConfig, Record};
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_bytes_make_one_valid_json_line(path in prop::collection::vec(any::<u8>(), 0..200), agent in prop::collection::vec(any::<u8>(), 0..200), include_query in any::<bool>()) {
        // The filter reads header values as the host gives them, lossily decoded.
        let path = String::from_utf8_lossy(&path).into_owned();
        let agent = String::from_utf8_lossy(&agent).into_owned();
        let config = AccessLogConfig::from_json(format!(r#"{{"include_query": {include_query}}}"#).as_bytes()).unwrap();
        let logged = logged_path(&path, &config);
        let record = Record {
            method: "GET".into(),
            path: logged.clone(),
            user_agent: Some(agent.as_str().into()),
            status: 200,
            ..Record::default()
        };
        let line = record.to_json();
        prop_assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(parsed["path"].as_str(), Some(logged.as_ref()));
        prop_assert_eq!(parsed["user_agent"].as_str(), Some(agent.as_str()));
    }

    /// The line laid out by hand is, byte for byte, what serde_json makes of the record.
    #[test]
    fn the_line_is_serde_jsons_own(
        text in prop_oneof![
            prop::collection::vec(any::<char>(), 0..40).prop_map(|chars| chars.into_iter().collect::<String>()),
            // Printable ASCII, quotes and backslashes included, and text needing no escapes.
            "[ -~]{0,40}",
            "[a-zA-Z0-9/._-]{0,40}",
        ],
        present in prop::collection::vec(any::<bool>(), 11),
        status in any::<u16>(),
        grpc_status in any::<u32>(),
        duration_ms in prop_oneof![any::<f64>(), Just(2.5), Just(0.0), Just(f64::NAN), (0u64..1_000_000).prop_map(|n| n as f64 / 1000.0)],
        bytes in any::<u64>(),
    ) {
        let some = |at: usize, value: String| present[at].then_some(value.into());
        let record = Record {
            time: "2000-02-29T00:00:00.123Z".into(),
            request_id: some(0, text.clone()),
            method: text.clone().into(),
            path: format!("/{text}").into(),
            route: some(1, text.clone()),
            grpc_method: some(2, text.clone()),
            status,
            grpc_status: present[3].then_some(grpc_status),
            duration_ms,
            upstream_ms: present[4].then_some(duration_ms / 3.0),
            bytes_in: bytes,
            bytes_out: bytes / 7,
            subject: some(5, text.clone()),
            auth_reason: some(6, text.clone()),
            user_agent: some(7, text.clone()),
            client_ip: some(8, text.clone()),
            trace_id: some(9, text.clone()),
            upstream_cluster: some(10, text.clone()),
            transcode_error: some(0, text.clone()),
        };
        prop_assert_eq!(record.to_json(), serde_json::to_string(&record).unwrap());
    }
}
