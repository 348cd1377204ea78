//! Each filter's configuration as Envoy gets it, rendered from `envoy/edge.json` (one module per
//! filter) and checked with the filter's own parser.

mod access_log;
mod auth;
mod transcoder;

use crate::{EdgeConfig, Filter};
use serde_json::Value;

/// The three filters' configurations, ready for Envoy.
#[derive(Debug, Clone)]
pub struct FilterConfigs {
    pub auth: Value,
    pub transcoder: Value,
    pub access_log: Value,
}

impl FilterConfigs {
    pub fn of(&self, filter: Filter) -> &Value {
        match filter {
            Filter::Auth => &self.auth,
            Filter::Transcoder => &self.transcoder,
            Filter::AccessLog => &self.access_log,
        }
    }
}

impl EdgeConfig {
    /// Renders each filter's configuration with `cluster_name` naming a service's cluster,
    /// and checks it with the filter's own parser.
    pub fn filter_configs(
        &self,
        cluster_name: impl Fn(&str) -> String,
    ) -> Result<FilterConfigs, String> {
        let transcoder = self.transcoder_config(&cluster_name)?;
        let auth = self.auth_config(&cluster_name, &transcoder)?;
        let access_log = self.access_log_config(&cluster_name)?;
        Ok(FilterConfigs {
            auth,
            transcoder: transcoder.config,
            access_log,
        })
    }

    /// The cluster of the service `field` names, which must be one of `services`.
    fn service_cluster(
        &self,
        field: &str,
        service: &str,
        cluster_name: &impl Fn(&str) -> String,
    ) -> Result<String, String> {
        if self.services.contains_key(service) {
            Ok(cluster_name(service))
        } else {
            Err(format!("{field}: no service {service:?}"))
        }
    }
}
