//! The ACL service. Settings: `LISTEN_ADDR` (default 127.0.0.1:50056),
//! `DATABASE_URL` (default `sqlite://.run/data/acl.db`; `postgres://…` works too).

mod grpc;
mod store;

use platform_proto::acl::acl_service_server::AclServiceServer;
use service_kit::{open_database, serve, setting, Listener, StartupError};
use tonic::service::Routes;

#[tokio::main]
async fn main() -> Result<(), StartupError> {
    let _telemetry = service_kit::init_tracing("acl");
    let database_url = setting("DATABASE_URL", "sqlite://.run/data/acl.db");
    let database = open_database(&database_url, store::MIGRATIONS).await?;
    let listener = Listener::bind(&setting("LISTEN_ADDR", "127.0.0.1:50056")).await?;
    let service = AclServiceServer::new(grpc::AclApi::new(store::AclStore::new(database)));
    serve(listener, &["acl.AclService"], Routes::new(service)).await
}
