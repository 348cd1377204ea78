//! Customers and where they are kept.

use service_kit::Database;
use service_kit::Migration;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create customers",
        sql: "CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    },
    Migration {
        version: 2,
        // goldie, the Mercari example's seed customer, with a fixed id that item's seed uses.
        name: "seed goldie",
        sql: "INSERT INTO customers (id, name) VALUES ('7c0cde05-4df0-47f4-94c4-978dd9f56e5c', 'goldie')",
    },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub name: String,
}

#[derive(Debug)]
pub enum Error {
    InvalidName(&'static str),
    TooMany(&'static str),
    NameTaken,
    NotFound,
    Database(sqlx::Error),
}

const MAX_NAME_CHARS: usize = 64;

/// A valid customer name: 1 to 64 characters, no control characters.
fn check_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::InvalidName("name must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::InvalidName("name must be at most 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidName(
            "name must not contain control characters",
        ));
    }
    Ok(())
}

/// The most ids one batch lookup takes (a page of items has at most 1000 owners).
pub const MAX_BATCH: usize = 1000;

pub struct CustomerStore {
    database: Database,
}

impl CustomerStore {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Creates a customer; returns only once the row is committed.
    pub async fn create(&self, name: &str) -> Result<Customer, Error> {
        check_name(name)?;
        let customer = Customer {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
        };
        let inserted = sqlx::query("INSERT INTO customers (id, name) VALUES ($1, $2)")
            .bind(&customer.id)
            .bind(&customer.name)
            .execute(self.database.writes())
            .await;
        match inserted {
            Ok(_) => Ok(customer),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::NameTaken),
            Err(e) => Err(Error::Database(e)),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Customer, Error> {
        self.find("SELECT id, name FROM customers WHERE id = $1", id)
            .await
    }

    /// The customers with these ids (at most `MAX_BATCH`), in no particular order; unknown ids
    /// are left out. One query however many ids.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Customer>, Error> {
        if ids.len() > MAX_BATCH {
            return Err(Error::TooMany("at most 1000 ids at once"));
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT id, name FROM customers WHERE id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_as::<_, (String, String)>(&sql);
        for id in ids {
            query = query.bind(id);
        }
        let rows = query
            .fetch_all(self.database.reads())
            .await
            .map_err(Error::Database)?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| Customer { id, name })
            .collect())
    }

    pub async fn get_by_name(&self, name: &str) -> Result<Customer, Error> {
        self.find("SELECT id, name FROM customers WHERE name = $1", name)
            .await
    }

    async fn find(&self, sql: &str, key: &str) -> Result<Customer, Error> {
        let row: Option<(String, String)> = sqlx::query_as(sql)
            .bind(key)
            .fetch_optional(self.database.reads())
            .await
            .map_err(Error::Database)?;
        row.map(|(id, name)| Customer { id, name })
            .ok_or(Error::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> CustomerStore {
        let pool = service_kit::open_database("sqlite::memory:", MIGRATIONS)
            .await
            .unwrap();
        CustomerStore::new(pool)
    }

    #[tokio::test]
    async fn create_then_find_both_ways() {
        let store = store().await;
        let gopher = store.create("gopher").await.unwrap();
        assert_eq!(store.get(&gopher.id).await.unwrap(), gopher);
        assert_eq!(store.get_by_name("gopher").await.unwrap(), gopher);
        assert_eq!(
            store
                .get("7c0cde05-4df0-47f4-94c4-978dd9f56e5c")
                .await
                .unwrap()
                .name,
            "goldie"
        );
    }

    #[tokio::test]
    async fn batch_lookups_take_one_query_and_skip_unknown_ids() {
        let store = store().await;
        let gopher = store.create("gopher").await.unwrap();
        let ids = vec![gopher.id.clone(), "unknown".into(), gopher.id.clone()];
        let found = store.get_many(&ids).await.unwrap();
        assert_eq!(found, vec![gopher]);
        assert!(store.get_many(&[]).await.unwrap().is_empty());
        let too_many = vec!["x".to_string(); MAX_BATCH + 1];
        assert!(matches!(
            store.get_many(&too_many).await,
            Err(Error::TooMany(_))
        ));
    }

    #[tokio::test]
    async fn domain_errors() {
        let store = store().await;
        assert!(matches!(
            store.create("goldie").await,
            Err(Error::NameTaken)
        ));
        assert!(matches!(
            store.create(" ").await,
            Err(Error::InvalidName(_))
        ));
        assert!(matches!(
            store.create(&"x".repeat(65)).await,
            Err(Error::InvalidName(_))
        ));
        assert!(matches!(
            store.create("a\nb").await,
            Err(Error::InvalidName(_))
        ));
        assert!(matches!(store.get("missing").await, Err(Error::NotFound)));
    }
}
