//! The gRPC adapter: signup and signin go through the customer service; tokens are signed here.

use crate::keys::Signer;
use platform_proto::authority::{
    authority_service_server::AuthorityService, ListPublicKeysRequest, ListPublicKeysResponse,
    SigninRequest, SigninResponse, SignupRequest, SignupResponse,
};
use platform_proto::customer::{
    customer_service_client::CustomerServiceClient, CreateCustomerRequest, GetCustomerByNameRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

pub struct AuthorityApi {
    signer: Signer,
    customers: CustomerServiceClient<Channel>,
}

impl AuthorityApi {
    pub fn new(signer: Signer, customers: CustomerServiceClient<Channel>) -> Self {
        Self { signer, customers }
    }
}

#[tonic::async_trait]
impl AuthorityService for AuthorityApi {
    async fn signup(
        &self,
        request: Request<SignupRequest>,
    ) -> Result<Response<SignupResponse>, Status> {
        let name = request.into_inner().name;
        let customer = self
            .customers
            .clone()
            .create_customer(CreateCustomerRequest { name })
            .await?
            .into_inner()
            .customer;
        Ok(Response::new(SignupResponse { customer }))
    }

    async fn signin(
        &self,
        request: Request<SigninRequest>,
    ) -> Result<Response<SigninResponse>, Status> {
        let name = request.into_inner().name;
        let found = self
            .customers
            .clone()
            .get_customer_by_name(GetCustomerByNameRequest { name })
            .await;
        let customer = match found {
            Ok(response) => response.into_inner().customer,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(status),
        }
        .ok_or_else(|| Status::not_found("customer not found"))?;
        let access_token = self.signer.issue(&customer.id).map_err(|e| {
            tracing::error!(error = %e, "cannot sign token");
            Status::internal("cannot issue a token")
        })?;
        Ok(Response::new(SigninResponse { access_token }))
    }

    async fn list_public_keys(
        &self,
        _request: Request<ListPublicKeysRequest>,
    ) -> Result<Response<ListPublicKeysResponse>, Status> {
        Ok(Response::new(ListPublicKeysResponse {
            jwks: self.signer.jwks(),
        }))
    }
}
