//! What one worker of the auth filter keeps across requests, for any host: the signing keys
//! and the acl copy, kept current from its timer and its gRPC answers ([`Root`]), and read by
//! every request ([`Shared::on_request_headers`]). The glue of a target only forwards the
//! host's callbacks.
//!
//! Keys: the authority's JWKS is fetched over gRPC (`ListPublicKeys`) by whichever worker is
//! due, and published to every worker through shared data; each worker's timer picks up a newer
//! JWKS, retries until the first fetch succeeds, refreshes every `refresh_seconds`, and, when a
//! token named an unknown `kid`, fetches early — at most once per `min_refresh_seconds`. A
//! failed fetch keeps the keys already known.
//!
//! Restrictions: every worker long-polls the acl service's change feed (`ListChanges`) and
//! merges what it gets into shared data, one key per subject (see [`crate::acl`]); a request on
//! a rule with an `action` reads its own subject's key, one host call. A failed poll is retried
//! every `retry_seconds` while the last copy keeps being enforced.

use crate::acl::{self, Follower, ListChangesResponse};
use crate::es256::{self, SignatureCheck};
use crate::request;
use crate::token_cache::SharedTokens;
use crate::{AuthConfig, KeyRefresh, KeySet, ListPublicKeysResponse};
use edge_core::host::{Flow, GrpcRequest, Host, Level, SharedStore};
use prost::Message;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// What the root learns (configuration, keys, the acl copy) and every request reads.
pub struct Shared<H: Host> {
    config: Rc<AuthConfig>,
    keys: Option<Rc<KeySet>>,
    /// When to fetch keys; requests whose token names an unknown `kid` ask for it early.
    refresh: KeyRefresh,
    /// This worker's follower of the acl feed, and its handle on the shared copy.
    acl: Option<Follower<Rc<H>>>,
}

impl<H: Host> Shared<H> {
    /// Decides one request from its headers and carries the decision out.
    pub fn on_request_headers(this: &RefCell<Self>, host: &H) -> Flow {
        let (flow, wants_keys) = {
            let shared = this.borrow();
            let keys = shared.keys.as_deref();
            match &shared.acl {
                Some(follower) => request::handle(
                    host,
                    &shared.config,
                    keys,
                    &follower.restrictions(|| now(host)),
                ),
                None => request::handle(host, &shared.config, keys, &crate::NoRestrictions),
            }
        };
        if wants_keys {
            this.borrow_mut().refresh.want_early();
        }
        flow
    }
}

/// The host's clock; the epoch if it will not say, which only makes a fetch due sooner.
fn now<H: Host>(host: &H) -> SystemTime {
    SystemTime::UNIX_EPOCH + host.now().unwrap_or_default()
}

/// Sends a unary call to (cluster, service, method); the error says what could not be called.
fn unary<H: Host>(
    host: &H,
    (cluster, service, method): (&str, &str, &str),
    message: &[u8],
    timeout: Duration,
) -> Result<u32, String> {
    host.grpc_call(
        GrpcRequest {
            cluster,
            service,
            method,
            metadata: Vec::new(),
            messages: &[message],
        },
        timeout,
    )
    .map_err(|error| format!("cannot call {service}/{method}: {error}"))
}

/// One worker's root: its timer and the answers to its calls keep [`Shared`] current.
///
/// A root either calls (proxy-wasm: every worker's does, deduplicated through shared data) or
/// follows ([`Root::follower`]: a native module's workers, whose proxy lends callouts only to
/// the main thread, where one calling root runs): a follower picks up the keys and the acl copy
/// the calling root publishes, and passes on its requests' wish for an early key fetch.
pub struct Root<H: Host> {
    host: Rc<H>,
    /// How this worker checks signatures: the host's crypto where it has it.
    check: Rc<dyn SignatureCheck>,
    /// The verified tokens every worker shares, if configured.
    shared_tokens: Option<SharedTokens>,
    shared: Rc<RefCell<Shared<H>>>,
    /// Shared-data version of the JWKS our keys were built from.
    loaded_version: Option<u32>,
    keys_call: Option<u32>,
    acl_call: Option<u32>,
    /// This root sends the key fetches and acl polls (else it follows one that does).
    calls: bool,
}

impl<H: Host + 'static> Root<H> {
    /// A worker for `config`; call [`Root::on_tick`] to start fetching.
    pub fn new(host: Rc<H>, config: AuthConfig) -> Self {
        Self::with_calls(host, config, true)
    }

    /// A worker that never calls: it follows what a calling root publishes in shared data.
    pub fn follower(host: Rc<H>, config: AuthConfig) -> Self {
        Self::with_calls(host, config, false)
    }

    fn with_calls(host: Rc<H>, config: AuthConfig, calls: bool) -> Self {
        let check = es256::choose(&host);
        host.log(
            Level::Info,
            &format!("verifying token signatures with {}", check.name()),
        );
        let acl = config
            .acl
            .clone()
            .map(|source| Follower::new(source, host.clone()));
        let store: Rc<dyn SharedStore> = host.clone();
        let shared_tokens = SharedTokens::new(store, &config);
        Self {
            shared: Rc::new(RefCell::new(Shared {
                config: Rc::new(config),
                keys: None,
                refresh: KeyRefresh::default(),
                acl,
            })),
            host,
            check,
            shared_tokens,
            loaded_version: None,
            keys_call: None,
            acl_call: None,
            calls,
        }
    }

    /// Adds the signatures checked since the last call to the proxy's counter: on each tick,
    /// or after each request where a counter update is as cheap as the check (a native host).
    pub fn count_checks(&self) {
        let checks = self
            .shared
            .borrow()
            .keys
            .as_ref()
            .map_or(0, |keys| keys.take_checks());
        if checks > 0 {
            self.host
                .add_to_counter(crate::metrics::SIGNATURE_CHECKS, checks);
        }
    }

    /// Keys are loaded and the acl copy (if one is configured) is complete: until then a
    /// follower is worth ticking on every request.
    pub fn complete(&self) -> bool {
        let shared = self.shared.borrow();
        shared.keys.is_some() && shared.acl.as_ref().is_none_or(Follower::ready)
    }

    /// What the requests of this worker read.
    pub fn shared(&self) -> Rc<RefCell<Shared<H>>> {
        self.shared.clone()
    }

    /// The timer: count the signatures checked, pick up newer keys, fetch if due, poll the
    /// acl feed if due.
    pub fn on_tick(&mut self) {
        self.count_checks();
        self.sync_keys();
        if !self.calls {
            let wants_keys = self.shared.borrow_mut().refresh.take_early();
            if wants_keys {
                // Lost, it is asked for again by the next unknown kid.
                let _ = self.host.set(&self.early_key(), b"1", 0);
            }
            self.tick_acl();
            return;
        }
        if let Ok(Some((wish, _))) = self.host.get(&self.early_key()) {
            if wish == b"1" {
                self.shared.borrow_mut().refresh.want_early();
                let _ = self.host.set(&self.early_key(), b"0", 0);
            }
        }
        let due = {
            let shared = self.shared.borrow();
            let have_keys = shared.keys.is_some();
            shared
                .refresh
                .due(&shared.config.authority, have_keys, now(&*self.host))
        };
        if due {
            self.fetch_keys();
        }
        self.tick_acl();
    }

    /// The answer to one of our unary calls (`response_size` bytes, or a failure status).
    pub fn on_grpc_answer(&mut self, token: u32, status_code: u32, response_size: usize) {
        if self.acl_call == Some(token) {
            self.acl_call = None;
            self.on_acl_answer(status_code, response_size);
        } else if self.keys_call == Some(token) {
            self.keys_call = None;
            self.shared.borrow_mut().refresh.finished();
            if status_code != 0 {
                // Keep whatever keys we had: an authority outage must not lock everyone out.
                self.host.log(
                    Level::Warn,
                    &format!("fetching signing keys failed with gRPC status {status_code}"),
                );
            } else if let Err(error) = self.publish_keys(response_size) {
                self.host.log(
                    Level::Warn,
                    &format!("ignoring fetched signing keys: {error}"),
                );
            }
        }
    }

    /// Where followers ask the calling root for an early key fetch.
    fn early_key(&self) -> String {
        format!("{}.early", self.shared_key())
    }

    fn shared_key(&self) -> String {
        format!(
            "edge_auth.jwks.{}",
            self.shared.borrow().config.authority.cluster
        )
    }

    /// Loads the JWKS another worker (or we) published, if it is newer than ours.
    fn sync_keys(&mut self) {
        let Ok(Some((jwks, version))) = self.host.get(&self.shared_key()) else {
            return;
        };
        if self.loaded_version == Some(version) {
            return;
        }
        let jwks = String::from_utf8_lossy(&jwks);
        let current = self.shared.borrow().keys.clone();
        let first = current.is_none();
        let built = match current {
            Some(keys) => keys.refreshed(&jwks),
            None => KeySet::from_jwks(&jwks).map(|keys| {
                keys.checked_by(self.check.clone())
                    .sharing(self.shared_tokens.clone())
            }),
        };
        match built {
            Ok(keys) => {
                let mut shared = self.shared.borrow_mut();
                shared.keys = Some(Rc::new(keys));
                shared.refresh.loaded(now(&*self.host));
                self.loaded_version = Some(version);
                if first {
                    self.host.log(Level::Info, "signing keys loaded");
                }
            }
            Err(error) => self
                .host
                .log(Level::Warn, &format!("ignoring shared JWKS: {error}")),
        }
    }

    fn fetch_keys(&mut self) {
        let now = now(&*self.host);
        let config = self.shared.borrow().config.clone();
        let source = &config.authority;
        let sent = unary(
            &*self.host,
            (&source.cluster, &source.service, &source.method),
            &[],
            Duration::from_millis(source.timeout_ms),
        );
        let mut shared = self.shared.borrow_mut();
        match sent {
            Ok(token) => {
                self.keys_call = Some(token);
                shared.refresh.started(now);
            }
            Err(error) => {
                shared.refresh.attempted(now);
                self.host.log(Level::Warn, &error);
            }
        }
    }

    fn publish_keys(&mut self, response_size: usize) -> Result<(), String> {
        let body = self
            .host
            .grpc_received(response_size)
            .map_err(|e| e.to_string())?;
        let response =
            ListPublicKeysResponse::decode(body.as_slice()).map_err(|e| e.to_string())?;
        // Parse before publishing: a bad JWKS must not replace good keys anywhere.
        KeySet::from_jwks(&response.jwks)?;
        self.host
            .set(&self.shared_key(), response.jwks.as_bytes(), 0)
            .map_err(|e| format!("cannot share keys: {e}"))?;
        self.sync_keys();
        Ok(())
    }

    /// Sends the poll the follower asks for.
    fn poll_acl(&mut self, poll: &acl::ListChangesRequest) {
        let mut shared = self.shared.borrow_mut();
        let Some(follower) = shared.acl.as_mut() else {
            return;
        };
        let message = poll.encode_to_vec();
        let source = follower.source();
        let sent = unary(
            &*self.host,
            (&source.cluster, &source.service, &source.method),
            &message,
            source.timeout(),
        );
        match sent {
            Ok(token) => {
                self.acl_call = Some(token);
                follower.sent(poll);
            }
            Err(error) => {
                follower.not_sent(now(&*self.host));
                self.host.log(Level::Warn, &error);
            }
        }
    }

    fn on_acl_answer(&mut self, status_code: u32, response_size: usize) {
        let answer = if status_code == 0 {
            self.host
                .grpc_received(response_size)
                .map_err(|e| e.to_string())
                .and_then(|body| {
                    ListChangesResponse::decode(body.as_slice()).map_err(|e| e.to_string())
                })
        } else {
            Err(format!(
                "gRPC status {status_code}: {}",
                self.host.grpc_status_message()
            ))
        };
        let now = now(&*self.host);
        let Some(followed) = self
            .shared
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

    /// Polls again if due, and exports the copy's gauges.
    fn tick_acl(&mut self) {
        let now = now(&*self.host);
        let Some(tick) = self
            .shared
            .borrow_mut()
            .acl
            .as_mut()
            .map(|follower| follower.tick(now))
        else {
            return;
        };
        if !self.calls {
            return;
        }
        for (gauge, value) in tick.gauges {
            self.host.set_gauge(gauge, value);
        }
        if let Some(poll) = tick.poll {
            self.poll_acl(&poll);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Change;
    use edge_core::host::{Call, HostError, RecordingHost, SharedStore};
    use jwt_simple::prelude::*;

    const CONFIG: &str = r#"{
        "authority": {"cluster": "authority", "refresh_seconds": 300, "retry_seconds": 5,
                      "min_refresh_seconds": 30},
        "acl": {"cluster": "acl", "retry_seconds": 5},
        "rules": [
            {"path": "/catalog/items/*:purchase", "policy": "authenticated", "action": "buy"},
            {"path": "/**", "policy": "authenticated"}
        ]
    }"#;

    fn at(seconds: u64) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(1_700_000_000 + seconds))
    }

    fn jwks(key: &ES256KeyPair) -> String {
        let jwk: serde_json::Value = serde_json::from_str(&key.public_key().to_jwk()).unwrap();
        serde_json::json!({ "keys": [jwk] }).to_string()
    }

    fn token(key: &ES256KeyPair, subject: &str) -> String {
        key.sign(Claims::create(jwt_simple::prelude::Duration::from_mins(10)).with_subject(subject))
            .unwrap()
    }

    /// The calls to `path` made so far, as (token, message).
    fn calls_to(host: &RecordingHost, wanted: &str) -> Vec<(u32, Vec<u8>)> {
        host.grpc_calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Grpc {
                    token,
                    path,
                    mut messages,
                    ..
                } if path == wanted && messages.len() == 1 => Some((token, messages.remove(0))),
                _ => None,
            })
            .collect()
    }

    const KEYS: &str = "/authority.AuthorityService/ListPublicKeys";

    fn answer(host: &RecordingHost, message: Vec<u8>) -> usize {
        let size = message.len();
        host.answer.borrow_mut().message = message;
        size
    }

    fn request(shared: &RefCell<Shared<RecordingHost>>, path: &str, token: &str) -> Flow {
        let host = RecordingHost::with_headers(&[
            (":method", "POST"),
            (":path", path),
            ("authorization", &format!("Bearer {token}")),
        ]);
        host.now.set(at(100));
        Shared::on_request_headers(shared, &host)
    }

    fn root(host: &Rc<RecordingHost>) -> Root<RecordingHost> {
        Root::new(
            host.clone(),
            AuthConfig::from_json(CONFIG.as_bytes()).unwrap(),
        )
    }

    /// A worker whose first key fetch (at time 0) was answered with a key named `kid`.
    fn worker_with_keys(kid: &str) -> (Rc<RecordingHost>, ES256KeyPair, Root<RecordingHost>) {
        let host = Rc::new(RecordingHost::default());
        host.now.set(at(0));
        let key = ES256KeyPair::generate().with_key_id(kid);
        let mut worker = root(&host);
        worker.on_tick();
        let size = answer(
            &host,
            ListPublicKeysResponse { jwks: jwks(&key) }.encode_to_vec(),
        );
        worker.on_grpc_answer(calls_to(&host, KEYS)[0].0, 0, size);
        (host, key, worker)
    }

    #[test]
    fn keys_fetched_by_one_worker_serve_every_worker() {
        let host = Rc::new(RecordingHost::default());
        host.now.set(at(0));
        let key = ES256KeyPair::generate().with_key_id("k1");
        let ada = token(&key, "ada");
        let mut first = root(&host);
        first.on_tick();
        let fetches = calls_to(&host, KEYS);
        assert_eq!(fetches.len(), 1, "{:?}", host.calls());
        assert!(
            matches!(&host.grpc_calls()[0], Call::Grpc { cluster, timeout: Some(_), .. } if cluster == "authority")
        );
        let shared = first.shared();
        assert_eq!(
            request(&shared, "/catalog/items", &ada),
            Flow::Pause,
            "no keys yet: refused"
        );

        let size = answer(
            &host,
            ListPublicKeysResponse { jwks: jwks(&key) }.encode_to_vec(),
        );
        first.on_grpc_answer(fetches[0].0, 0, size);
        assert_eq!(request(&shared, "/catalog/items", &ada), Flow::Continue);

        // Another worker (sharing the proxy's shared data) loads them without a call.
        let mut second = root(&host);
        second.on_tick();
        assert_eq!(calls_to(&host, KEYS).len(), 1, "one fetch for every worker");
        assert_eq!(request(&shared, "/catalog/items", &ada), Flow::Continue);
        assert_eq!(
            request(&second.shared(), "/catalog/items", &ada),
            Flow::Continue
        );
        // One signature checked per token for the whole proxy, counted on the next ticks.
        first.on_tick();
        second.on_tick();
        let checks = host
            .calls()
            .iter()
            .filter(|call| matches!(call, Call::Counter(name) if name == crate::metrics::SIGNATURE_CHECKS))
            .count();
        assert_eq!(checks, 1, "ada's token, checked once for both workers");
    }

    #[test]
    fn a_failed_or_bad_fetch_keeps_the_keys_and_is_tried_again_later() {
        let (host, key, mut worker) = worker_with_keys("k1");

        // The refresh fails: the keys stay.
        host.now.set(at(300));
        worker.on_tick();
        let refresh = calls_to(&host, KEYS);
        assert_eq!(refresh.len(), 2);
        worker.on_grpc_answer(refresh[1].0, 14, 0);
        assert!(host.calls().iter().any(|call| matches!(call,
            Call::Log(Level::Warn, line) if line.contains("gRPC status 14"))));
        let shared = worker.shared();
        assert_eq!(request(&shared, "/x", &token(&key, "ada")), Flow::Continue);

        // A JWKS that does not parse is not published: no worker loses its keys.
        host.now.set(at(600));
        worker.on_tick();
        let refresh = calls_to(&host, KEYS);
        assert_eq!(refresh.len(), 3);
        let size = answer(
            &host,
            ListPublicKeysResponse {
                jwks: "{\"keys\": 1}".into(),
            }
            .encode_to_vec(),
        );
        worker.on_grpc_answer(refresh[2].0, 0, size);
        assert!(host.calls().iter().any(|call| matches!(call,
            Call::Log(Level::Warn, line) if line.starts_with("ignoring fetched signing keys"))));
        let (published, _) = host.get("edge_auth.jwks.authority").unwrap().unwrap();
        assert_eq!(published, jwks(&key).as_bytes());
        assert_eq!(request(&shared, "/x", &token(&key, "ada")), Flow::Continue);

        // A call that cannot be sent counts as an attempt: the next one waits retry_seconds…
        let mut cold = root(&Rc::new(RecordingHost::default()));
        cold.host
            .failing_grpc
            .set(Some(HostError::INTERNAL_FAILURE));
        cold.host.now.set(at(0));
        cold.on_tick();
        assert!(cold.host.calls().iter().any(|call| matches!(call,
            Call::Log(Level::Warn, line) if line.contains("cannot call authority.AuthorityService/ListPublicKeys"))));
        cold.host.failing_grpc.set(None);
        cold.host.now.set(at(4));
        cold.on_tick();
        assert!(
            calls_to(&cold.host, KEYS).is_empty(),
            "not before retry_seconds"
        );
        cold.host.now.set(at(5));
        cold.on_tick();
        assert_eq!(calls_to(&cold.host, KEYS).len(), 1);
        // …and an answer to a call we no longer wait for is ignored.
        cold.on_grpc_answer(99, 0, 0);
    }

    #[test]
    fn an_unknown_key_id_fetches_early_but_not_more_often_than_min_refresh() {
        let (host, _old, mut worker) = worker_with_keys("old");
        let new = ES256KeyPair::generate().with_key_id("new");
        let shared = worker.shared();

        host.now.set(at(10));
        assert_eq!(request(&shared, "/x", &token(&new, "ada")), Flow::Pause);
        worker.on_tick();
        assert_eq!(
            calls_to(&host, KEYS).len(),
            1,
            "min_refresh_seconds since the last fetch has not passed"
        );
        host.now.set(at(30));
        worker.on_tick();
        let fetches = calls_to(&host, KEYS);
        assert_eq!(fetches.len(), 2, "fetched early");
        let size = answer(
            &host,
            ListPublicKeysResponse { jwks: jwks(&new) }.encode_to_vec(),
        );
        worker.on_grpc_answer(fetches[1].0, 0, size);
        assert_eq!(request(&shared, "/x", &token(&new, "ada")), Flow::Continue);
    }

    #[test]
    fn a_follower_never_calls_picks_up_what_the_caller_publishes_and_passes_on_early_wishes() {
        let (host, old, mut caller) = worker_with_keys("old");
        let mut follower = Root::follower(
            host.clone(),
            AuthConfig::from_json(CONFIG.as_bytes()).unwrap(),
        );
        assert!(!follower.complete());
        follower.on_tick();
        let shared = follower.shared();
        assert_eq!(request(&shared, "/x", &token(&old, "ada")), Flow::Continue);

        // A token with an unknown kid on the follower's worker: the caller fetches early.
        let new = ES256KeyPair::generate().with_key_id("new");
        host.now.set(at(30));
        assert_eq!(request(&shared, "/x", &token(&new, "ada")), Flow::Pause);
        follower.on_tick();
        caller.on_tick();
        let fetches = calls_to(&host, KEYS);
        assert_eq!(fetches.len(), 2, "fetched early for the follower");
        let size = answer(
            &host,
            ListPublicKeysResponse { jwks: jwks(&new) }.encode_to_vec(),
        );
        caller.on_grpc_answer(fetches[1].0, 0, size);
        follower.on_tick();
        assert_eq!(request(&shared, "/x", &token(&new, "ada")), Flow::Continue);
        caller.on_tick();
        assert_eq!(calls_to(&host, KEYS).len(), 2, "the wish was taken once");
        let acl_polls = |host: &RecordingHost| {
            host.grpc_calls()
                .iter()
                .filter(|call| matches!(call, Call::Grpc { cluster, .. } if cluster == "acl"))
                .count()
        };
        let polls = acl_polls(&host);
        host.now.set(at(3000));
        follower.on_tick();
        assert_eq!(
            acl_polls(&host),
            polls,
            "a follower never polls the acl feed"
        );
        assert_eq!(calls_to(&host, KEYS).len(), 2, "nor fetches keys");
    }

    #[test]
    fn the_acl_feed_is_polled_followed_and_enforced_and_a_failure_is_retried() {
        const FEED: &str = "/acl.AclService/ListChanges";
        let (host, key, mut worker) = worker_with_keys("k1");
        let polls = calls_to(&host, FEED);
        assert_eq!(polls.len(), 1, "{:?}", host.calls());
        let first = acl::ListChangesRequest::decode(polls[0].1.as_slice()).unwrap();
        assert_eq!(first.since_version, 0);

        let page = ListChangesResponse {
            changes: vec![Change {
                version: 3,
                subject: "mallory".into(),
                action: "buy".into(),
                restricted: true,
                expire_unix_seconds: 0,
            }],
            version: 3,
        };
        let size = answer(&host, page.encode_to_vec());
        worker.on_grpc_answer(polls[0].0, 0, size);
        let polls = calls_to(&host, FEED);
        assert_eq!(polls.len(), 2, "the next poll goes out at once");
        let next = acl::ListChangesRequest::decode(polls[1].1.as_slice()).unwrap();
        assert_eq!(next.since_version, 3);
        let shared = worker.shared();
        let purchase = "/catalog/items/1:purchase";
        assert_eq!(
            request(&shared, purchase, &token(&key, "mallory")),
            Flow::Pause
        );
        assert_eq!(
            request(&shared, purchase, &token(&key, "ada")),
            Flow::Continue
        );

        // The acl service fails: the copy is still enforced, and the poll retried later.
        host.answer.borrow_mut().status_message = "unavailable".into();
        worker.on_grpc_answer(polls[1].0, 14, 0);
        assert!(host.calls().iter().any(|call| matches!(call,
            Call::Log(_, line) if line.contains("unavailable"))));
        assert_eq!(
            request(&shared, purchase, &token(&key, "mallory")),
            Flow::Pause
        );
        worker.on_tick();
        assert_eq!(calls_to(&host, FEED).len(), 2, "not before retry_seconds");
        host.now.set(at(5));
        worker.on_tick();
        assert_eq!(calls_to(&host, FEED).len(), 3);
        assert!(host
            .calls()
            .iter()
            .any(|call| matches!(call, Call::Gauge(name, 3) if name == acl::metrics::VERSION)));
    }
}
