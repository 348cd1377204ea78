//! The data services on PostgreSQL instead of SQLite, by configuration only (`DATABASE_URL`):
//! the same binaries and migrations against a real PostgreSQL server that the test starts
//! (Debian's package, on loopback), behind the real Envoy. The walkthrough works, the rows are
//! in PostgreSQL, and acknowledged writes survive a SIGKILL of the service. Buying is one
//! transaction there too (a race of buyers has one winner), and the acl's restrictions are
//! enforced from PostgreSQL.

use edge_e2e::{Edge, Options, Postgres, GOLDIE_ID};
use serde_json::{json, Value};

#[tokio::test]
async fn data_services_run_on_postgresql() {
    let postgres = Postgres::start(&["customer", "item", "acl"]).await;
    let mut edge = Edge::start_with(Options {
        database_urls: [
            ("customer".to_string(), postgres.url("customer")),
            ("item".to_string(), postgres.url("item")),
            ("acl".to_string(), postgres.url("acl")),
        ]
        .into(),
        customize: Box::new(|config| config.rate_limits.clear()),
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
    for service in ["customer", "item", "acl"] {
        assert!(
            !edge.dir.join(format!("{service}.db")).exists(),
            "{service}"
        );
    }

    let (_, token) = edge.signup("pg-gopher").await;
    let (_, created) = edge.create_item(&token, "Elephant", 4200).await;
    let id = created["item"]["id"].as_str().expect("created").to_string();
    assert_eq!(created["item"]["customer_name"], "pg-gopher");
    assert_eq!(
        postgres.query(
            "item",
            &format!("SELECT title, price FROM items WHERE id = '{id}'")
        ),
        "Elephant|4200\n"
    );
    // An image is bytes (BYTEA), kept as they came.
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff".to_vec();
    let put = edge
        .http
        .put(edge.url(&format!("/catalog/items/{id}/image")))
        .bearer_auth(&token)
        .header("content-type", "image/gif")
        .body(gif.clone())
        .send()
        .await
        .expect("PUT image");
    assert_eq!(
        put.status(),
        200,
        "{}",
        put.text().await.unwrap_or_default()
    );
    assert_eq!(
        postgres.query(
            "item",
            &format!(
                "SELECT content_type, encode(data, 'hex') FROM item_images WHERE item_id = '{id}'"
            )
        ),
        format!("image/gif|{}\n", hex(&gif))
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
    let image = edge
        .http
        .get(edge.url(&format!("/catalog/items/{id}/image")))
        .send()
        .await
        .expect("GET image");
    assert_eq!(image.headers()["content-type"], "image/gif");
    assert_eq!(image.bytes().await.expect("bytes").to_vec(), gif);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn buying_races_and_restrictions_on_postgresql() {
    let postgres = Postgres::start(&["customer", "item", "acl"]).await;
    let edge = Edge::start_with(Options {
        database_urls: ["customer", "item", "acl"]
            .iter()
            .map(|s| (s.to_string(), postgres.url(s)))
            .collect(),
        customize: Box::new(|config| config.rate_limits.clear()),
        ..Options::default()
    })
    .await;
    let (_, seller) = edge.signup("pg-seller").await;
    let (_, created) = edge.create_item(&seller, "Contested", 100).await;
    let item = created["item"]["id"].as_str().expect("id").to_string();
    // PostgreSQL serves the item service with several connections: the buyers really race.
    let mut attempts = tokio::task::JoinSet::new();
    for n in 0..16 {
        let (id, token) = edge.signup(&format!("pg-racer{n}")).await;
        let http = edge.http.clone();
        let url = edge.url(&format!("/catalog/items/{item}:purchase"));
        attempts.spawn(async move {
            let status = http
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status();
            (id, status.as_u16())
        });
    }
    let results = attempts.join_all().await;
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(
        results.iter().filter(|(_, s)| *s == 400).count(),
        15,
        "{results:?}"
    );
    assert_eq!(
        postgres.query(
            "item",
            &format!("SELECT buyer_id FROM items WHERE id = '{item}'")
        ),
        format!("{}\n", winners[0])
    );

    // A restriction kept in PostgreSQL, followed by the edge.
    let (_, admin) = edge.signup("admin").await;
    let (banned_id, banned) = edge.signup("pg-banned").await;
    let restricted = edge
        .http
        .post(edge.url("/acl/restrictions"))
        .bearer_auth(&admin)
        .json(&json!({"subject": banned_id, "action": "list", "reason": "test"}))
        .send()
        .await
        .expect("restrict");
    assert_eq!(restricted.status(), 200);
    assert_eq!(
        postgres.query(
            "acl",
            &format!("SELECT action, restricted FROM restrictions WHERE subject = '{banned_id}'")
        ),
        "list|1\n"
    );
    let start = std::time::Instant::now();
    loop {
        let status = edge
            .http
            .post(edge.url("/catalog/items"))
            .bearer_auth(&banned)
            .json(&json!({"title": "Spam", "price": 1}))
            .send()
            .await
            .expect("create")
            .status();
        if status == 403 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "still {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
