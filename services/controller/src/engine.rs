//! One reconcile of a pipeline's external resources, without Kubernetes:
//! observe SQS and PostgreSQL, plan with the pure functions in [`crate::plan`],
//! make the planned calls, and report what changed and where everything is.
//! The in-cluster controller and `reconcile-once` both drive this; they differ
//! only in where inputs come from (API objects or a file) and where the
//! results go (published objects and status, or stdout and a state file).

use std::collections::BTreeMap;

use rand::Rng;
use settings::SecretString;

use crate::{
    plan::{
        conditions::Part,
        databases::{self, DbAction, PasswordState, Service},
        queues::{self, ObservedQueue, QueueAction},
    },
    postgres::{AdminCredentials, Postgres},
    resource::{
        DatabaseStatus, DatabasesStatus, DeletionPolicy, OrderPipelineSpec, QueueSpec, QueueStatus, QueuesStatus,
    },
    sqs::{AwsCredentials, Sqs},
};

/// Everything a reconcile needs besides the spec.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The admin role (from `adminSecretRef`).
    pub admin: AdminCredentials,
    /// SQS credentials (from `credentialsSecretRef`), if the spec names them.
    pub sqs_credentials: Option<AwsCredentials>,
    /// Passwords kept from earlier reconciles, read back from the published
    /// Secrets (or the `reconcile-once` state file).
    pub kept_passwords: BTreeMap<Service, SecretString>,
}

/// Something the reconcile changed (an Event each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// CamelCase Event reason, e.g. `QueueCreated`.
    pub reason: &'static str,
    pub message: String,
}

/// Why a part could not be reconciled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// CamelCase, e.g. `SqsUnavailable`, `PostgresRefused`.
    pub reason: &'static str,
    pub message: String,
}

impl From<crate::sqs::SqsError> for Failure {
    fn from(e: crate::sqs::SqsError) -> Self {
        Failure { reason: e.reason, message: e.message }
    }
}

impl From<crate::postgres::PgError> for Failure {
    fn from(e: crate::postgres::PgError) -> Self {
        Failure { reason: e.reason, message: e.message }
    }
}

/// What a reconcile did and found.
#[derive(Debug)]
pub struct Outcome {
    pub queues: Result<QueuesStatus, Failure>,
    pub databases: Result<DatabasesStatus, Failure>,
    /// Each role's password (kept, or set during this reconcile); complete
    /// when `databases` is `Ok`.
    pub passwords: BTreeMap<Service, SecretString>,
    /// In the order they were made.
    pub changes: Vec<Change>,
}

impl Outcome {
    /// The queue and database parts of the conditions.
    pub fn parts(&self) -> (Part, Part) {
        let queues = match &self.queues {
            Ok(status) => Part::ready(
                "QueuesReconciled",
                format!(
                    "{} and {} exist with their dead-letter queues and redrive policies",
                    queue_name(status.orders.as_ref()),
                    queue_name(status.delivery_status.as_ref())
                ),
            ),
            Err(f) => Part::failed(f.reason, f.message.clone()),
        };
        let databases = match &self.databases {
            Ok(status) => Part::ready(
                "DatabasesReconciled",
                [status.orders.as_ref(), status.delivery.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        format!("{} (role {}, migration {})", d.name, d.role, d.migration_version.unwrap_or_default())
                    })
                    .collect::<Vec<_>>()
                    .join(" and ")
                    + " are migrated and owned by their roles",
            ),
            Err(f) => Part::failed(f.reason, f.message.clone()),
        };
        (queues, databases)
    }

    pub fn succeeded(&self) -> bool {
        self.queues.is_ok() && self.databases.is_ok()
    }

    /// The first failure, for error reporting.
    pub fn failure(&self) -> Option<&Failure> {
        self.queues.as_ref().err().or(self.databases.as_ref().err())
    }
}

fn queue_name(status: Option<&QueueStatus>) -> &str {
    status.map(|q| q.url.rsplit('/').next().unwrap_or_default()).unwrap_or("?")
}

/// A new password: 32 letters and digits (about 190 bits), safe in a URL as is.
pub fn generate_password() -> SecretString {
    let password: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(32).map(char::from).collect();
    SecretString::from(password)
}

/// Makes the queues and databases match `spec`.
#[tracing::instrument(skip_all)]
pub async fn reconcile(spec: &OrderPipelineSpec, inputs: &Inputs) -> Outcome {
    let mut changes = Vec::new();
    let queues = reconcile_queues(spec, inputs, &mut changes).await;
    let mut passwords = BTreeMap::new();
    let databases = reconcile_databases(spec, inputs, &mut changes, &mut passwords).await;
    Outcome { queues, databases, passwords, changes }
}

async fn reconcile_queues(
    spec: &OrderPipelineSpec,
    inputs: &Inputs,
    changes: &mut Vec<Change>,
) -> Result<QueuesStatus, Failure> {
    let sqs = Sqs::connect(&spec.sqs, inputs.sqs_credentials.as_ref()).await;
    let mut known: BTreeMap<String, ObservedQueue> = BTreeMap::new();
    for queue in queues::desired_queues(spec) {
        if let Some(observed) = sqs.observe(&queue.name).await? {
            known.insert(queue.name.clone(), observed);
        }
    }
    for action in queues::plan_queues(spec, &known) {
        sqs.apply(&action, &mut known).await?;
        let reason = match action {
            QueueAction::Create { .. } => "QueueCreated",
            QueueAction::Repair { .. } => "QueueRepaired",
        };
        let message = queues::describe(&action);
        tracing::info!(reason, "{message}");
        changes.push(Change { reason, message });
    }
    let status = |q: &QueueSpec| {
        let main = known.get(&q.name)?;
        let dlq = known.get(&q.dead_letter.name)?;
        Some(QueueStatus {
            url: main.url.clone(),
            arn: main.arn.clone(),
            dead_letter_url: dlq.url.clone(),
            dead_letter_arn: dlq.arn.clone(),
        })
    };
    Ok(QueuesStatus { orders: status(&spec.queues.orders), delivery_status: status(&spec.queues.delivery_status) })
}

async fn reconcile_databases(
    spec: &OrderPipelineSpec,
    inputs: &Inputs,
    changes: &mut Vec<Change>,
    passwords: &mut BTreeMap<Service, SecretString>,
) -> Result<DatabasesStatus, Failure> {
    let pg = Postgres::new(spec.databases.server.clone(), inputs.admin.clone());
    let mut status = DatabasesStatus::default();
    let mut failure = None;
    for service in Service::BOTH {
        match reconcile_database(&pg, spec, service, inputs, changes).await {
            Ok((db, password)) => {
                passwords.insert(service, password);
                match service {
                    Service::Orders => status.orders = Some(db),
                    Service::Delivery => status.delivery = Some(db),
                }
            }
            // Go on with the other database; report the first failure.
            Err(f) => {
                failure.get_or_insert(f);
            }
        }
    }
    match failure {
        None => Ok(status),
        Some(f) => Err(f),
    }
}

async fn reconcile_database(
    pg: &Postgres,
    spec: &OrderPipelineSpec,
    service: Service,
    inputs: &Inputs,
    changes: &mut Vec<Change>,
) -> Result<(DatabaseStatus, SecretString), Failure> {
    let want = service.spec(spec);
    let kept = inputs.kept_passwords.get(&service);
    // Observe and act under one lock, so what is observed stays true.
    let lock = pg.lock(&want.name).await?;
    let result = reconcile_locked(pg, service, want, kept, changes).await;
    let _ = sqlx::Connection::close(lock).await;
    result
}

async fn reconcile_locked(
    pg: &Postgres,
    service: Service,
    want: &crate::resource::DatabaseSpec,
    kept: Option<&SecretString>,
    changes: &mut Vec<Change>,
) -> Result<(DatabaseStatus, SecretString), Failure> {
    let observed = pg.observe(want, kept).await?;
    // A kept password is used again even for a role that has to be created
    // anew, so what is published stays the same.
    let password = match (observed.password, kept) {
        (PasswordState::Accepted | PasswordState::Refused, Some(kept)) => kept.clone(),
        (_, Some(kept)) if observed.role.is_none() => kept.clone(),
        _ => generate_password(),
    };
    let mut applied = observed.database.as_ref().map(|d| d.applied_migrations.clone()).unwrap_or_default();
    for action in databases::plan_database(want, &observed, &service.migration_versions()) {
        pg.apply(service, &action, &password).await?;
        let reason = match &action {
            DbAction::CreateRole { .. } => "RoleCreated",
            DbAction::RestrictRole { .. } => "RoleRestricted",
            DbAction::SetPassword { .. } => "PasswordSet",
            DbAction::CreateDatabase { .. } => "DatabaseCreated",
            DbAction::ChangeOwner { .. } => "DatabaseAdopted",
            DbAction::RevokePublic { .. } => "ConnectRevoked",
            DbAction::AdoptObjects { .. } => "ObjectsAdopted",
            DbAction::Migrate { versions, .. } => {
                applied.extend(versions);
                "MigrationsApplied"
            }
        };
        let message = databases::describe(&action);
        tracing::info!(reason, "{message}");
        changes.push(Change { reason, message });
    }
    let status = DatabaseStatus {
        name: want.name.clone(),
        role: want.role.clone(),
        migration_version: applied.iter().copied().max(),
    };
    Ok((status, password))
}

/// Carries out the deletion policy; returns what was deleted.
#[tracing::instrument(skip_all, fields(policy = ?spec.deletion_policy))]
pub async fn cleanup(
    spec: &OrderPipelineSpec,
    admin: Option<&AdminCredentials>,
    sqs_credentials: Option<&AwsCredentials>,
) -> Result<Vec<Change>, Failure> {
    let mut changes = Vec::new();
    if spec.deletion_policy == DeletionPolicy::Retain {
        return Ok(changes);
    }
    let sqs = Sqs::connect(&spec.sqs, sqs_credentials).await;
    // Main queues first: nothing then redrives into a dead-letter queue that is gone.
    let names = [
        &spec.queues.orders.name,
        &spec.queues.delivery_status.name,
        &spec.queues.orders.dead_letter.name,
        &spec.queues.delivery_status.dead_letter.name,
    ];
    for name in names {
        if sqs.delete(name).await? {
            changes.push(Change { reason: "QueueDeleted", message: format!("deleted SQS queue {name}") });
        }
    }
    if spec.drop_databases_on_delete {
        let admin = admin.ok_or_else(|| Failure {
            reason: "SecretMissing",
            message: "dropping the databases needs the admin Secret".into(),
        })?;
        let pg = Postgres::new(spec.databases.server.clone(), admin.clone());
        for service in Service::BOTH {
            let want = service.spec(spec);
            let (db, role) = pg.drop(want).await?;
            if db {
                changes.push(Change { reason: "DatabaseDropped", message: format!("dropped database {}", want.name) });
            }
            if role {
                changes.push(Change { reason: "RoleDropped", message: format!("dropped role {}", want.role) });
            }
        }
    }
    Ok(changes)
}
