//! Restrictions, where they are kept, and the change feed the edge follows.
//!
//! The `restrictions` table is a compacted change log: one row per (subject, action) ever
//! restricted, holding its latest state and the version of its latest change. Lifting keeps the
//! row as a tombstone (`restricted = 0`) with a new version, so that a reader of the feed learns
//! of the lift. Versions come from the one-row `acl_version` table.
//!
//! Times are unix seconds, passed in as `now` so that tests need no clock. A restriction is in
//! force while `now < expire_time` (or always, when `expire_time` is 0).

use service_kit::Database;
use service_kit::Migration;
use sqlx::{Any, Transaction};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::Instant;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "create restrictions and their version counter",
    // restricted is 0 or 1: BIGINT rather than BOOLEAN so that the same SQL and the same row
    // types work on SQLite and PostgreSQL. expire_time 0 is never. Each change takes a new
    // version, so versions are unique; the index serves the feed.
    sql: "CREATE TABLE restrictions (
            subject TEXT NOT NULL,
            action TEXT NOT NULL,
            reason TEXT NOT NULL,
            restricted BIGINT NOT NULL,
            create_time BIGINT NOT NULL,
            expire_time BIGINT NOT NULL,
            version BIGINT NOT NULL,
            PRIMARY KEY (subject, action)
          );
          CREATE UNIQUE INDEX restrictions_by_version ON restrictions (version);
          CREATE TABLE acl_version (id BIGINT PRIMARY KEY, version BIGINT NOT NULL);
          INSERT INTO acl_version (id, version) VALUES (1, 0)",
}];

/// A subject restricted from an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    pub subject: String,
    pub action: String,
    pub reason: String,
    pub create_time: i64,
    /// `None`: until lifted.
    pub expire_time: Option<i64>,
}

/// The latest state of one (subject, action), as the feed carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub version: i64,
    pub subject: String,
    pub action: String,
    /// False once lifted. An expired restriction stays true: readers compare `expire_time` with
    /// their own clock.
    pub restricted: bool,
    /// 0: until lifted.
    pub expire_time: i64,
}

/// One page of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub changes: Vec<Change>,
    /// Where the next page starts (the next call's `since_version`).
    pub version: i64,
}

#[derive(Debug)]
pub enum Error {
    Invalid(&'static str),
    NotFound,
    Database(sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Database(error)
    }
}

const MAX_SUBJECT_BYTES: usize = 256;
const MAX_ACTION_CHARS: usize = 64;
const MAX_REASON_CHARS: usize = 1000;
pub const DEFAULT_PAGE_SIZE: i64 = 1000;
pub const MAX_PAGE_SIZE: i64 = 10_000;
/// The longest a long poll waits.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// How often a long poll re-reads the database, for changes other replicas commit.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// The latest instant a protobuf `Timestamp` holds: 9999-12-31T23:59:59Z.
const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

fn check_subject(subject: &str) -> Result<(), Error> {
    if subject.is_empty() {
        return Err(Error::Invalid("subject is required"));
    }
    if subject.len() > MAX_SUBJECT_BYTES {
        return Err(Error::Invalid("subject must be at most 256 bytes"));
    }
    Ok(())
}

/// A valid key: a subject, and an action of 1 to 64 characters from `[a-z0-9_.-]`.
fn check_key(subject: &str, action: &str) -> Result<(), Error> {
    if subject.is_empty() {
        return Err(Error::Invalid("subject is required"));
    }
    if action.is_empty() {
        return Err(Error::Invalid("action is required"));
    }
    check_subject(subject)?;
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b);
    if action.len() > MAX_ACTION_CHARS || !action.bytes().all(allowed) {
        return Err(Error::Invalid(
            "action must be at most 64 characters from a-z, 0-9, '_', '.' and '-'",
        ));
    }
    Ok(())
}

/// A protobuf `Duration`'s seconds and nanos as a `std` one; `negative` is the error when it is
/// negative.
pub fn duration(seconds: i64, nanos: i32, negative: &'static str) -> Result<Duration, Error> {
    match (u64::try_from(seconds), u64::try_from(nanos)) {
        (Ok(seconds), Ok(nanos)) => {
            Ok(Duration::from_secs(seconds).saturating_add(Duration::from_nanos(nanos)))
        }
        _ => Err(Error::Invalid(negative)),
    }
}

/// When a restriction made at `now` for `ttl` ends (`None`: zero, never). Part of a second
/// counts as a whole one, so any positive ttl ends after `now`.
fn expiry(now: i64, ttl: Duration) -> Result<Option<i64>, Error> {
    if ttl.is_zero() {
        return Ok(None);
    }
    ttl.as_secs()
        .checked_add(u64::from(ttl.subsec_nanos() > 0))
        .and_then(|seconds| i64::try_from(seconds).ok())
        .and_then(|seconds| now.checked_add(seconds))
        .filter(|end| *end <= MAX_UNIX_SECONDS)
        .map(Some)
        .ok_or(Error::Invalid("ttl is too long"))
}

/// The page size `page_size` asks for: 0 is the default, above the maximum is the maximum.
fn page_limit(page_size: i32) -> Result<i64, Error> {
    match i64::from(page_size) {
        size if size < 0 => Err(Error::Invalid("page_size must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        size => Ok(size.min(MAX_PAGE_SIZE)),
    }
}

/// The current time in unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Takes the next version, inside a write transaction. On PostgreSQL the UPDATE locks the
/// counter's row until the transaction ends, so writers are serialised: versions commit in the
/// order they are taken, and a feed reader that has seen version N never finds a smaller one
/// committed later, so it never skips one. (SQLite serialises writers anyway.)
async fn next_version(tx: &mut Transaction<'_, Any>) -> Result<i64, sqlx::Error> {
    sqlx::query("UPDATE acl_version SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    let (version,): (i64,) = sqlx::query_as("SELECT version FROM acl_version WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    Ok(version)
}

type ChangeRow = (i64, String, String, i64, i64);
type RestrictionRow = (String, String, String, i64, i64);

fn restriction((subject, action, reason, create_time, expire_time): RestrictionRow) -> Restriction {
    Restriction {
        subject,
        action,
        reason,
        create_time,
        expire_time: (expire_time != 0).then_some(expire_time),
    }
}

pub struct AclStore {
    database: Database,
    /// The latest version this process committed: Restrict and Lift raise it after they
    /// commit, and long polls wake on it. Other replicas' commits do not show here, so long
    /// polls also re-read the database every `POLL_INTERVAL`.
    committed: watch::Sender<i64>,
}

impl AclStore {
    pub fn new(database: Database) -> Self {
        Self {
            database,
            committed: watch::channel(0).0,
        }
    }

    fn publish(&self, version: i64) {
        self.committed.send_if_modified(|latest| {
            let newer = version > *latest;
            if newer {
                *latest = version;
            }
            newer
        });
    }

    /// Restricts `subject` from `action` from `now` for `ttl` (zero: until lifted), replacing
    /// the reason and expiry of a restriction already there. Returns once committed.
    pub async fn restrict(
        &self,
        subject: &str,
        action: &str,
        reason: &str,
        ttl: Duration,
        now: i64,
    ) -> Result<Restriction, Error> {
        check_key(subject, action)?;
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(Error::Invalid("reason must be at most 1000 characters"));
        }
        let expire_time = expiry(now, ttl)?;
        let mut tx = self.database.writes().begin().await?;
        let version = next_version(&mut tx).await?;
        sqlx::query(
            "INSERT INTO restrictions
               (subject, action, reason, restricted, create_time, expire_time, version)
             VALUES ($1, $2, $3, 1, $4, $5, $6)
             ON CONFLICT (subject, action) DO UPDATE SET
               reason = excluded.reason,
               restricted = 1,
               create_time = excluded.create_time,
               expire_time = excluded.expire_time,
               version = excluded.version",
        )
        .bind(subject)
        .bind(action)
        .bind(reason)
        .bind(now)
        .bind(expire_time.unwrap_or(0))
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.publish(version);
        Ok(Restriction {
            subject: subject.to_string(),
            action: action.to_string(),
            reason: reason.to_string(),
            create_time: now,
            expire_time,
        })
    }

    /// Lifts the restriction in force on `subject` for `action`, leaving a tombstone with a new
    /// version for the feed; `NotFound` when there is none (never made, lifted, or expired).
    /// Returns once committed.
    pub async fn lift(&self, subject: &str, action: &str, now: i64) -> Result<(), Error> {
        check_key(subject, action)?;
        let mut tx = self.database.writes().begin().await?;
        // The version first: it takes the counter's lock, so no other writer changes the row
        // between the check below and the tombstone. Rolled back if there is nothing to lift.
        let version = next_version(&mut tx).await?;
        let in_force: Option<(i64,)> = sqlx::query_as(
            "SELECT version FROM restrictions
              WHERE subject = $1 AND action = $2 AND restricted = 1
                AND (expire_time = 0 OR expire_time > $3)",
        )
        .bind(subject)
        .bind(action)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if in_force.is_none() {
            tx.rollback().await?;
            return Err(Error::NotFound);
        }
        sqlx::query(
            "UPDATE restrictions SET restricted = 0, reason = '', expire_time = 0, version = $3
              WHERE subject = $1 AND action = $2",
        )
        .bind(subject)
        .bind(action)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.publish(version);
        Ok(())
    }

    /// `subject`'s restrictions in force at `now`, by action.
    pub async fn list(&self, subject: &str, now: i64) -> Result<Vec<Restriction>, Error> {
        check_subject(subject)?;
        let rows: Vec<RestrictionRow> = sqlx::query_as(
            "SELECT subject, action, reason, create_time, expire_time FROM restrictions
              WHERE subject = $1 AND restricted = 1 AND (expire_time = 0 OR expire_time > $2)
              ORDER BY action",
        )
        .bind(subject)
        .bind(now)
        .fetch_all(self.database.reads())
        .await?;
        Ok(rows.into_iter().map(restriction).collect())
    }

    /// The changes after `since`, oldest first, at most `page_size` (0: `DEFAULT_PAGE_SIZE`,
    /// capped at `MAX_PAGE_SIZE`). With none, waits up to `wait` (capped at `MAX_WAIT`) for
    /// one, answering as soon as one commits here or shows in the database; when the wait ends,
    /// answers an empty page at `since`.
    ///
    /// A `since` beyond the database's current version (it was reset, or restored from an
    /// older backup) gets the whole feed from the start, at once: the reader can tell by the
    /// answer's versions (all at most `since`, or `version` below it) that it must replace its
    /// copy rather than patch it.
    pub async fn changes(
        &self,
        since: i64,
        page_size: i32,
        wait: Duration,
    ) -> Result<Changes, Error> {
        let limit = page_limit(page_size)?;
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        // Subscribed before the first read, so a commit between a read and the wait wakes it.
        let mut committed = self.committed.subscribe();
        loop {
            let page = self.page(since, limit).await?;
            // A page moves on from `since` when it has changes or sends the reader back.
            let now = Instant::now();
            if page.version != since || now >= deadline {
                return Ok(page);
            }
            tokio::select! {
                Ok(()) = committed.changed() => {}
                () = tokio::time::sleep_until(deadline.min(now + POLL_INTERVAL)) => {}
            }
        }
    }

    async fn page(&self, since: i64, limit: i64) -> Result<Changes, Error> {
        let (current,): (i64,) = sqlx::query_as("SELECT version FROM acl_version WHERE id = 1")
            .fetch_one(self.database.reads())
            .await?;
        let after = if since > current { 0 } else { since };
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT version, subject, action, restricted, expire_time FROM restrictions
              WHERE version > $1 ORDER BY version LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.database.reads())
        .await?;
        let version = rows.last().map_or(after, |row| row.0);
        let changes = rows
            .into_iter()
            .map(
                |(version, subject, action, restricted, expire_time)| Change {
                    version,
                    subject,
                    action,
                    restricted: restricted != 0,
                    expire_time,
                },
            )
            .collect();
        Ok(Changes { changes, version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const NOW: i64 = 1_700_000_000;
    const FOREVER: Duration = Duration::ZERO;

    async fn pool() -> Database {
        service_kit::open_database("sqlite::memory:", MIGRATIONS)
            .await
            .unwrap()
    }

    async fn store() -> AclStore {
        AclStore::new(pool().await)
    }

    fn actions(restrictions: Vec<Restriction>) -> Vec<String> {
        restrictions.into_iter().map(|r| r.action).collect()
    }

    fn keys(changes: &Changes) -> Vec<(String, String, bool)> {
        changes
            .changes
            .iter()
            .map(|c| (c.subject.clone(), c.action.clone(), c.restricted))
            .collect()
    }

    fn key(subject: &str, action: &str, restricted: bool) -> (String, String, bool) {
        (subject.into(), action.into(), restricted)
    }

    #[tokio::test]
    async fn restrict_list_lift_round_trip() {
        let store = store().await;
        let buy = store
            .restrict("u1", "buy", "fraud", FOREVER, NOW)
            .await
            .unwrap();
        assert_eq!(
            buy,
            Restriction {
                subject: "u1".into(),
                action: "buy".into(),
                reason: "fraud".into(),
                create_time: NOW,
                expire_time: None,
            }
        );
        store
            .restrict("u1", "list", "spam", FOREVER, NOW)
            .await
            .unwrap();
        store.restrict("u2", "buy", "", FOREVER, NOW).await.unwrap();
        assert_eq!(
            actions(store.list("u1", NOW).await.unwrap()),
            ["buy", "list"]
        );
        assert_eq!(store.list("u1", NOW).await.unwrap()[0], buy);

        // Restricting again replaces the reason and the expiry.
        let again = store
            .restrict("u1", "buy", "chargebacks", Duration::from_secs(60), NOW + 5)
            .await
            .unwrap();
        assert_eq!(again.expire_time, Some(NOW + 65));
        assert_eq!(store.list("u1", NOW + 5).await.unwrap()[0], again);

        store.lift("u1", "buy", NOW + 10).await.unwrap();
        assert_eq!(actions(store.list("u1", NOW + 10).await.unwrap()), ["list"]);
        assert!(matches!(
            store.lift("u1", "buy", NOW + 10).await,
            Err(Error::NotFound)
        ));
        assert_eq!(actions(store.list("u2", NOW + 10).await.unwrap()), ["buy"]);

        // A lifted pair can be restricted again.
        store
            .restrict("u1", "buy", "again", FOREVER, NOW + 20)
            .await
            .unwrap();
        assert_eq!(
            actions(store.list("u1", NOW + 20).await.unwrap()),
            ["buy", "list"]
        );
    }

    #[tokio::test]
    async fn lifting_what_is_not_restricted_is_not_found_and_takes_no_version() {
        let store = store().await;
        assert!(matches!(
            store.lift("nobody", "buy", NOW).await,
            Err(Error::NotFound)
        ));
        let feed = store.changes(0, 0, Duration::ZERO).await.unwrap();
        assert_eq!(
            feed,
            Changes {
                changes: vec![],
                version: 0
            }
        );
        store.restrict("u1", "buy", "", FOREVER, NOW).await.unwrap();
        let feed = store.changes(0, 0, Duration::ZERO).await.unwrap();
        assert_eq!(
            feed.changes[0].version, 1,
            "the failed lift was rolled back"
        );
    }

    #[tokio::test]
    async fn restrictions_expire() {
        let store = store().await;
        let buy = store
            .restrict("u1", "buy", "cool-off", Duration::from_secs(1), NOW)
            .await
            .unwrap();
        assert_eq!(buy.expire_time, Some(NOW + 1));
        assert_eq!(actions(store.list("u1", NOW).await.unwrap()), ["buy"]);
        assert!(store.list("u1", NOW + 1).await.unwrap().is_empty());
        assert!(matches!(
            store.lift("u1", "buy", NOW + 1).await,
            Err(Error::NotFound)
        ));

        // Part of a second counts as a whole one.
        let list = store
            .restrict("u1", "list", "", Duration::from_millis(1), NOW)
            .await
            .unwrap();
        assert_eq!(list.expire_time, Some(NOW + 1));

        // The feed still carries the expired restriction, with its expiry for the reader.
        let feed = store.changes(0, 0, Duration::ZERO).await.unwrap();
        assert!(feed.changes[0].restricted);
        assert_eq!(feed.changes[0].expire_time, NOW + 1);
    }

    #[tokio::test]
    async fn invalid_requests() {
        let store = store().await;
        let invalid = |result: Result<Restriction, Error>| match result {
            Err(Error::Invalid(why)) => why,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert_eq!(
            invalid(store.restrict("", "buy", "", FOREVER, NOW).await),
            "subject is required"
        );
        assert_eq!(
            invalid(store.restrict("u", "", "", FOREVER, NOW).await),
            "action is required"
        );
        for action in ["Buy", "buy now", "kaufen!", "ação", &"a".repeat(65)] {
            invalid(store.restrict("u", action, "", FOREVER, NOW).await);
        }
        for action in ["a.b-c_9", &"a".repeat(64)] {
            store.restrict("u", action, "", FOREVER, NOW).await.unwrap();
        }
        invalid(
            store
                .restrict(&"s".repeat(257), "buy", "", FOREVER, NOW)
                .await,
        );
        store
            .restrict(&"s".repeat(256), "buy", "", FOREVER, NOW)
            .await
            .unwrap();
        invalid(
            store
                .restrict("u", "buy", &"é".repeat(1001), FOREVER, NOW)
                .await,
        );
        store
            .restrict("u", "buy", &"é".repeat(1000), FOREVER, NOW)
            .await
            .unwrap();
        assert_eq!(
            invalid(store.restrict("u", "buy", "", Duration::MAX, NOW).await),
            "ttl is too long"
        );

        assert!(matches!(
            duration(-1, 0, "ttl must not be negative"),
            Err(Error::Invalid("ttl must not be negative"))
        ));
        assert!(matches!(duration(0, -1, "x"), Err(Error::Invalid("x"))));
        assert_eq!(
            duration(2, 5, "x").unwrap(),
            Duration::from_secs(2) + Duration::from_nanos(5)
        );

        assert!(matches!(
            store.lift("", "buy", NOW).await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            store.lift("u", "BUY", NOW).await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(store.list("", NOW).await, Err(Error::Invalid(_))));
        assert!(matches!(
            store.changes(0, -1, Duration::ZERO).await,
            Err(Error::Invalid(_))
        ));
        assert_eq!(page_limit(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_limit(20_000).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(page_limit(7).unwrap(), 7);
    }

    #[tokio::test]
    async fn the_feed_carries_each_pair_once_in_its_latest_state() {
        let store = store().await;
        store.restrict("u1", "buy", "", FOREVER, NOW).await.unwrap();
        store
            .restrict("u1", "list", "", Duration::from_secs(60), NOW)
            .await
            .unwrap();
        store.restrict("u2", "buy", "", FOREVER, NOW).await.unwrap();
        store.lift("u1", "buy", NOW).await.unwrap();

        let all = store.changes(0, 0, Duration::ZERO).await.unwrap();
        assert_eq!(
            keys(&all),
            [
                key("u1", "list", true),
                key("u2", "buy", true),
                key("u1", "buy", false),
            ]
        );
        assert!(all.changes.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(all.version, 4);
        assert_eq!(all.changes[0].expire_time, NOW + 60);
        assert_eq!(all.changes[2].expire_time, 0);

        // Pages of two walk the same feed.
        let mut since = 0;
        let mut walked = Vec::new();
        loop {
            let page = store.changes(since, 2, Duration::ZERO).await.unwrap();
            assert!(page.changes.len() <= 2);
            if page.changes.is_empty() {
                assert_eq!(page.version, since);
                break;
            }
            assert!(page.changes.iter().all(|c| c.version > since));
            since = page.version;
            walked.extend(page.changes);
        }
        assert_eq!(walked, all.changes);

        // Nothing newer: an empty page where the reader is.
        assert_eq!(
            store.changes(4, 0, Duration::ZERO).await.unwrap(),
            Changes {
                changes: vec![],
                version: 4
            }
        );
        // A reader ahead of the database starts over.
        assert_eq!(store.changes(99, 0, Duration::ZERO).await.unwrap(), all);
    }

    #[tokio::test]
    async fn a_reader_ahead_of_an_empty_database_is_sent_back_at_once() {
        let store = store().await;
        let started = Instant::now();
        let page = store.changes(42, 0, Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            page,
            Changes {
                changes: vec![],
                version: 0
            }
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_long_poll_answers_as_soon_as_something_is_restricted() {
        let store = Arc::new(store().await);
        store.restrict("u1", "buy", "", FOREVER, NOW).await.unwrap();
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { store.changes(1, 0, Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        store
            .restrict("u2", "list", "", FOREVER, NOW)
            .await
            .unwrap();
        let committed = Instant::now();
        let page = waiting.await.unwrap().unwrap();
        assert!(
            committed.elapsed() < Duration::from_millis(100),
            "answered {:?} after the commit",
            committed.elapsed()
        );
        assert_eq!(keys(&page), [key("u2", "list", true)]);
        assert_eq!(page.version, 2);
    }

    #[tokio::test]
    async fn a_long_poll_sees_what_another_replica_commits() {
        let pool = pool().await;
        let here = Arc::new(AclStore::new(pool.clone()));
        let there = AclStore::new(pool);
        let waiting = tokio::spawn({
            let here = here.clone();
            async move { here.changes(0, 0, Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        there.restrict("u1", "buy", "", FOREVER, NOW).await.unwrap();
        let committed = Instant::now();
        let page = waiting.await.unwrap().unwrap();
        assert!(
            committed.elapsed() < POLL_INTERVAL + Duration::from_millis(200),
            "answered {:?} after the commit",
            committed.elapsed()
        );
        assert_eq!(keys(&page), [key("u1", "buy", true)]);
    }

    #[tokio::test]
    async fn an_idle_long_poll_answers_empty_when_the_wait_ends() {
        let store = store().await;
        store.restrict("u1", "buy", "", FOREVER, NOW).await.unwrap();
        let started = Instant::now();
        let page = store
            .changes(1, 0, Duration::from_millis(300))
            .await
            .unwrap();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "waited {waited:?}");
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
        assert_eq!(
            page,
            Changes {
                changes: vec![],
                version: 1
            }
        );
    }
}
