//! The edge's three filters as one Envoy dynamic module (`libedge_native.so`, Envoy 1.40, ABI
//! v0.2.0), from the same cores as the proxy-wasm module: each filter configuration names its
//! filter in `filter_name` (`auth`, `transcoder`, `access-log`), and its JSON configuration is
//! the one the Wasm plugin takes. `access-log+auth` runs the access log and auth as one Envoy
//! filter, as every chain edgectl renders for this build does ([`pair`]).
//!
//! Each module here is one filter's glue over [`edge_native_host::NativeHost`]; [`hooks`]
//! holds the C entry points Envoy calls and hands them to the filter by these traits.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access_log;
mod auth;
mod hooks;
mod pair;
mod ticker;
mod transcoder;

use edge_core::host::Flow;
use edge_native_host::abi::{status, EnvoyConfig, EnvoyFilter};
use edge_native_host::CallPart;

/// The module's Rust allocations stay in the module (Envoy frees none of them, nor the module
/// Envoy's): see the workspace's note on `mimalloc`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The filters' names, as a dynamic-module filter's `filter_name` gives them.
pub const FILTERS: [&str; 4] = [auth::NAME, transcoder::NAME, access_log::NAME, pair::NAME];

/// One filter configuration: made on the main thread, shared by every worker's streams.
trait FilterConfig {
    fn new_filter(&self, envoy: EnvoyFilter) -> Box<dyn StreamFilter>;
    /// An event the configuration scheduled for itself, on the main thread.
    fn scheduled(&self, _event: u64) {}
    /// A part of the answer to a call the configuration made, on the main thread.
    fn call(&self, _stream: u64, _part: CallPart<'_>) {}
}

/// One stream's filter; every hook answers with the ABI's status (0: continue).
trait StreamFilter {
    fn request_headers(&mut self, _end_of_stream: bool) -> u32 {
        status::CONTINUE
    }
    fn request_body(&mut self, _end_of_stream: bool) -> u32 {
        status::CONTINUE
    }
    fn response_headers(&mut self, _end_of_stream: bool) -> u32 {
        status::CONTINUE
    }
    fn response_body(&mut self, _end_of_stream: bool) -> u32 {
        status::CONTINUE
    }
    fn response_trailers(&mut self) -> u32 {
        status::CONTINUE
    }
    /// The stream is over (before Envoy's access logs are written).
    fn complete(&mut self) {}
    /// A part of the answer to a call this stream made.
    fn call(&mut self, _stream: u64, _part: CallPart<'_>) {}
    /// The client's connection holds more than its high watermark of what was written to it.
    fn client_slow(&mut self) {}
    /// The client's connection drained below its low watermark.
    fn client_ready(&mut self) {}
}

/// A configuration for `name` from its JSON `config`; the error says why there is none.
fn configure(
    envoy: EnvoyConfig,
    name: &str,
    config: &[u8],
) -> Result<Box<dyn FilterConfig>, String> {
    match name {
        auth::NAME => boxed(auth::configure(envoy, config)),
        transcoder::NAME => boxed(transcoder::configure(envoy, config)),
        access_log::NAME => boxed(access_log::configure(envoy, config)),
        pair::NAME => boxed(pair::configure(envoy, config)),
        _ => Err(format!(
            "this module has no filter named {name:?}: set filter_name to one of {}",
            FILTERS.join(", ")
        )),
    }
}

fn boxed<C: FilterConfig + 'static>(
    config: Result<C, String>,
) -> Result<Box<dyn FilterConfig>, String> {
    Ok(Box::new(config?))
}

fn flow(flow: Flow) -> u32 {
    match flow {
        Flow::Continue => status::CONTINUE,
        Flow::Pause => status::STOP,
    }
}
