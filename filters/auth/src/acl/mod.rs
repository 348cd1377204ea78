//! Restrictions as data: the edge's copy of the acl service's restrictions, what one subject's
//! entry looks like in Envoy's shared data, and when to ask the change feed again.
//!
//! The copy lives in Envoy's shared data, one key per restricted subject, so it is held once
//! per Envoy (not per worker) and a request looks up its own subject with one host call: the
//! cost does not grow with the number of restrictions. Each worker follows the feed with a
//! long poll; changes carry versions and an entry only ever moves to a newer version, so two
//! workers applying the same (or an older) page in any order end with the same copy.

mod follower;

pub use follower::{Event, Followed, Follower, SharedRestrictions, Tick};
use serde::Deserialize;
use std::time::{Duration, SystemTime};

/// The gauges and counter the filter exports about its copy (as `wasmcustom.<name>`).
pub mod metrics {
    /// Seconds since the copy was last known current: 0 while a poll is open after a good
    /// answer; grows while the acl service is unreachable (the copy is still enforced).
    pub const SYNC_AGE: &str = "edge_acl_sync_age_seconds";
    /// The feed version the copy has reached.
    pub const VERSION: &str = "edge_acl_version";
    /// Subjects held in the copy (lifted ones included: shared data cannot forget a key).
    pub const SUBJECTS: &str = "edge_acl_subjects";
    /// Restrictions refused because the copy held `max_subjects` already.
    pub const OVERFLOW: &str = "edge_acl_overflow_total";
    pub const NAMES: &[&str] = &[SYNC_AGE, VERSION, SUBJECTS, OVERFLOW];
}

/// The acl service, followed with `dispatch_grpc_call` (`ListChanges`, a long poll).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclSource {
    /// The Envoy cluster of the acl service (HTTP/2).
    pub cluster: String,
    #[serde(default = "default_service")]
    pub service: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// How long the service may hold a poll open while nothing changes.
    #[serde(default = "default_wait_seconds")]
    pub wait_seconds: u64,
    /// How soon a failed poll is tried again (the last copy keeps being enforced meanwhile).
    #[serde(default = "default_retry_seconds")]
    pub retry_seconds: u64,
    /// Changes asked for per poll; a full page is followed at once by the next.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The most subjects the copy holds. Beyond it, new subjects' restrictions are refused
    /// (logged and counted), never silently evicted: evicting would lift a ban.
    #[serde(default = "default_max_subjects")]
    pub max_subjects: u64,
}

impl AclSource {
    /// The poll's deadline: the wait, plus time for the answer to travel.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.wait_seconds + 5)
    }
}

fn default_service() -> String {
    "acl.AclService".into()
}
fn default_method() -> String {
    "ListChanges".into()
}
fn default_wait_seconds() -> u64 {
    10
}
fn default_retry_seconds() -> u64 {
    1
}
fn default_page_size() -> u32 {
    1000
}
fn default_max_subjects() -> u64 {
    1_000_000
}

/// The feed's messages, generated from `proto/platform/acl.proto`.
pub use platform_proto::acl::{Change, ListChangesRequest, ListChangesResponse};

impl AclSource {
    /// The next poll. Until the copy is complete (`loaded`), the poll must not wait: a feed
    /// with nothing to send would otherwise hold the first load for the whole wait.
    pub fn request(&self, since_version: i64, loaded: bool) -> ListChangesRequest {
        let wait = if loaded { self.wait_seconds } else { 0 };
        ListChangesRequest {
            since_version,
            page_size: i32::try_from(self.page_size).unwrap_or(i32::MAX),
            wait: Some(prost_types::Duration {
                seconds: i64::try_from(wait).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        }
    }
}

/// One action's state for a subject, as last seen on the feed (lifted ones are kept, with
/// their version, so that an older page applied later cannot bring a lifted ban back).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    action: String,
    restricted: bool,
    expire_unix_seconds: i64,
    version: i64,
}

/// One subject's value in shared data: a line per action, `version restricted expiry action`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectRestrictions {
    entries: Vec<Entry>,
}

impl SubjectRestrictions {
    /// `None` when the bytes are not ours: the caller then fails closed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let entries = text
            .lines()
            .map(|line| {
                let mut fields = line.splitn(4, ' ');
                Some(Entry {
                    version: fields.next()?.parse().ok()?,
                    restricted: fields.next()? == "1",
                    expire_unix_seconds: fields.next()?.parse().ok()?,
                    action: fields.next()?.to_string(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut text = String::new();
        for entry in &self.entries {
            text.push_str(&format!(
                "{} {} {} {}\n",
                entry.version,
                u8::from(entry.restricted),
                entry.expire_unix_seconds,
                entry.action
            ));
        }
        text.into_bytes()
    }

    /// Takes the change if it is newer than what we hold for its action; whether it did.
    pub fn merge(&mut self, change: &Change) -> bool {
        let entry = Entry {
            action: change.action.clone(),
            restricted: change.restricted,
            expire_unix_seconds: change.expire_unix_seconds,
            version: change.version,
        };
        match self.entries.iter_mut().find(|e| e.action == change.action) {
            Some(held) if held.version >= change.version => false,
            Some(held) => {
                *held = entry;
                true
            }
            None => {
                self.entries.push(entry);
                true
            }
        }
    }

    /// Whether the subject may not perform `action` at `now` (an expired restriction has lifted
    /// itself, with no change on the feed).
    pub fn restricts(&self, action: &str, now: SystemTime) -> bool {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.entries.iter().any(|entry| {
            entry.action == action
                && entry.restricted
                && (entry.expire_unix_seconds == 0 || entry.expire_unix_seconds > now)
        })
    }
}

/// What the policy asks of the copy, behind a trait so that the decision is tested here with a
/// map and runs in Envoy on shared data.
pub trait Restrictions {
    /// Whether `subject` may not perform `action` now; `None` when the copy is not loaded (yet)
    /// or unreadable: the caller fails closed.
    fn restricted(&self, subject: &str, action: &str) -> Option<bool>;
}

/// No acl configured: nothing is restricted.
pub struct NoRestrictions;

impl Restrictions for NoRestrictions {
    fn restricted(&self, _subject: &str, _action: &str) -> Option<bool> {
        Some(false)
    }
}

/// When a worker polls the feed: at once after an answer (the poll itself waits for changes),
/// `retry_seconds` after a failure.
#[derive(Debug, Default, Clone)]
pub struct FeedPoll {
    in_flight: bool,
    failed_at: Option<SystemTime>,
}

impl FeedPoll {
    pub fn due(&self, source: &AclSource, now: SystemTime) -> bool {
        if self.in_flight {
            return false;
        }
        self.failed_at.is_none_or(|failed| {
            now.duration_since(failed).unwrap_or(Duration::ZERO)
                >= Duration::from_secs(source.retry_seconds)
        })
    }

    pub fn started(&mut self) {
        self.in_flight = true;
    }

    /// The poll answered (`ok`) or failed (including a poll that could not be sent).
    pub fn finished(&mut self, ok: bool, now: SystemTime) {
        self.in_flight = false;
        self.failed_at = (!ok).then_some(now);
    }

    /// A poll is open and the last one succeeded: the copy is current as of now.
    pub fn current(&self) -> bool {
        self.in_flight && self.failed_at.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(version: i64, action: &str, restricted: bool, expire: i64) -> Change {
        Change {
            version,
            subject: "u".into(),
            action: action.into(),
            restricted,
            expire_unix_seconds: expire,
        }
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn newer_changes_win_whatever_order_they_arrive_in() {
        let restrict = change(7, "list", true, 0);
        let lift = change(9, "list", false, 0);
        let mut in_order = SubjectRestrictions::default();
        assert!(in_order.merge(&restrict));
        assert!(in_order.merge(&lift));
        let mut reversed = SubjectRestrictions::default();
        assert!(reversed.merge(&lift));
        assert!(
            !reversed.merge(&restrict),
            "an older page must not undo a lift"
        );
        assert_eq!(in_order, reversed);
        assert!(!in_order.restricts("list", at(100)));
    }

    #[test]
    fn actions_are_separate_and_expiry_lifts() {
        let mut subject = SubjectRestrictions::default();
        subject.merge(&change(1, "list", true, 0));
        subject.merge(&change(2, "buy", true, 1000));
        assert!(subject.restricts("list", at(5000)));
        assert!(subject.restricts("buy", at(999)));
        assert!(!subject.restricts("buy", at(1000)), "expired at 1000");
        assert!(!subject.restricts("comment", at(0)));
    }

    #[test]
    fn encoding_round_trips_and_foreign_bytes_are_refused() {
        let mut subject = SubjectRestrictions::default();
        subject.merge(&change(3, "list", true, 0));
        subject.merge(&change(4, "buy.now", false, 12));
        let decoded = SubjectRestrictions::decode(&subject.encode()).unwrap();
        assert_eq!(decoded, subject);
        assert_eq!(SubjectRestrictions::decode(b""), Some(Default::default()));
        for foreign in [&b"x 1 0 list"[..], b"1 1", b"\xff"] {
            assert_eq!(SubjectRestrictions::decode(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn polls_follow_answers_at_once_and_failures_after_the_retry() {
        let source: AclSource =
            serde_json::from_str(r#"{"cluster":"acl","retry_seconds":2}"#).unwrap();
        let mut poll = FeedPoll::default();
        assert!(poll.due(&source, at(0)));
        poll.started();
        assert!(!poll.due(&source, at(0)));
        assert!(poll.current());
        poll.finished(true, at(1));
        assert!(poll.due(&source, at(1)));
        poll.started();
        poll.finished(false, at(2));
        assert!(!poll.current());
        assert!(!poll.due(&source, at(3)));
        assert!(poll.due(&source, at(4)));
        let request = source.request(42, true);
        assert_eq!(request.since_version, 42);
        assert_eq!(request.page_size, 1000);
        assert_eq!(request.wait.unwrap().seconds, 10);
        assert_eq!(source.request(0, false).wait.unwrap().seconds, 0);
        assert_eq!(source.timeout(), Duration::from_secs(15));
    }
}
