//! The edge's three filters as one proxy-wasm module: Envoy runs one VM per worker for every
//! plugin with the same code (and `vm_id`), so the three filters share a V8 isolate, its code
//! and its heap instead of paying for three. Each plugin is still its own filter with its own
//! configuration (Istio: three WasmPlugins with this module's URL); its `root_id` (Istio:
//! `pluginName`) picks which filter the plugin runs.
//!
//! Each module here is one filter's glue: it reads the plugin configuration, sets the timer and
//! forwards Envoy's callbacks to the filter's core over [`edge_host::WasmHost`].
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access_log;
mod auth;
mod transcoder;

use edge_host as host;
use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::LogLevel;

/// The filters' root ids, as Envoy's `root_id` and Istio's `pluginName` give them.
pub const FILTERS: [&str; 3] = [auth::ROOT_ID, transcoder::ROOT_ID, access_log::ROOT_ID];

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // Envoy creates a root context per plugin (and worker), within that plugin: its root id is
    // readable here.
    proxy_wasm::set_root_context(|_| root_context(host::plugin_root_id().unwrap_or_default()));
}}

fn root_context(root_id: String) -> Box<dyn RootContext> {
    match root_id.as_str() {
        auth::ROOT_ID => auth::root_context(),
        transcoder::ROOT_ID => transcoder::root_context(),
        access_log::ROOT_ID => access_log::root_context(),
        _ => Box::new(UnknownFilter { root_id }),
    }
}

/// A plugin whose `root_id` names none of the filters: its configuration is refused, so Envoy
/// rejects the plugin rather than run a filter that does nothing.
struct UnknownFilter {
    root_id: String,
}

impl Context for UnknownFilter {}

impl RootContext for UnknownFilter {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        host::log(
            LogLevel::Error,
            &format!(
                "this module has no filter with root_id {:?}: set root_id (Istio: pluginName) to one of {}",
                self.root_id,
                FILTERS.join(", ")
            ),
        );
        false
    }
}
