//! proxy-wasm glue of the auth filter: reads the request, asks `edge_auth::authorize`, and
//! either forwards the verified identity or answers with the rejection.
//!
//! Keys: the authority's JWKS is fetched over gRPC (`ListPublicKeys`) by whichever worker is
//! due, and published to every worker through shared data; each worker's timer (1 s) picks up
//! a newer JWKS, retries until the first fetch succeeds, refreshes every `refresh_seconds`,
//! and, when a token named an unknown `kid`, fetches early — at most once per
//! `min_refresh_seconds`. A failed fetch keeps the keys already known.
//!
//! Restrictions: every worker long-polls the acl service's change feed (`ListChanges`) and
//! merges what it gets into shared data, one key per subject (see `edge_auth::acl`); a
//! request on a rule with an `action` reads its own subject's key, one host call. A failed
//! poll is retried every `retry_seconds` while the last copy keeps being enforced.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edge_auth::acl::{self, Follower, ListChangesResponse};
use edge_auth::request::{self, Verdict};
use edge_auth::{AuthConfig, KeyRefresh, KeySet, ListPublicKeysResponse};
use edge_core::host::{Host, SharedStore};
use edge_host::{self as host, WasmHost};
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

/// What the root context learns (configuration, keys, the acl copy) and every request reads.
#[derive(Default)]
struct State {
    config: Option<Rc<AuthConfig>>,
    keys: Option<Rc<KeySet>>,
    /// When to fetch keys; requests whose token names an unknown `kid` ask for it early.
    refresh: KeyRefresh,
    /// This worker's follower of the acl feed, and its handle on the shared copy.
    acl: Option<Follower<Rc<WasmHost>>>,
}

#[derive(Default)]
struct AuthRoot {
    host: Rc<WasmHost>,
    state: Rc<RefCell<State>>,
    /// Shared-data version of the JWKS our keys were built from.
    loaded_version: Option<u32>,
    keys_call: Option<u32>,
    acl_call: Option<u32>,
}

/// Envoy's clock; the epoch if Envoy will not say, which only makes a fetch due sooner.
fn now(host: &WasmHost) -> SystemTime {
    SystemTime::UNIX_EPOCH + host.now().unwrap_or_default()
}

impl AuthRoot {
    fn config(&self) -> Option<Rc<AuthConfig>> {
        self.state.borrow().config.clone()
    }

    fn shared_key(config: &AuthConfig) -> String {
        format!("edge_auth.jwks.{}", config.authority.cluster)
    }

    /// Loads the JWKS another worker (or we) published, if it is newer than ours.
    fn sync_from_shared_data(&mut self, config: &AuthConfig) {
        let Ok(Some((jwks, version))) = self.host.get(&Self::shared_key(config)) else {
            return;
        };
        if self.loaded_version == Some(version) {
            return;
        }
        let jwks = String::from_utf8_lossy(&jwks);
        let current = self.state.borrow().keys.clone();
        let first = current.is_none();
        match current.map_or_else(|| KeySet::from_jwks(&jwks), |keys| keys.refreshed(&jwks)) {
            Ok(keys) => {
                let mut state = self.state.borrow_mut();
                state.keys = Some(Rc::new(keys));
                state.refresh.loaded(now(&self.host));
                self.loaded_version = Some(version);
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
            .due(&config.authority, state.keys.is_some(), now(&self.host))
    }

    /// Sends one unary call; the answer comes to `on_grpc_call_response`.
    fn call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, String> {
        let upstream = host::grpc_upstream(cluster)?;
        self.dispatch_grpc_call(
            &upstream,
            service,
            method,
            Vec::new(),
            Some(message),
            timeout,
        )
        .map_err(|status| format!("cannot call {service}/{method}: {status:?}"))
    }

    fn fetch_keys(&mut self, config: &AuthConfig) {
        let source = &config.authority;
        let now = now(&self.host);
        match self.call(
            &source.cluster,
            &source.service,
            &source.method,
            &[],
            Duration::from_millis(source.timeout_ms),
        ) {
            Ok(token) => {
                self.keys_call = Some(token);
                self.state.borrow_mut().refresh.started(now)
            }
            Err(error) => {
                self.state.borrow_mut().refresh.attempted(now);
                host::log(LogLevel::Warn, &error)
            }
        }
    }

    fn publish_keys(&mut self, config: &AuthConfig, response_size: usize) -> Result<(), String> {
        let body = host::grpc_received_message(response_size).map_err(|e| e.to_string())?;
        let response =
            ListPublicKeysResponse::decode(body.as_slice()).map_err(|e| e.to_string())?;
        // Parse before publishing: a bad JWKS must not replace good keys anywhere.
        KeySet::from_jwks(&response.jwks)?;
        self.host
            .set(&Self::shared_key(config), response.jwks.as_bytes(), 0)
            .map_err(|e| format!("cannot share keys: {e}"))?;
        self.sync_from_shared_data(config);
        Ok(())
    }

    /// Sends the poll the follower asks for.
    fn poll_acl(&mut self, poll: &acl::ListChangesRequest) {
        let mut state = self.state.borrow_mut();
        let Some(follower) = state.acl.as_mut() else {
            return;
        };
        let source = follower.source();
        match self.call(
            &source.cluster,
            &source.service,
            &source.method,
            &poll.encode_to_vec(),
            source.timeout(),
        ) {
            Ok(token) => {
                self.acl_call = Some(token);
                follower.sent(poll);
            }
            Err(error) => {
                follower.not_sent(now(&self.host));
                host::log(LogLevel::Warn, &error);
            }
        }
    }

    fn on_acl_answer(&mut self, status_code: u32, response_size: usize) {
        let answer = if status_code == 0 {
            host::grpc_received_message(response_size)
                .map_err(|e| e.to_string())
                .and_then(|body| {
                    ListChangesResponse::decode(body.as_slice()).map_err(|e| e.to_string())
                })
        } else {
            Err(format!(
                "gRPC status {status_code}: {}",
                host::grpc_message()
            ))
        };
        let now = now(&self.host);
        let Some(followed) = self
            .state
            .borrow_mut()
            .acl
            .as_mut()
            .map(|follower| follower.on_answer(answer, now))
        else {
            return;
        };
        for event in &followed.events {
            self.host.log(event.level(), &event.to_string());
            if matches!(event, acl::Event::Full { .. }) {
                self.host.increment_counter(acl::metrics::OVERFLOW);
            }
        }
        if let Some(poll) = followed.next {
            self.poll_acl(&poll);
        }
    }

    /// Once a second: poll again if due, export the copy's gauges.
    fn tick_acl(&mut self) {
        let now = now(&self.host);
        let Some(tick) = self
            .state
            .borrow_mut()
            .acl
            .as_mut()
            .map(|follower| follower.tick(now))
        else {
            return;
        };
        for (gauge, value) in tick.gauges {
            self.host.set_gauge(gauge, value);
        }
        if let Some(poll) = tick.poll {
            self.poll_acl(&poll);
        }
    }
}

impl Context for AuthRoot {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if self.acl_call == Some(token_id) {
            self.acl_call = None;
            return self.on_acl_answer(status_code, response_size);
        }
        let Some(config) = self.config() else { return };
        if self.keys_call != Some(token_id) {
            return;
        }
        self.keys_call = None;
        self.state.borrow_mut().refresh.finished();
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
            .and_then(|config| {
                host::check_clusters(config.clusters())
                    .map_err(|e| format!("invalid auth configuration: {e}"))?;
                Ok(config)
            }) {
            Ok(config) => Rc::new(config),
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
        {
            let mut state = self.state.borrow_mut();
            state.acl = config
                .acl
                .clone()
                .map(|source| Follower::new(source, self.host.clone()));
            state.config = Some(config);
        }
        self.on_tick();
        true
    }

    fn on_tick(&mut self) {
        let Some(config) = self.config() else { return };
        self.sync_from_shared_data(&config);
        if self.fetch_due(&config) {
            self.fetch_keys(&config);
        }
        self.tick_acl();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthFilter {
            host: self.host.clone(),
            state: self.state.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuthFilter {
    host: Rc<WasmHost>,
    state: Rc<RefCell<State>>,
}

impl Context for AuthFilter {}

impl HttpContext for AuthFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (verdict, wants_keys) = {
            let state = self.state.borrow();
            let Some(config) = &state.config else {
                // Unconfigured means Envoy refused our configuration; never let traffic through.
                host::reset_request();
                return Action::Pause;
            };
            let keys = state.keys.as_deref();
            match &state.acl {
                Some(follower) => request::handle(
                    &*self.host,
                    config,
                    keys,
                    &follower.restrictions(|| now(&self.host)),
                ),
                None => request::handle(&*self.host, config, keys, &edge_auth::NoRestrictions),
            }
        };
        if wants_keys {
            self.state.borrow_mut().refresh.want_early();
        }
        match verdict {
            Verdict::Continue => Action::Continue,
            Verdict::Stop => Action::Pause,
        }
    }
}
