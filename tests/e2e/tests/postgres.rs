//! The data services on PostgreSQL instead of SQLite, by configuration only (`DATABASE_URL`):
//! the same binaries and migrations against a real PostgreSQL server that the test starts
//! (Debian's package, on loopback), behind the real Envoy. The walkthrough works, the rows are
//! in PostgreSQL, and acknowledged writes survive a SIGKILL of the service.

use edge_e2e::{Edge, Options, Postgres, GOLDIE_ID};
use serde_json::{json, Value};

#[tokio::test]
async fn data_services_run_on_postgresql() {
    let postgres = Postgres::start(&["customer", "item"]).await;
    let mut edge = Edge::start_with(Options {
        database_urls: [
            ("customer".to_string(), postgres.url("customer")),
            ("item".to_string(), postgres.url("item")),
        ]
        .into(),
        ..Options::default()
    })
    .await;

    // The seed data came in through the migrations, on PostgreSQL.
    assert_eq!(
        postgres.query(
            "customer",
            &format!("SELECT name FROM customers WHERE id = '{GOLDIE_ID}'")
        ),
        "goldie\n"
    );
    assert!(!edge.dir.join("customer.db").exists() && !edge.dir.join("item.db").exists());

    let signup = edge
        .http
        .post(edge.url("/auth/signup"))
        .json(&json!({"name": "pg-gopher"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), 200);
    let token = edge.signin("pg-gopher").await;
    let created: Value = edge
        .http
        .post(edge.url("/catalog/items"))
        .bearer_auth(&token)
        .json(&json!({"title": "Elephant", "price": 4200}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("JSON");
    let id = created["item"]["id"].as_str().expect("created").to_string();
    assert_eq!(created["item"]["customer_name"], "pg-gopher");
    assert_eq!(
        postgres.query(
            "item",
            &format!("SELECT title, price FROM items WHERE id = '{id}'")
        ),
        "Elephant|4200\n"
    );

    // SIGKILL: what was acknowledged is in PostgreSQL, and the service comes back to it.
    edge.kill_service("item");
    edge.restart_service("item");
    let listed: Value = edge
        .http
        .get(edge.url("/catalog/items"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    let titles: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| item["title"].as_str())
        .collect();
    assert!(titles.contains(&"Elephant"), "{titles:?}");
    assert!(
        titles.contains(&"Mobile Phone"),
        "seed items too: {titles:?}"
    );
}
