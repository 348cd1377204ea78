//! The authority service. Settings: `LISTEN_ADDR` (default 127.0.0.1:50051),
//! `CUSTOMER_ADDR` (default http://127.0.0.1:50053), `KEY_DIR` (default `.run/data/authority`:
//! the key ring, its first key generated on first start), `TOKEN_ISSUER` (default `authority`), `TOKEN_AUDIENCE` (default `edge`),
//! `TOKEN_TTL_SECONDS` (default 3600), `ADMIN_NAMES` (default `admin`; set empty for none: comma-separated customer
//! names whose tokens carry the `acl.admin` scope; how the first administrator is made).

mod grpc;
mod keys;

use platform_proto::authority::authority_service_server::AuthorityServiceServer;
use platform_proto::authority::key_admin_service_server::KeyAdminServiceServer;
use platform_proto::customer::customer_service_client::CustomerServiceClient;
use service_kit::{serve, setting, traced, Listener, StartupError};
use std::sync::Arc;
use tonic::service::Routes;
use tonic::transport::Endpoint;

#[tokio::main]
async fn main() -> Result<(), StartupError> {
    let _telemetry = service_kit::init_tracing("authority");
    let signer = Arc::new(keys::Signer::load_or_create(
        setting("KEY_DIR", ".run/data/authority").as_ref(),
        setting("TOKEN_ISSUER", "authority"),
        setting("TOKEN_AUDIENCE", "edge"),
        setting("TOKEN_TTL_SECONDS", "3600")
            .parse()
            .map_err(|e| format!("TOKEN_TTL_SECONDS: {e}"))?,
    )?);
    let customer_addr = setting("CUSTOMER_ADDR", "http://127.0.0.1:50053");
    let customers = CustomerServiceClient::new(traced(
        Endpoint::from_shared(customer_addr.clone())
            .map_err(|e| format!("CUSTOMER_ADDR {customer_addr}: {e}"))?
            .connect_lazy(),
    ));
    let listener = Listener::bind(&setting("LISTEN_ADDR", "127.0.0.1:50051")).await?;
    // Set but empty means no administrators (unlike other settings, where empty is the default).
    let admins = std::env::var("ADMIN_NAMES")
        .unwrap_or_else(|_| "admin".to_string())
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect();
    let routes = Routes::new(AuthorityServiceServer::new(grpc::AuthorityApi::new(
        signer.clone(),
        customers,
        admins,
    )))
    .add_service(KeyAdminServiceServer::new(grpc::KeyAdminApi::new(signer)));
    serve(
        listener,
        &["authority.AuthorityService", "authority.KeyAdminService"],
        routes,
    )
    .await
}
