//! The item service. Settings: `LISTEN_ADDR` (default 127.0.0.1:50054),
//! `DATABASE_URL` (default `sqlite://.run/data/item.db`; `postgres://…` works too).

mod grpc;
mod image;
mod store;

use platform_proto::item::item_service_server::ItemServiceServer;
use service_kit::{open_database, serve, setting, Listener, StartupError};
use tonic::service::Routes;

#[tokio::main]
async fn main() -> Result<(), StartupError> {
    let _telemetry = service_kit::init_tracing("item");
    let database_url = setting("DATABASE_URL", "sqlite://.run/data/item.db");
    let database = open_database(&database_url, store::MIGRATIONS).await?;
    let listener = Listener::bind(&setting("LISTEN_ADDR", "127.0.0.1:50054")).await?;
    let service = ItemServiceServer::new(grpc::ItemApi::new(store::ItemStore::new(database)));
    serve(listener, &["item.ItemService"], Routes::new(service)).await
}
