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
            user_agent: Some(agent.clone()),
            status: 200,
            ..Record::default()
        };
        let line = record.to_json();
        prop_assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(parsed["path"].as_str(), Some(logged.as_str()));
        prop_assert_eq!(parsed["user_agent"].as_str(), Some(agent.as_str()));
    }
}
