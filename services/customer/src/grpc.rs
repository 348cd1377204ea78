//! The gRPC adapter: requests in, domain calls, domain errors out as gRPC codes.

use crate::store::{Customer, CustomerStore, Error};
use platform_proto::customer::{
    customer_service_server::CustomerService, BatchGetCustomersRequest, BatchGetCustomersResponse,
    CreateCustomerRequest, CreateCustomerResponse, Customer as CustomerMessage,
    GetCustomerByNameRequest, GetCustomerByNameResponse, GetCustomerRequest, GetCustomerResponse,
};
use tonic::{Request, Response, Status};

pub struct CustomerApi {
    store: CustomerStore,
}

impl CustomerApi {
    pub fn new(store: CustomerStore) -> Self {
        Self { store }
    }
}

fn to_status(error: Error) -> Status {
    match error {
        Error::InvalidName(why) | Error::TooMany(why) => Status::invalid_argument(why),
        Error::NameTaken => Status::already_exists("a customer with this name already exists"),
        Error::NotFound => Status::not_found("customer not found"),
        Error::Database(e) => service_kit::database_status(&e),
    }
}

fn message(customer: Customer) -> Option<CustomerMessage> {
    Some(CustomerMessage {
        id: customer.id,
        name: customer.name,
    })
}

#[tonic::async_trait]
impl CustomerService for CustomerApi {
    async fn create_customer(
        &self,
        request: Request<CreateCustomerRequest>,
    ) -> Result<Response<CreateCustomerResponse>, Status> {
        let customer = self
            .store
            .create(&request.into_inner().name)
            .await
            .map_err(to_status)?;
        Ok(Response::new(CreateCustomerResponse {
            customer: message(customer),
        }))
    }

    async fn get_customer(
        &self,
        request: Request<GetCustomerRequest>,
    ) -> Result<Response<GetCustomerResponse>, Status> {
        let customer = self
            .store
            .get(&request.into_inner().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetCustomerResponse {
            customer: message(customer),
        }))
    }

    async fn get_customer_by_name(
        &self,
        request: Request<GetCustomerByNameRequest>,
    ) -> Result<Response<GetCustomerByNameResponse>, Status> {
        let customer = self
            .store
            .get_by_name(&request.into_inner().name)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetCustomerByNameResponse {
            customer: message(customer),
        }))
    }

    async fn batch_get_customers(
        &self,
        request: Request<BatchGetCustomersRequest>,
    ) -> Result<Response<BatchGetCustomersResponse>, Status> {
        let customers = self
            .store
            .get_many(&request.into_inner().ids)
            .await
            .map_err(to_status)?;
        Ok(Response::new(BatchGetCustomersResponse {
            customers: customers.into_iter().filter_map(message).collect(),
        }))
    }
}
