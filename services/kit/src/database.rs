//! Opening a service's database: SQLite by default, PostgreSQL with the same code and
//! migrations when `DATABASE_URL` says so. Migrations run at start-up, and the database is
//! checked before the server reports ready, so a bad URL fails fast with a clear message.

use crate::StartupError;
use sqlx::any::{install_default_drivers, AnyPoolOptions};
use sqlx::{AnyPool, Connection};
use std::path::Path;
use std::time::Duration;

/// One schema change. SQL must be portable between SQLite and PostgreSQL (plain types,
/// `$1` placeholders).
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// A service's database: where it writes and where it reads. On a SQLite file they differ: one
/// writer connection (SQLite serializes writes anyway) and a pool of read-only connections
/// beside it, which WAL lets read while the writer commits, so reads no longer queue behind
/// writes or each other. On PostgreSQL and in-memory SQLite both are the same pool. A read
/// that starts after a write was acknowledged sees it (WAL readers see every commit made
/// before their read began).
#[derive(Clone, Debug)]
pub struct Database {
    writes: AnyPool,
    reads: AnyPool,
}

impl Database {
    /// For inserts, updates and transactions that write.
    pub fn writes(&self) -> &AnyPool {
        &self.writes
    }

    /// For plain reads.
    pub fn reads(&self) -> &AnyPool {
        &self.reads
    }

    pub async fn close(&self) {
        self.reads.close().await;
        self.writes.close().await;
    }
}

/// Read-only connections beside a SQLite file's writer: enough to keep a few concurrent
/// reads from queueing on a small machine, few enough to stay cheap (each is a thread).
const SQLITE_READERS: u32 = 4;

/// Opens (creating a SQLite file and its directory if needed), applies pending migrations in
/// order, each in its own transaction, and checks the connections.
pub async fn open_database(url: &str, migrations: &[Migration]) -> Result<Database, StartupError> {
    install_default_drivers();
    if let Some(file) = sqlite_file(url) {
        if let Some(dir) = Path::new(file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create database directory {}: {e}", dir.display()))?;
        }
    }
    let pool = AnyPoolOptions::new()
        // One writer for SQLite: it serializes writes anyway, and an in-memory database is
        // private to its connection.
        .max_connections(if url.starts_with("sqlite:") { 1 } else { 8 })
        .acquire_timeout(Duration::from_secs(5))
        .connect(&with_create_mode(url))
        .await
        .map_err(|e| format!("cannot open database {}: {e}", redact(url)))?;
    if sqlite_file(url).is_some() {
        // Write-ahead logging: a commit is one append and one fsync of the log instead of
        // rewriting pages through a rollback journal, and readers do not wait for the writer.
        // `synchronous = FULL` keeps every acknowledged commit on disk, power loss included.
        // (WAL is a property of the file; FULL is also SQLite's default for new connections.)
        for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL"] {
            sqlx::query(pragma)
                .execute(&pool)
                .await
                .map_err(|e| format!("database {}: {pragma}: {e}", redact(url)))?;
        }
    }
    migrate(&pool, migrations)
        .await
        .map_err(|e| format!("cannot migrate database {}: {e}", redact(url)))?;
    let reads = match sqlite_file(url) {
        Some(_) => AnyPoolOptions::new()
            .max_connections(SQLITE_READERS)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&read_only(url))
            .await
            .map_err(|e| format!("cannot open database {} to read: {e}", redact(url)))?,
        None => pool.clone(),
    };
    for connections in [&pool, &reads] {
        connections
            .acquire()
            .await?
            .ping()
            .await
            .map_err(|e| format!("database {} does not answer: {e}", redact(url)))?;
    }
    Ok(Database {
        writes: pool,
        reads,
    })
}

async fn migrate(pool: &AnyPool, migrations: &[Migration]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
    for migration in migrations {
        let applied: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(migration.version)
                .fetch_optional(pool)
                .await?;
        if applied.is_some() {
            continue;
        }
        let mut tx = pool.begin().await?;
        for statement in migration.sql.split(';').filter(|s| !s.trim().is_empty()) {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
    }
    Ok(())
}

fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or(rest);
    (!file.is_empty() && file != ":memory:").then_some(file)
}

/// SQLite opens read-write and creates the file unless the URL says otherwise.
fn with_create_mode(url: &str) -> String {
    if sqlite_file(url).is_some() && !url.contains("mode=") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}mode=rwc")
    } else {
        url.to_string()
    }
}

/// The same SQLite file, opened read-only: a reader can never write, whatever a bug asks.
fn read_only(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("mode="))
        .chain(["mode=ro"])
        .collect();
    format!("{base}?{}", kept.join("&"))
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The gRPC status for a database error a request hit. A database too busy to take the
/// request in time (no connection within the pool's timeout, or SQLite busy or locked) is
/// UNAVAILABLE, which clients may retry; anything else is logged and INTERNAL, without the
/// database's words.
pub fn database_status(error: &sqlx::Error) -> tonic::Status {
    let busy = match error {
        sqlx::Error::PoolTimedOut => true,
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with any extended code.
        sqlx::Error::Database(e) => e
            .code()
            .and_then(|code| code.parse::<u32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    };
    if busy {
        tracing::warn!(error = %error, "database busy");
        tonic::Status::unavailable("the database is busy: try again")
    } else {
        tracing::error!(error = %error, "database error");
        tonic::Status::internal("internal error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_database_is_unavailable_and_other_errors_internal() {
        assert_eq!(
            database_status(&sqlx::Error::PoolTimedOut).code(),
            tonic::Code::Unavailable
        );
        let internal = database_status(&sqlx::Error::RowNotFound);
        assert_eq!(
            (internal.code(), internal.message()),
            (tonic::Code::Internal, "internal error")
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            sqlite_file("sqlite://data/customer.db"),
            Some("data/customer.db")
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u:p@h/db"), None);
        assert_eq!(with_create_mode("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(
            with_create_mode("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(read_only("sqlite://a.db"), "sqlite://a.db?mode=ro");
        assert_eq!(
            read_only("sqlite://a.db?mode=rwc&cache=private"),
            "sqlite://a.db?cache=private&mode=ro"
        );
        assert_eq!(
            redact("postgres://user:secret@host/db"),
            "postgres://user:***@host/db"
        );
    }

    #[tokio::test]
    async fn migrations_apply_once_and_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("kit-test-{}", std::process::id()));
        let url = format!("sqlite://{}/nested/test.db", dir.display());
        let migrations = [
            Migration {
                version: 1,
                name: "create",
                sql: "CREATE TABLE t (id TEXT PRIMARY KEY)",
            },
            Migration {
                version: 2,
                name: "seed",
                sql: "INSERT INTO t (id) VALUES ('a'); INSERT INTO t (id) VALUES ('b')",
            },
        ];
        for _ in 0..2 {
            let database = open_database(&url, &migrations).await.unwrap();
            let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
                .fetch_one(database.reads())
                .await
                .unwrap();
            assert_eq!(count, 2);
            database.close().await;
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn readers_see_every_acknowledged_write_and_cannot_write() {
        let dir = std::env::temp_dir().join(format!("kit-readers-{}", std::process::id()));
        let url = format!("sqlite://{}/readers.db", dir.display());
        let migrations = [Migration {
            version: 1,
            name: "create",
            sql: "CREATE TABLE t (n BIGINT PRIMARY KEY)",
        }];
        let database = open_database(&url, &migrations).await.unwrap();
        // Writes and reads interleaved from several tasks: each read, issued after its write
        // returned, finds it.
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let database = database.clone();
                tokio::spawn(async move {
                    for n in 0..25_i64 {
                        let key = task * 1000 + n;
                        sqlx::query("INSERT INTO t (n) VALUES ($1)")
                            .bind(key)
                            .execute(database.writes())
                            .await
                            .unwrap();
                        let found: Option<(i64,)> = sqlx::query_as("SELECT n FROM t WHERE n = $1")
                            .bind(key)
                            .fetch_optional(database.reads())
                            .await
                            .unwrap();
                        assert_eq!(found, Some((key,)));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let refused = sqlx::query("INSERT INTO t (n) VALUES (-1)")
            .execute(database.reads())
            .await;
        assert!(refused.is_err(), "a reader wrote");
        database.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn unreachable_database_fails_with_a_clear_message() {
        let error = open_database("postgres://user:pw@127.0.0.1:1/db", &[])
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("cannot open database postgres://user:***@127.0.0.1:1/db"),
            "{message}"
        );
    }
}
