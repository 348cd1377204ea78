//! The access log's configuration: edge.json's settings, the collector's cluster, and no
//! traceparent of its own when Envoy traces.

use crate::EdgeConfig;
use serde_json::{json, Value};

impl EdgeConfig {
    pub(super) fn access_log_config(
        &self,
        cluster_name: &impl Fn(&str) -> String,
    ) -> Result<Value, String> {
        let mut access_log = self.access_log.clone();
        if self.tracing.is_some() && access_log.get("generate_traceparent").is_none() {
            // Envoy's tracer starts the trace; the log takes its id from the edge span.
            access_log["generate_traceparent"] = json!(false);
        }
        if let Some(service) = access_log
            .pointer("/collector/cluster")
            .and_then(Value::as_str)
        {
            let cluster =
                self.service_cluster("access_log.collector.cluster", service, cluster_name)?;
            access_log["collector"]["cluster"] = json!(cluster);
        }
        edge_access_log::AccessLogConfig::from_json(access_log.to_string().as_bytes())?;
        Ok(access_log)
    }
}
