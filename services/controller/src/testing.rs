//! Fixtures for tests of this crate and its integration tests: a valid spec
//! whose queue, database and role names all carry a tag, so parallel tests
//! never share a resource. Points at the local SQS emulator and PostgreSQL.

use crate::resource::{
    DatabaseSpec, DatabasesSpec, DeadLetterSpec, DeletionPolicy, OrderPipelineSpec, QueueSpec, QueuesSpec, SecretRef,
    ServerSpec, SqsSpec, SslMode, defaults,
};

/// Name of the admin Secret the fixture spec refers to.
pub const ADMIN_SECRET: &str = "postgres-admin";

/// A valid spec: queues `<tag>-orders-queue.fifo`, `<tag>-status-queue.fifo`
/// (each with `-dlq`), databases and roles `<tag>_orders`, `<tag>_delivery`.
/// `tag` must start with a letter and hold only lower-case letters and digits.
pub fn spec(tag: &str) -> OrderPipelineSpec {
    let queue = |base: &str| QueueSpec {
        name: format!("{tag}-{base}.fifo"),
        visibility_timeout_seconds: defaults::visibility_timeout(),
        message_retention_seconds: defaults::message_retention(),
        receive_wait_time_seconds: defaults::receive_wait_time(),
        dead_letter: DeadLetterSpec {
            name: format!("{tag}-{base}-dlq.fifo"),
            max_receive_count: defaults::max_receive_count(),
            message_retention_seconds: defaults::dead_letter_retention(),
        },
    };
    let database = |service: &str| DatabaseSpec { name: format!("{tag}_{service}"), role: format!("{tag}_{service}") };
    OrderPipelineSpec {
        sqs: SqsSpec {
            region: "us-east-1".into(),
            endpoint: Some(std::env::var("TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9324".into())),
            credentials_secret_ref: None,
        },
        queues: QueuesSpec { orders: queue("orders-queue"), delivery_status: queue("status-queue") },
        databases: DatabasesSpec {
            server: ServerSpec {
                host: "127.0.0.1".into(),
                port: 5432,
                ssl_mode: SslMode::Disable,
                admin_secret_ref: SecretRef { name: ADMIN_SECRET.into() },
            },
            orders: database("orders"),
            delivery: database("delivery"),
        },
        deletion_policy: DeletionPolicy::Retain,
        drop_databases_on_delete: false,
    }
}
