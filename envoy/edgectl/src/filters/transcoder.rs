//! The transcoder's configuration: edge.json's settings plus the descriptor set, the public
//! services and the rollouts' new deployments.

use crate::{EdgeConfig, OpenApiSettings};
use base64::Engine;
use serde_json::{json, Map, Value};

/// The transcoder's configuration, and the routes it serves (auth's 404/405 table).
pub(super) struct Transcoder {
    pub config: Value,
    /// (method, path template, gRPC service) of every route.
    pub served: Vec<(String, String, String)>,
    /// `openapi` in edge.json, and the route table built from the descriptor set with its
    /// comments, to describe the API with.
    pub described: Option<(OpenApiSettings, edge_transcoder::Transcoder)>,
}

impl EdgeConfig {
    pub(super) fn transcoder_config(
        &self,
        cluster_name: &impl Fn(&str) -> String,
    ) -> Result<Transcoder, String> {
        let mut transcoder = self.transcoder.clone();
        let openapi: Option<OpenApiSettings> = transcoder
            .remove("openapi")
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("transcoder.openapi: {e}"))?;
        // The set the filter parses, and the one the description is rendered from (the same
        // with the protos' comments); a user's own set serves as both.
        let (descriptor_set, documented) = match transcoder.remove("descriptor_set_file") {
            None => (
                platform_proto::FILE_DESCRIPTOR_SET.to_vec(),
                platform_proto::DOCUMENTED_FILE_DESCRIPTOR_SET.to_vec(),
            ),
            Some(Value::String(path)) => {
                let set = std::fs::read(&path)
                    .map_err(|e| format!("transcoder.descriptor_set_file {path}: {e}"))?;
                (set.clone(), set)
            }
            Some(other) => {
                return Err(format!(
                    "transcoder.descriptor_set_file must be a path, not {other}"
                ))
            }
        };
        transcoder.insert(
            "descriptor_set".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(descriptor_set)),
        );
        let exposed: Map<String, Value> = self
            .services
            .iter()
            .filter(|(_, service)| service.public)
            .map(|(name, service)| (service.grpc_service.clone(), json!(cluster_name(name))))
            .collect();
        transcoder.insert("services".into(), Value::Object(exposed));
        let rollouts = self.checked_rollouts()?;
        if !rollouts.is_empty() {
            let moving: Map<String, Value> = rollouts
                .iter()
                .map(|(r, grpc)| (grpc.to_string(), json!(cluster_name(&r.to))))
                .collect();
            transcoder.insert("rollouts".into(), Value::Object(moving));
            transcoder.insert("backend_header".into(), json!(self.backend_header()));
        }
        // What Envoy holds of a body for a filter, in both chains (the listener's limit).
        transcoder.insert(
            "buffer_limit_bytes".into(),
            json!(self.limits.connection_buffer_bytes),
        );
        if let Some(cors) = &self.cors {
            // In Istio the CORS filter runs after the Wasm filters: preflights must reach it.
            transcoder.insert("pass_cors_preflights".into(), json!(true));
            // The pages that may call the edge may open its WebSockets; no other page may.
            transcoder.insert("socket_origins".into(), json!(cors.allow_origins));
        }
        let config = Value::Object(transcoder);
        let parsed: edge_transcoder::TranscoderConfig =
            serde_json::from_value(config.clone()).map_err(|e| format!("transcoder: {e}"))?;
        let described = match openapi {
            Some(settings) => {
                let mut with_comments = parsed.clone();
                with_comments.descriptor_set =
                    base64::engine::general_purpose::STANDARD.encode(documented);
                Some((settings, edge_transcoder::Transcoder::new(with_comments)?))
            }
            None => None,
        };
        let built = edge_transcoder::Transcoder::new(parsed)?;
        // What the filter checks when Envoy configures it: every cluster must fit the gRPC
        // callout's encoding.
        edge_host::check_clusters(built.clusters()).map_err(|e| format!("transcoder: {e}"))?;
        Ok(Transcoder {
            config,
            served: built.served_routes(),
            described,
        })
    }
}
