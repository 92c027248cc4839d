//! The key Secrets through a mocked Kubernetes API (tower-test): absent ones
//! are created with key material the order-service can use, present ones are
//! never written (the mock fails on any request it was not told to expect),
//! a create that loses a race leaves the winner, an unusable one is reported
//! and left alone, and deletion hands only what the controller made to the
//! garbage collector.
//! (The full reconcile with the keys in it is in tests/reconcile.rs.)

mod common;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use orderflow_controller::{
    OrderPipeline, keys,
    plan::{keys::Key, publish::Owner},
    testing::spec,
};
use serde_json::json;

fn owner(p: &OrderPipeline) -> Owner {
    Owner { name: p.metadata.name.clone().unwrap(), namespace: NAMESPACE.into(), uid: p.metadata.uid.clone() }
}

/// Reads and publishes `p`'s key Secrets against `steps`; returns what
/// publishing reported and the requests seen.
async fn read_and_publish(p: &OrderPipeline, steps: Vec<Step>) -> (keys::Published, Vec<Seen>) {
    let (ctx, server) = context();
    let server = server.run(steps);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let live = keys::read(&secrets, p.metadata.name.as_deref().unwrap()).await.expect("read");
    let published = keys::publish(&secrets, &owner(p), live).await.expect("published");
    drop((secrets, ctx));
    (published, finish(server).await)
}

#[tokio::test]
async fn absent_key_secrets_are_created_with_usable_key_material() {
    let p = finalized(pipeline(&tag(), spec("keys")));
    let mut steps = key_gets(&p, &[]);
    steps.extend(key_creates(&p));
    let (published, seen) = read_and_publish(&p, steps).await;
    let reasons: Vec<_> = published.changes.iter().map(|c| (c.reason, c.message.clone())).collect();
    let name = p.metadata.name.clone().unwrap();
    assert_eq!(
        reasons,
        [
            ("KeyCreated", format!("created Secret {name}-jwt with a new JWT signing key (Ed25519, PKCS#8 PEM)")),
            (
                "KeyCreated",
                format!("created Secret {name}-client-secret-key with a new client secret key (HMAC-SHA-256)")
            ),
        ]
    );
    assert!(published.unusable.is_empty());
    // Two pipelines never share a key.
    let other = finalized(pipeline(&tag(), spec("keys")));
    let mut steps = key_gets(&other, &[]);
    steps.extend(key_creates(&other));
    let (_, seen_other) = read_and_publish(&other, steps).await;
    assert_ne!(seen[2].body["data"], seen_other[2].body["data"]);
}

#[tokio::test]
async fn present_key_secrets_are_left_untouched_with_no_write_at_all() {
    let p = finalized(pipeline(&tag(), spec("keys")));
    // Only the two reads are expected: a create, patch or delete would fail the script.
    let (published, seen) = read_and_publish(&p, key_gets(&p, &key_secrets(&p))).await;
    assert!(published.changes.is_empty() && published.unusable.is_empty(), "{published:?}");
    assert!(seen.iter().all(|s| s.method == http::Method::GET), "{seen:?}");

    // Nor one a person made under that name, without the controller's labels,
    // holding a rotation bundle (a new signing key first, then the old one).
    let name = p.metadata.name.clone().unwrap();
    let bundle = format!("{}{}", keygen::ed25519_private_key_pem(), keygen::ed25519_private_key_pem());
    let theirs = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": Key::Signing.secret_name(&name), "namespace": NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "Helm"}},
        "data": {"jwt.pem": k8s_openapi::ByteString(bundle.into_bytes())}});
    let mut steps = key_gets(&p, &key_secrets(&p));
    steps[0] = Step::Get { path: secret_path(&Key::Signing.secret_name(&name)), reply: Some(theirs) };
    let (published, _) = read_and_publish(&p, steps).await;
    assert!(published.changes.is_empty() && published.unusable.is_empty(), "{published:?}");
}

#[tokio::test]
async fn a_create_that_loses_a_race_leaves_the_other_secret() {
    let p = finalized(pipeline(&tag(), spec("keys")));
    let mut steps = key_gets(&p, &[]);
    steps.push(Step::Create { path: secrets_path(), check: Box::new(|_| {}), exists: true });
    steps.push(Step::Create { path: secrets_path(), check: Box::new(|_| {}), exists: false });
    let (published, _) = read_and_publish(&p, steps).await;
    assert_eq!(published.changes.iter().map(|c| c.reason).collect::<Vec<_>>(), ["KeyCreated"], "only the one it made");
}

#[tokio::test]
async fn an_unusable_key_secret_is_reported_and_not_written() {
    let p = finalized(pipeline(&tag(), spec("keys")));
    let name = p.metadata.name.clone().unwrap();
    let short = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": Key::ClientSecret.secret_name(&name), "namespace": NAMESPACE},
        "data": {"client-secret.key": k8s_openapi::ByteString(b"0123456789".to_vec())}});
    let mut steps = key_gets(&p, &key_secrets(&p));
    steps[1] = Step::Get { path: secret_path(&Key::ClientSecret.secret_name(&name)), reply: Some(short) };
    let (published, _) = read_and_publish(&p, steps).await;
    assert!(published.changes.is_empty());
    assert_eq!(published.unusable.len(), 1);
    let message = &published.unusable[0];
    assert!(message.starts_with(&format!("Secret {name}-client-secret-key client-secret.key: 10 bytes")), "{message}");
    assert!(!message.contains("0123456789"), "the message never shows the key: {message}");
}

#[tokio::test]
async fn deletion_hands_only_the_controllers_own_key_secrets_to_the_garbage_collector() {
    let p = finalized(pipeline(&tag(), spec("keys")));
    let name = p.metadata.name.clone().unwrap();
    let mut ours = key_secrets(&p).remove(0);
    ours.metadata.resource_version = Some("41".into());
    let theirs = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": Key::ClientSecret.secret_name(&name), "namespace": NAMESPACE, "resourceVersion": "42"},
        "data": {"client-secret.key": k8s_openapi::ByteString(keygen::client_secret_key().into_bytes())}});
    let uid = p.metadata.uid.clone().unwrap();
    let steps = vec![
        Step::Get {
            path: secret_path(&Key::Signing.secret_name(&name)),
            reply: Some(serde_json::to_value(&ours).unwrap()),
        },
        Step::StrategicPatch {
            path: secret_path(&Key::Signing.secret_name(&name)),
            check: Box::new(move |body| {
                assert_eq!(body["metadata"]["resourceVersion"], "41", "only the version read: {body}");
                let owner = &body["metadata"]["ownerReferences"][0];
                assert_eq!(
                    (owner["kind"].as_str(), owner["uid"].as_str()),
                    (Some("OrderPipeline"), Some(uid.as_str()))
                );
                assert_eq!(body.as_object().unwrap().len(), 1, "nothing but metadata: the key stays as it is");
            }),
            reply: serde_json::to_value(&ours).unwrap(),
        },
        // A Secret of that name someone else made (no controller labels) stays as it is.
        Step::Get { path: secret_path(&Key::ClientSecret.secret_name(&name)), reply: Some(theirs) },
    ];
    let (ctx, server) = context();
    let server = server.run(steps);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let changes = keys::delete_with_pipeline(&secrets, &owner(&p)).await.expect("handed over");
    drop((secrets, ctx));
    finish(server).await;
    assert_eq!(
        changes.iter().map(|c| (c.reason, c.message.clone())).collect::<Vec<_>>(),
        [("KeyDeleted", format!("Secret {name}-jwt is deleted with the OrderPipeline (owner reference added)"))]
    );
}
