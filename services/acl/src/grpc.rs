//! The gRPC adapter: requests in, domain calls, domain errors out as gRPC codes.

use crate::store::{self, unix_now, AclStore, Change, Error, Restriction};
use platform_proto::acl::{
    acl_service_server::AclService, Change as ChangeMessage, LiftRequest, LiftResponse,
    ListChangesRequest, ListChangesResponse, ListRestrictionsRequest, ListRestrictionsResponse,
    RestrictRequest, Restriction as RestrictionMessage,
};
use prost_types::{Duration, Timestamp};
use tonic::{Request, Response, Status};

pub struct AclApi {
    store: AclStore,
}

impl AclApi {
    pub fn new(store: AclStore) -> Self {
        Self { store }
    }
}

fn to_status(error: Error) -> Status {
    match error {
        Error::Invalid(why) => Status::invalid_argument(why),
        Error::NotFound => Status::not_found("no such restriction"),
        Error::Database(e) => service_kit::database_status(&e),
    }
}

/// An optional protobuf `Duration` (unset: zero); `negative` is the error when it is negative.
fn duration(
    duration: Option<Duration>,
    negative: &'static str,
) -> Result<std::time::Duration, Status> {
    duration.map_or(Ok(std::time::Duration::ZERO), |d| {
        store::duration(d.seconds, d.nanos, negative).map_err(to_status)
    })
}

fn timestamp(unix_seconds: i64) -> Timestamp {
    Timestamp {
        seconds: unix_seconds,
        nanos: 0,
    }
}

fn message(restriction: Restriction) -> RestrictionMessage {
    RestrictionMessage {
        subject: restriction.subject,
        action: restriction.action,
        reason: restriction.reason,
        create_time: Some(timestamp(restriction.create_time)),
        expire_time: restriction.expire_time.map(timestamp),
    }
}

fn change(change: Change) -> ChangeMessage {
    ChangeMessage {
        version: change.version,
        subject: change.subject,
        action: change.action,
        restricted: change.restricted,
        expire_unix_seconds: change.expire_time,
    }
}

#[tonic::async_trait]
impl AclService for AclApi {
    async fn restrict(
        &self,
        request: Request<RestrictRequest>,
    ) -> Result<Response<RestrictionMessage>, Status> {
        let request = request.into_inner();
        let ttl = duration(request.ttl, "ttl must not be negative")?;
        let restriction = self
            .store
            .restrict(
                &request.subject,
                &request.action,
                &request.reason,
                ttl,
                unix_now(),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(message(restriction)))
    }

    async fn lift(&self, request: Request<LiftRequest>) -> Result<Response<LiftResponse>, Status> {
        let request = request.into_inner();
        self.store
            .lift(&request.subject, &request.action, unix_now())
            .await
            .map_err(to_status)?;
        Ok(Response::new(LiftResponse {}))
    }

    async fn list_restrictions(
        &self,
        request: Request<ListRestrictionsRequest>,
    ) -> Result<Response<ListRestrictionsResponse>, Status> {
        let restrictions = self
            .store
            .list(&request.into_inner().subject, unix_now())
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListRestrictionsResponse {
            restrictions: restrictions.into_iter().map(message).collect(),
        }))
    }

    async fn list_changes(
        &self,
        request: Request<ListChangesRequest>,
    ) -> Result<Response<ListChangesResponse>, Status> {
        let request = request.into_inner();
        let wait = duration(request.wait, "wait must not be negative")?;
        let page = self
            .store
            .changes(request.since_version, request.page_size, wait)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListChangesResponse {
            changes: page.changes.into_iter().map(change).collect(),
            version: page.version,
        }))
    }
}
