//! proxy-wasm glue of the auth filter: forwards Envoy's callbacks to the core
//! ([`edge_auth::root`]): the root context's timer and gRPC answers keep the signing keys and
//! the acl copy current, and each request is decided and carried out over [`WasmHost`].

use edge_auth::root::{Root, Shared};
use edge_auth::AuthConfig;
use edge_core::host::{Flow, Host};
use edge_host::{self as host, WasmHost};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

pub(crate) const ROOT_ID: &str = "auth";

pub(crate) fn root_context() -> Box<dyn RootContext> {
    Box::new(AuthRoot::default())
}

/// How often the timer looks for newer keys and due fetches and polls.
const TICK: Duration = Duration::from_secs(1);

#[derive(Default)]
struct AuthRoot {
    host: Rc<WasmHost>,
    /// `None` until Envoy accepted a configuration.
    root: Option<Root<WasmHost>>,
}

impl Context for AuthRoot {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if let Some(root) = &mut self.root {
            root.on_grpc_answer(token_id, status_code, response_size);
        }
    }
}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = match host::plugin_configuration()
            .map_err(|e| e.to_string())
            .and_then(|bytes| AuthConfig::from_json(&bytes))
            .and_then(|config| {
                host::check_clusters(config.clusters())
                    .map_err(|e| format!("invalid auth configuration: {e}"))?;
                Ok(config)
            }) {
            Ok(config) => config,
            Err(error) => {
                host::log(LogLevel::Error, &error);
                return false;
            }
        };
        if let Err(error) = host::set_tick_period(TICK) {
            // Without ticks the keys would never be fetched: refuse the configuration.
            host::log(
                LogLevel::Error,
                &format!("cannot start the key timer: {error}"),
            );
            return false;
        }
        let mut root = Root::new(self.host.clone(), config);
        root.on_tick();
        self.root = Some(root);
        true
    }

    fn on_tick(&mut self) {
        if let Some(root) = &mut self.root {
            root.on_tick();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthFilter {
            host: self.host.clone(),
            shared: self.root.as_ref().map(Root::shared),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuthFilter {
    host: Rc<WasmHost>,
    shared: Option<Rc<RefCell<Shared<WasmHost>>>>,
}

impl Context for AuthFilter {}

impl HttpContext for AuthFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = &self.shared else {
            // Unconfigured means Envoy refused our configuration; never let traffic through.
            self.host.reset_request();
            return Action::Pause;
        };
        match Shared::on_request_headers(shared, &*self.host) {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }
}
