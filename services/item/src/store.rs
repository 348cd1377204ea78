//! Items and where they are kept.

use service_kit::Database;
use service_kit::Migration;
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
    Migration {
        version: 3,
        name: "items can be bought",
        // NULL while for sale.
        sql: "ALTER TABLE items ADD COLUMN buyer_id TEXT",
    },
    Migration {
        version: 4,
        name: "items have an image",
        // BYTEA is PostgreSQL's bytes; SQLite keeps a BLOB as it is whatever the column says.
        sql: "CREATE TABLE item_images (
                item_id TEXT PRIMARY KEY REFERENCES items (id),
                content_type TEXT NOT NULL,
                data BYTEA NOT NULL
              )",
    },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub customer_id: String,
    pub title: String,
    pub price: i64,
    /// Who bought it; `None` while it is for sale.
    pub buyer_id: Option<String>,
}

#[derive(Debug)]
pub enum Error {
    Invalid(&'static str),
    NotFound,
    /// The request is valid but the item's state refuses it (sold, or the buyer's own).
    FailedPrecondition(&'static str),
    /// The caller may not do this to the item (not its seller).
    PermissionDenied(&'static str),
    Database(sqlx::Error),
}

/// The clock `created_at` is read from: µs since the epoch.
fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
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

#[derive(Clone)]
pub struct ItemStore {
    database: Database,
}

type ItemRow = (String, String, String, i64, Option<String>);

const ITEM_COLUMNS: &str = "id, customer_id, title, price, buyer_id";

fn item((id, customer_id, title, price, buyer_id): ItemRow) -> Item {
    Item {
        id,
        customer_id,
        title,
        price,
        buyer_id,
    }
}

impl ItemStore {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Creates an item; returns only once the row is committed.
    pub async fn create(&self, customer_id: &str, title: &str, price: i64) -> Result<Item, Error> {
        check(customer_id, title, price)?;
        let created_at = now_micros();
        let item = Item {
            id: uuid::Uuid::new_v4().to_string(),
            customer_id: customer_id.to_string(),
            title: title.to_string(),
            price,
            buyer_id: None,
        };
        sqlx::query(
            "INSERT INTO items (id, customer_id, title, price, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&item.id)
        .bind(&item.customer_id)
        .bind(&item.title)
        .bind(item.price)
        .bind(created_at)
        .execute(self.database.writes())
        .await
        .map_err(Error::Database)?;
        Ok(item)
    }

    pub async fn get(&self, id: &str) -> Result<Item, Error> {
        let row: Option<ItemRow> =
            sqlx::query_as(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.database.reads())
                .await
                .map_err(Error::Database)?;
        row.map(item).ok_or(Error::NotFound)
    }

    /// Sells the item to `buyer_id`; returns only once the sale is committed. The sale is one
    /// conditional UPDATE ("still for sale, not the buyer's own"), so of concurrent buyers
    /// exactly one changes the row: SQLite serializes writers, and PostgreSQL makes the others
    /// wait on the row lock and then re-check the condition against the committed sale.
    pub async fn purchase(&self, id: &str, buyer_id: &str) -> Result<Item, Error> {
        if buyer_id.is_empty() {
            return Err(Error::Invalid("buyer_id is required"));
        }
        let mut tx = self
            .database
            .writes()
            .begin()
            .await
            .map_err(Error::Database)?;
        let sold = sqlx::query(
            "UPDATE items SET buyer_id = $1 WHERE id = $2 AND buyer_id IS NULL AND customer_id <> $1",
        )
        .bind(buyer_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(Error::Database)?
        .rows_affected()
            == 1;
        let row: Option<ItemRow> =
            sqlx::query_as(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::Database)?;
        tx.commit().await.map_err(Error::Database)?;
        let item = row.map(item).ok_or(Error::NotFound)?;
        match sold {
            true => Ok(item),
            false if item.customer_id == buyer_id => {
                Err(Error::FailedPrecondition("you cannot buy your own item"))
            }
            false => Err(Error::FailedPrecondition("the item is already sold")),
        }
    }

    /// One page of items, oldest first, and where the next page starts (`None`: this was the
    /// last). Keyset pagination: a page costs the same wherever it is in the list.
    pub async fn list(&self, page: Page) -> Result<(Vec<Item>, Option<Cursor>), Error> {
        let start = page.after.unwrap_or(Cursor {
            created_at: i64::MIN,
            id: String::new(),
        });
        // One more than asked tells whether a next page exists.
        let mut rows = self.listed_after(&start, page.size + 1).await?;
        let more = rows.len() > page.size as usize;
        rows.truncate(page.size as usize);
        let next = rows.last().map(|(_, cursor)| cursor.clone());
        Ok((
            rows.into_iter().map(|(item, _)| item).collect(),
            next.filter(|_| more),
        ))
    }

    /// Up to `size` items listed after `after`, oldest first, each with its cursor. A watcher
    /// polls with the last cursor it saw. (An item whose insert commits after a later one's
    /// poll, with an earlier `created_at`, is missed: the window is the time between reading
    /// the clock and committing one insert.)
    pub async fn listed_after(
        &self,
        after: &Cursor,
        size: u32,
    ) -> Result<Vec<(Item, Cursor)>, Error> {
        let rows: Vec<(String, String, String, i64, Option<String>, i64)> =
            sqlx::query_as(&format!(
                "SELECT {ITEM_COLUMNS}, created_at FROM items
                  WHERE created_at > $1 OR (created_at = $1 AND id > $2)
                  ORDER BY created_at, id LIMIT $3"
            ))
            .bind(after.created_at)
            .bind(&after.id)
            .bind(i64::from(size))
            .fetch_all(self.database.reads())
            .await
            .map_err(Error::Database)?;
        Ok(rows
            .into_iter()
            .map(|(id, customer_id, title, price, buyer_id, created_at)| {
                let cursor = Cursor {
                    created_at,
                    id: id.clone(),
                };
                (item((id, customer_id, title, price, buyer_id)), cursor)
            })
            .collect())
    }
}

/// An item's image: its media type and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub content_type: String,
    pub data: Vec<u8>,
}

impl ItemStore {
    /// Sets (or replaces) the image of `id`, if `customer_id` is its seller; returns once it is
    /// committed, with the media type kept.
    pub async fn put_image(
        &self,
        id: &str,
        customer_id: &str,
        content_type: &str,
        data: &[u8],
    ) -> Result<&'static str, Error> {
        let content_type = crate::image::check(content_type, data)?;
        let mut tx = self
            .database
            .writes()
            .begin()
            .await
            .map_err(Error::Database)?;
        let seller: Option<(String,)> =
            sqlx::query_as("SELECT customer_id FROM items WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::Database)?;
        match seller {
            None => return Err(Error::NotFound),
            Some((seller,)) if seller != customer_id => {
                return Err(Error::PermissionDenied(
                    "only the item's seller can change its image",
                ))
            }
            Some(_) => {}
        }
        sqlx::query(
            "INSERT INTO item_images (item_id, content_type, data) VALUES ($1, $2, $3)
             ON CONFLICT (item_id) DO UPDATE SET content_type = excluded.content_type, data = excluded.data",
        )
        .bind(id)
        .bind(content_type)
        .bind(data)
        .execute(&mut *tx)
        .await
        .map_err(Error::Database)?;
        tx.commit().await.map_err(Error::Database)?;
        Ok(content_type)
    }

    /// The image of `id`: `NotFound` for an item without one, or no such item.
    pub async fn image(&self, id: &str) -> Result<Image, Error> {
        let row: Option<(String, Vec<u8>)> =
            sqlx::query_as("SELECT content_type, data FROM item_images WHERE item_id = $1")
                .bind(id)
                .fetch_optional(self.database.reads())
                .await
                .map_err(Error::Database)?;
        row.map(|(content_type, data)| Image { content_type, data })
            .ok_or(Error::NotFound)
    }
}

/// Where a page starts: after this item (the list's order is `created_at`, then `id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    created_at: i64,
    id: String,
}

/// A page request, checked: AIP-158's `page_size` and `page_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    size: u32,
    after: Option<Cursor>,
}

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

impl Page {
    /// `page_size` 0 is the default and larger than the maximum is the maximum (AIP-158);
    /// negative sizes and tokens this service did not write are invalid.
    pub fn new(size: i32, token: &str) -> Result<Self, Error> {
        let size = match u32::try_from(size) {
            Err(_) => return Err(Error::Invalid("page_size must not be negative")),
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(size) => size.min(MAX_PAGE_SIZE),
        };
        let after = if token.is_empty() {
            None
        } else {
            Some(Cursor::decode(token).ok_or(Error::Invalid("page_token is not valid"))?)
        };
        Ok(Self { size, after })
    }
}

impl Cursor {
    /// Just before anything listed from now on.
    pub fn now() -> Self {
        Self {
            created_at: now_micros(),
            id: String::new(),
        }
    }

    /// An opaque token: base64url of `created_at:id`.
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}", self.created_at, self.id))
    }

    fn decode(token: &str) -> Option<Self> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (created_at, id) = text.split_once(':')?;
        Some(Self {
            created_at: created_at.parse().ok()?,
            id: id.to_string(),
        })
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
        let (items, next) = store.list(Page::new(0, "").unwrap()).await.unwrap();
        let titles: Vec<String> = items.into_iter().map(|i| i.title).collect();
        assert_eq!(titles, ["Mobile Phone", "Laptop", "Desk"]);
        assert_eq!(next, None, "one page holds them all");
    }

    #[tokio::test]
    async fn pages_walk_the_list_once_in_order() {
        let store = store().await;
        for n in 0..5 {
            store.create("c1", &format!("Item {n}"), 10).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let (items, next) = store.list(Page::new(2, &token).unwrap()).await.unwrap();
            assert!(items.len() <= 2);
            seen.extend(items.into_iter().map(|i| i.title));
            pages += 1;
            match next {
                Some(cursor) => token = cursor.encode(),
                None => break,
            }
        }
        assert_eq!(pages, 4, "7 items, 2 a page");
        assert_eq!(seen.len(), 7);
        assert_eq!(seen[..2], ["Mobile Phone", "Laptop"]);
        assert_eq!(
            seen[2..],
            ["Item 0", "Item 1", "Item 2", "Item 3", "Item 4"]
        );
    }

    #[test]
    fn page_sizes_and_tokens_as_aip_158_says() {
        assert_eq!(Page::new(0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(Page::new(5000, "").unwrap().size, MAX_PAGE_SIZE);
        assert!(matches!(Page::new(-1, ""), Err(Error::Invalid(_))));
        assert!(matches!(
            Page::new(10, "not a token"),
            Err(Error::Invalid(_))
        ));
        let cursor = Cursor {
            created_at: 42,
            id: "a:b".into(),
        };
        assert_eq!(Page::new(1, &cursor.encode()).unwrap().after, Some(cursor));
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

    #[tokio::test]
    async fn only_the_seller_sets_an_image_and_it_reads_back_as_it_was() {
        let store = store().await;
        let item = store.create("seller", "Camera", 5000).await.unwrap();
        assert!(matches!(store.image(&item.id).await, Err(Error::NotFound)));
        let png = b"\x89PNG\r\n\x1a\n\x00\xff".to_vec();
        assert_eq!(
            store
                .put_image(&item.id, "seller", "image/PNG", &png)
                .await
                .unwrap(),
            "image/png"
        );
        let image = store.image(&item.id).await.unwrap();
        assert_eq!(
            (image.content_type.as_str(), image.data),
            ("image/png", png)
        );
        let gif = b"GIF89a\x01\x00".to_vec();
        store
            .put_image(&item.id, "seller", "image/gif", &gif)
            .await
            .unwrap();
        assert_eq!(store.image(&item.id).await.unwrap().data, gif, "replaced");
        assert!(matches!(
            store
                .put_image(&item.id, "someone", "image/gif", &gif)
                .await,
            Err(Error::PermissionDenied(_))
        ));
        assert!(matches!(
            store
                .put_image("missing", "seller", "image/gif", &gif)
                .await,
            Err(Error::NotFound)
        ));
        assert!(matches!(
            store.put_image(&item.id, "seller", "image/png", &gif).await,
            Err(Error::Invalid("the body is not a PNG image"))
        ));
        assert_eq!(store.image(&item.id).await.unwrap().data, gif, "kept");
    }

    #[tokio::test]
    async fn an_item_is_sold_once_and_never_to_its_owner() {
        let store = store().await;
        let item = store.create("seller", "Desk", 1500).await.unwrap();
        assert!(matches!(
            store.purchase(&item.id, "seller").await,
            Err(Error::FailedPrecondition("you cannot buy your own item"))
        ));
        let sold = store.purchase(&item.id, "buyer").await.unwrap();
        assert_eq!(sold.buyer_id.as_deref(), Some("buyer"));
        assert_eq!(store.get(&item.id).await.unwrap(), sold);
        for buyer in ["buyer", "another"] {
            assert!(matches!(
                store.purchase(&item.id, buyer).await,
                Err(Error::FailedPrecondition("the item is already sold"))
            ));
        }
        assert!(matches!(
            store.purchase("missing", "buyer").await,
            Err(Error::NotFound)
        ));
        assert!(matches!(
            store.purchase(&item.id, "").await,
            Err(Error::Invalid(_))
        ));
    }
}
