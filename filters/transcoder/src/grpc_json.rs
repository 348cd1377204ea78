//! gRPC whose messages are JSON (`application/grpc+json`), as Envoy's `connect_grpc_bridge`
//! makes of a Connect client's JSON call. The backends speak protobuf only (tonic's codec), so
//! each message is read into the method's type from the descriptor set and written as protobuf
//! on the way in, and back into JSON on the way out; frames, headers, trailers and statuses
//! are left as they are (the bridge turns them into Connect's).

use crate::message::{self, JsonInput};
use crate::{PrintOptions, Transcoder};
use edge_core::grpc;
use edge_core::{GrpcCode, Status};
use prost_reflect::{DynamicMessage, MethodDescriptor};

/// Whether a request's `Content-Type` is gRPC with JSON messages.
pub fn is_grpc_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/grpc+json"))
}

impl Transcoder {
    /// The method a gRPC path (`/package.Service/Method`) names, among the exposed services.
    pub fn grpc_method(&self, path: &str) -> Option<MethodDescriptor> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        if !self.config.services.contains_key(service) {
            return None;
        }
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }

    /// A request body of JSON messages as the same frames of protobuf messages.
    pub fn grpc_json_request(
        &self,
        method: &MethodDescriptor,
        body: &[u8],
    ) -> Result<Vec<u8>, Status> {
        let mut body = body.to_vec();
        let messages =
            grpc::take_messages(&mut body, self.config.max_body_bytes).map_err(|why| {
                Status::new(
                    GrpcCode::InvalidArgument,
                    why.replace("the backend", "the client"),
                )
            })?;
        if !body.is_empty() {
            return Err(Status::new(
                GrpcCode::InvalidArgument,
                "the request ends inside a message",
            ));
        }
        let input = JsonInput {
            deny_unknown_fields: self.config.reject_unknown_json_fields,
        };
        let encoded = messages
            .iter()
            .enumerate()
            .map(|(index, json)| {
                let mut request = DynamicMessage::new(method.input());
                message::merge_json(&mut request, json, input).map_err(|status| {
                    let message = match messages.len() {
                        1 => status.message,
                        _ => format!("message {index}: {}", status.message),
                    };
                    Status::new(status.code, message)
                })?;
                Ok(prost::Message::encode_to_vec(&request))
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(grpc::frame(&encoded))
    }

    /// The complete protobuf messages at the front of `pending` (the response so far) as
    /// frames of JSON messages, leaving the start of an incomplete one there.
    pub fn grpc_json_response(
        &self,
        method: &MethodDescriptor,
        pending: &mut Vec<u8>,
    ) -> Result<Vec<u8>, Status> {
        let messages = grpc::take_messages(pending, self.config.max_stream_bytes)
            .map_err(|why| Status::new(GrpcCode::Internal, why))?;
        // Compact, and with the JSON names Connect's clients write (they read both).
        let print = PrintOptions {
            add_whitespace: false,
            preserve_proto_field_names: false,
            ..self.config.print.clone()
        };
        let json = messages
            .iter()
            .map(|bytes| {
                let response =
                    DynamicMessage::decode(method.output(), bytes.as_slice()).map_err(|e| {
                        Status::new(
                            GrpcCode::Internal,
                            format!("backend sent an undecodable message: {e}"),
                        )
                    })?;
                message::to_json(&response, None, &print)
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(grpc::frame(&json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::transcoder;
    use prost::Message;

    #[test]
    fn grpc_json_content_types() {
        assert!(is_grpc_json("application/grpc+json"));
        assert!(is_grpc_json("Application/GRPC+JSON; charset=utf-8"));
        assert!(!is_grpc_json("application/grpc"));
        assert!(!is_grpc_json("application/grpc+proto"));
        assert!(!is_grpc_json("application/json"));
    }

    #[test]
    fn json_messages_become_protobuf_and_back() {
        let t = transcoder();
        let method = t.grpc_method("/catalog.CatalogService/GetItem").unwrap();
        assert!(t.grpc_method("/catalog.CatalogService/Nothing").is_none());
        assert!(
            t.grpc_method("/item.ItemService/GetItem").is_none(),
            "not exposed"
        );

        let body = grpc::frame(&[br#"{"id":"42"}"#.to_vec()]);
        let request = t.grpc_json_request(&method, &body).unwrap();
        let expected = platform_proto::catalog::GetItemRequest { id: "42".into() };
        assert_eq!(request, grpc::frame(&[expected.encode_to_vec()]));
        let bad = grpc::frame(&[br#"{"id":7}"#.to_vec()]);
        let error = t.grpc_json_request(&method, &bad).unwrap_err();
        assert_eq!(error.code, GrpcCode::InvalidArgument);
        assert!(
            t.grpc_json_request(&method, &body[..6]).is_err(),
            "cut short"
        );

        let item = platform_proto::catalog::GetItemResponse {
            item: Some(platform_proto::catalog::Item {
                id: "42".into(),
                customer_name: "Ann".into(),
                price: 1200,
                ..Default::default()
            }),
        };
        let mut pending = grpc::frame(&[item.encode_to_vec()]);
        let whole = pending.clone();
        pending.truncate(whole.len() - 3);
        assert_eq!(
            t.grpc_json_response(&method, &mut pending).unwrap(),
            Vec::<u8>::new()
        );
        pending.extend_from_slice(&whole[whole.len() - 3..]);
        let json = t.grpc_json_response(&method, &mut pending).unwrap();
        assert!(pending.is_empty());
        let mut frames_left = json.clone();
        let messages = grpc::take_messages(&mut frames_left, 1 << 20).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&messages[0]).unwrap(),
            serde_json::json!({"item": {"id": "42", "customerName": "Ann", "price": "1200"}})
        );
    }
}
