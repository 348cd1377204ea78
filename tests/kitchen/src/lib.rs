//! The kitchen API (test-only) and its echo backend: every call answers with the request it
//! received, so a test sees exactly what the transcoder built from path, query and body.
//! A request carrying a `fault` is answered with that gRPC status instead (with an `ErrorInfo`
//! detail when asked), and request metadata named `x-kitchen-*` is echoed in `metadata`.

pub mod v1 {
    tonic::include_proto!("kitchen.v1");
}

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

/// The kitchen API's `FileDescriptorSet`, imports and `google.api.http` options included.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kitchen_descriptor.bin"));

use tonic::{Request, Response, Status};
use v1::extras_server::{Extras, ExtrasServer};
use v1::kitchen_server::{Kitchen, KitchenServer};
use v1::Sink;

/// Response metadata every answer carries, for tests of metadata → HTTP headers.
pub const SERVED_BY_HEADER: &str = "x-kitchen-served-by";

#[derive(Default)]
pub struct Echo;

async fn echo(request: Request<Sink>) -> Result<Response<Sink>, Status> {
    if let Some(delay) = request
        .get_ref()
        .fault
        .as_ref()
        .map(|f| f.delay_ms)
        .filter(|d| *d > 0)
    {
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(delay))).await;
    }
    let metadata: Vec<(String, String)> = request
        .metadata()
        .iter()
        .filter_map(|entry| match entry {
            tonic::metadata::KeyAndValueRef::Ascii(key, value) => {
                Some((key.as_str().to_string(), value.to_str().ok()?.to_string()))
            }
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        })
        .filter(|(key, _)| key.starts_with("x-kitchen-"))
        .collect();
    let mut sink = request.into_inner();
    if let Some(fault) = sink.fault.take().filter(|f| f.code != 0) {
        let code = tonic::Code::from_i32(fault.code);
        if !fault.with_details {
            return Err(Status::new(code, fault.message));
        }
        let info = v1::ErrorInfo {
            reason: "FAULT_INJECTED".into(),
            domain: "kitchen.test".into(),
            metadata: [("sink".to_string(), sink.id.clone())].into(),
        };
        let details = tonic_types::Status {
            code: fault.code,
            message: fault.message.clone(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/kitchen.v1.ErrorInfo".into(),
                value: prost::Message::encode_to_vec(&info),
            }],
        };
        return Err(Status::with_details(
            code,
            fault.message,
            prost::Message::encode_to_vec(&details).into(),
        ));
    }
    sink.metadata.extend(metadata);
    let mut response = Response::new(sink);
    response.metadata_mut().insert(
        SERVED_BY_HEADER,
        tonic::metadata::MetadataValue::from_static("echo"),
    );
    Ok(response)
}

macro_rules! echo_methods {
    ($service:ident: $($method:ident),*) => {
        #[tonic::async_trait]
        impl $service for Echo {
            $(async fn $method(&self, request: Request<Sink>) -> Result<Response<Sink>, Status> {
                echo(request).await
            })*
        }
    };
}

echo_methods!(Kitchen: get, list, create, update, replace, delete, named, files, nested, wash, search, fail);
echo_methods!(Extras: tags, inner_only);

/// Serves the echo backend on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(KitchenServer::new(Echo))
        .add_service(ExtrasServer::new(Echo))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await
}
