//! The Kubernetes glue, kept thin: `reconcile` wraps the finalizer, `apply`
//! reads the referenced Secrets and the published objects, runs the engine,
//! publishes the ConfigMap and Secrets with server-side apply (and creates the
//! key Secrets that are absent, [`crate::keys`]), emits one Event
//! per change (and a Warning per failure) and writes the status through the
//! status subresource — only when it changed. `cleanup` carries out the
//! deletion policy. `error_policy` backs off exponentially per object.
//!
//! The order of API calls is fixed (and the tests hold it to that): read
//! Secrets and published objects; publish; Events; status.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{FutureExt, future::BoxFuture};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{Event as Finalizer, finalizer},
    },
};
use serde_json::json;

use crate::{
    engine::{self, Change, Failure, Inputs},
    keys, metrics, note,
    plan::{
        self,
        conditions::{self, Part, Parts},
        databases::Service,
        keys::Key,
        publish::{self, Owner},
    },
    refs,
    resource::{API_VERSION, FIELD_MANAGER, FINALIZER, OrderPipeline, OrderPipelineStatus},
    validate::validate,
};

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("{0}")]
    MissingSecret(String),
    #[error("{}", .0.message)]
    External(Failure),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// The `reason` label of `controller_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::MissingSecret(_) => "missing_secret",
            Error::External(f) if f.reason.starts_with("Sqs") => "sqs",
            Error::External(_) => "postgres",
            Error::Kube(_) => "kubernetes",
            Error::Finalizer(inner) => match inner.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.metric_label(),
                _ => "kubernetes",
            },
        }
    }
}

/// What the reconciler shares across calls.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    /// Consecutive failures per object (`namespace/name`), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Requeue after a success, so drift is repaired even without a watch event.
    pub resync: Duration,
}

impl Context {
    pub fn new(client: Client, reporter: Reporter, resync: Duration) -> Arc<Self> {
        Arc::new(Self { recorder: Recorder::new(client.clone(), reporter), client, failures: Mutex::default(), resync })
    }

    fn key(p: &OrderPipeline) -> String {
        format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
    }
}

/// The reconciler the `Controller` runs.
#[tracing::instrument(skip_all, fields(pipeline = %Context::key(&pipeline)))]
pub async fn reconcile(pipeline: Arc<OrderPipeline>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = Context::key(&pipeline);
    let namespace = pipeline.namespace().unwrap_or_else(|| "default".into());
    let api: Api<OrderPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let reconcile_ctx = Arc::clone(&ctx);
    let result = finalizer(&api, FINALIZER, pipeline, |event| async move {
        match event {
            Finalizer::Apply(p) => apply(p, reconcile_ctx).await,
            Finalizer::Cleanup(p) => cleanup(p, reconcile_ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    metrics::reconciled(started.elapsed(), result.as_ref().err().map(Error::metric_label));
    if result.is_ok() {
        ctx.failures.lock().expect("failures lock").remove(&key);
    }
    result
}

/// After a failed reconcile: try again after 1 s, 2 s, 4 s ... (5 minutes at
/// most), counted per object and reset by a success.
pub fn error_policy(pipeline: Arc<OrderPipeline>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut map = ctx.failures.lock().expect("failures lock");
        let n = map.entry(Context::key(&pipeline)).or_default();
        *n = n.saturating_add(1);
        *n
    };
    let wait = plan::backoff(failures);
    tracing::warn!(pipeline = %Context::key(&pipeline), error = %error, failures, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

async fn publish_event(ctx: &Context, p: &OrderPipeline, type_: EventType, reason: &str, action: &str, note: String) {
    let note = Some(note::fit(note));
    let event = Event { type_, reason: reason.into(), note, action: action.into(), secondary: None };
    // An Event that cannot be written must not fail the reconcile it reports on.
    if let Err(e) = ctx.recorder.publish(&event, &p.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish Event");
    }
}

/// Writes `status` through the status subresource when it differs from the current one.
async fn write_status(api: &Api<OrderPipeline>, p: &OrderPipeline, status: OrderPipelineStatus) -> Result<(), Error> {
    if p.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let patch = Patch::Apply(json!({"apiVersion": API_VERSION, "kind": "OrderPipeline", "status": status}));
    api.patch_status(&p.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &patch).await?;
    Ok(())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Reports a reconcile that could not start (bad spec, missing Secret):
/// `Ready=False` with the reason, a Warning Event, nothing created.
async fn refuse(
    ctx: &Context,
    api: &Api<OrderPipeline>,
    p: &OrderPipeline,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    publish_event(ctx, p, EventType::Warning, reason, "Reconcile", message.to_owned()).await;
    let previous = p.status.clone().unwrap_or_default();
    let parts = Parts::not_attempted(
        reason,
        if reason == "InvalidSpec" { "the spec is invalid" } else { "a referenced Secret is missing" },
    );
    let status = OrderPipelineStatus {
        observed_generation: p.metadata.generation,
        conditions: conditions::conditions(
            &previous.conditions,
            &Part::failed(reason, message),
            &parts,
            p.metadata.generation,
            &now(),
        ),
        ..previous
    };
    write_status(api, p, status).await
}

/// Boxed, so its `Send`-ness is settled here rather than inside the controller's generic machinery.
fn apply(p: Arc<OrderPipeline>, ctx: Arc<Context>) -> BoxFuture<'static, Result<Action, Error>> {
    async move { apply_inner(&p, &ctx).await }.boxed()
}

async fn apply_inner(p: &OrderPipeline, ctx: &Context) -> Result<Action, Error> {
    let namespace = p.namespace().unwrap_or_else(|| "default".into());
    let name = p.name_any();
    let api: Api<OrderPipeline> = Api::namespaced(ctx.client.clone(), &namespace);

    if let Err(invalid) = validate(&p.spec) {
        let message = invalid.to_string();
        refuse(ctx, &api, p, "InvalidSpec", &message).await?;
        return Err(Error::InvalidSpec(message));
    }

    // The referenced Secrets, then what was published before (its passwords are kept).
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut referenced = BTreeMap::new();
    let mut refs_wanted = vec![p.spec.databases.server.admin_secret_ref.name.clone()];
    refs_wanted.extend(p.spec.sqs.credentials_secret_ref.as_ref().map(|r| r.name.clone()));
    for secret_name in refs_wanted {
        if let Some(secret) = secrets.get_opt(&secret_name).await? {
            referenced.insert(secret_name, secret);
        }
    }
    let (admin, sqs_credentials) = match refs::credentials(&p.spec, &namespace, |n| referenced.get(n).cloned()) {
        Ok(credentials) => credentials,
        Err(missing) => {
            refuse(ctx, &api, p, "SecretMissing", &missing.0).await?;
            return Err(Error::MissingSecret(missing.0));
        }
    };
    let live_orders = secrets.get_opt(&OrderPipeline::orders_secret_name(&name)).await?;
    let live_delivery = secrets.get_opt(&OrderPipeline::delivery_secret_name(&name)).await?;
    let live_config = config_maps.get_opt(&OrderPipeline::config_map_name(&name)).await?;
    let live_keys = keys::read(&secrets, &name).await?;
    let mut kept_passwords = BTreeMap::new();
    for (service, live) in [(Service::Orders, &live_orders), (Service::Delivery, &live_delivery)] {
        if let Some(password) = live.as_ref().and_then(|s| publish::kept_password(s, &service.spec(&p.spec).role)) {
            kept_passwords.insert(service, password);
        }
    }

    let outcome = engine::reconcile(&p.spec, &Inputs { admin, sqs_credentials, kept_passwords }).await;
    let mut changes = outcome.changes.clone();

    // Publish what is ready: the ConfigMap once the queues are, each Secret
    // once its database is (so a password just set is kept even if the rest failed).
    let owner = Owner { name: name.clone(), namespace: namespace.clone(), uid: p.uid() };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut waiting = Vec::new();
    if outcome.queues.is_ok() {
        let want = publish::config_map(&owner, &p.spec);
        if publish::config_differs(&want, live_config.as_ref()) {
            config_maps.patch(&OrderPipeline::config_map_name(&name), &params, &Patch::Apply(&want)).await?;
            let keys: Vec<&str> = want.data.iter().flatten().map(|(k, _)| k.as_str()).collect();
            changes.push(Change {
                reason: "ConfigPublished",
                message: format!("published ConfigMap {} ({})", OrderPipeline::config_map_name(&name), keys.join(", ")),
            });
        }
    } else {
        waiting.push("the queues");
    }
    for (service, live) in [(Service::Orders, &live_orders), (Service::Delivery, &live_delivery)] {
        let Some(password) = outcome.passwords.get(&service) else {
            waiting.push(match service {
                Service::Orders => "the orders database",
                Service::Delivery => "the delivery database",
            });
            continue;
        };
        let want = publish::secret(&owner, &p.spec, service, password);
        if publish::secret_differs(&want, live.as_ref()) {
            let secret_name = want.metadata.name.clone().unwrap_or_default();
            secrets.patch(&secret_name, &params, &Patch::Apply(&want)).await?;
            changes.push(Change {
                reason: "SecretPublished",
                message: format!(
                    "published Secret {secret_name} (DATABASE_URL of role {})",
                    service.spec(&p.spec).role
                ),
            });
        }
    }
    // The keys depend on nothing else, so they are created whatever failed.
    let keys = keys::publish(&secrets, &owner, live_keys).await?;
    changes.extend(keys.changes);
    let config = if !keys.unusable.is_empty() {
        Part::failed("KeyUnusable", keys.unusable.join("; "))
    } else if waiting.is_empty() {
        Part::ready(
            "Published",
            format!(
                "ConfigMap {} and Secrets {}, {} match the spec; keys in Secrets {}",
                OrderPipeline::config_map_name(&name),
                OrderPipeline::orders_secret_name(&name),
                OrderPipeline::delivery_secret_name(&name),
                Key::ALL.map(|k| k.secret_name(&name)).join(", ")
            ),
        )
    } else {
        Part::unknown("WaitingForDependencies", format!("published once {} are ready", waiting.join(" and ")))
    };

    for change in &changes {
        metrics::changed(change.reason);
        publish_event(ctx, p, EventType::Normal, change.reason, "Reconcile", change.message.clone()).await;
    }
    if let Some(failure) = outcome.failure() {
        publish_event(ctx, p, EventType::Warning, failure.reason, "Reconcile", failure.message.clone()).await;
    }
    for message in keys.unusable {
        publish_event(ctx, p, EventType::Warning, "KeyUnusable", "Reconcile", message).await;
    }

    let previous = p.status.clone().unwrap_or_default();
    let (queues_part, databases_part) = outcome.parts();
    let parts = Parts { queues: queues_part, databases: databases_part, config };
    let status = OrderPipelineStatus {
        observed_generation: p.metadata.generation,
        conditions: conditions::conditions(&previous.conditions, &parts.ready(), &parts, p.metadata.generation, &now()),
        // A part that failed keeps what was last known of it.
        queues: outcome.queues.as_ref().ok().cloned().or(previous.queues),
        databases: outcome.databases.as_ref().ok().cloned().or(previous.databases),
    };
    write_status(&api, p, status).await?;

    match outcome.failure() {
        Some(failure) => Err(Error::External(failure.clone())),
        None => Ok(Action::requeue(ctx.resync)),
    }
}

fn cleanup(p: Arc<OrderPipeline>, ctx: Arc<Context>) -> BoxFuture<'static, Result<Action, Error>> {
    async move { cleanup_inner(&p, &ctx).await }.boxed()
}

async fn cleanup_inner(p: &OrderPipeline, ctx: &Context) -> Result<Action, Error> {
    let namespace = p.namespace().unwrap_or_else(|| "default".into());
    if let Err(invalid) = validate(&p.spec) {
        let note = format!("nothing deleted: the spec is invalid ({invalid})");
        publish_event(ctx, p, EventType::Warning, "CleanupSkipped", "Delete", note).await;
        return Ok(Action::await_change());
    }
    let spec = &p.spec;
    if spec.deletion_policy == crate::resource::DeletionPolicy::Retain {
        let note = format!(
            "deletionPolicy Retain: kept queues {}, {} and databases {}, {}",
            spec.queues.orders.name,
            spec.queues.delivery_status.name,
            spec.databases.orders.name,
            spec.databases.delivery.name
        );
        publish_event(ctx, p, EventType::Normal, "Retained", "Delete", note).await;
        return Ok(Action::await_change());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut referenced = BTreeMap::new();
    let mut wanted: Vec<String> = spec.sqs.credentials_secret_ref.iter().map(|r| r.name.clone()).collect();
    if spec.drop_databases_on_delete {
        wanted.push(spec.databases.server.admin_secret_ref.name.clone());
    }
    for secret_name in wanted {
        if let Some(secret) = secrets.get_opt(&secret_name).await? {
            referenced.insert(secret_name, secret);
        }
    }
    let lookup = |n: &str| referenced.get(n).cloned();
    let credentials = refs::sqs(spec, &namespace, lookup).and_then(|sqs| {
        let admin = if spec.drop_databases_on_delete { Some(refs::admin(spec, &namespace, lookup)?) } else { None };
        Ok((admin, sqs))
    });
    let (admin, sqs_credentials) = match credentials {
        Ok(c) => c,
        Err(missing) => {
            let note = format!("cannot delete yet: {missing}");
            publish_event(ctx, p, EventType::Warning, "SecretMissing", "Delete", note).await;
            return Err(Error::MissingSecret(missing.0));
        }
    };
    match engine::cleanup(spec, admin.as_ref(), sqs_credentials.as_ref()).await {
        Ok(mut changes) => {
            // After the databases are gone, never before: a failed drop keeps the keys.
            if plan::keys::delete_with_pipeline(spec) {
                let owner = Owner { name: p.name_any(), namespace: namespace.clone(), uid: p.uid() };
                changes.extend(keys::delete_with_pipeline(&secrets, &owner).await?);
            }
            for change in changes {
                metrics::changed(change.reason);
                publish_event(ctx, p, EventType::Normal, change.reason, "Delete", change.message).await;
            }
            Ok(Action::await_change())
        }
        Err(failure) => {
            publish_event(ctx, p, EventType::Warning, failure.reason, "Delete", failure.message.clone()).await;
            Err(Error::External(failure))
        }
    }
}
