//! One worker's follower of the acl change feed: what to ask next, and how an answer is merged
//! into the copy in shared data, which every worker of the proxy reads and writes.
//!
//! Workers race on the same keys: each write is a compare-and-swap, retried a few times when
//! another worker wrote in between. A page is only counted as followed (the shared cursor
//! moves past it, the copy is marked loaded) when every change in it was applied or refused
//! on purpose (the copy is full); a change that could not be written leaves the cursor where
//! it was, and the page is asked for again after `retry_seconds`. Merging is idempotent
//! (entries only move to newer versions), so applying a page twice changes nothing.

use super::{metrics, FeedPoll, Restrictions};
use super::{AclSource, Change, ListChangesRequest, ListChangesResponse, SubjectRestrictions};
use edge_core::host::{HostError, Level, SharedStore};
use std::fmt;
use std::time::SystemTime;

/// Compare-and-swap attempts per write before the page is left for the next poll.
const CAS_ATTEMPTS: usize = 8;

/// Where the copy lives in shared data: one key per subject, and the copy's own fields.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
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

/// What happened while following the feed, for the proxy's log (and, for
/// [`Event::Full`], the overflow counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first complete pass over the feed ended: rules with an action now decide.
    Loaded,
    /// The feed answered an older version than the copy holds (its database was reset?).
    WentBack { from: i64, to: i64 },
    /// A new subject's restriction was refused: the copy holds `max_subjects` already.
    Full { max_subjects: u64 },
    /// A subject's entry holds bytes that are not ours; requests for it fail closed.
    Unreadable { key: String },
    /// Shared data refused a read or a write; the page will be asked for again.
    StoreFailed { key: String, error: HostError },
    /// Other workers kept winning the compare-and-swap; the page will be asked for again.
    Contended { key: String },
    /// The poll failed (not sent, a gRPC error, an unreadable answer).
    PollFailed(String),
}

impl Event {
    pub fn level(&self) -> Level {
        match self {
            Event::Loaded => Level::Info,
            Event::WentBack { .. } | Event::Contended { .. } | Event::PollFailed(_) => Level::Warn,
            Event::Full { .. } | Event::Unreadable { .. } | Event::StoreFailed { .. } => {
                Level::Error
            }
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Loaded => write!(f, "restrictions loaded"),
            Event::WentBack { from, to } => write!(
                f,
                "the acl feed went back from version {from} to {to} (its database was reset?): known restrictions are kept; restart Envoy to rebuild the copy"
            ),
            Event::Full { max_subjects } => write!(
                f,
                "acl copy is full ({max_subjects} subjects): a restriction was not applied; raise acl.max_subjects"
            ),
            Event::Unreadable { key } => write!(f, "unreadable acl entry {key}"),
            Event::StoreFailed { key, error } => write!(
                f,
                "cannot update {key} ({error}): the page will be applied again"
            ),
            Event::Contended { key } => write!(
                f,
                "lost {CAS_ATTEMPTS} updates of {key} to other workers: the page will be applied again"
            ),
            Event::PollFailed(error) => write!(
                f,
                "following the acl feed failed (the last copy stays enforced): {error}"
            ),
        }
    }
}

/// What to do after an answer: the events to log, and the next poll (at once after a page
/// applied whole; none after a failure, which [`Follower::tick`] retries later).
#[derive(Debug, Clone, PartialEq)]
pub struct Followed {
    pub events: Vec<Event>,
    pub next: Option<ListChangesRequest>,
}

/// Once a second: a poll to send, if one is due, and the copy's gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub poll: Option<ListChangesRequest>,
    pub gauges: [(&'static str, u64); 3],
}

/// How one change went.
enum Applied {
    /// Written, or already held (an older or equal version).
    Done,
    /// Refused on purpose: the copy is full. The page still counts as followed.
    Refused(Event),
    /// Not written: the page must be applied again.
    Failed(Event),
}

/// One worker's view of the feed and its handle on the shared copy.
pub struct Follower<S: SharedStore> {
    source: AclSource,
    store: S,
    keys: Keys,
    poll: FeedPoll,
    /// The version the open (or last) poll asked from.
    since: i64,
    ready: bool,
}

impl<S: SharedStore> Follower<S> {
    pub fn new(source: AclSource, store: S) -> Self {
        Self {
            keys: Keys::new(&source),
            source,
            store,
            poll: FeedPoll::default(),
            since: 0,
            ready: false,
        }
    }

    pub fn source(&self) -> &AclSource {
        &self.source
    }

    /// The copy is complete (some worker's first pass over the feed ended); until then, rules
    /// with an action answer 503.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The copy as one request reads it; `clock` is read only when a rule asks (a host call).
    pub fn restrictions<C: Fn() -> SystemTime>(&self, clock: C) -> SharedRestrictions<'_, S, C> {
        SharedRestrictions {
            store: &self.store,
            keys: &self.keys,
            ready: self.ready,
            clock,
        }
    }

    /// The next poll, from the shared cursor (another worker may have moved it).
    fn next_poll(&self) -> ListChangesRequest {
        let (since, _) = self.number("cursor");
        self.source.request(since, self.ready)
    }

    /// The poll was sent; its answer goes to [`Follower::on_answer`].
    pub fn sent(&mut self, request: &ListChangesRequest) {
        self.since = request.since_version;
        self.poll.started();
    }

    /// The poll could not be sent; [`Follower::tick`] tries again after `retry_seconds`.
    pub fn not_sent(&mut self, now: SystemTime) {
        self.poll.finished(false, now);
    }

    /// Picks up a copy another worker completed, says whether to poll, and reads the gauges.
    pub fn tick(&mut self, now: SystemTime) -> Tick {
        if !self.ready && matches!(self.store.get(&self.keys.field("ready")), Ok(Some(_))) {
            self.ready = true;
        }
        let poll = self.poll.due(&self.source, now).then(|| self.next_poll());
        let now_ms = unix_millis(now);
        if self.poll.current() {
            // Diagnostics only: a lost write leaves the age growing, which is what it says.
            let _ = self.store.set(
                &self.keys.field("synced_ms"),
                now_ms.to_string().as_bytes(),
                0,
            );
        }
        let (synced, _) = self.number("synced_ms");
        let age_seconds = if synced == 0 {
            0
        } else {
            (now_ms - synced).max(0) / 1000
        };
        let gauge = |value: i64| u64::try_from(value).unwrap_or(0);
        Tick {
            poll,
            gauges: [
                (metrics::SYNC_AGE, gauge(age_seconds)),
                (metrics::VERSION, gauge(self.number("cursor").0)),
                (metrics::SUBJECTS, gauge(self.number("subjects").0)),
            ],
        }
    }

    /// Merges an answer into the copy, or notes the failure.
    pub fn on_answer(
        &mut self,
        answer: Result<ListChangesResponse, String>,
        now: SystemTime,
    ) -> Followed {
        let response = match answer {
            Ok(response) => response,
            Err(error) => {
                self.poll.finished(false, now);
                return Followed {
                    events: vec![Event::PollFailed(error)],
                    next: None,
                };
            }
        };
        let mut events = Vec::new();
        let mut whole = true;
        for change in &response.changes {
            match self.apply_change(change) {
                Applied::Done => {}
                Applied::Refused(event) => events.push(event),
                Applied::Failed(event) => {
                    events.push(event);
                    whole = false;
                }
            }
        }
        self.poll.finished(whole, now);
        if !whole {
            return Followed { events, next: None };
        }
        if response.version < self.since {
            events.push(Event::WentBack {
                from: self.since,
                to: response.version,
            });
        }
        self.advance_cursor(response.version);
        let page_full = response.changes.len() >= self.source.page_size as usize;
        if !page_full && !self.ready {
            // Diagnostics for the other workers; this one is ready either way, and they read
            // the page themselves.
            let _ = self.store.set(&self.keys.field("ready"), b"1", 0);
            self.ready = true;
            events.push(Event::Loaded);
        }
        let _ = self.store.set(
            &self.keys.field("synced_ms"),
            unix_millis(now).to_string().as_bytes(),
            0,
        );
        // Follow at once: the next change must not wait for the timer.
        Followed {
            events,
            next: Some(self.next_poll()),
        }
    }

    /// Moves the shared cursor to `version`: forward only, unless the feed itself went back.
    /// Losing every attempt leaves it behind, which only means a page is read again.
    fn advance_cursor(&self, version: i64) {
        let key = self.keys.field("cursor");
        for _attempt in 0..CAS_ATTEMPTS {
            let (cursor, cas) = self.number("cursor");
            if cursor >= version && version >= self.since {
                return;
            }
            match self.store.set(&key, version.to_string().as_bytes(), cas) {
                Err(HostError::CAS_MISMATCH) => continue,
                _ => return,
            }
        }
    }

    /// Merges one change into its subject's entry.
    fn apply_change(&self, change: &Change) -> Applied {
        let key = self.keys.subject(&change.subject);
        for _attempt in 0..CAS_ATTEMPTS {
            let (mut held, cas) = match self.store.get(&key) {
                Ok(Some((bytes, cas))) => match SubjectRestrictions::decode(&bytes) {
                    Some(held) => (held, cas),
                    // Requests for this subject already fail closed on it; reading the page
                    // again would not help.
                    None => return Applied::Refused(Event::Unreadable { key }),
                },
                Ok(None) => {
                    match self.count_new_subject() {
                        Applied::Done => {}
                        other => return other,
                    }
                    // Envoy cannot create a key by compare-and-swap: two workers may both
                    // count one new subject, which only makes the cap stricter.
                    (SubjectRestrictions::default(), 0)
                }
                Err(error) => return Applied::Failed(Event::StoreFailed { key, error }),
            };
            if !held.merge(change) {
                return Applied::Done;
            }
            match self.store.set(&key, &held.encode(), cas) {
                Err(HostError::CAS_MISMATCH) => continue,
                Err(error) => return Applied::Failed(Event::StoreFailed { key, error }),
                Ok(()) => return Applied::Done,
            }
        }
        Applied::Failed(Event::Contended { key })
    }

    /// Counts one more subject, or refuses it at `max_subjects` rather than evict someone
    /// else's restriction. A count that cannot be written admits no one.
    fn count_new_subject(&self) -> Applied {
        let key = self.keys.field("subjects");
        for _attempt in 0..CAS_ATTEMPTS {
            let (count, cas) = match self.store.get(&key) {
                Ok(value) => parse_number(value),
                Err(error) => return Applied::Failed(Event::StoreFailed { key, error }),
            };
            if u64::try_from(count).unwrap_or(0) >= self.source.max_subjects {
                return Applied::Refused(Event::Full {
                    max_subjects: self.source.max_subjects,
                });
            }
            match self
                .store
                .set(&key, (count + 1).to_string().as_bytes(), cas)
            {
                Err(HostError::CAS_MISMATCH) => continue,
                Err(error) => return Applied::Failed(Event::StoreFailed { key, error }),
                Ok(()) => return Applied::Done,
            }
        }
        Applied::Failed(Event::Contended { key })
    }

    /// A number of the copy's own (0 when unset or unreadable), and its CAS.
    fn number(&self, field: &str) -> (i64, u32) {
        parse_number(self.store.get(&self.keys.field(field)).unwrap_or(None))
    }
}

fn parse_number(value: Option<(Vec<u8>, u32)>) -> (i64, u32) {
    match value {
        Some((bytes, cas)) => (
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(0),
            cas,
        ),
        None => (0, 0),
    }
}

fn unix_millis(now: SystemTime) -> i64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The copy as requests see it: one shared-data read for the request's subject.
pub struct SharedRestrictions<'a, S: SharedStore, C: Fn() -> SystemTime> {
    store: &'a S,
    keys: &'a Keys,
    ready: bool,
    clock: C,
}

impl<S: SharedStore, C: Fn() -> SystemTime> Restrictions for SharedRestrictions<'_, S, C> {
    fn restricted(&self, subject: &str, action: &str) -> Option<bool> {
        if !self.ready {
            return None;
        }
        match self.store.get(&self.keys.subject(subject)) {
            Ok(None) => Some(false),
            Ok(Some((bytes, _))) => SubjectRestrictions::decode(&bytes)
                .map(|held| held.restricts(action, (self.clock)())),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::host::MemoryStore;
    use std::cell::Cell;
    use std::time::Duration;

    /// A store whose next `lose` writes lose the compare-and-swap race, and whose writes to
    /// keys containing `broken` fail.
    #[derive(Default)]
    struct Racy {
        store: MemoryStore,
        lose: Cell<usize>,
        broken: Option<&'static str>,
    }

    impl SharedStore for Racy {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
            self.store.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
            if self.broken.is_some_and(|broken| key.contains(broken)) {
                return Err(HostError::INTERNAL_FAILURE);
            }
            if cas != 0 && self.lose.get() > 0 {
                self.lose.set(self.lose.get() - 1);
                return Err(HostError::CAS_MISMATCH);
            }
            self.store.set(key, value, cas)
        }
    }

    fn source(json: &str) -> AclSource {
        serde_json::from_str(json).unwrap()
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn ban(version: i64, subject: &str) -> Change {
        Change {
            version,
            subject: subject.into(),
            action: "buy".into(),
            restricted: true,
            expire_unix_seconds: 0,
        }
    }

    fn page(version: i64, changes: Vec<Change>) -> Result<ListChangesResponse, String> {
        Ok(ListChangesResponse { changes, version })
    }

    /// Sends the poll the tick asks for, as the glue does.
    fn poll<S: SharedStore>(follower: &mut Follower<S>, now: SystemTime) -> ListChangesRequest {
        let request = follower.tick(now).poll.expect("a poll is due");
        follower.sent(&request);
        request
    }

    fn restricted<S: SharedStore>(follower: &Follower<S>, subject: &str) -> Option<bool> {
        follower.restrictions(|| at(100)).restricted(subject, "buy")
    }

    #[test]
    fn a_first_short_page_loads_the_copy_and_the_next_poll_follows_at_once() {
        let mut follower = Follower::new(source(r#"{"cluster":"acl"}"#), MemoryStore::default());
        assert_eq!(restricted(&follower, "u1"), None, "not loaded: fail closed");
        let first = poll(&mut follower, at(1));
        assert_eq!((first.since_version, first.wait.unwrap().seconds), (0, 0));
        let followed = follower.on_answer(page(2, vec![ban(1, "u1"), ban(2, "u2")]), at(1));
        assert_eq!(followed.events, vec![Event::Loaded]);
        let next = followed.next.expect("follows at once");
        assert_eq!(
            (next.since_version, next.wait.as_ref().unwrap().seconds),
            (2, 10)
        );
        assert_eq!(restricted(&follower, "u1"), Some(true));
        assert_eq!(restricted(&follower, "u3"), Some(false));
        follower.sent(&next);
        let tick = follower.tick(at(5));
        assert_eq!(tick.poll, None, "a poll is open");
        assert_eq!(
            tick.gauges,
            [
                (metrics::SYNC_AGE, 0),
                (metrics::VERSION, 2),
                (metrics::SUBJECTS, 2)
            ]
        );
    }

    #[test]
    fn workers_share_the_copy_and_one_workers_load_readies_the_others() {
        let store = std::rc::Rc::new(MemoryStore::default());
        let config = source(r#"{"cluster":"acl","page_size":2}"#);
        let mut first = Follower::new(config.clone(), store.clone());
        let mut second = Follower::new(config, store.clone());
        poll(&mut first, at(1));
        let full_page = first.on_answer(page(2, vec![ban(1, "u1"), ban(2, "u2")]), at(1));
        assert_eq!(
            full_page.events,
            vec![],
            "a full page is followed before loading"
        );
        assert!(!first.ready());
        first.sent(&full_page.next.unwrap());
        assert!(first.on_answer(page(2, vec![]), at(1)).events == vec![Event::Loaded]);
        let request = poll(&mut second, at(2));
        assert!(second.ready(), "the shared flag says the copy is complete");
        assert_eq!(request.since_version, 2, "the shared cursor");
        // The second worker applies an older page late: nothing changes, nothing is counted.
        second.on_answer(page(2, vec![ban(1, "u1")]), at(2));
        assert_eq!(second.tick(at(2)).gauges[2], (metrics::SUBJECTS, 2));
        assert_eq!(restricted(&second, "u2"), Some(true));
    }

    #[test]
    fn lost_races_are_retried_and_a_lost_page_is_read_again() {
        let config = source(r#"{"cluster":"acl","retry_seconds":2}"#);
        let racy = Racy {
            lose: Cell::new(CAS_ATTEMPTS - 1),
            ..Racy::default()
        };
        racy.store.set("edge_auth.acl.acl.s.u1", b"", 0).unwrap();
        let mut follower = Follower::new(config.clone(), racy);
        poll(&mut follower, at(1));
        let followed = follower.on_answer(page(1, vec![ban(1, "u1")]), at(1));
        assert_eq!(followed.events, vec![Event::Loaded], "won the last attempt");
        assert_eq!(restricted(&follower, "u1"), Some(true));

        let racy = Racy {
            lose: Cell::new(CAS_ATTEMPTS),
            ..Racy::default()
        };
        racy.store.set("edge_auth.acl.acl.s.u1", b"", 0).unwrap();
        let mut follower = Follower::new(config, racy);
        poll(&mut follower, at(1));
        let followed = follower.on_answer(page(1, vec![ban(1, "u1")]), at(1));
        assert_eq!(
            followed.events,
            vec![Event::Contended {
                key: "edge_auth.acl.acl.s.u1".into()
            }]
        );
        assert_eq!(followed.next, None);
        assert!(
            !follower.ready(),
            "a page with a lost change does not load the copy"
        );
        assert_eq!(
            follower.tick(at(2)).poll,
            None,
            "retried after retry_seconds"
        );
        let again = poll(&mut follower, at(3));
        assert_eq!(
            again.since_version, 0,
            "the cursor did not move past the lost change"
        );
        follower.on_answer(page(1, vec![ban(1, "u1")]), at(3));
        assert_eq!(restricted(&follower, "u1"), Some(true));
    }

    #[test]
    fn the_cap_refuses_new_subjects_and_is_never_exceeded() {
        let config = source(r#"{"cluster":"acl","max_subjects":2}"#);
        let mut follower = Follower::new(config.clone(), MemoryStore::default());
        poll(&mut follower, at(1));
        let followed = follower.on_answer(
            page(
                4,
                vec![ban(1, "u1"), ban(2, "u2"), ban(3, "u3"), ban(4, "u1")],
            ),
            at(1),
        );
        assert_eq!(
            followed.events,
            vec![Event::Full { max_subjects: 2 }, Event::Loaded],
            "a known subject's change still applies; the page counts as followed"
        );
        assert_eq!(restricted(&follower, "u3"), Some(false));
        assert_eq!(follower.tick(at(1)).gauges[2], (metrics::SUBJECTS, 2));

        // Losing every race on the count admits no one (it used to admit the subject anyway).
        let racy = Racy {
            lose: Cell::new(usize::MAX),
            ..Racy::default()
        };
        let mut follower = Follower::new(config.clone(), racy);
        poll(&mut follower, at(1));
        racy_count_is(&mut follower, "edge_auth.acl.acl.subjects");

        // So does a count shared data will not take.
        let broken = Racy {
            broken: Some("subjects"),
            ..Racy::default()
        };
        let mut follower = Follower::new(config, broken);
        poll(&mut follower, at(1));
        let followed = follower.on_answer(page(1, vec![ban(1, "u1")]), at(1));
        assert_eq!(
            followed.events,
            vec![Event::StoreFailed {
                key: "edge_auth.acl.acl.subjects".into(),
                error: HostError::INTERNAL_FAILURE
            }]
        );
        assert_eq!(follower.store.get("edge_auth.acl.acl.s.u1"), Ok(None));
    }

    fn racy_count_is(follower: &mut Follower<Racy>, key: &str) {
        follower.store.store.set(key, b"0", 0).unwrap();
        let followed = follower.on_answer(page(1, vec![ban(1, "u1")]), at(1));
        assert_eq!(followed.events, vec![Event::Contended { key: key.into() }]);
        assert_eq!(follower.store.get("edge_auth.acl.acl.s.u1"), Ok(None));
    }

    #[test]
    fn a_failed_poll_keeps_the_copy_and_retries_later() {
        let config = source(r#"{"cluster":"acl","retry_seconds":5}"#);
        let mut follower = Follower::new(config, MemoryStore::default());
        poll(&mut follower, at(1));
        follower.on_answer(page(1, vec![ban(1, "u1")]), at(1));
        let open = follower.tick(at(1));
        assert_eq!(open.poll.as_ref().map(|p| p.since_version), Some(1));
        follower.sent(&open.poll.unwrap());
        let failed = follower.on_answer(Err("gRPC status 14: unavailable".into()), at(2));
        assert_eq!(failed.next, None);
        assert_eq!(failed.events[0].level(), Level::Warn);
        assert_eq!(restricted(&follower, "u1"), Some(true), "still enforced");
        assert_eq!(follower.tick(at(6)).poll, None);
        let tick = follower.tick(at(12));
        assert!(tick.poll.is_some());
        assert_eq!(
            tick.gauges[0],
            (metrics::SYNC_AGE, 11),
            "age since the last sync"
        );
        follower.not_sent(at(12));
        assert_eq!(follower.tick(at(13)).poll, None);
    }

    #[test]
    fn a_feed_that_went_back_is_reported_and_followed_from_its_version() {
        let mut follower = Follower::new(source(r#"{"cluster":"acl"}"#), MemoryStore::default());
        poll(&mut follower, at(1));
        let next = follower
            .on_answer(page(9, vec![ban(9, "u1")]), at(1))
            .next
            .unwrap();
        follower.sent(&next);
        let followed = follower.on_answer(page(3, vec![]), at(2));
        assert_eq!(followed.events, vec![Event::WentBack { from: 9, to: 3 }]);
        assert_eq!(followed.next.unwrap().since_version, 3);
        assert_eq!(
            restricted(&follower, "u1"),
            Some(true),
            "known restrictions are kept"
        );
    }

    #[test]
    fn unreadable_entries_fail_closed_and_do_not_stall_the_feed() {
        let store = MemoryStore::default();
        store.set("edge_auth.acl.acl.s.u1", b"\xff", 0).unwrap();
        let mut follower = Follower::new(source(r#"{"cluster":"acl"}"#), store);
        poll(&mut follower, at(1));
        let followed = follower.on_answer(page(2, vec![ban(1, "u1"), ban(2, "u2")]), at(1));
        assert_eq!(followed.events[0].level(), Level::Error);
        assert!(followed.next.is_some());
        assert_eq!(restricted(&follower, "u1"), None);
        assert_eq!(restricted(&follower, "u2"), Some(true));
    }
}
