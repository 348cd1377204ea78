//! The gRPC adapter: requests in, domain calls, domain errors out as gRPC codes.

use crate::store::{Cursor, Error, Item, ItemStore, Page};
use platform_proto::item::{
    item_service_server::ItemService, CreateItemRequest, CreateItemResponse, GetItemImageRequest,
    GetItemImageResponse, GetItemRequest, GetItemResponse, Item as ItemMessage, ItemImage,
    ListItemsRequest, ListItemsResponse, PurchaseItemRequest, PurchaseItemResponse,
    PutItemImageRequest, WatchItemsRequest,
};
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// How often a watch looks for new items.
const WATCH_POLL: Duration = Duration::from_millis(200);
/// Items a watch reads per poll.
const WATCH_BATCH: u32 = 100;

pub struct ItemApi {
    store: ItemStore,
}

impl ItemApi {
    pub fn new(store: ItemStore) -> Self {
        Self { store }
    }
}

fn to_status(error: Error) -> Status {
    match error {
        Error::Invalid(why) => Status::invalid_argument(why),
        Error::NotFound => Status::not_found("item not found"),
        Error::FailedPrecondition(why) => Status::failed_precondition(why),
        Error::PermissionDenied(why) => Status::permission_denied(why),
        Error::Database(e) => service_kit::database_status(&e),
    }
}

fn message(item: Item) -> ItemMessage {
    ItemMessage {
        id: item.id,
        customer_id: item.customer_id,
        title: item.title,
        price: item.price,
        buyer_id: item.buyer_id.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl ItemService for ItemApi {
    type WatchItemsStream = ReceiverStream<Result<ItemMessage, Status>>;

    async fn watch_items(
        &self,
        _request: Request<WatchItemsRequest>,
    ) -> Result<Response<Self::WatchItemsStream>, Status> {
        let store = self.store.clone();
        // One item in flight: a caller that stops reading holds the poll, not memory.
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut seen = Cursor::now();
            loop {
                match store.listed_after(&seen, WATCH_BATCH).await {
                    Ok(items) => {
                        for (item, cursor) in items {
                            if sender.send(Ok(message(item))).await.is_err() {
                                return;
                            }
                            seen = cursor;
                        }
                    }
                    Err(error) => {
                        let _ = sender.send(Err(to_status(error))).await;
                        return;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(WATCH_POLL) => {}
                    () = sender.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn create_item(
        &self,
        request: Request<CreateItemRequest>,
    ) -> Result<Response<CreateItemResponse>, Status> {
        let request = request.into_inner();
        let item = self
            .store
            .create(&request.customer_id, &request.title, request.price)
            .await
            .map_err(to_status)?;
        Ok(Response::new(CreateItemResponse {
            item: Some(message(item)),
        }))
    }

    async fn get_item(
        &self,
        request: Request<GetItemRequest>,
    ) -> Result<Response<GetItemResponse>, Status> {
        let item = self
            .store
            .get(&request.into_inner().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetItemResponse {
            item: Some(message(item)),
        }))
    }

    async fn list_items(
        &self,
        request: Request<ListItemsRequest>,
    ) -> Result<Response<ListItemsResponse>, Status> {
        let request = request.into_inner();
        let page = Page::new(request.page_size, &request.page_token).map_err(to_status)?;
        let (items, next) = self.store.list(page).await.map_err(to_status)?;
        Ok(Response::new(ListItemsResponse {
            items: items.into_iter().map(message).collect(),
            next_page_token: next.map(|cursor| cursor.encode()).unwrap_or_default(),
        }))
    }

    async fn purchase_item(
        &self,
        request: Request<PurchaseItemRequest>,
    ) -> Result<Response<PurchaseItemResponse>, Status> {
        let request = request.into_inner();
        let item = self
            .store
            .purchase(&request.id, &request.buyer_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(PurchaseItemResponse {
            item: Some(message(item)),
        }))
    }

    async fn put_item_image(
        &self,
        request: Request<PutItemImageRequest>,
    ) -> Result<Response<ItemImage>, Status> {
        let request = request.into_inner();
        let content_type = self
            .store
            .put_image(
                &request.id,
                &request.customer_id,
                &request.content_type,
                &request.data,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(ItemImage {
            item_id: request.id,
            content_type: content_type.to_string(),
            size: i64::try_from(request.data.len()).unwrap_or(i64::MAX),
        }))
    }

    async fn get_item_image(
        &self,
        request: Request<GetItemImageRequest>,
    ) -> Result<Response<GetItemImageResponse>, Status> {
        let image =
            self.store
                .image(&request.into_inner().id)
                .await
                .map_err(|error| match error {
                    Error::NotFound => Status::not_found("item image not found"),
                    other => to_status(other),
                })?;
        Ok(Response::new(GetItemImageResponse {
            content_type: image.content_type,
            data: image.data,
        }))
    }
}
