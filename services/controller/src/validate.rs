//! Spec validation: every problem with an OrderPipeline spec, each naming the
//! field and saying what to write instead, found before anything is created.
//!
//! The schema's patterns and ranges are checked again here: `reconcile-once`
//! reads files that no API server has validated, and database and role names
//! end up in DDL, where a bind parameter cannot stand in for an identifier, so
//! this check is what keeps SQL out of them (they are quoted as well, see
//! [`crate::postgres::quote_ident`]). Checks across fields (names that must
//! differ, a policy that needs another) live only here.

use std::{collections::BTreeMap, fmt, sync::LazyLock};

use regex::Regex;

use crate::resource::{
    DeletionPolicy, ENDPOINT_PATTERN, HOST_PATTERN, IDENTIFIER_PATTERN, OrderPipelineSpec, QUEUE_NAME_PATTERN,
    QueueSpec, REGION_PATTERN, SECRET_NAME_PATTERN,
};

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path under `spec`, e.g. `queues.orders.name`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spec.{}: {}", self.field, self.message)
    }
}

/// Every problem of a spec, as one message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", summary(.0))]
pub struct InvalidSpec(pub Vec<Problem>);

fn summary(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the schema patterns are valid regular expressions")
}

static QUEUE_NAME: LazyLock<Regex> = LazyLock::new(|| regex(QUEUE_NAME_PATTERN));
static IDENTIFIER: LazyLock<Regex> = LazyLock::new(|| regex(IDENTIFIER_PATTERN));
static HOST: LazyLock<Regex> = LazyLock::new(|| regex(HOST_PATTERN));
static REGION: LazyLock<Regex> = LazyLock::new(|| regex(REGION_PATTERN));
static ENDPOINT: LazyLock<Regex> = LazyLock::new(|| regex(ENDPOINT_PATTERN));
static SECRET_NAME: LazyLock<Regex> = LazyLock::new(|| regex(SECRET_NAME_PATTERN));

/// Names PostgreSQL reserves or that belong to the server itself.
const RESERVED_DATABASES: &[&str] = &["postgres", "template0", "template1"];
const RESERVED_ROLES: &[&str] = &["postgres", "public", "none", "current_user", "session_user", "current_role"];

/// Whether `name` is safe to splice (quoted) into DDL as a database or role name.
pub fn is_identifier(name: &str) -> bool {
    IDENTIFIER.is_match(name)
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { field: field.into(), message: message.into() });
    }

    fn range(&mut self, field: &str, value: u32, min: u32, max: u32, unit: &str) {
        if !(min..=max).contains(&value) {
            self.add(field, format!("{value} is out of range: use {min}..={max} {unit}"));
        }
    }
}

/// Checks a spec; `Err` lists every problem.
pub fn validate(spec: &OrderPipelineSpec) -> Result<(), InvalidSpec> {
    let mut p = Problems(Vec::new());

    if !REGION.is_match(&spec.sqs.region) {
        p.add("sqs.region", format!("{:?} is not an AWS region name such as us-east-1", spec.sqs.region));
    }
    if let Some(endpoint) = &spec.sqs.endpoint
        && !ENDPOINT.is_match(endpoint)
    {
        p.add("sqs.endpoint", format!("{endpoint:?} is not an http:// or https:// URL"));
    }
    if let Some(secret) = &spec.sqs.credentials_secret_ref
        && !SECRET_NAME.is_match(&secret.name)
    {
        p.add("sqs.credentialsSecretRef.name", format!("{:?} is not a Secret name", secret.name));
    }

    queue(&mut p, "queues.orders", &spec.queues.orders);
    queue(&mut p, "queues.deliveryStatus", &spec.queues.delivery_status);
    let mut queue_names: BTreeMap<&str, &str> = BTreeMap::new();
    for (field, name) in [
        ("queues.orders.name", &spec.queues.orders.name),
        ("queues.orders.deadLetter.name", &spec.queues.orders.dead_letter.name),
        ("queues.deliveryStatus.name", &spec.queues.delivery_status.name),
        ("queues.deliveryStatus.deadLetter.name", &spec.queues.delivery_status.dead_letter.name),
    ] {
        if let Some(first) = queue_names.insert(name, field) {
            p.add(field, format!("{name:?} is already used by {first}: every queue needs its own name"));
        }
    }

    let server = &spec.databases.server;
    if !HOST.is_match(&server.host) {
        p.add("databases.server.host", format!("{:?} is not a host name or IPv4 address", server.host));
    }
    if server.port == 0 {
        p.add("databases.server.port", "0 is out of range: use 1..=65535");
    }
    if !SECRET_NAME.is_match(&server.admin_secret_ref.name) {
        p.add(
            "databases.server.adminSecretRef.name",
            format!("{:?} is not a Secret name", server.admin_secret_ref.name),
        );
    }
    for (field, db) in [("databases.orders", &spec.databases.orders), ("databases.delivery", &spec.databases.delivery)]
    {
        if !is_identifier(&db.name) {
            p.add(format!("{field}.name"), identifier_message(&db.name));
        } else if RESERVED_DATABASES.contains(&db.name.as_str()) {
            p.add(format!("{field}.name"), format!("{:?} belongs to the server itself: choose another name", db.name));
        }
        if !is_identifier(&db.role) {
            p.add(format!("{field}.role"), identifier_message(&db.role));
        } else if RESERVED_ROLES.contains(&db.role.as_str()) || db.role.starts_with("pg_") {
            p.add(format!("{field}.role"), format!("{:?} is reserved by PostgreSQL: choose another name", db.role));
        }
    }
    if spec.databases.orders.name == spec.databases.delivery.name {
        p.add("databases.delivery.name", "must differ from databases.orders.name: each service has its own database");
    }
    if spec.databases.orders.role == spec.databases.delivery.role {
        p.add(
            "databases.delivery.role",
            "must differ from databases.orders.role: a service's role must not reach the other service's data",
        );
    }
    if spec.drop_databases_on_delete && spec.deletion_policy != DeletionPolicy::Delete {
        p.add("dropDatabasesOnDelete", "true needs deletionPolicy: Delete (with Retain nothing is deleted)");
    }

    if p.0.is_empty() { Ok(()) } else { Err(InvalidSpec(p.0)) }
}

fn identifier_message(name: &str) -> String {
    format!(
        "{name:?} is not a plain SQL identifier: use 1 to 63 lower-case letters, digits and underscores, not starting with a digit"
    )
}

fn queue(p: &mut Problems, field: &str, q: &QueueSpec) {
    if !QUEUE_NAME.is_match(&q.name) {
        p.add(format!("{field}.name"), queue_name_message(&q.name));
    }
    if !QUEUE_NAME.is_match(&q.dead_letter.name) {
        p.add(format!("{field}.deadLetter.name"), queue_name_message(&q.dead_letter.name));
    }
    p.range(&format!("{field}.visibilityTimeoutSeconds"), q.visibility_timeout_seconds, 0, 43_200, "seconds");
    p.range(&format!("{field}.messageRetentionSeconds"), q.message_retention_seconds, 60, 1_209_600, "seconds");
    p.range(&format!("{field}.receiveWaitTimeSeconds"), q.receive_wait_time_seconds, 0, 20, "seconds");
    p.range(&format!("{field}.deadLetter.maxReceiveCount"), q.dead_letter.max_receive_count, 1, 1000, "receives");
    p.range(
        &format!("{field}.deadLetter.messageRetentionSeconds"),
        q.dead_letter.message_retention_seconds,
        60,
        1_209_600,
        "seconds",
    );
}

fn queue_name_message(name: &str) -> String {
    if name.ends_with(".fifo") {
        format!("{name:?} is not a queue name: use 1 to 75 letters, digits, '-' or '_' before .fifo")
    } else {
        format!("{name:?} is not a FIFO queue name: FIFO queue names end in .fifo (e.g. {name}.fifo)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::spec;

    fn fields(spec: &OrderPipelineSpec) -> Vec<String> {
        validate(spec).err().map(|e| e.0.into_iter().map(|p| p.field).collect()).unwrap_or_default()
    }

    #[test]
    fn a_complete_spec_passes() {
        assert_eq!(validate(&spec("t1")), Ok(()));
    }

    #[test]
    fn a_queue_name_without_fifo_is_refused_with_the_fix() {
        let mut s = spec("t1");
        s.queues.orders.name = "orders".into();
        let err = validate(&s).unwrap_err();
        assert_eq!(err.0[0].field, "queues.orders.name");
        assert!(err.to_string().contains("end in .fifo (e.g. orders.fifo)"), "{err}");
    }

    #[test]
    fn numbers_out_of_range_name_the_allowed_range() {
        let mut s = spec("t1");
        s.queues.orders.receive_wait_time_seconds = 21;
        s.queues.delivery_status.dead_letter.max_receive_count = 0;
        s.queues.orders.message_retention_seconds = 2_000_000;
        let err = validate(&s).unwrap_err().to_string();
        assert!(
            err.contains("spec.queues.orders.receiveWaitTimeSeconds: 21 is out of range: use 0..=20 seconds"),
            "{err}"
        );
        assert!(err.contains("spec.queues.deliveryStatus.deadLetter.maxReceiveCount: 0 is out of range"), "{err}");
        assert!(err.contains("spec.queues.orders.messageRetentionSeconds: 2000000 is out of range"), "{err}");
    }

    #[test]
    fn sql_in_a_name_never_passes() {
        let mut s = spec("t1");
        s.databases.orders.name = "orders\"; DROP DATABASE postgres; --".into();
        s.databases.delivery.role = "Delivery".into();
        assert_eq!(fields(&s), ["databases.orders.name", "databases.delivery.role"]);
        for bad in ["", "1abc", "a-b", "a b", "ä", &"x".repeat(64)] {
            assert!(!is_identifier(bad), "{bad:?}");
        }
        for good in ["orders", "_x", "orderflow_orders_2", &"x".repeat(63)] {
            assert!(is_identifier(good), "{good:?}");
        }
    }

    #[test]
    fn reserved_and_shared_names_are_refused() {
        let mut s = spec("t1");
        s.databases.orders.name = "postgres".into();
        s.databases.orders.role = "pg_monitor".into();
        s.databases.delivery.role = s.databases.orders.role.clone();
        s.queues.delivery_status.dead_letter.name = s.queues.orders.name.clone();
        assert_eq!(
            fields(&s),
            [
                "queues.deliveryStatus.deadLetter.name",
                "databases.orders.name",
                "databases.orders.role",
                "databases.delivery.role",
                "databases.delivery.role",
            ]
        );
    }

    #[test]
    fn dropping_databases_needs_the_delete_policy() {
        let mut s = spec("t1");
        s.drop_databases_on_delete = true;
        assert_eq!(fields(&s), ["dropDatabasesOnDelete"]);
        s.deletion_policy = DeletionPolicy::Delete;
        assert_eq!(validate(&s), Ok(()));
    }

    #[test]
    fn endpoints_regions_and_hosts_are_checked() {
        let mut s = spec("t1");
        s.sqs.endpoint = Some("localhost:9324".into());
        s.sqs.region = "US East".into();
        s.databases.server.host = "db host".into();
        assert_eq!(fields(&s), ["sqs.region", "sqs.endpoint", "databases.server.host"]);
    }
}
