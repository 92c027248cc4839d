//! `orderflow-controller delete-pipeline NAME`: deletes an OrderPipeline and
//! waits until it is gone, i.e. until the controller has carried out its
//! deletion policy and removed its finalizer. The chart runs it as a
//! `pre-delete` hook (templates/uninstall-hook.yaml), while the controller
//! still runs: `helm uninstall` deletes objects of unknown kinds such as the
//! OrderPipeline after the controller's Deployment and RBAC, so without the
//! hook nobody would be left to remove the finalizer.
//!
//! Two requests only, `delete` then `get` every `poll` until it answers 404
//! (the hook's Role grants exactly those). Outcomes: [`Outcome::Deleted`],
//! [`Outcome::AlreadyGone`] (both exit 0: an uninstall must succeed when
//! someone deleted the pipeline first) and [`Outcome::TimedOut`] (exit 3:
//! the hook fails, so `helm uninstall` stops before deleting the controller).
//! An API error (RBAC, no CRD, no API server) exits 1. Removing the
//! finalizer by hand is left to a person: the message says how.

use std::time::Duration;

use kube::{Api, Client, ResourceExt, api::DeleteParams};
use tokio::time::Instant;

use crate::resource::OrderPipeline;

/// What `delete-pipeline` was asked to do.
#[derive(Debug, Clone)]
pub struct Args {
    /// The OrderPipeline's name.
    pub name: String,
    /// Its namespace (default: the client's, i.e. the pod's own).
    pub namespace: Option<String>,
    /// How long to wait for the controller to remove the finalizer.
    pub timeout: Duration,
    /// How often to look.
    pub poll: Duration,
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Deleted by this call (or already being deleted) and gone after `waited`.
    Deleted { waited: Duration },
    /// There was no such OrderPipeline.
    AlreadyGone,
    /// Still there at the timeout: its finalizers were never removed.
    TimedOut { finalizers: Vec<String>, ready: Option<String> },
}

/// Exit status of a deletion that worked (deleted, or already gone).
pub const EXIT_GONE: i32 = 0;
/// Exit status of an API error (forbidden, no CRD, no API server).
pub const EXIT_API_ERROR: i32 = 1;
/// Exit status when the pipeline is still there at the timeout.
pub const EXIT_TIMED_OUT: i32 = 3;

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Deleted { .. } | Outcome::AlreadyGone => EXIT_GONE,
            Outcome::TimedOut { .. } => EXIT_TIMED_OUT,
        }
    }

    /// One line (two for a timeout: what is wrong, then what to do) for the log.
    pub fn message(&self, namespace: &str, name: &str, timeout: Duration) -> String {
        let pipeline = format!("OrderPipeline {namespace}/{name}");
        match self {
            Outcome::Deleted { waited } => {
                format!(
                    "deleted: {pipeline} is gone after {}s (the controller removed its finalizer)",
                    waited.as_secs()
                )
            }
            Outcome::AlreadyGone => format!("already gone: {pipeline} does not exist; nothing to delete"),
            Outcome::TimedOut { finalizers, ready } => {
                let ready = ready.as_deref().map(|r| format!("; its Ready condition: {r}")).unwrap_or_default();
                format!(
                    "timed out: {pipeline} is still terminating after {}s, finalizers [{}]{ready}.\n\
                     Is the controller running? kubectl -n {namespace} describe opl {name} shows its Events. \
                     Fix what they report and run helm uninstall again, or give up on the cleanup (queues and \
                     databases are then kept): kubectl -n {namespace} patch opl {name} --type=merge \
                     -p '{{\"metadata\":{{\"finalizers\":null}}}}'",
                    timeout.as_secs(),
                    finalizers.join(", ")
                )
            }
        }
    }
}

/// The subcommand: connects, deletes, waits, prints the outcome; returns the exit status.
pub async fn main(args: &Args) -> i32 {
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("orderflow-controller delete-pipeline: no Kubernetes client: {e}");
            return EXIT_API_ERROR;
        }
    };
    let namespace = args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    eprintln!(
        "deleting OrderPipeline {namespace}/{}; waiting up to {}s for the controller to remove its finalizer",
        args.name,
        args.timeout.as_secs()
    );
    let args = Args { namespace: Some(namespace.clone()), ..args.clone() };
    match delete_pipeline(client, &args).await {
        Ok(outcome) => {
            let message = outcome.message(&namespace, &args.name, args.timeout);
            if outcome.exit_code() == EXIT_GONE {
                println!("{message}");
            } else {
                eprintln!("{message}");
            }
            outcome.exit_code()
        }
        Err(e) => {
            eprintln!(
                "orderflow-controller delete-pipeline: cannot delete OrderPipeline {namespace}/{}: {e}",
                args.name
            );
            EXIT_API_ERROR
        }
    }
}

/// Deletes the pipeline and waits for it to go, at most `args.timeout`.
pub async fn delete_pipeline(client: Client, args: &Args) -> Result<Outcome, kube::Error> {
    let namespace = args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<OrderPipeline> = Api::namespaced(client, &namespace);
    let started = Instant::now();
    let uid = match api.delete(&args.name, &DeleteParams::background()).await {
        Ok(either) => either.left().and_then(|p| p.uid()),
        Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(Outcome::AlreadyGone),
        Err(e) => return Err(e),
    };
    let deadline = started + args.timeout;
    loop {
        let last = match api.get_opt(&args.name).await? {
            // A new pipeline under the same name is not the one deleted.
            Some(p) if uid.is_none() || p.uid() == uid => p,
            _ => return Ok(Outcome::Deleted { waited: started.elapsed() }),
        };
        let now = Instant::now();
        if now >= deadline {
            return Ok(timed_out(&last));
        }
        tokio::time::sleep(args.poll.min(deadline - now)).await;
    }
}

fn timed_out(p: &OrderPipeline) -> Outcome {
    let ready = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| format!("{} {}: {}", c.status, c.reason, c.message));
    Outcome::TimedOut { finalizers: p.finalizers().to_vec(), ready }
}
