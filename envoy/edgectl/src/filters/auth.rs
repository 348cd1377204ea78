//! Auth's configuration: edge.json's policy with its services' clusters, the rollouts, and the
//! table of routes the edge serves.

use super::transcoder::Transcoder;
use crate::EdgeConfig;
use serde_json::{json, Value};

impl EdgeConfig {
    pub(super) fn auth_config(
        &self,
        cluster_name: &impl Fn(&str) -> String,
        transcoder: &Transcoder,
    ) -> Result<Value, String> {
        let mut auth = self.auth.clone();
        let key_source = auth
            .pointer("/authority/cluster")
            .and_then(Value::as_str)
            .ok_or("auth.authority.cluster must name a service")?
            .to_string();
        auth["authority"]["cluster"] =
            json!(self.service_cluster("auth.authority.cluster", &key_source, cluster_name)?);
        if let Some(acl) = auth.pointer("/acl/cluster").and_then(Value::as_str) {
            let cluster = self.service_cluster("auth.acl.cluster", acl, cluster_name)?;
            auth["acl"]["cluster"] = json!(cluster);
        }
        let rollouts = self.checked_rollouts()?;
        if !rollouts.is_empty() {
            auth["rollouts"] = rollouts
                .iter()
                .map(|(r, grpc)| {
                    json!({
                        "service": grpc,
                        "cluster": cluster_name(&r.to),
                        "reads_percent": r.reads_percent,
                        "writes_percent": r.writes_percent,
                        "salt": r.salt(),
                        "read_methods": r.read_methods
                    })
                })
                .collect();
        }
        // Auth answers 404/405 for what no route serves: the table comes from the same
        // descriptor set and services as the transcoder's, so the two cannot disagree.
        if auth.get("routes").is_none() {
            auth["routes"] = transcoder
                .served
                .iter()
                .map(|(method, path, service)| {
                    json!({ "method": method, "path": path, "service": service })
                })
                .collect();
        }
        let parsed = edge_auth::AuthConfig::from_json(auth.to_string().as_bytes())?;
        edge_host::check_clusters(parsed.clusters()).map_err(|e| format!("auth: {e}"))?;
        Ok(auth)
    }
}
