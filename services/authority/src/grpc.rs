//! The gRPC adapter: signup and signin go through the customer service; tokens are signed here.

use crate::keys::{KeyError, Signer};
use platform_proto::authority::{
    authority_service_server::AuthorityService, key_admin_service_server::KeyAdminService,
    ListPublicKeysRequest, ListPublicKeysResponse, RetireKeyRequest, RetireKeyResponse,
    RotateSigningKeyRequest, RotateSigningKeyResponse, SigninRequest, SigninResponse,
    SignupRequest, SignupResponse,
};
use platform_proto::customer::{
    customer_service_client::CustomerServiceClient, CreateCustomerRequest, GetCustomerByNameRequest,
};
use service_kit::{unreachable_is_unavailable, TracedChannel};
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

/// The scope an administrator's token carries: the edge requires it on the acl service's routes.
pub const ADMIN_SCOPE: &str = "acl.admin";

pub struct AuthorityApi {
    signer: Arc<Signer>,
    customers: CustomerServiceClient<TracedChannel>,
    /// Customers (by name) whose tokens carry [`ADMIN_SCOPE`].
    admins: Vec<String>,
}

impl AuthorityApi {
    pub fn new(
        signer: Arc<Signer>,
        customers: CustomerServiceClient<TracedChannel>,
        admins: Vec<String>,
    ) -> Self {
        Self {
            signer,
            customers,
            admins,
        }
    }
}

/// Operator-only key management (not routed by the edge).
pub struct KeyAdminApi {
    signer: Arc<Signer>,
}

impl KeyAdminApi {
    pub fn new(signer: Arc<Signer>) -> Self {
        Self { signer }
    }
}

fn key_status(error: KeyError) -> Status {
    match error {
        KeyError::UnknownKey => Status::not_found("no such key"),
        KeyError::RetiringCurrent => {
            Status::failed_precondition("the current signing key cannot be retired; rotate first")
        }
        KeyError::Io(e) => {
            tracing::error!(error = %e, "key storage error");
            Status::internal("key storage error")
        }
    }
}

#[tonic::async_trait]
impl KeyAdminService for KeyAdminApi {
    async fn rotate_signing_key(
        &self,
        _request: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        let kid = self.signer.rotate().map_err(key_status)?;
        Ok(Response::new(RotateSigningKeyResponse { kid }))
    }

    async fn retire_key(
        &self,
        request: Request<RetireKeyRequest>,
    ) -> Result<Response<RetireKeyResponse>, Status> {
        self.signer
            .retire(&request.into_inner().kid)
            .map_err(key_status)?;
        Ok(Response::new(RetireKeyResponse {}))
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
            .await
            .map_err(unreachable_is_unavailable)?
            .into_inner()
            .customer;
        Ok(Response::new(SignupResponse { customer }))
    }

    async fn signin(
        &self,
        request: Request<SigninRequest>,
    ) -> Result<Response<SigninResponse>, Status> {
        let name = request.into_inner().name;
        let scope = if self.admins.contains(&name) {
            ADMIN_SCOPE
        } else {
            ""
        };
        let found = self
            .customers
            .clone()
            .get_customer_by_name(GetCustomerByNameRequest { name })
            .await;
        let customer = match found {
            Ok(response) => response.into_inner().customer,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(unreachable_is_unavailable(status)),
        }
        .ok_or_else(|| Status::not_found("customer not found"))?;
        let access_token = self
            .signer
            .issue(&customer.id, scope)
            .map_err(|e: String| {
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
