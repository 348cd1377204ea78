//! The customer service. Settings: `LISTEN_ADDR` (default 127.0.0.1:50053),
//! `DATABASE_URL` (default `sqlite://.run/data/customer.db`; `postgres://…` works too).

mod grpc;
mod store;

use platform_proto::customer::customer_service_server::CustomerServiceServer;
use service_kit::{open_database, serve, setting, Listener, StartupError};
use tonic::service::Routes;

#[tokio::main]
async fn main() -> Result<(), StartupError> {
    let _telemetry = service_kit::init_tracing("customer");
    let database_url = setting("DATABASE_URL", "sqlite://.run/data/customer.db");
    let database = open_database(&database_url, store::MIGRATIONS).await?;
    let listener = Listener::bind(&setting("LISTEN_ADDR", "127.0.0.1:50053")).await?;
    let service =
        CustomerServiceServer::new(grpc::CustomerApi::new(store::CustomerStore::new(database)));
    serve(
        listener,
        &["customer.CustomerService"],
        Routes::new(service),
    )
    .await
}
