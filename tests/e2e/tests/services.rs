//! Service guarantees that hold whatever the edge does: acknowledged writes are on disk, a
//! service stops cleanly on SIGTERM, and a bad database fails start-up with a clear message.

use edge_e2e::{workspace_root, Edge};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn service_binary(name: &str) -> std::path::PathBuf {
    std::env::var_os("EDGE_BIN_DIR")
        .map_or(
            workspace_root().join("target/debug"),
            std::path::PathBuf::from,
        )
        .join(name)
}

#[tokio::test]
async fn acknowledged_writes_survive_a_crash() {
    let mut edge = Edge::start().await;
    let token = edge.signin("goldie").await;
    let created: Value = edge
        .http
        .post(edge.url("/catalog/items"))
        .bearer_auth(&token)
        .json(&json!({"title": "Durable", "price": 7}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["item"]["id"].as_str().expect("created").to_string();

    // SIGKILL: nothing is flushed on the way out; what was acknowledged must already be on disk.
    edge.kill_service("item");
    edge.restart_service("item");
    let response = edge
        .http
        .get(edge.url(&format!("/catalog/items/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let got: Value = response.json().await.unwrap();
    assert_eq!(got["item"]["title"], "Durable");
}

#[test]
fn sigterm_stops_a_service_cleanly() {
    let dir = std::env::temp_dir().join(format!("edge-sigterm-{}", std::process::id()));
    let mut child = Command::new(service_binary("customer"))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/customer.db", dir.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start customer");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("listening on"), "{line:?}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unusable_database_fails_fast_and_says_why() {
    let started = Instant::now();
    let output = Command::new(service_binary("item"))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", "sqlite:///proc/no-such-dir/item.db")
        .output()
        .expect("run item");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "never reported ready");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/proc/no-such-dir"),
        "names the database: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn every_service_serves_health_and_reflection() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let edge = Edge::start().await;
    let edge_reflection = edge_e2e::edge_json()
        .reflection()
        .expect("edge.json's services")
        .map(|(name, described)| (name.to_string(), described));
    for (service, grpc_name) in [
        ("authority", "authority.AuthorityService"),
        ("catalog", "catalog.CatalogService"),
        ("customer", "customer.CustomerService"),
        ("item", "item.ItemService"),
    ] {
        let channel = tonic::transport::Endpoint::from_shared(edge.service_url(service))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel.clone());
        let status = health
            .check(HealthCheckRequest {
                service: grpc_name.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");

        let mut reflection = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers
            .message()
            .await
            .unwrap()
            .expect("a reflection answer");
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("{service}: unexpected reflection answer");
        };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        let mut expected = vec![
            grpc_name.to_string(),
            "grpc.health.v1.Health".into(),
            "grpc.reflection.v1.ServerReflection".into(),
            "grpc.reflection.v1alpha.ServerReflection".into(),
        ];
        if service == "authority" {
            expected.push("authority.KeyAdminService".into());
        }
        // The one answering reflection for the edge describes what the edge serves instead
        // (grpcurl.rs checks it through the edge).
        if let Some((_, described)) = edge_reflection.as_ref().filter(|(name, _)| name == service) {
            expected = described.split(',').map(str::to_string).collect();
            expected.extend(edgectl::REFLECTION_SERVICES.map(str::to_string));
        }
        expected.sort();
        assert_eq!(
            names, expected,
            "{service} describes exactly what it serves"
        );

        // The same through v1alpha, which Postman, Evans and older grpcurl ask for.
        use tonic_reflection::pb::v1alpha as alpha;
        let mut old = alpha::server_reflection_client::ServerReflectionClient::new(
            tonic::transport::Endpoint::from_shared(edge.service_url(service))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
        let request = alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    grpc_name.to_string(),
                ),
            ),
        };
        let answer = old
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner()
            .message()
            .await
            .unwrap()
            .expect("a v1alpha reflection answer");
        assert!(
            matches!(
                answer.message_response,
                Some(alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref files))
                    if !files.file_descriptor_proto.is_empty()
            ),
            "{service}: v1alpha describes {grpc_name}: {answer:?}"
        );
    }
}
