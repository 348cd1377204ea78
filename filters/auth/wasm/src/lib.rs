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

use edge_auth::acl::{self, AclSource, ListChangesResponse};
use edge_auth::{
    authorize, AuthConfig, FeedPoll, KeyRefresh, KeySet, ListPublicKeysResponse, Outcome, Request,
    Restrictions, SubjectRestrictions, TokenError,
};
use edge_core::notes::{self, AuthNote};
use edge_core::{trace, Client, GrpcCode, Headers, LocalReply};
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
    /// The copy of the restrictions is complete (a first pass over the feed ended); until
    /// then, rules with an action answer 503.
    acl_ready: bool,
}

#[derive(Default)]
struct AuthRoot {
    state: Rc<RefCell<State>>,
    /// Shared-data version of the JWKS our keys were built from.
    loaded_version: Option<u32>,
    keys_call: Option<u32>,
    acl_call: Option<u32>,
    acl_poll: FeedPoll,
    /// The feed version our open poll asked from.
    acl_since: i64,
    /// When this configuration started (unix ms): the copy's age until its first sync.
    configured_ms: i64,
    metrics: host::Metrics,
}

/// Where the copy of the restrictions lives in shared data.
struct AclKeys {
    prefix: String,
}

impl AclKeys {
    fn new(source: &AclSource) -> Self {
        Self {
            prefix: format!("edge_auth.acl.{}.", source.cluster),
        }
    }
    fn subject(&self, subject: &str) -> String {
        format!("{}s.{subject}", self.prefix)
    }
    fn field(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// A number kept as decimal text in shared data (0 when unset or unreadable), and its CAS.
fn shared_number(key: &str) -> (i64, u32) {
    match host::shared_data(key) {
        Ok(Some((bytes, cas))) => (
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(0),
            cas,
        ),
        _ => (0, 0),
    }
}

fn unix_millis() -> i64 {
    host::now().map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The copy of the restrictions as requests see it.
struct SharedRestrictions<'a> {
    keys: &'a AclKeys,
    ready: bool,
}

impl Restrictions for SharedRestrictions<'_> {
    fn restricted(&self, subject: &str, action: &str) -> Option<bool> {
        if !self.ready {
            return None;
        }
        match host::shared_data(&self.keys.subject(subject)) {
            Ok(None) => Some(false),
            Ok(Some((bytes, _))) => SubjectRestrictions::decode(&bytes)
                .map(|held| held.restricts(action, AuthRoot::now())),
            Err(_) => None,
        }
    }
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
        let jwks = String::from_utf8_lossy(&jwks);
        let current = self.state.borrow().keys.clone();
        let first = current.is_none();
        match current.map_or_else(|| KeySet::from_jwks(&jwks), |keys| keys.refreshed(&jwks)) {
            Ok(keys) => {
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
            Ok(token) => {
                self.keys_call = Some(token);
                self.state.borrow_mut().refresh.started(now)
            }
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

impl AuthRoot {
    fn poll_acl(&mut self, source: &AclSource) {
        let keys = AclKeys::new(source);
        let (since, _) = shared_number(&keys.field("cursor"));
        let loaded = self.state.borrow().acl_ready;
        let request = prost::Message::encode_to_vec(&source.request(since, loaded));
        let upstream = match edge_core::grpc_upstream(&source.cluster) {
            Ok(upstream) => upstream,
            Err(error) => return host::log(LogLevel::Error, &error),
        };
        match self.dispatch_grpc_call(
            &upstream,
            &source.service,
            &source.method,
            Vec::new(),
            Some(&request),
            source.timeout(),
        ) {
            Ok(token) => {
                self.acl_call = Some(token);
                self.acl_since = since;
                self.acl_poll.started();
            }
            Err(status) => {
                self.acl_poll.finished(false, Self::now());
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "cannot call {}/{}: {status:?}",
                        source.service, source.method
                    ),
                );
            }
        }
    }

    fn on_acl_answer(&mut self, source: &AclSource, status_code: u32, response_size: usize) {
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
        match answer {
            Ok(response) => {
                self.acl_poll.finished(true, Self::now());
                self.apply_changes(source, &response);
                // Follow at once: the next change must not wait for the timer.
                self.poll_acl(source);
            }
            Err(error) => {
                self.acl_poll.finished(false, Self::now());
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "following the acl feed failed (the last copy stays enforced): {error}"
                    ),
                );
            }
        }
    }

    fn apply_changes(&mut self, source: &AclSource, response: &ListChangesResponse) {
        let keys = AclKeys::new(source);
        for change in &response.changes {
            self.apply_change(source, &keys, change);
        }
        let cursor_key = keys.field("cursor");
        if response.version < self.acl_since {
            host::log(
                LogLevel::Warn,
                &format!(
                    "the acl feed went back from version {} to {} (its database was reset?): known restrictions are kept; restart Envoy to rebuild the copy",
                    self.acl_since, response.version
                ),
            );
        }
        for _attempt in 0..8 {
            let (cursor, cas) = shared_number(&cursor_key);
            if cursor >= response.version && response.version >= self.acl_since {
                break;
            }
            match host::set_shared_data(&cursor_key, response.version.to_string().as_bytes(), cas) {
                Err(host::HostError::CAS_MISMATCH) => continue,
                _ => break,
            }
        }
        let page_full = response.changes.len() >= source.page_size as usize;
        if !page_full && !self.state.borrow().acl_ready {
            let _ = host::set_shared_data(&keys.field("ready"), b"1", 0);
            self.state.borrow_mut().acl_ready = true;
            host::log(LogLevel::Info, "restrictions loaded");
        }
        let _ = host::set_shared_data(
            &keys.field("synced_ms"),
            unix_millis().to_string().as_bytes(),
            0,
        );
    }

    /// Merges one change into its subject's entry; retried when another worker wrote the entry
    /// in between.
    fn apply_change(&mut self, source: &AclSource, keys: &AclKeys, change: &acl::Change) {
        let key = keys.subject(&change.subject);
        for _attempt in 0..8 {
            let (mut held, cas) = match host::shared_data(&key) {
                Ok(Some((bytes, cas))) => match SubjectRestrictions::decode(&bytes) {
                    Some(held) => (held, cas),
                    None => {
                        // Requests for this subject already fail closed on it.
                        return host::log(LogLevel::Error, &format!("unreadable acl entry {key}"));
                    }
                },
                Ok(None) => {
                    if !self.count_new_subject(source, keys) {
                        return;
                    }
                    (SubjectRestrictions::default(), 0)
                }
                Err(error) => {
                    return host::log(LogLevel::Error, &format!("cannot read {key}: {error}"))
                }
            };
            if !held.merge(change) {
                return;
            }
            match host::set_shared_data(&key, &held.encode(), cas) {
                Err(host::HostError::CAS_MISMATCH) => continue,
                Err(error) => {
                    return host::log(LogLevel::Error, &format!("cannot write {key}: {error}"))
                }
                Ok(()) => return,
            }
        }
    }

    /// Room for one more subject? Counted in shared data; at `max_subjects` the change is
    /// refused loudly rather than evicting someone else's restriction.
    fn count_new_subject(&mut self, source: &AclSource, keys: &AclKeys) -> bool {
        let count_key = keys.field("subjects");
        for _attempt in 0..8 {
            let (count, cas) = shared_number(&count_key);
            if u64::try_from(count).unwrap_or(0) >= source.max_subjects {
                self.metrics.increment(acl::metrics::OVERFLOW);
                host::log(
                    LogLevel::Error,
                    &format!(
                        "acl copy is full ({} subjects): a restriction was not applied; raise acl.max_subjects",
                        source.max_subjects
                    ),
                );
                return false;
            }
            match host::set_shared_data(&count_key, (count + 1).to_string().as_bytes(), cas) {
                Err(host::HostError::CAS_MISMATCH) => continue,
                _ => return true,
            }
        }
        true
    }

    /// Once a second: poll again if due, note that the copy is current, export the gauges.
    fn tick_acl(&mut self, source: &AclSource) {
        let keys = AclKeys::new(source);
        if !self.state.borrow().acl_ready
            && matches!(host::shared_data(&keys.field("ready")), Ok(Some(_)))
        {
            self.state.borrow_mut().acl_ready = true;
        }
        if self.acl_poll.due(source, Self::now()) {
            self.poll_acl(source);
        }
        let now = unix_millis();
        if self.acl_poll.current() {
            let _ = host::set_shared_data(&keys.field("synced_ms"), now.to_string().as_bytes(), 0);
        }
        let (synced, _) = shared_number(&keys.field("synced_ms"));
        let age_seconds = if synced == 0 {
            0
        } else {
            (now - synced).max(0) / 1000
        };
        self.metrics.set(
            acl::metrics::SYNC_AGE,
            u64::try_from(age_seconds).unwrap_or(0),
        );
        let (version, _) = shared_number(&keys.field("cursor"));
        self.metrics
            .set(acl::metrics::VERSION, u64::try_from(version).unwrap_or(0));
        let (subjects, _) = shared_number(&keys.field("subjects"));
        self.metrics
            .set(acl::metrics::SUBJECTS, u64::try_from(subjects).unwrap_or(0));
    }
}

impl Context for AuthRoot {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(config) = self.config() else { return };
        if self.acl_call == Some(token_id) {
            self.acl_call = None;
            if let Some(source) = &config.acl {
                self.on_acl_answer(source, status_code, response_size);
            }
            return;
        }
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
        {
            Ok(config) => Rc::new(config),
            Err(error) => {
                host::log(LogLevel::Error, &error);
                return false;
            }
        };
        self.state.borrow_mut().config = Some(config.clone());
        self.configured_ms = unix_millis();
        self.set_tick_period(TICK);
        self.on_tick();
        true
    }

    fn on_tick(&mut self) {
        let Some(config) = self.config() else { return };
        self.sync_from_shared_data(&config);
        if self.fetch_due(&config) {
            self.fetch_keys(&config);
        }
        if let Some(source) = &config.acl {
            self.tick_acl(source);
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
    fn decide(&self, config: &AuthConfig, client: Client, headers: &Headers) -> Outcome {
        let method = headers.get(":method").unwrap_or_default();
        let path = headers.get(":path").unwrap_or_default();
        let authorization = headers.all("authorization");
        let cookies = if config.token_cookies.is_empty() {
            Vec::new()
        } else {
            headers.all("cookie")
        };
        let cors_preflight = edge_core::is_cors_preflight(
            method,
            headers.get("origin"),
            headers.get("access-control-request-method"),
        );
        let request_id = if config.rollouts.is_empty() {
            None
        } else {
            headers.get("x-request-id")
        };
        let (keys, acl_ready) = {
            let state = self.state.borrow();
            (state.keys.clone(), state.acl_ready)
        };
        let acl_keys = config.acl.as_ref().map(AclKeys::new);
        let restrictions: &dyn Restrictions = match &acl_keys {
            Some(keys) => &SharedRestrictions {
                keys,
                ready: acl_ready,
            },
            None => &edge_auth::NoRestrictions,
        };
        authorize(
            config,
            keys.as_deref(),
            restrictions,
            &Request {
                method,
                path,
                authorization: &authorization,
                cookies: &cookies,
                client,
                cors_preflight,
                request_id,
            },
        )
    }

    fn apply(
        &self,
        config: &AuthConfig,
        client: Client,
        headers: &Headers,
    ) -> Result<Action, host::HostError> {
        // A client must never choose its identity or its backend: drop its copies first (the
        // backend header means something only while a rollout routes on it). Only those it
        // sent: a removal is a host call, and the snapshot says what is there.
        let mut client_copies = std::iter::once(&config.subject_header)
            .chain(config.forward_claims.values())
            .chain((!config.rollouts.is_empty()).then_some(&config.backend_header))
            .filter(|name| headers.contains(name));
        client_copies.try_for_each(|name| host::remove_request_header(name))?;
        match self.decide(config, client, headers) {
            Outcome::Allow {
                subject,
                forward,
                backend,
            } => {
                if let Some(cluster) = backend {
                    host::set_request_header(&config.backend_header, &cluster)?;
                }
                if let Some(subject) = subject {
                    host::set_request_header(&config.subject_header, &subject)?;
                    let note = AuthNote {
                        subject: subject.clone(),
                        reason: String::new(),
                    };
                    host::set_property(&[notes::AUTH], &notes::encode(&note))?;
                    for (header, value) in &forward {
                        host::set_request_header(header, value)?;
                    }
                    if !config.keep_authorization && headers.contains("authorization") {
                        // The backends trust the identity headers; the token stays at the edge.
                        host::remove_request_header("authorization")?;
                    }
                }
                // The headers changed, and a rollout's routes match on them: Envoy 1.40
                // recomputes the route after a Wasm header change for ABI 0.2.1 modules, so
                // asking again (`clear_route_cache`) would cost 6.6k instructions for nothing.
                // Envoy stopped doing it for newer ABIs; tests/e2e/tests/rollout.rs (gRPC
                // clients follow auth's choice) fails if a bump ever loses it.
                Ok(Action::Continue)
            }
            Outcome::Reject(rejection) => {
                if rejection.reason == TokenError::UnknownKeyId.reason() {
                    self.state.borrow_mut().refresh.want_early();
                }
                let note = AuthNote {
                    subject: String::new(),
                    reason: rejection.reason.to_string(),
                };
                host::set_property(&[notes::AUTH], &notes::encode(&note))?;
                // For the edge span (Envoy's tracer reads it when the span ends); the request
                // goes no further. Diagnostics only: a failure must not turn the refusal into
                // a 500.
                let _ = host::set_request_header(trace::AUTH_REASON_HEADER, rejection.reason);
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
        // Unreadable headers fail closed: without them the client's copies of the identity
        // headers could not be removed.
        let headers = host::request_headers();
        let client = Client::of_content_type(
            headers
                .as_ref()
                .ok()
                .and_then(|headers| headers.get("content-type")),
        );
        match headers.and_then(|headers| self.apply(&config, client, &headers)) {
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
