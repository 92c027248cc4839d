//! The `order-service` binary's own commands: client creation prints the secret
//! once and stores only its hash; bad configuration stops start-up naming every
//! bad variable.

use std::process::Command;

use serde_json::Value;

use crate::helpers::spawn_app;

fn order_service() -> Command {
    Command::new(env!("CARGO_BIN_EXE_order-service"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_create_needs_only_the_database_prints_the_secret_once_and_stores_only_its_hash() {
    let app = spawn_app().await;
    let customer = uuid::Uuid::now_v7();
    // Nothing but DATABASE_URL: no signing key, no Redis, no SQS settings.
    let output = order_service()
        .env_clear()
        .args(["clients", "create", "--customer-id", &customer.to_string(), "--scope", "orders:read orders:write"])
        .env("DATABASE_URL", &app.db.url)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    let (id, secret) = (created["client_id"].as_str().unwrap(), created["client_secret"].as_str().unwrap());
    assert!(secret.len() >= 32);
    let stored: String = sqlx::query_scalar("SELECT secret_hash FROM clients WHERE client_id = $1")
        .bind(id)
        .fetch_one(&app.db.pool().await)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$") && !stored.contains(secret));

    // The printed credentials work.
    let resp = app.token_request(&[("grant_type", "client_credentials")], Some((id, secret))).await;
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let token: Value = resp.json().await.unwrap();
    assert_eq!(token["scope"], "orders:read orders:write");

    // Creating the same id again is refused, not silently overwritten.
    let again = order_service()
        .env_clear()
        .args(["clients", "create", "--customer-id", &customer.to_string(), "--client-id", id])
        .env("DATABASE_URL", &app.db.url)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // A secret the caller chose is not echoed back (it would land in job logs).
    let chosen = order_service()
        .env_clear()
        .args(["clients", "create", "--customer-id", &customer.to_string(), "--client-id", "chosen-secret"])
        .env("DATABASE_URL", &app.db.url)
        .env("ORDERFLOW_NEW_CLIENT_SECRET", "a-chosen-secret-9f2c")
        .output()
        .unwrap();
    assert!(chosen.status.success(), "{}", String::from_utf8_lossy(&chosen.stderr));
    let shown: Value = serde_json::from_slice(&chosen.stdout).unwrap();
    assert_eq!(shown["client_id"], "chosen-secret");
    assert!(shown.get("client_secret").is_none(), "{shown}");
    assert!(!String::from_utf8_lossy(&chosen.stdout).contains("a-chosen-secret-9f2c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_create_takes_the_secret_from_a_file_as_helm_test_does() {
    let app = spawn_app().await;
    let dir = std::env::temp_dir().join(format!("orderflow-cli-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("client-secret");
    std::fs::write(&file, "made-in-the-pod-7c1e0a\n").unwrap();
    let create = |client_id: &str, replace: bool| {
        let mut command = order_service();
        command
            .env_clear()
            .args(["clients", "create", "--customer-id", &uuid::Uuid::now_v7().to_string(), "--client-id", client_id])
            .env("DATABASE_URL", &app.db.url)
            .env("ORDERFLOW_NEW_CLIENT_SECRET_FILE", &file);
        if replace {
            command.arg("--replace");
        }
        command.output().unwrap()
    };
    let out = create("from-file", false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("made-in-the-pod"), "a chosen secret is never echoed");
    let status = |secret: &'static str| {
        let app = &app;
        async move { app.token_request(&[("grant_type", "client_credentials")], Some(("from-file", secret))).await.status() }
    };
    assert_eq!(status("made-in-the-pod-7c1e0a").await, reqwest::StatusCode::OK, "trimmed, then stored");

    // The next run's secret replaces it: the old one stops working.
    std::fs::write(&file, "the-next-run-51b9d2").unwrap();
    assert!(create("from-file", true).status.success());
    assert_eq!(status("made-in-the-pod-7c1e0a").await, reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(status("the-next-run-51b9d2").await, reqwest::StatusCode::OK);

    std::fs::write(&file, " \n").unwrap();
    let empty = create("empty-file", false);
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("is empty"), "{}", String::from_utf8_lossy(&empty.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_configuration_stops_start_up_and_names_each_variable() {
    let output = order_service()
        .env_clear()
        .env("HTTP_ADDR", "not-an-address")
        .env("DATABASE_MAX_CONNECTIONS", "many")
        .env("DATABASE_URL", "mysql://user:hunter2@db/orders")
        .env("SHUTDOWN_TIMEOUT", "forever")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in ["HTTP_ADDR", "DATABASE_MAX_CONNECTIONS", "DATABASE_URL", "SHUTDOWN_TIMEOUT", "JWT_PRIVATE_KEY"] {
        assert!(stderr.contains(name), "{name} not named in: {stderr}");
    }
    assert!(!stderr.contains("hunter2"), "a secret leaked: {stderr}");
}

#[test]
fn administrative_commands_name_only_the_database_variables_they_use() {
    let output = order_service()
        .env_clear()
        .args(["clients", "create", "--customer-id", &uuid::Uuid::now_v7().to_string()])
        .env("DATABASE_URL", "mysql://user:hunter2@db/orders")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("JWT_PRIVATE_KEY"), "clients create does not need a signing key: {stderr}");
    assert!(!stderr.contains("hunter2"), "a secret leaked: {stderr}");
}

#[test]
fn keys_generate_makes_a_usable_signing_key() {
    let output = order_service().args(["keys", "generate"]).output().unwrap();
    let pem = String::from_utf8(output.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    order_service::auth::KeySet::from_pem_bundle(&pem, "i", "a").expect("generated key loads");
}
