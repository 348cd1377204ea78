//! The parts every platform service shares, so that each service's `main` reads as what it
//! serves: settings from the environment, logging, the database, and the gRPC server.

mod database;
mod server;

pub use database::{open_database, Migration};
pub use server::{serve, Listener};

use std::env;

/// Reads a setting from the environment, with a default for local runs.
pub fn setting(name: &str, default: &str) -> String {
    env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Logs to stderr (`RUST_LOG` filters, default `info`); stdout is kept for the one line that
/// says where the server listens.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// A fatal start-up problem, as a message that says what to fix.
pub type StartupError = Box<dyn std::error::Error + Send + Sync>;
