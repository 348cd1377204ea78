//! A minimal access-log collector: `telemetry.LogCollector/Ship` appends each batch's lines to
//! `COLLECTOR_FILE` (default `.run/data/access.log`). Settings: `LISTEN_ADDR` (default
//! 127.0.0.1:50055). Stands in for a real pipeline (Fluent Bit, an OpenTelemetry collector…).

use platform_proto::telemetry::{
    log_collector_server::{LogCollector, LogCollectorServer},
    LogBatch, ShipResponse,
};
use service_kit::{serve, setting, Listener, StartupError};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

struct FileCollector {
    file: Mutex<tokio::fs::File>,
}

#[tonic::async_trait]
impl LogCollector for FileCollector {
    async fn ship(&self, request: Request<LogBatch>) -> Result<Response<ShipResponse>, Status> {
        let lines = request.into_inner().lines;
        let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in &lines {
            // Lines are single JSON objects; a line break inside one would split a record.
            text.push_str(&line.replace(['\r', '\n'], " "));
            text.push('\n');
        }
        let mut file = self.file.lock().await;
        file.write_all(text.as_bytes()).await.map_err(|e| {
            tracing::error!(error = %e, "cannot append");
            Status::unavailable("cannot store the batch")
        })?;
        file.flush()
            .await
            .map_err(|_| Status::unavailable("cannot store the batch"))?;
        Ok(Response::new(ShipResponse {
            accepted: u32::try_from(lines.len()).unwrap_or(u32::MAX),
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), StartupError> {
    let _telemetry = service_kit::init_tracing("log-collector");
    let path = PathBuf::from(setting("COLLECTOR_FILE", ".run/data/access.log"));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let listener = Listener::bind(&setting("LISTEN_ADDR", "127.0.0.1:50055")).await?;
    let service = LogCollectorServer::new(FileCollector {
        file: Mutex::new(file),
    });
    serve(listener, &["telemetry.LogCollector"], Routes::new(service)).await
}
