//! The delivery-service as the chart runs it against a PostgreSQL with a
//! private CA: `DATABASE_URL` with `sslmode=verify-full` and the CA bundle in
//! `PGSSLROOTCERT` (a process of its own, so the variable is its alone). It
//! migrates and serves over TLS (`/readyz`: PostgreSQL and its schema up);
//! with another CA, or none, `migrate` fails and `/readyz` says why, naming the
//! certificate problem.
//! The server: [`testkit::TlsPostgres`], its certificate signed by a CA made here.

use std::{path::Path, process::Output, time::Duration};

use serde_json::Value;
use testkit::{Spawn, TestQueues, TlsPostgres};

const BINARY: &str = env!("CARGO_BIN_EXE_delivery-service");

fn migrate(url: &str, ca: Option<&Path>) -> Output {
    let mut command = std::process::Command::new(BINARY);
    command.arg("migrate").env("DATABASE_URL", url).env_remove("PGSSLROOTCERT");
    if let Some(ca) = ca {
        command.env("PGSSLROOTCERT", ca);
    }
    command.output().expect("run delivery-service migrate")
}

fn assert_certificate_refused(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "migrated without trusting the server's certificate");
    assert!(stderr.contains("invalid peer certificate: UnknownIssuer"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_over_verify_full_with_the_ca_in_pgsslrootcert() {
    telemetry::init_test_logging("error");
    let server = TlsPostgres::start();
    let url = server.url("127.0.0.1", "postgres", "sslmode=verify-full");
    assert_certificate_refused(&migrate(&url, Some(&server.other_ca_file())));
    assert_certificate_refused(&migrate(&url, None));

    let mut queues = TestQueues::new().await;
    let (orders, status) = (queues.name("orders-queue.fifo"), queues.name("delivery-status-queue.fifo"));
    queues.create("orders-queue.fifo", 3).await;
    queues.create("delivery-status-queue.fifo", 3).await;
    let env = [
        ("DATABASE_URL", url),
        ("PGSSLROOTCERT", server.ca_file().display().to_string()),
        ("SQS_ENDPOINT_URL", testkit::sqs_endpoint()),
        ("ORDERS_QUEUE", orders),
        ("DELIVERY_STATUS_QUEUE", status),
    ];
    let service = Spawn::new(BINARY, env.map(|(k, v)| (k.to_owned(), v))).start().await;
    service.wait_ready(Duration::from_secs(30)).await;
    let body: Value = reqwest::get(format!("{}/readyz", service.url)).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    for check in ["postgres", "schema"] {
        assert_eq!(body["checks"][check]["status"], "up", "{check}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_another_ca_readyz_names_the_certificate_problem() {
    telemetry::init_test_logging("error");
    let server = TlsPostgres::start();
    let env = [
        ("DATABASE_URL", server.url("127.0.0.1", "postgres", "sslmode=verify-full")),
        ("DATABASE_MIGRATE", "false".to_owned()),
        ("PGSSLROOTCERT", server.other_ca_file().display().to_string()),
        ("SQS_ENDPOINT_URL", testkit::sqs_endpoint()),
        ("CONSUMER_ENABLED", "false".to_owned()),
        ("SCHEDULER_ENABLED", "false".to_owned()),
        ("OUTBOX_RELAY_ENABLED", "false".to_owned()),
    ];
    let service = Spawn::new(BINARY, env.map(|(k, v)| (k.to_owned(), v))).start().await;
    let resp = reqwest::get(format!("{}/readyz", service.url)).await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.unwrap();
    let detail = body["checks"]["postgres"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("invalid peer certificate: UnknownIssuer"), "{body}");
}
