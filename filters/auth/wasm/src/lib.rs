//! proxy-wasm glue of the auth filter: reads the request, asks `edge_auth::authorize`, and
//! either forwards the verified identity or answers with the rejection.
//!
//! Keys: the authority's JWKS is fetched over gRPC (`ListPublicKeys`) by whichever worker is
//! due, and published to every worker through shared data; each worker's timer (1 s) picks up
//! a newer JWKS, retries until the first fetch succeeds, refreshes every `refresh_seconds`,
//! and, when a token named an unknown `kid`, fetches early — at most once per
//! `min_refresh_seconds`. A failed fetch keeps the keys already known.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edge_auth::{
    authorize, AuthConfig, KeyRefresh, KeySet, ListPublicKeysResponse, Outcome, Request, TokenError,
};
use edge_core::{properties, Client, GrpcCode, LocalReply};
use edge_host as host;
use prost::Message;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(AuthRoot::default()));
}}

const TICK: Duration = Duration::from_secs(1);

/// What the root context learns (configuration, keys) and every request reads.
#[derive(Default)]
struct State {
    config: Option<Rc<AuthConfig>>,
    keys: Option<Rc<KeySet>>,
    /// When to fetch keys; requests whose token names an unknown `kid` ask for it early.
    refresh: KeyRefresh,
}

#[derive(Default)]
struct AuthRoot {
    state: Rc<RefCell<State>>,
    /// Shared-data version of the JWKS our keys were built from.
    loaded_version: Option<u32>,
}

impl AuthRoot {
    fn config(&self) -> Option<Rc<AuthConfig>> {
        self.state.borrow().config.clone()
    }

    fn shared_key(config: &AuthConfig) -> String {
        format!("edge_auth.jwks.{}", config.authority.cluster)
    }

    /// Envoy's clock; the epoch if Envoy will not say, which only makes a fetch due sooner.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + host::now().unwrap_or_default()
    }

    /// Loads the JWKS another worker (or we) published, if it is newer than ours.
    fn sync_from_shared_data(&mut self, config: &AuthConfig) {
        let Ok((Some(jwks), Some(version))) =
            proxy_wasm::hostcalls::get_shared_data(&Self::shared_key(config))
        else {
            return;
        };
        if self.loaded_version == Some(version) {
            return;
        }
        match KeySet::from_jwks(&String::from_utf8_lossy(&jwks)) {
            Ok(keys) => {
                let first = self.state.borrow().keys.is_none();
                self.state.borrow_mut().keys = Some(Rc::new(keys));
                self.loaded_version = Some(version);
                self.state.borrow_mut().refresh.loaded(Self::now());
                if first {
                    host::log(LogLevel::Info, "signing keys loaded");
                }
            }
            Err(error) => host::log(LogLevel::Warn, &format!("ignoring shared JWKS: {error}")),
        }
    }

    fn fetch_due(&self, config: &AuthConfig) -> bool {
        let state = self.state.borrow();
        state
            .refresh
            .due(&config.authority, state.keys.is_some(), Self::now())
    }

    fn fetch_keys(&mut self, config: &AuthConfig) {
        let source = &config.authority;
        let upstream = match edge_core::grpc_upstream(&source.cluster) {
            Ok(upstream) => upstream,
            Err(error) => return host::log(LogLevel::Error, &error),
        };
        let now = Self::now();
        match self.dispatch_grpc_call(
            &upstream,
            &source.service,
            &source.method,
            Vec::new(),
            Some(&[]),
            Duration::from_millis(source.timeout_ms),
        ) {
            Ok(_) => self.state.borrow_mut().refresh.started(now),
            Err(status) => {
                self.state.borrow_mut().refresh.attempted(now);
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "cannot call {}/{}: {status:?}",
                        source.service, source.method
                    ),
                )
            }
        }
    }

    fn publish_keys(&mut self, config: &AuthConfig, response_size: usize) -> Result<(), String> {
        let body = host::grpc_received_message(response_size).map_err(|e| e.to_string())?;
        let response =
            ListPublicKeysResponse::decode(body.as_slice()).map_err(|e| e.to_string())?;
        // Parse before publishing: a bad JWKS must not replace good keys anywhere.
        KeySet::from_jwks(&response.jwks)?;
        proxy_wasm::hostcalls::set_shared_data(
            &Self::shared_key(config),
            Some(response.jwks.as_bytes()),
            None,
        )
        .map_err(|e| format!("cannot share keys: {e:?}"))?;
        self.sync_from_shared_data(config);
        Ok(())
    }
}

impl Context for AuthRoot {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        self.state.borrow_mut().refresh.finished();
        let Some(config) = self.config() else { return };
        if status_code != 0 {
            // Keep whatever keys we had: an authority outage must not lock everyone out.
            host::log(
                LogLevel::Warn,
                &format!("fetching signing keys failed with gRPC status {status_code}"),
            );
            return;
        }
        if let Err(error) = self.publish_keys(&config, response_size) {
            host::log(
                LogLevel::Warn,
                &format!("ignoring fetched signing keys: {error}"),
            );
        }
    }
}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = match host::plugin_configuration()
            .map_err(|e| e.to_string())
            .and_then(|bytes| AuthConfig::from_json(&bytes))
        {
            Ok(config) => Rc::new(config),
            Err(error) => {
                host::log(LogLevel::Error, &error);
                return false;
            }
        };
        self.state.borrow_mut().config = Some(config.clone());
        self.set_tick_period(TICK);
        self.sync_from_shared_data(&config);
        if self.fetch_due(&config) {
            self.fetch_keys(&config);
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(config) = self.config() else { return };
        self.sync_from_shared_data(&config);
        if self.fetch_due(&config) {
            self.fetch_keys(&config);
        }
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
    fn decide(&self, config: &AuthConfig, client: Client) -> Result<Outcome, host::HostError> {
        let method = host::request_header(":method").unwrap_or_default();
        let path = host::request_header(":path").unwrap_or_default();
        let authorization = host::request_header_values("authorization")?;
        let cookies = if config.token_cookies.is_empty() {
            Vec::new()
        } else {
            host::request_header_values("cookie")?
        };
        let cors_preflight = method == "OPTIONS"
            && edge_core::is_cors_preflight(
                &method,
                host::request_header("origin").as_deref(),
                host::request_header("access-control-request-method").as_deref(),
            );
        let request_id = if config.rollouts.is_empty() {
            None
        } else {
            host::request_header("x-request-id")
        };
        let keys = self.state.borrow().keys.clone();
        Ok(authorize(
            config,
            keys.as_deref(),
            &Request {
                method: &method,
                path: &path,
                authorization: &authorization,
                cookies: &cookies,
                client,
                cors_preflight,
                request_id: request_id.as_deref(),
            },
        ))
    }

    fn apply(&self, config: &AuthConfig, client: Client) -> Result<Action, host::HostError> {
        // A client must never choose its identity or its backend: drop its copies first (the
        // backend header means something only while a rollout routes on it).
        host::remove_request_header(&config.subject_header)?;
        if !config.rollouts.is_empty() {
            host::remove_request_header(&config.backend_header)?;
        }
        for header in config.forward_claims.values() {
            host::remove_request_header(header)?;
        }
        match self.decide(config, client)? {
            Outcome::Allow {
                subject,
                forward,
                backend,
            } => {
                if let Some(cluster) = backend {
                    host::set_request_header(&config.backend_header, &cluster)?;
                    host::set_property(&[properties::BACKEND], cluster.as_bytes())?;
                }
                if let Some(subject) = subject {
                    host::set_request_header(&config.subject_header, &subject)?;
                    host::set_property(&[properties::SUBJECT], subject.as_bytes())?;
                    for (header, value) in &forward {
                        host::set_request_header(header, value)?;
                    }
                    if !config.keep_authorization {
                        // The backends trust the identity headers; the token stays at the edge.
                        host::remove_request_header("authorization")?;
                    }
                }
                // The headers changed: a route matching on them must see the new values.
                // Envoy 1.40 recomputes the route itself for ABI 0.2.1 modules; asking keeps
                // that true if the ABI is ever bumped (Envoy stopped doing it for newer ABIs).
                host::clear_route_cache();
                Ok(Action::Continue)
            }
            Outcome::Reject(rejection) => {
                if rejection.reason == TokenError::UnknownKeyId.reason() {
                    self.state.borrow_mut().refresh.want_early();
                }
                host::set_property(&[properties::AUTH_REASON], rejection.reason.as_bytes())?;
                host::send_reply(&rejection.reply, client);
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
        let client = Client::of_content_type(host::request_header("content-type").as_deref());
        match self.apply(&config, client) {
            Ok(action) => action,
            Err(error) => {
                host::log(LogLevel::Error, &format!("auth failed closed: {error}"));
                let reply =
                    LocalReply::error(GrpcCode::Internal, "authentication could not be performed");
                host::send_reply(&reply, client);
                Action::Pause
            }
        }
    }
}
