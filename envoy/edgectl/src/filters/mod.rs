//! Each filter's configuration as Envoy gets it, rendered from `envoy/edge.json` (one module per
//! filter) and checked with the filter's own parser.

mod access_log;
mod auth;
mod transcoder;

use crate::{EdgeConfig, Filter};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The three filters' configurations, ready for Envoy.
#[derive(Debug, Clone)]
pub struct FilterConfigs {
    pub auth: Value,
    pub transcoder: Value,
    pub access_log: Value,
}

impl FilterConfigs {
    pub fn of(&self, filter: Filter) -> Cow<'_, Value> {
        match filter {
            Filter::Auth => Cow::Borrowed(&self.auth),
            Filter::Transcoder => Cow::Borrowed(&self.transcoder),
            Filter::AccessLog => Cow::Borrowed(&self.access_log),
            // Each part as its own filter takes it.
            Filter::AccessLogAndAuth => Cow::Owned(Value::Object(Map::from_iter([
                (
                    Filter::AccessLog.name().to_string(),
                    self.access_log.clone(),
                ),
                (Filter::Auth.name().to_string(), self.auth.clone()),
            ]))),
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
        let mut transcoder_config = transcoder.config;
        if let Some(document) = self.api_description(&transcoder.described, &auth)? {
            transcoder_config["openapi"] = document;
        }
        Ok(FilterConfigs {
            auth,
            transcoder: transcoder_config,
            access_log,
        })
    }

    /// The OpenAPI document the edge serves (`edgectl openapi`).
    pub fn openapi(&self) -> Result<Value, String> {
        let configs = self.filter_configs(str::to_string)?;
        let document = configs
            .transcoder
            .pointer("/openapi/document")
            .and_then(Value::as_str)
            .ok_or("transcoder.openapi is not set: the edge describes no API")?;
        serde_json::from_str(document).map_err(|e| e.to_string())
    }

    /// The OpenAPI document (see [`crate::openapi`]) of `transcoder`'s routes under the auth
    /// configuration `auth`, as the transcoder serves it: `{path, document}`, the document a
    /// string; `None` without `transcoder.openapi`.
    fn api_description(
        &self,
        described: &Option<(crate::OpenApiSettings, edge_transcoder::Transcoder)>,
        auth: &Value,
    ) -> Result<Option<Value>, String> {
        let Some((settings, transcoder)) = described else {
            return Ok(None);
        };
        let auth = edge_auth::AuthConfig::from_json(auth.to_string().as_bytes())?;
        let policies = crate::openapi::Policies {
            auth: &auth,
            rate_limits: &self.rate_limits,
            authorization: !self.authorization.is_empty(),
        };
        let document = crate::openapi::document(settings, transcoder, &policies);
        Ok(Some(serde_json::json!({
            "path": settings.path,
            "document": document.to_string(),
        })))
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
