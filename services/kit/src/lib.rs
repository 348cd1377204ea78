//! The parts every platform service shares, so that each service's `main` reads as what it
//! serves: settings from the environment, logging and tracing, the database, and the gRPC server.

mod client;
mod database;
mod reflection;
mod server;
mod telemetry;

pub use client::unreachable_is_unavailable;
pub use database::{database_status, open_database, Database, Migration};
pub use server::{serve, Listener};
pub use telemetry::{
    continue_trace, init_tracing, traced, PropagateTrace, Telemetry, TracedChannel,
};

use std::env;

/// Reads a setting from the environment, with a default for local runs.
pub fn setting(name: &str, default: &str) -> String {
    env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// A fatal start-up problem, as a message that says what to fix.
pub type StartupError = Box<dyn std::error::Error + Send + Sync>;
