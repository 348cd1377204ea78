//! The kitchen API (test-only) and its echo backend: every call answers with the request it
//! received, so a test sees exactly what the transcoder built from path, query and body.
//! A request carrying a `fault` is answered with that gRPC status instead (with an `ErrorInfo`
//! detail when asked), and request metadata named `x-kitchen-*` is echoed in `metadata`.

/// Nested as its package is, so that generated code finds `google.api` two levels up.
pub mod kitchen {
    pub mod v1 {
        tonic::include_proto!("kitchen.v1");
    }
}
pub use kitchen::v1;

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

/// The kitchen API's `FileDescriptorSet`, imports and `google.api.http` options included.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kitchen_descriptor.bin"));

use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use v1::bodies_server::{Bodies, BodiesServer};
use v1::extras_server::{Extras, ExtrasServer};
use v1::kitchen_server::{Kitchen, KitchenServer};
use v1::streams_server::{Streams, StreamsServer};
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

/// Feeds that ended because their caller went away (the stream was cancelled), in this process.
pub static FEEDS_CANCELLED: AtomicUsize = AtomicUsize::new(0);
/// Chats whose caller went away mid-stream (their request stream broke, or their answer could
/// not be sent), in this process.
pub static CHATS_CUT: AtomicUsize = AtomicUsize::new(0);
/// Messages feeds handed to the transport (which holds one when the caller stops reading).
pub static FEED_SENT: AtomicUsize = AtomicUsize::new(0);

type SinkStream = ReceiverStream<Result<Sink, Status>>;

/// The fault a request carries, as the status it asks for (`None`: no fault).
fn fault_status(sink: &Sink) -> Option<Status> {
    let fault = sink.fault.as_ref().filter(|f| f.code != 0)?;
    Some(Status::new(
        tonic::Code::from_i32(fault.code),
        fault.message.clone(),
    ))
}

#[tonic::async_trait]
impl Streams for Echo {
    type FeedStream = SinkStream;
    type ChatStream = SinkStream;

    async fn feed(&self, request: Request<Sink>) -> Result<Response<SinkStream>, Status> {
        let sink = request.into_inner();
        let failure = fault_status(&sink);
        if sink.int32_value == 0 {
            if let Some(status) = failure {
                return Err(status);
            }
        }
        let delay = std::time::Duration::from_millis(u64::from(
            sink.fault.as_ref().map_or(0, |f| f.delay_ms),
        ));
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut index = 0;
            while sink.int32_value < 0 || index < sink.int32_value {
                if index > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                // When it was sent, for the time it takes to reach a client.
                let copy = Sink {
                    int32_value: index,
                    fault: None,
                    created_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                    ..sink.clone()
                };
                if sender.send(Ok(copy)).await.is_err() {
                    FEEDS_CANCELLED.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                FEED_SENT.fetch_add(1, Ordering::SeqCst);
                index += 1;
            }
            if let Some(status) = failure {
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn collect(&self, request: Request<Streaming<Sink>>) -> Result<Response<Sink>, Status> {
        let mut stream = request.into_inner();
        let mut collected = Sink::default();
        while let Some(sink) = stream.next().await {
            let sink = sink?;
            if let Some(status) = fault_status(&sink) {
                return Err(status);
            }
            collected.tags.push(sink.name);
            collected.int32_value += 1;
        }
        Ok(Response::new(collected))
    }

    async fn chat(
        &self,
        request: Request<Streaming<Sink>>,
    ) -> Result<Response<SinkStream>, Status> {
        let mut stream = request.into_inner();
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            while let Some(sink) = stream.next().await {
                let Ok(sink) = sink else {
                    CHATS_CUT.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                let answer = match fault_status(&sink) {
                    Some(status) => Err(status),
                    None => Ok(sink),
                };
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() {
                    CHATS_CUT.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                if failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

#[tonic::async_trait]
impl Bodies for Echo {
    async fn put(&self, request: Request<v1::Upload>) -> Result<Response<Sink>, Status> {
        let upload = request.into_inner();
        let payload = upload.payload.unwrap_or_default();
        Ok(Response::new(Sink {
            id: upload.id,
            name: payload.content_type,
            bytes_value: payload.data,
            ..Sink::default()
        }))
    }

    async fn page(
        &self,
        request: Request<Sink>,
    ) -> Result<Response<google::api::HttpBody>, Status> {
        let id = request.into_inner().id;
        Ok(Response::new(google::api::HttpBody {
            content_type: "text/html; charset=utf-8".into(),
            data: format!("<h1>{id}</h1>").into_bytes(),
            extensions: Vec::new(),
        }))
    }

    async fn mirror(
        &self,
        request: Request<google::api::HttpBody>,
    ) -> Result<Response<google::api::HttpBody>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    type DownloadStream = ReceiverStream<Result<google::api::HttpBody, Status>>;

    async fn download(
        &self,
        request: Request<Sink>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let sink = request.into_inner();
        let failure = fault_status(&sink);
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for part in 0..sink.int32_value {
                let chunk = google::api::HttpBody {
                    content_type: "text/plain".into(),
                    data: format!("part {part} of {}\n", sink.id).into_bytes(),
                    extensions: Vec::new(),
                };
                if sender.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            if let Some(status) = failure {
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// Serves the echo backend on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(KitchenServer::new(Echo))
        .add_service(ExtrasServer::new(Echo))
        .add_service(StreamsServer::new(Echo))
        .add_service(BodiesServer::new(Echo))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await
}
