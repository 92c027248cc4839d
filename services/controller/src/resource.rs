//! The `OrderPipeline` custom resource (group `orderflow.dev`, version
//! `v1alpha1`): its spec, its status and the CRD generated from them.
//!
//! The schema carries what the API server can check on its own: defaults,
//! numeric ranges, enums and name patterns (a queue name must end in `.fifo`;
//! database and role names must be plain lower-case SQL identifiers). The
//! checks that span fields, or need the referenced Secrets, are in
//! [`crate::validate`], which also re-checks every pattern here, because
//! `reconcile-once` reads files no API server has seen. This module holds data
//! only; it decides nothing.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `kubectl get opl` and the finalizer name share the group.
pub const GROUP: &str = "orderflow.dev";
/// `apiVersion` of the resource.
pub const API_VERSION: &str = "orderflow.dev/v1alpha1";
/// The finalizer that holds a pipeline until its deletion policy has run.
pub const FINALIZER: &str = "orderpipelines.orderflow.dev/cleanup";
/// Field manager of every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "orderflow-controller";

/// A FIFO queue name as SQS accepts it: 1..=80 characters of letters, digits,
/// `-` and `_`, ending in `.fifo`.
pub const QUEUE_NAME_PATTERN: &str = r"^[A-Za-z0-9_-]{1,75}\.fifo$";
/// A database or role name. These are spliced into DDL (identifiers cannot be
/// bind parameters), so they are held to plain lower-case identifiers of at
/// most 63 bytes (PostgreSQL's limit) and quoted as well.
pub const IDENTIFIER_PATTERN: &str = r"^[a-z_][a-z0-9_]{0,62}$";
/// A DNS name or IPv4 address.
pub const HOST_PATTERN: &str = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$";
/// An AWS region name such as `us-east-1` or `us-gov-west-1`.
pub const REGION_PATTERN: &str = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$";
/// An http(s) URL without spaces.
pub const ENDPOINT_PATTERN: &str = r"^https?://[^\s/]+(/\S*)?$";
/// A Secret name (a DNS subdomain).
pub const SECRET_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$";

/// An OrderPipeline: the SQS queues and PostgreSQL databases of one orderflow
/// installation, and the configuration the services read.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "orderflow.dev",
    version = "v1alpha1",
    kind = "OrderPipeline",
    plural = "orderpipelines",
    shortname = "opl",
    category = "orderflow",
    namespaced,
    status = "OrderPipelineStatus",
    derive = "PartialEq",
    doc = "The queues and databases of one orderflow installation, made real by orderflow-controller",
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name": "Orders Queue", "type": "string", "jsonPath": ".spec.queues.orders.name"}"#,
    printcolumn = r#"{"name": "Deletion", "type": "string", "jsonPath": ".spec.deletionPolicy", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// Rules across fields, checked by the API server at admission (CEL); the
// controller checks them again (crate::validate) for files and old servers.
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.databases.orders.name != self.databases.delivery.name",
     "message": "databases.orders.name and databases.delivery.name must differ: each service has its own database"},
    {"rule": "self.databases.orders.role != self.databases.delivery.role",
     "message": "databases.orders.role and databases.delivery.role must differ"},
    {"rule": "!self.dropDatabasesOnDelete || self.deletionPolicy == 'Delete'",
     "message": "dropDatabasesOnDelete: true needs deletionPolicy: Delete"}
]))]
pub struct OrderPipelineSpec {
    /// Where the queues live.
    pub sqs: SqsSpec,
    /// The two FIFO queues, each with its dead-letter queue.
    pub queues: QueuesSpec,
    /// The PostgreSQL server and the two service databases.
    pub databases: DatabasesSpec,
    /// What deleting the OrderPipeline does to the queues and databases:
    /// `Retain` (default) keeps them; `Delete` deletes the queues (and, with
    /// `dropDatabasesOnDelete`, the databases and roles).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// With `deletionPolicy: Delete`, also drop both databases and their roles.
    /// Off by default: the order history is not thrown away by accident.
    #[serde(default)]
    pub drop_databases_on_delete: bool,
}

/// SQS endpoint and credentials.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqsSpec {
    /// AWS region of the queues.
    #[schemars(regex(pattern = REGION_PATTERN))]
    pub region: String,
    /// Endpoint override for emulators (ElasticMQ, LocalStack); unset for AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ENDPOINT_PATTERN))]
    pub endpoint: Option<String>,
    /// A Secret with keys `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
    /// (optionally `AWS_SESSION_TOKEN`). Unset: the pod's identity (IRSA,
    /// EKS Pod Identity), or fixed dummy credentials for an emulator endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// A Secret in the OrderPipeline's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(regex(pattern = SECRET_NAME_PATTERN), length(min = 1, max = 253))]
    pub name: String,
}

/// The queues the services use.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueuesSpec {
    /// `order-created` events, order-service to delivery-service.
    pub orders: QueueSpec,
    /// `order-shipped` / `order-delivered` events, delivery-service to order-service.
    pub delivery_status: QueueSpec,
}

/// One FIFO queue with its dead-letter queue.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueSpec {
    /// Queue name; FIFO queues end in `.fifo`.
    #[schemars(regex(pattern = QUEUE_NAME_PATTERN), length(min = 6, max = 80))]
    pub name: String,
    /// Seconds a received message stays hidden from other consumers (SQS `VisibilityTimeout`).
    #[serde(default = "defaults::visibility_timeout")]
    #[schemars(range(min = 0, max = 43200))]
    pub visibility_timeout_seconds: u32,
    /// Seconds an unconsumed message is kept (SQS `MessageRetentionPeriod`; 4 days by default).
    #[serde(default = "defaults::message_retention")]
    #[schemars(range(min = 60, max = 1209600))]
    pub message_retention_seconds: u32,
    /// Long-poll wait of a receive that finds nothing (SQS `ReceiveMessageWaitTimeSeconds`).
    #[serde(default = "defaults::receive_wait_time")]
    #[schemars(range(min = 0, max = 20))]
    pub receive_wait_time_seconds: u32,
    /// Where messages go after failing `maxReceiveCount` times.
    pub dead_letter: DeadLetterSpec,
}

/// A dead-letter queue and the redrive policy that feeds it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterSpec {
    /// Dead-letter queue name; FIFO queues end in `.fifo`.
    #[schemars(regex(pattern = QUEUE_NAME_PATTERN), length(min = 6, max = 80))]
    pub name: String,
    /// Receives of a message before SQS moves it to the dead-letter queue.
    #[serde(default = "defaults::max_receive_count")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_receive_count: u32,
    /// Seconds dead letters are kept (14 days, the SQS maximum, by default).
    #[serde(default = "defaults::dead_letter_retention")]
    #[schemars(range(min = 60, max = 1209600))]
    pub message_retention_seconds: u32,
}

/// The PostgreSQL server and the service databases.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabasesSpec {
    /// The server both databases live on.
    pub server: ServerSpec,
    /// The order-service database.
    pub orders: DatabaseSpec,
    /// The delivery-service database.
    pub delivery: DatabaseSpec,
}

/// How the controller and the services reach PostgreSQL.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSpec {
    /// Host name or IPv4 address.
    #[schemars(regex(pattern = HOST_PATTERN), length(min = 1, max = 253))]
    pub host: String,
    /// TCP port.
    #[serde(default = "defaults::port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// libpq `sslmode` of every connection (the controller's and the services').
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// A Secret with keys `username` and `password` (may be empty for trust
    /// authentication) of a role that may create databases and roles.
    pub admin_secret_ref: SecretRef,
}

/// One service database and the role that owns it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSpec {
    /// Database name (lower-case SQL identifier).
    #[schemars(regex(pattern = IDENTIFIER_PATTERN), length(min = 1, max = 63))]
    pub name: String,
    /// Login role the service connects as; it owns the database and its objects.
    #[schemars(regex(pattern = IDENTIFIER_PATTERN), length(min = 1, max = 63))]
    pub role: String,
}

/// What happens to the queues and databases when the OrderPipeline is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// libpq `sslmode`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling, as in `?sslmode=`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Default values of the spec, in one place (they also appear in the schema).
pub mod defaults {
    pub fn visibility_timeout() -> u32 {
        30
    }
    pub fn message_retention() -> u32 {
        345_600
    }
    /// The services long-poll for 20 s; so does any other reader by default.
    pub fn receive_wait_time() -> u32 {
        20
    }
    pub fn max_receive_count() -> u32 {
        5
    }
    pub fn dead_letter_retention() -> u32 {
        1_209_600
    }
    pub fn port() -> u16 {
        5432
    }
}

/// What the controller last did with an OrderPipeline.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPipelineStatus {
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `QueuesReady`, `DatabasesReady` and `ConfigPublished`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// URLs and ARNs of the queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<QueuesStatus>,
    /// The databases, their roles and applied migration versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases: Option<DatabasesStatus>,
}

/// A condition in the Kubernetes convention (`kubectl describe` and
/// `kubectl wait --for=condition=Ready` read it).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `QueuesReady`, `DatabasesReady` or `ConfigPublished`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word for machines.
    pub reason: String,
    /// What a person should know or do.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Both queues.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuesStatus {
    /// The orders queue and its dead-letter queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<QueueStatus>,
    /// The delivery-status queue and its dead-letter queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_status: Option<QueueStatus>,
}

/// Where a queue and its dead-letter queue are.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// Queue URL, what the SQS API takes.
    pub url: String,
    /// Queue ARN, what IAM policies name.
    pub arn: String,
    /// URL of the dead-letter queue.
    pub dead_letter_url: String,
    /// ARN of the dead-letter queue (the redrive policy's target).
    pub dead_letter_arn: String,
}

/// Both databases.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabasesStatus {
    /// The order-service database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<DatabaseStatus>,
    /// The delivery-service database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DatabaseStatus>,
}

/// A provisioned database.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// Database name.
    pub name: String,
    /// The login role that owns it.
    pub role: String,
    /// Version of the newest applied migration (`migrations/<database>/<version>_*.sql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_version: Option<i64>,
}

impl OrderPipeline {
    /// ConfigMap with the queue settings: `<name>-config`.
    pub fn config_map_name(name: &str) -> String {
        format!("{name}-config")
    }
    /// Secret with the order-service's `DATABASE_URL`: `<name>-orders-db`.
    pub fn orders_secret_name(name: &str) -> String {
        format!("{name}-orders-db")
    }
    /// Secret with the delivery-service's `DATABASE_URL`: `<name>-delivery-db`.
    pub fn delivery_secret_name(name: &str) -> String {
        format!("{name}-delivery-db")
    }
}

/// The CRD as YAML, the output of `orderflow-controller crd` (and of the
/// committed copies, which a test holds equal to it).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let yaml = serde_yaml::to_string(&OrderPipeline::crd()).expect("the CRD serialises to YAML");
    format!(
        "# The OrderPipeline CustomResourceDefinition, generated from the Rust types by\n\
         # `orderflow-controller crd` (services/controller/src/resource.rs): regenerate, do not edit.\n{yaml}"
    )
}
