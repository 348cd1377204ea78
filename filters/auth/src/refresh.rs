//! When the signing keys are fetched: retried until the first fetch succeeds, refreshed every
//! `refresh_seconds` after that, and fetched early — at most once per `min_refresh_seconds` —
//! when a token names a key id nobody knows. The clock is passed in, so the schedule is
//! tested here; the glue only asks [`KeyRefresh::due`] on its timer and reports what happened.

use crate::config::AuthoritySource;
use std::time::{Duration, SystemTime};

#[derive(Debug, Default, Clone)]
pub struct KeyRefresh {
    in_flight: bool,
    last_attempt: Option<SystemTime>,
    last_success: Option<SystemTime>,
    /// A token named an unknown `kid`: a newer key may exist.
    early: bool,
}

impl KeyRefresh {
    /// Whether to start a fetch now. `have_keys`: some JWKS is loaded (ours or another
    /// worker's).
    pub fn due(&self, source: &AuthoritySource, have_keys: bool, now: SystemTime) -> bool {
        if self.in_flight {
            return false;
        }
        let since = |then: Option<SystemTime>| {
            then.map(|then| now.duration_since(then).unwrap_or(Duration::ZERO))
        };
        let waited = |then: Option<SystemTime>, seconds: u64| {
            since(then).is_none_or(|elapsed| elapsed >= Duration::from_secs(seconds))
        };
        if !have_keys {
            return waited(self.last_attempt, source.retry_seconds);
        }
        waited(self.last_success, source.refresh_seconds)
            || (self.early && waited(self.last_attempt, source.min_refresh_seconds))
    }

    /// A fetch was sent.
    pub fn started(&mut self, now: SystemTime) {
        self.in_flight = true;
        self.attempted(now);
    }

    /// A fetch was tried but could not even be sent: it counts as an attempt.
    pub fn attempted(&mut self, now: SystemTime) {
        self.last_attempt = Some(now);
        self.early = false;
    }

    /// The fetch answered, well or not.
    pub fn finished(&mut self) {
        self.in_flight = false;
    }

    /// Keys were loaded (fetched here, or published by another worker).
    pub fn loaded(&mut self, now: SystemTime) {
        self.last_success = Some(now);
    }

    /// A token named a key id we do not know.
    pub fn want_early(&mut self) {
        self.early = true;
    }

    /// Whether a token asked for an early fetch since the last call (for a root that does not
    /// fetch, to pass the wish on).
    pub fn take_early(&mut self) -> bool {
        std::mem::take(&mut self.early)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> AuthoritySource {
        serde_json::from_str(
            r#"{"cluster":"authority","refresh_seconds":300,"retry_seconds":1,"min_refresh_seconds":10}"#,
        )
        .unwrap()
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
    }

    #[test]
    fn retries_every_retry_seconds_until_keys_arrive() {
        let source = source();
        let mut refresh = KeyRefresh::default();
        assert!(refresh.due(&source, false, at(0)), "first fetch at once");
        refresh.started(at(0));
        assert!(!refresh.due(&source, false, at(5)), "one fetch at a time");
        refresh.finished();
        assert!(refresh.due(&source, false, at(1)));
        refresh.attempted(at(2));
        assert!(!refresh.due(&source, false, at(2)));
        assert!(refresh.due(&source, false, at(3)));
    }

    #[test]
    fn refreshes_every_refresh_seconds_once_loaded() {
        let source = source();
        let mut refresh = KeyRefresh::default();
        refresh.started(at(0));
        refresh.finished();
        refresh.loaded(at(0));
        assert!(!refresh.due(&source, true, at(299)));
        assert!(refresh.due(&source, true, at(300)));
    }

    #[test]
    fn unknown_key_ids_fetch_early_but_not_more_than_once_per_min_refresh() {
        let source = source();
        let mut refresh = KeyRefresh::default();
        refresh.started(at(0));
        refresh.finished();
        refresh.loaded(at(0));
        refresh.want_early();
        assert!(
            !refresh.due(&source, true, at(5)),
            "too soon after the last attempt"
        );
        assert!(refresh.due(&source, true, at(10)));
        refresh.started(at(10));
        refresh.finished();
        refresh.want_early();
        assert!(
            !refresh.due(&source, true, at(15)),
            "a flood of kids cannot hammer"
        );
        assert!(refresh.due(&source, true, at(20)));
    }

    #[test]
    fn a_clock_going_backwards_does_not_stop_the_schedule() {
        let source = source();
        let mut refresh = KeyRefresh::default();
        refresh.attempted(at(100));
        assert!(!refresh.due(&source, false, at(50)));
        assert!(refresh.due(&source, false, at(101)));
    }
}
