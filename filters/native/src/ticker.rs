//! Ticks for work that belongs to no request (key refresh, the acl feed, shipping access
//! lines): a module thread that commits scheduler events to a filter configuration, which
//! Envoy runs on its main thread.

use edge_native_host::abi::{self, EnvoyConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Envoy's configuration object, handed to the worker threads (the followers' host makes
/// config-level metric updates, which Envoy allows from any thread).
#[derive(Clone, Copy)]
pub(crate) struct EnvoyConfigPointer(pub(crate) EnvoyConfig);
// SAFETY: Envoy's filter configuration outlives every stream and tick that uses it, and its
// config-level metric and scheduler calls may be made from any thread.
#[allow(unsafe_code)]
unsafe impl Send for EnvoyConfigPointer {}
#[allow(unsafe_code)]
unsafe impl Sync for EnvoyConfigPointer {}

/// The module thread that asks for the main thread's tick every period, until dropped: the ABI
/// has no timer, and its configuration scheduler may be committed from any thread.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    scheduler: EnvoyConfigPointer,
}

impl Ticker {
    /// Commits `event` to `envoy`'s configuration now and every `period` (the event tells
    /// apart the tickers of configurations that share an Envoy filter: see `pair`).
    pub(crate) fn start(envoy: EnvoyConfig, period: Duration, event: u64) -> Self {
        #[allow(unsafe_code)]
        let scheduler = EnvoyConfigPointer(unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(envoy)
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("edge-tick".into())
                .spawn(move || {
                    let scheduler = scheduler;
                    while !stop.load(Ordering::Relaxed) {
                        #[allow(unsafe_code)]
                        unsafe {
                            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                                scheduler.0,
                                event,
                            );
                        }
                        std::thread::park_timeout(period);
                    }
                })
                .ok()
        };
        Self {
            stop,
            thread,
            scheduler,
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
        #[allow(unsafe_code)]
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                self.scheduler.0,
            );
        }
    }
}
