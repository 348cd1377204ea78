//! The storefront page (`web/storefront`, TypeScript with connect-web) in headless Chromium
//! against the real edge, over JSON, Connect and gRPC-Web: listing and paging, opening an item,
//! signing up, buying, and the refusals it explains (401 signed out, 403 restricted, 429 too
//! many purchases), with the cross-origin exchanges the browser made. A screenshot per flow is
//! kept in the test's directory (`EDGE_STOREFRONT_SHOTS` names another).

use edge_e2e::{free_port, json_of, storefront_dir, workspace_root, Edge, Options, StaticSite};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const PROTOCOLS: [&str; 3] = ["json", "connect", "grpc-web"];

/// A header of DevTools' record, whatever its case there.
fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, value)| value.as_str())
}

#[tokio::test]
async fn the_storefront_works_in_chromium_over_json_connect_and_grpc_web() {
    let port = free_port();
    let page_origin = format!("http://localhost:{port}");
    let edge = Edge::start_with(Options {
        customize: Box::new(move |config| {
            if let Some(cors) = config.cors.as_mut() {
                cors.allow_origins.push(page_origin);
            }
            // Two purchases a minute, so that the page meets a 429 on the third.
            for limit in &mut config.rate_limits {
                if limit.name == "purchases" {
                    limit.requests = 2;
                }
            }
        }),
        ..Options::default()
    })
    .await;
    let site = StaticSite::start(&storefront_dir().join("site"), port).await;

    let (_, admin) = edge.signup("admin").await;
    let (_, seller) = edge.signup("seller").await;
    for protocol in PROTOCOLS {
        for n in 1..=4 {
            let (status, body) = edge
                .create_item(&seller, &format!("{protocol} item {n}"), 500 * n)
                .await;
            assert_eq!(status, 200, "{body}");
        }
        let (restricted_id, restricted) = edge.signup(&format!("restricted-{protocol}")).await;
        edge.signup(&format!("eager-{protocol}")).await;
        let (status, body) = json_of(
            edge.http
                .post(edge.url("/acl/restrictions"))
                .bearer_auth(&admin)
                .json(
                    &json!({ "subject": restricted_id, "action": "buy", "reason": "chargebacks" }),
                )
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // Applied (the auth filter follows the acl service within a couple of seconds).
        let started = Instant::now();
        loop {
            let (status, _) = json_of(
                edge.http
                    .post(edge.url("/catalog/items/no-such-item:purchase"))
                    .bearer_auth(&restricted)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            if status == 403 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "not restricted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let shots = std::env::var("EDGE_STOREFRONT_SHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| edge.dir.join("storefront"));
    std::fs::create_dir_all(&shots).expect("screenshot directory");
    let run = Command::new("node")
        .arg(workspace_root().join("tests/storefront/flows.cjs"))
        .arg(&site.origin)
        .arg(edge.base_url.trim_end_matches('/'))
        .arg(&shots)
        .arg("restricted")
        .env("NODE_PATH", storefront_dir().join("node_modules"))
        .output()
        .expect("run node");
    assert!(
        run.status.success(),
        "the storefront in Chromium: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: Value = serde_json::from_slice(&run.stdout).expect("the flows' JSON report");
    for protocol in PROTOCOLS {
        let result = &seen[protocol];
        let flows = &result["flows"];
        assert_eq!(result["errors"], json!([]), "{protocol}: script errors");
        let outcome = |flow: &str| {
            (
                flows[flow]["kind"]
                    .as_str()
                    .unwrap_or("missing")
                    .to_string(),
                flows[flow]["code"].as_str().unwrap_or_default().to_string(),
            )
        };
        let ok = ("ok".to_string(), String::new());
        let refused = |code: &str| ("refused".to_string(), code.to_string());
        assert!(
            flows["list"]["items"].as_u64() >= Some(1),
            "{protocol}: {flows}"
        );
        assert_eq!(outcome("open"), ok, "{protocol}: {flows}");
        assert_eq!(
            outcome("buy-signed-out"),
            refused("16"),
            "{protocol}: {flows}"
        );
        assert!(flows["buy-signed-out"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Sign in first")));
        assert_eq!(outcome("signup"), ok, "{protocol}: {flows}");
        assert_eq!(outcome("buy"), ok, "{protocol}: {flows}");
        assert_eq!(flows["after_buy"]["state"], "Sold", "{protocol}");
        assert_eq!(
            outcome("buy-restricted"),
            refused("7"),
            "{protocol}: {flows}"
        );
        assert_eq!(outcome("buy-2"), ok, "{protocol}: {flows}");
        assert_eq!(outcome("buy-3"), ok, "{protocol}: {flows}");
        assert_eq!(outcome("buy-4"), refused("8"), "{protocol}: {flows}");
        assert!(
            flows["buy-4"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("try again in")),
            "{protocol}: the page reads retry-after: {flows}"
        );
        // Every call crossed origins: a preflight answered for the page's origin, then the
        // call itself with the protocol's headers, its answer readable by the script.
        let exchanges = result["exchanges"].as_array().expect("exchanges");
        let preflight = exchanges
            .iter()
            .find(|e| e["method"] == "OPTIONS")
            .unwrap_or_else(|| panic!("{protocol}: no preflight in {exchanges:?}"));
        assert_eq!(
            header(&preflight["response"], "access-control-allow-origin"),
            Some(site.origin.as_str()),
            "{protocol}"
        );
        let purchase = exchanges
            .iter()
            .find(|e| {
                e["method"] == "POST"
                    && e["url"].as_str().is_some_and(|u| u.contains("urchase"))
                    && e["status"].is_number()
            })
            .unwrap_or_else(|| panic!("{protocol}: no purchase in {exchanges:?}"));
        let sent = |name: &str| header(&purchase["request"], name);
        match protocol {
            "connect" => assert_eq!(sent("connect-protocol-version"), Some("1"), "{purchase}"),
            "grpc-web" => assert_eq!(sent("x-grpc-web"), Some("1"), "{purchase}"),
            _ => assert_eq!(sent("x-grpc-web"), None, "{purchase}"),
        }
        assert_eq!(
            header(&purchase["response"], "access-control-allow-origin"),
            Some(site.origin.as_str()),
            "{protocol}"
        );
        let timings: Vec<String> = ["open", "signup", "buy", "buy-restricted", "buy-4"]
            .iter()
            .map(|flow| format!("{flow} {} ms", flows[*flow]["ms"]))
            .collect();
        eprintln!("{protocol}: {}", timings.join(", "));
    }
}
