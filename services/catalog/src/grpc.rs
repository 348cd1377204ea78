//! The catalog BFF: items as clients want them, each with its owner's name. Errors from item
//! and customer keep their gRPC code, so a missing item is NotFound all the way to the client.

use platform_proto::catalog::{
    catalog_service_server::CatalogService, CreateItemRequest, CreateItemResponse, GetItemRequest,
    GetItemResponse, Item, ListItemsRequest, ListItemsResponse, PurchaseItemRequest,
    PurchaseItemResponse,
};
use platform_proto::customer::{
    customer_service_client::CustomerServiceClient, BatchGetCustomersRequest, GetCustomerRequest,
};
use platform_proto::item::{self as item_api, item_service_client::ItemServiceClient};
use service_kit::{traced, unreachable_is_unavailable, TracedChannel};
use std::collections::HashMap;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

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
        let customer = self
            .customers
            .clone()
            .get_customer(GetCustomerRequest { id: id.to_string() })
            .await
            .map_err(unreachable_is_unavailable)?
            .into_inner()
            .customer;
        Ok(customer.map(|c| c.name).unwrap_or_default())
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

fn missing_item() -> Status {
    Status::internal("item service answered without an item")
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn create_item(
        &self,
        request: Request<CreateItemRequest>,
    ) -> Result<Response<CreateItemResponse>, Status> {
        let owner = caller(&request)?;
        let request = request.into_inner();
        let created = self
            .items
            .clone()
            .create_item(item_api::CreateItemRequest {
                customer_id: owner.clone(),
                title: request.title,
                price: request.price,
            })
            .await
            .map_err(unreachable_is_unavailable)?
            .into_inner()
            .item
            .ok_or_else(missing_item)?;
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
}
