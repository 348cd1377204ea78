//! The catalog BFF: items as clients want them, each with its owner's name. Errors from item
//! and customer keep their gRPC code, so a missing item is NotFound all the way to the client.

use platform_proto::catalog::{
    catalog_service_server::CatalogService, CreateItemRequest, CreateItemResponse,
    GetItemImageRequest, GetItemRequest, GetItemResponse, Item, ItemImage, ListItemsRequest,
    ListItemsResponse, PurchaseItemRequest, PurchaseItemResponse, PutItemImageRequest,
    WatchItemsRequest,
};
use platform_proto::customer::{
    customer_service_client::CustomerServiceClient, BatchGetCustomersRequest, GetCustomerRequest,
};
use platform_proto::google::api::HttpBody;
use platform_proto::item::{self as item_api, item_service_client::ItemServiceClient};
use service_kit::{traced, unreachable_is_unavailable, TracedChannel};
use std::collections::HashMap;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Metadata set by the edge after it verified the caller's token; the edge removes any copy a
/// client sends, so it can be trusted here. One name for both sides.
const USER_ID_METADATA: &str = edge_core::USER_ID_HEADER;

pub struct CatalogApi {
    customers: CustomerServiceClient<TracedChannel>,
    items: ItemServiceClient<TracedChannel>,
}

impl CatalogApi {
    pub fn new(customers: Channel, items: Channel) -> Self {
        Self {
            customers: CustomerServiceClient::new(traced(customers)),
            items: ItemServiceClient::new(traced(items)),
        }
    }

    async fn customer_name(&self, id: &str) -> Result<String, Status> {
        customer_name(&self.customers, id).await
    }
}

async fn customer_name(
    customers: &CustomerServiceClient<TracedChannel>,
    id: &str,
) -> Result<String, Status> {
    let customer = customers
        .clone()
        .get_customer(GetCustomerRequest { id: id.to_string() })
        .await
        .map_err(unreachable_is_unavailable)?
        .into_inner()
        .customer;
    Ok(customer.map(|c| c.name).unwrap_or_default())
}

/// A request's count or duration: 0 is `default`, larger than `max` is `max`, negative is
/// invalid (as AIP-158 reads `page_size`).
fn bounded(value: i32, default: u32, max: u32, name: &str) -> Result<u32, Status> {
    match u32::try_from(value) {
        Ok(0) => Ok(default),
        Ok(value) => Ok(value.min(max)),
        Err(_) => Err(Status::invalid_argument(format!(
            "{name} must not be negative"
        ))),
    }
}

/// How long a watch lasts: `wait`, ended early enough before the caller's deadline (its
/// `grpc-timeout`) that the stream ends OK, as a long poll does, rather than time out.
fn watch_length<T>(request: &Request<T>, wait: Duration) -> Duration {
    let deadline = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(edge_core::parse_grpc_timeout);
    match deadline {
        Some(deadline) => {
            wait.min(deadline.saturating_sub((deadline / 10).min(Duration::from_secs(1))))
        }
        None => wait,
    }
}

fn aggregate(item: item_api::Item, customer_name: String) -> Item {
    Item {
        sold: !item.buyer_id.is_empty(),
        id: item.id,
        customer_id: item.customer_id,
        customer_name,
        title: item.title,
        price: item.price,
    }
}

/// The caller the edge verified (see [`USER_ID_METADATA`]).
fn caller<T>(request: &Request<T>) -> Result<String, Status> {
    request
        .metadata()
        .get(USER_ID_METADATA)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
}

/// Lists one item for `owner` (the item service checks it).
async fn create(
    items: &ItemServiceClient<TracedChannel>,
    owner: &str,
    request: CreateItemRequest,
) -> Result<item_api::Item, Status> {
    items
        .clone()
        .create_item(item_api::CreateItemRequest {
            customer_id: owner.to_string(),
            title: request.title,
            price: request.price,
        })
        .await
        .map_err(unreachable_is_unavailable)?
        .into_inner()
        .item
        .ok_or_else(missing_item)
}

fn missing_item() -> Status {
    Status::internal("item service answered without an item")
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    type WatchItemsStream = ReceiverStream<Result<Item, Status>>;
    type CreateItemsStream = ReceiverStream<Result<CreateItemResponse, Status>>;

    async fn watch_items(
        &self,
        request: Request<WatchItemsRequest>,
    ) -> Result<Response<Self::WatchItemsStream>, Status> {
        let wait = bounded(request.get_ref().wait_seconds, 30, 300, "wait_seconds")?;
        let length = watch_length(&request, Duration::from_secs(u64::from(wait)));
        let max_items = bounded(request.get_ref().max_items, 50, 1000, "max_items")?;
        let mut listed = self
            .items
            .clone()
            .watch_items(item_api::WatchItemsRequest {})
            .await
            .map_err(unreachable_is_unavailable)?
            .into_inner();
        let customers = self.customers.clone();
        // One item in flight: a caller that stops reading stops the watch upstream too.
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let over = tokio::time::sleep(length);
            tokio::pin!(over);
            for _ in 0..max_items {
                let next = tokio::select! {
                    () = &mut over => return,
                    () = sender.closed() => return,
                    next = listed.message() => next,
                };
                let answer = match next {
                    Ok(Some(item)) => match customer_name(&customers, &item.customer_id).await {
                        Ok(name) => Ok(aggregate(item, name)),
                        Err(status) => Err(status),
                    },
                    Ok(None) => return,
                    Err(status) => Err(unreachable_is_unavailable(status)),
                };
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn create_items(
        &self,
        request: Request<Streaming<CreateItemRequest>>,
    ) -> Result<Response<Self::CreateItemsStream>, Status> {
        let owner = caller(&request)?;
        let mut requests = request.into_inner();
        let (items, customers) = (self.items.clone(), self.customers.clone());
        // The first listing is answered before the stream starts: its refusal is then the
        // call's status alone (trailers-only), which any client, an edge transcoding to JSON
        // included, reads as a plain error rather than a stream that failed before its first
        // message.
        let Some(first) = requests.message().await? else {
            return Ok(Response::new(ReceiverStream::new(
                tokio::sync::mpsc::channel(1).1,
            )));
        };
        let name = customer_name(&customers, &owner).await?;
        let first = CreateItemResponse {
            item: Some(aggregate(
                create(&items, &owner, first).await?,
                name.clone(),
            )),
        };
        // One answer in flight: a caller that stops reading stops the listing too.
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            if sender.send(Ok(first)).await.is_err() {
                return;
            }
            // An error from the caller's side (it went away): nothing to answer.
            while let Ok(Some(request)) = requests.message().await {
                let answer = create(&items, &owner, request)
                    .await
                    .map(|item| CreateItemResponse {
                        item: Some(aggregate(item, name.clone())),
                    });
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn create_item(
        &self,
        request: Request<CreateItemRequest>,
    ) -> Result<Response<CreateItemResponse>, Status> {
        let owner = caller(&request)?;
        let created = create(&self.items, &owner, request.into_inner()).await?;
        let name = self.customer_name(&owner).await?;
        Ok(Response::new(CreateItemResponse {
            item: Some(aggregate(created, name)),
        }))
    }

    async fn get_item(
        &self,
        request: Request<GetItemRequest>,
    ) -> Result<Response<GetItemResponse>, Status> {
        let id = request.into_inner().id;
        let item = self
            .items
            .clone()
            .get_item(item_api::GetItemRequest { id })
            .await
            .map_err(unreachable_is_unavailable)?
            .into_inner()
            .item
            .ok_or_else(missing_item)?;
        let name = self.customer_name(&item.customer_id).await?;
        Ok(Response::new(GetItemResponse {
            item: Some(aggregate(item, name)),
        }))
    }

    async fn list_items(
        &self,
        request: Request<ListItemsRequest>,
    ) -> Result<Response<ListItemsResponse>, Status> {
        let request = request.into_inner();
        let page = self
            .items
            .clone()
            .list_items(item_api::ListItemsRequest {
                page_size: request.page_size,
                page_token: request.page_token,
            })
            .await
            .map_err(unreachable_is_unavailable)?
            .into_inner();
        // The owners' names in one call per page, however many items and owners.
        let mut owners: Vec<String> = page.items.iter().map(|i| i.customer_id.clone()).collect();
        owners.sort();
        owners.dedup();
        let names: HashMap<String, String> = self
            .customers
            .clone()
            .batch_get_customers(BatchGetCustomersRequest { ids: owners })
            .await
            .map_err(unreachable_is_unavailable)?
            .into_inner()
            .customers
            .into_iter()
            .map(|customer| (customer.id, customer.name))
            .collect();
        let items = page
            .items
            .into_iter()
            .map(|item| {
                let name = names.get(&item.customer_id).cloned().unwrap_or_default();
                aggregate(item, name)
            })
            .collect();
        Ok(Response::new(ListItemsResponse {
            items,
            next_page_token: page.next_page_token,
        }))
    }

    async fn purchase_item(
        &self,
        request: Request<PurchaseItemRequest>,
    ) -> Result<Response<PurchaseItemResponse>, Status> {
        let buyer_id = caller(&request)?;
        let id = request.into_inner().id;
        let item = self
            .items
            .clone()
            .purchase_item(item_api::PurchaseItemRequest { id, buyer_id })
            .await
            .map_err(unreachable_is_unavailable)?
            .into_inner()
            .item
            .ok_or_else(missing_item)?;
        let name = self.customer_name(&item.customer_id).await?;
        Ok(Response::new(PurchaseItemResponse {
            item: Some(aggregate(item, name)),
        }))
    }

    async fn put_item_image(
        &self,
        request: Request<PutItemImageRequest>,
    ) -> Result<Response<ItemImage>, Status> {
        let customer_id = caller(&request)?;
        let request = request.into_inner();
        let image = request.image.unwrap_or_default();
        let kept = self
            .items
            .clone()
            .put_item_image(item_api::PutItemImageRequest {
                id: request.id,
                customer_id,
                content_type: image.content_type,
                data: image.data,
            })
            .await
            .map_err(unreachable_is_unavailable)?
            .into_inner();
        Ok(Response::new(ItemImage {
            item_id: kept.item_id,
            content_type: kept.content_type,
            size: kept.size,
        }))
    }

    async fn get_item_image(
        &self,
        request: Request<GetItemImageRequest>,
    ) -> Result<Response<HttpBody>, Status> {
        let image = self
            .items
            .clone()
            .get_item_image(item_api::GetItemImageRequest {
                id: request.into_inner().id,
            })
            .await
            .map_err(unreachable_is_unavailable)?
            .into_inner();
        Ok(Response::new(HttpBody {
            content_type: image.content_type,
            data: image.data,
            extensions: Vec::new(),
        }))
    }
}
