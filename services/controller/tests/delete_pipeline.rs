//! `orderflow-controller delete-pipeline`, the chart's uninstall hook, against
//! the mocked API server (tower-test) with the hook's own Role: it deletes the
//! pipeline and waits for the controller to remove the finalizer (deleted),
//! is done at once when there is no pipeline (already gone), and gives up at
//! its timeout while the finalizer stays (timed out). Time is paused, so the
//! waits are exact and instant.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{
    rbac::{self, Role},
    *,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use orderflow_controller::{
    OrderPipeline, OrderPipelineStatus,
    delete_pipeline::{self, Args, EXIT_GONE, EXIT_TIMED_OUT, Outcome},
    resource::{Condition, FINALIZER},
    testing::spec,
};
use serde_json::{Value, json};

const POLL: Duration = Duration::from_secs(2);

fn args(p: &OrderPipeline, timeout: Duration) -> Args {
    Args { name: p.metadata.name.clone().unwrap(), namespace: Some(NAMESPACE.into()), timeout, poll: POLL }
}

/// A client whose requests the uninstall hook's Role, rendered for `p`, must allow.
fn hook_api(p: &OrderPipeline) -> (kube::Client, ApiServer) {
    api_server(Role::uninstall_hook(NAMESPACE, p.metadata.name.as_deref().unwrap()))
}

/// `p` as the API server shows it once deleted, while the finalizer holds it.
fn terminating(p: &OrderPipeline) -> Value {
    json!(deleting(finalized(p.clone())))
}

fn get(p: &OrderPipeline, reply: Option<Value>) -> Step {
    Step::Get { path: pipeline_path(p), reply }
}

#[tokio::test(start_paused = true)]
async fn deleted_when_the_controller_removes_the_finalizer() {
    let tag = tag();
    let p = pipeline(&tag, spec(&tag));
    let (client, server) = hook_api(&p);
    let server = server.run(vec![
        Step::Delete { path: pipeline_path(&p), reply: Some(terminating(&p)) },
        get(&p, Some(terminating(&p))),
        get(&p, Some(terminating(&p))),
        get(&p, None),
    ]);

    let outcome = delete_pipeline::delete_pipeline(client, &args(&p, Duration::from_secs(120))).await.unwrap();
    let seen = finish(server).await;

    assert_eq!(outcome, Outcome::Deleted { waited: 2 * POLL }, "gone at the third look, one poll apart");
    // The hook's Role grants exactly the verbs used (each request was authorized on arrival).
    let used: BTreeSet<String> =
        seen.iter().map(|s| rbac::attributes(&s.method, &s.path, "").expect("a resource request").verb).collect();
    let role = Role::uninstall_hook(NAMESPACE, p.metadata.name.as_deref().unwrap());
    let granted: BTreeSet<String> = role.rules.iter().flat_map(|r| r.verbs.iter().cloned()).collect();
    assert_eq!(used, granted);
    assert_eq!(outcome.exit_code(), EXIT_GONE);
    let message = outcome.message(NAMESPACE, &p.metadata.name.clone().unwrap(), Duration::from_secs(120));
    assert!(message.starts_with("deleted: ") && message.contains("is gone after 4s"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn already_gone_when_there_is_no_pipeline() {
    let tag = tag();
    let p = pipeline(&tag, spec(&tag));
    let (client, server) = hook_api(&p);
    // One request: the delete's 404 ends it, nothing is awaited.
    let server = server.run(vec![Step::Delete { path: pipeline_path(&p), reply: None }]);

    let outcome = delete_pipeline::delete_pipeline(client, &args(&p, Duration::from_secs(120))).await.unwrap();
    finish(server).await;

    assert_eq!(outcome, Outcome::AlreadyGone);
    assert_eq!(outcome.exit_code(), EXIT_GONE, "an uninstall after a manual delete must still succeed");
    let message = outcome.message(NAMESPACE, "p", Duration::from_secs(120));
    assert!(message.starts_with("already gone: ") && message.contains("does not exist"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn timed_out_while_the_finalizer_stays_says_what_to_do() {
    let tag = tag();
    let p = pipeline(&tag, spec(&tag));
    let name = p.metadata.name.clone().unwrap();
    let mut stuck = deleting(finalized(p.clone()));
    stuck.status = Some(OrderPipelineStatus {
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: "SqsUnavailable".into(),
            message: "cannot delete queue orders-queue.fifo".into(),
            last_transition_time: "2026-01-01T00:00:00Z".into(),
            observed_generation: Some(1),
        }],
        ..Default::default()
    });
    let timeout = Duration::from_secs(10);
    let (client, server) = hook_api(&p);
    // A look every 2 s from 0 s to 10 s: six, then it gives up.
    let mut steps = vec![Step::Delete { path: pipeline_path(&p), reply: Some(json!(stuck)) }];
    steps.extend((0..6).map(|_| get(&p, Some(json!(stuck)))));
    let server = server.run(steps);

    let started = tokio::time::Instant::now();
    let outcome = delete_pipeline::delete_pipeline(client, &args(&p, timeout)).await.unwrap();
    finish(server).await;

    assert_eq!(started.elapsed(), timeout, "waits the whole timeout, no longer");
    assert_eq!(
        outcome,
        Outcome::TimedOut {
            finalizers: vec![FINALIZER.into()],
            ready: Some("False SqsUnavailable: cannot delete queue orders-queue.fifo".into())
        }
    );
    assert_eq!(outcome.exit_code(), EXIT_TIMED_OUT);
    let message = outcome.message(NAMESPACE, &name, timeout);
    assert!(message.starts_with("timed out: ") && message.contains("still terminating after 10s"), "{message}");
    assert!(message.contains(FINALIZER) && message.contains("SqsUnavailable"), "{message}");
    assert!(
        message.contains(&format!("kubectl -n {NAMESPACE} patch opl {name} --type=merge")),
        "the way out is in the message: {message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_pipeline_under_the_same_name_is_not_waited_for() {
    let tag = tag();
    let p = pipeline(&tag, spec(&tag));
    let mut successor = p.clone();
    successor.meta_mut().uid = Some(format!("uid-{tag}-new"));
    successor.meta_mut().deletion_timestamp = None::<Time>;
    let (client, server) = hook_api(&p);
    let server = server.run(vec![
        Step::Delete { path: pipeline_path(&p), reply: Some(terminating(&p)) },
        get(&p, Some(json!(successor))),
    ]);

    let outcome = delete_pipeline::delete_pipeline(client, &args(&p, Duration::from_secs(120))).await.unwrap();
    finish(server).await;

    assert_eq!(outcome, Outcome::Deleted { waited: Duration::ZERO });
}
