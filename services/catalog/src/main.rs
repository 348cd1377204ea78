//! The catalog service. Settings: `LISTEN_ADDR` (default 127.0.0.1:50052),
//! `CUSTOMER_ADDR` (default http://127.0.0.1:50053), `ITEM_ADDR` (default http://127.0.0.1:50054).

mod grpc;

use platform_proto::catalog::catalog_service_server::CatalogServiceServer;
use service_kit::{serve, setting, Listener, StartupError};
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};

fn channel(variable: &str, default: &str) -> Result<Channel, StartupError> {
    let addr = setting(variable, default);
    Ok(Endpoint::from_shared(addr.clone())
        .map_err(|e| format!("{variable} {addr}: {e}"))?
        .connect_lazy())
}

#[tokio::main]
async fn main() -> Result<(), StartupError> {
    let _telemetry = service_kit::init_tracing("catalog");
    let customers = channel("CUSTOMER_ADDR", "http://127.0.0.1:50053")?;
    let items = channel("ITEM_ADDR", "http://127.0.0.1:50054")?;
    let listener = Listener::bind(&setting("LISTEN_ADDR", "127.0.0.1:50052")).await?;
    let service = CatalogServiceServer::new(grpc::CatalogApi::new(customers, items));
    serve(listener, &["catalog.CatalogService"], Routes::new(service)).await
}
