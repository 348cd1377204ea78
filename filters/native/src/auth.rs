//! Native glue of the auth filter. Envoy lends callouts to a configuration only on the main
//! thread, so one calling [`Root`] lives there: a module thread commits a scheduler event every
//! second (the ABI has no timer), and the root fetches the keys and follows the acl feed with
//! config-level callouts, publishing both in the process's shared data. Each worker keeps a
//! [`Root::follower`] that picks them up (ticked by its requests: each one until it has them
//! all, then at most once a second) and passes on its requests' wish for an early key fetch. Each request is decided by the core
//! over the stream's [`NativeHost`].

use crate::ticker::{EnvoyConfigPointer, Ticker};
use crate::{flow, FilterConfig, StreamFilter};
use edge_auth::acl::metrics::{OVERFLOW, SUBJECTS, SYNC_AGE, VERSION};
use edge_auth::root::{Root, Shared};
use edge_auth::AuthConfig;
use edge_core::host::{Host, Level};
use edge_native_host::abi::{self, EnvoyConfig, EnvoyFilter};
use edge_native_host::notes::StreamNotes;
use edge_native_host::{log, CallPart, Delivery, Family, MetricKind, Metrics, NativeHost, Scope};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(crate) const NAME: &str = "auth";

/// How often the roots look for newer keys and due fetches and polls.
const TICK: Duration = Duration::from_secs(1);

/// The scheduler event of auth's ticks.
pub(crate) const TICK_EVENT: u64 = 1;

/// Distinguishes configurations in the workers' followers.
static CONFIGS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This worker's follower of each auth configuration, by id.
    static FOLLOWERS: RefCell<HashMap<u64, Follower>> = RefCell::default();
}

struct Follower {
    root: Root<NativeHost>,
    next_tick: Duration,
}

pub(crate) struct Config {
    id: u64,
    auth: AuthConfig,
    envoy: EnvoyConfigPointer,
    metrics: Arc<Metrics>,
    /// The calling root, on the main thread only (ticks and call answers come there).
    root: RefCell<Root<NativeHost>>,
    host: Rc<NativeHost>,
    _ticker: Ticker,
}

pub(crate) fn configure(envoy: EnvoyConfig, config: &[u8]) -> Result<Config, String> {
    let auth = AuthConfig::from_json(config)?;
    let counter = |name| Family {
        name,
        kind: MetricKind::Counter,
        labels: &[],
    };
    let gauge = |name| Family {
        name,
        kind: MetricKind::Gauge,
        labels: &[],
    };
    let families = [
        counter(edge_auth::metrics::SIGNATURE_CHECKS),
        gauge(SYNC_AGE),
        gauge(VERSION),
        gauge(SUBJECTS),
        counter(OVERFLOW),
    ];
    // SAFETY: `envoy` is the configuration of the hook being run.
    #[allow(unsafe_code)]
    let metrics = Arc::new(unsafe { Metrics::define(envoy, &families) });
    let host = Rc::new(NativeHost::new(NAME, Scope::Config(envoy), metrics.clone()));
    let root = Root::new(host.clone(), auth.clone());
    Ok(Config {
        id: CONFIGS.fetch_add(1, Ordering::Relaxed),
        auth,
        envoy: EnvoyConfigPointer(envoy),
        metrics,
        root: RefCell::new(root),
        host,
        _ticker: Ticker::start(envoy, TICK, TICK_EVENT),
    })
}

impl Config {
    /// This worker's follower, ticked if due; what its requests read.
    fn shared(&self) -> Option<Rc<RefCell<Shared<NativeHost>>>> {
        FOLLOWERS
            .try_with(|followers| {
                let mut followers = followers.try_borrow_mut().ok()?;
                let follower = followers.entry(self.id).or_insert_with(|| {
                    let host = Rc::new(NativeHost::new(
                        NAME,
                        Scope::Config(self.envoy.0),
                        self.metrics.clone(),
                    ));
                    Follower {
                        root: Root::follower(host, self.auth.clone()),
                        next_tick: Duration::ZERO,
                    }
                });
                // The clock, not the main thread's host: this runs on a worker.
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                // Until the keys and the acl copy are in, every request looks for them.
                if now >= follower.next_tick || !follower.root.complete() {
                    follower.next_tick = now + TICK;
                    follower.root.on_tick();
                }
                Some(follower.root.shared())
            })
            .ok()
            .flatten()
    }
}

impl Config {
    pub(crate) fn filter(&self, envoy: EnvoyFilter) -> AuthFilter {
        AuthFilter {
            host: NativeHost::new(NAME, Scope::Filter(envoy), self.metrics.clone())
                .with_notes(StreamNotes::join(NAME)),
            shared: self.shared(),
            config: self.id,
        }
    }
}

impl FilterConfig for Config {
    fn new_filter(&self, envoy: EnvoyFilter) -> Box<dyn StreamFilter> {
        Box::new(self.filter(envoy))
    }

    fn scheduled(&self, _event: u64) {
        if let Ok(mut root) = self.root.try_borrow_mut() {
            root.on_tick();
        }
    }

    fn call(&self, stream: u64, part: CallPart<'_>) {
        let Ok(mut root) = self.root.try_borrow_mut() else {
            log(
                Level::Error,
                "auth: a call's answer came while the root was busy",
            );
            return;
        };
        let host = &self.host;
        host.on_call(stream, part, |token, delivery| {
            if let Delivery::Close(status) = delivery {
                root.on_grpc_answer(token, status, host.received_size());
            }
        });
    }
}

pub(crate) struct AuthFilter {
    pub(crate) host: NativeHost,
    shared: Option<Rc<RefCell<Shared<NativeHost>>>>,
    /// The configuration's id, to find this worker's follower.
    config: u64,
}

impl StreamFilter for AuthFilter {
    fn request_headers(&mut self, _end_of_stream: bool) -> u32 {
        let Some(shared) = &self.shared else {
            // Never let traffic through unchecked.
            self.host.reset_request();
            return abi::status::STOP;
        };
        let decided = Shared::on_request_headers(shared, &self.host);
        self.host.settle_route();
        // Counted at once: a native counter update costs no more than the check did.
        let _ = FOLLOWERS.try_with(|followers| {
            if let Some(follower) = followers.try_borrow().ok()?.get(&self.config) {
                follower.root.count_checks();
            }
            Some(())
        });
        flow(decided)
    }
}
