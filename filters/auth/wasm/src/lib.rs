//! proxy-wasm glue of the auth filter: reads the request, asks `edge_auth::authorize`, and
//! either forwards the verified subject or answers with the rejection. Keys come from the
//! authority over gRPC, fetched at start and refreshed on a timer.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edge_auth::{authorize, AuthConfig, KeySet, ListPublicKeysResponse, Outcome, Request};
use edge_core::properties;
use edge_glue as host;
use prost::Message;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(AuthRoot::default()));
}}

/// What the root context learns (configuration, keys) and every request reads.
#[derive(Default)]
struct State {
    config: Option<Rc<AuthConfig>>,
    keys: Option<Rc<KeySet>>,
}

#[derive(Default)]
struct AuthRoot {
    state: Rc<RefCell<State>>,
    fetch_in_flight: bool,
}

impl AuthRoot {
    fn config(&self) -> Option<Rc<AuthConfig>> {
        self.state.borrow().config.clone()
    }

    fn fetch_keys(&mut self) {
        let Some(config) = self.config() else { return };
        if self.fetch_in_flight {
            return;
        }
        let source = &config.authority;
        let upstream = match edge_core::grpc_upstream(&source.cluster) {
            Ok(upstream) => upstream,
            Err(error) => return host::log(LogLevel::Error, &error),
        };
        match self.dispatch_grpc_call(
            &upstream,
            &source.service,
            &source.method,
            Vec::new(),
            Some(&[]),
            Duration::from_millis(source.timeout_ms),
        ) {
            Ok(_) => self.fetch_in_flight = true,
            Err(status) => host::log(
                LogLevel::Warn,
                &format!(
                    "cannot call {}/{}: {status:?}",
                    source.service, source.method
                ),
            ),
        }
    }

    fn store_keys(&mut self, response_size: usize) -> Result<usize, String> {
        let body = host::grpc_call_response_body(response_size).map_err(|e| e.to_string())?;
        let response =
            ListPublicKeysResponse::decode(body.as_slice()).map_err(|e| e.to_string())?;
        let keys = KeySet::from_jwks(&response.jwks)?;
        let count = keys.len();
        self.state.borrow_mut().keys = Some(Rc::new(keys));
        Ok(count)
    }
}

impl Context for AuthRoot {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        self.fetch_in_flight = false;
        let Some(config) = self.config() else { return };
        let had_keys = self.state.borrow().keys.is_some();
        if status_code != 0 {
            // Keep whatever keys we had: an authority outage must not lock everyone out.
            host::log(
                LogLevel::Warn,
                &format!("fetching signing keys failed with gRPC status {status_code}"),
            );
            return;
        }
        match self.store_keys(response_size) {
            Ok(count) if !had_keys => {
                host::log(LogLevel::Info, &format!("loaded {count} signing key(s)"));
                self.set_tick_period(Duration::from_secs(config.authority.refresh_seconds));
            }
            Ok(_) => {}
            Err(error) => host::log(LogLevel::Warn, &format!("ignoring signing keys: {error}")),
        }
    }
}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = match host::plugin_configuration()
            .map_err(|e| e.to_string())
            .and_then(|bytes| AuthConfig::from_json(&bytes))
        {
            Ok(config) => config,
            Err(error) => {
                host::log(LogLevel::Error, &error);
                return false;
            }
        };
        let retry = Duration::from_secs(config.authority.retry_seconds);
        self.state.borrow_mut().config = Some(Rc::new(config));
        // Fetch now; the timer retries until it succeeds, then refreshes.
        self.set_tick_period(retry);
        self.fetch_keys();
        true
    }

    fn on_tick(&mut self) {
        self.fetch_keys();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthFilter {
            state: self.state.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuthFilter {
    state: Rc<RefCell<State>>,
}

impl AuthFilter {
    fn decide(&self, config: &AuthConfig) -> Result<Outcome, host::HostError> {
        let method = host::request_header(":method").unwrap_or_default();
        let path = host::request_header(":path").unwrap_or_default();
        let path = path.split_once('?').map_or(path.as_str(), |(path, _)| path);
        let authorization = host::request_header_values("authorization")?;
        let keys = self.state.borrow().keys.clone();
        Ok(authorize(
            config,
            keys.as_deref(),
            &Request {
                method: &method,
                path,
                authorization: &authorization,
            },
        ))
    }

    fn apply(&self, config: &AuthConfig) -> Result<Action, host::HostError> {
        // A client must never choose its identity: drop its copy before anything else.
        host::remove_request_header(&config.subject_header)?;
        match self.decide(config)? {
            Outcome::Allow { subject } => {
                if let Some(subject) = subject {
                    host::set_request_header(&config.subject_header, &subject)?;
                    host::set_property(&[properties::SUBJECT], subject.as_bytes())?;
                    // The backends trust the subject header; the token stays at the edge.
                    host::remove_request_header("authorization")?;
                }
                Ok(Action::Continue)
            }
            Outcome::Reject(rejection) => {
                host::set_property(&[properties::AUTH_REASON], rejection.reason.as_bytes())?;
                let challenge = rejection.www_authenticate.as_deref();
                let headers: Vec<(&str, &str)> = challenge
                    .map(|c| ("www-authenticate", c))
                    .into_iter()
                    .collect();
                host::send_status(&rejection.status, &headers)?;
                Ok(Action::Pause)
            }
        }
    }
}

impl Context for AuthFilter {}

impl HttpContext for AuthFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.state.borrow().config.clone() else {
            // Unconfigured means Envoy refused our configuration; never let traffic through.
            host::reset_request();
            return Action::Pause;
        };
        match self.apply(&config) {
            Ok(action) => action,
            Err(error) => {
                host::log(LogLevel::Error, &format!("auth failed closed: {error}"));
                let status = edge_core::Status::new(
                    edge_core::GrpcCode::Internal,
                    "authentication could not be performed",
                );
                if host::send_status(&status, &[]).is_err() {
                    host::reset_request();
                }
                Action::Pause
            }
        }
    }
}
