//! orderflow-controller: makes the SQS queues and PostgreSQL databases of an
//! `OrderPipeline` resource real, publishes the services' configuration and
//! reports status (see docs/CONTROLLER.md).
//!
//! The decisions are Kubernetes-free and pure ([`plan`]: observed state in,
//! actions out); [`engine`] observes and acts on SQS ([`sqs`]) and PostgreSQL
//! ([`postgres`]) with them; [`controller`] is the thin kube-rs glue
//! (finalizer, error policy, server-side apply, Events), [`keys`] the calls
//! for the key Secrets, and [`run`] the in-cluster process (leader election,
//! health, metrics); [`once`] is the cluster-less `reconcile-once`,
//! [`delete_pipeline`] the uninstall hook's delete-and-wait. [`note`] keeps
//! Event notes within the API server's limit.
//! [`resource`] holds the CRD types, [`validate`] the spec checks.

pub mod controller;
pub mod delete_pipeline;
pub mod engine;
pub mod keys;
pub mod metrics;
pub mod note;
pub mod once;
pub mod plan;
pub mod postgres;
pub mod refs;
pub mod resource;
pub mod run;
pub mod sqs;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod validate;

pub use resource::{OrderPipeline, OrderPipelineSpec, OrderPipelineStatus, crd_yaml};
