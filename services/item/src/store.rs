//! Items and where they are kept.

use service_kit::Migration;
use sqlx::AnyPool;
use std::time::{SystemTime, UNIX_EPOCH};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create items",
        // created_at (µs since the epoch) orders listings; ids are random.
        sql: "CREATE TABLE items (
                id TEXT PRIMARY KEY,
                customer_id TEXT NOT NULL,
                title TEXT NOT NULL,
                price BIGINT NOT NULL,
                created_at BIGINT NOT NULL
              )",
    },
    Migration {
        version: 2,
        name: "seed goldie's items",
        sql: "INSERT INTO items (id, customer_id, title, price, created_at) VALUES
                ('e0e58243-4138-48e5-8aba-448a8888e2ff', '7c0cde05-4df0-47f4-94c4-978dd9f56e5c', 'Mobile Phone', 10000, 1);
              INSERT INTO items (id, customer_id, title, price, created_at) VALUES
                ('0b185d96-d6fa-4eaf-97f6-3f6d2c1649b6', '7c0cde05-4df0-47f4-94c4-978dd9f56e5c', 'Laptop', 20000, 2)",
    },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub customer_id: String,
    pub title: String,
    pub price: i64,
}

#[derive(Debug)]
pub enum Error {
    Invalid(&'static str),
    NotFound,
    Database(sqlx::Error),
}

/// What a new item must satisfy.
fn check(customer_id: &str, title: &str, price: i64) -> Result<(), Error> {
    if customer_id.is_empty() {
        return Err(Error::Invalid("customer_id is required"));
    }
    if title.trim().is_empty() {
        return Err(Error::Invalid("title must not be empty"));
    }
    if title.chars().count() > 200 {
        return Err(Error::Invalid("title must be at most 200 characters"));
    }
    if price <= 0 {
        return Err(Error::Invalid("price must be positive"));
    }
    Ok(())
}

pub struct ItemStore {
    pool: AnyPool,
}

type ItemRow = (String, String, String, i64);

fn item((id, customer_id, title, price): ItemRow) -> Item {
    Item {
        id,
        customer_id,
        title,
        price,
    }
}

impl ItemStore {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Creates an item; returns only once the row is committed.
    pub async fn create(&self, customer_id: &str, title: &str, price: i64) -> Result<Item, Error> {
        check(customer_id, title, price)?;
        let created_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let item = Item {
            id: uuid::Uuid::new_v4().to_string(),
            customer_id: customer_id.to_string(),
            title: title.to_string(),
            price,
        };
        sqlx::query(
            "INSERT INTO items (id, customer_id, title, price, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&item.id)
        .bind(&item.customer_id)
        .bind(&item.title)
        .bind(item.price)
        .bind(created_at)
        .execute(&self.pool)
        .await
        .map_err(Error::Database)?;
        Ok(item)
    }

    pub async fn get(&self, id: &str) -> Result<Item, Error> {
        let row: Option<ItemRow> =
            sqlx::query_as("SELECT id, customer_id, title, price FROM items WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::Database)?;
        row.map(item).ok_or(Error::NotFound)
    }

    /// Every item, oldest first.
    pub async fn list(&self) -> Result<Vec<Item>, Error> {
        let rows: Vec<ItemRow> = sqlx::query_as(
            "SELECT id, customer_id, title, price FROM items ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Error::Database)?;
        Ok(rows.into_iter().map(item).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> ItemStore {
        let pool = service_kit::open_database("sqlite::memory:", MIGRATIONS)
            .await
            .unwrap();
        ItemStore::new(pool)
    }

    #[tokio::test]
    async fn seed_then_create_lists_in_order() {
        let store = store().await;
        let created = store.create("c1", "Desk", 1500).await.unwrap();
        assert_eq!(store.get(&created.id).await.unwrap(), created);
        let titles: Vec<String> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.title)
            .collect();
        assert_eq!(titles, ["Mobile Phone", "Laptop", "Desk"]);
    }

    #[tokio::test]
    async fn domain_errors() {
        let store = store().await;
        assert!(matches!(
            store.create("c", "", 1).await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            store.create("c", "x", 0).await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            store.create("", "x", 1).await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(store.get("missing").await, Err(Error::NotFound)));
    }
}
