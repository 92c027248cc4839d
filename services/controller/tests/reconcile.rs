//! The reconciler against the real SQS emulator and PostgreSQL, with the
//! Kubernetes API mocked (tower-test): every API request is asserted and
//! answered in order, and the queues, databases and roles are checked in the
//! real servers afterwards.

mod common;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::controller::Action;
use orderflow_controller::{
    OrderPipeline,
    controller::{error_policy, reconcile},
    engine::{self, Inputs},
    plan::{databases::Service, keys::Key, publish},
    postgres::AdminCredentials,
    resource::{DeletionPolicy, FINALIZER},
    testing::spec,
};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, Row};

const FIRST_RECONCILE_EVENTS: [&str; 17] = [
    "QueueCreated",
    "QueueCreated",
    "QueueCreated",
    "QueueCreated",
    "RoleCreated",
    "DatabaseCreated",
    "ConnectRevoked",
    "MigrationsApplied",
    "RoleCreated",
    "DatabaseCreated",
    "ConnectRevoked",
    "MigrationsApplied",
    "ConfigPublished",
    "SecretPublished",
    "SecretPublished",
    "KeyCreated",
    "KeyCreated",
];

fn secret_url(secret: &Value) -> String {
    let b64 = secret["data"]["DATABASE_URL"].as_str().expect("DATABASE_URL");
    let bytes: k8s_openapi::ByteString = serde_json::from_value(json!(b64)).unwrap();
    String::from_utf8(bytes.0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_reconcile_provisions_everything_and_the_second_writes_nothing() {
    let tag = tag();
    let spec = spec(&tag);
    let _cleanup = Cleanup::new(&spec);
    let p = pipeline(&tag, spec.clone());
    let name = p.metadata.name.clone().unwrap();
    let (orders_secret, delivery_secret, config) = (
        OrderPipeline::orders_secret_name(&name),
        OrderPipeline::delivery_secret_name(&name),
        OrderPipeline::config_map_name(&name),
    );

    // 1. A new pipeline gets the finalizer first (and nothing else happens yet).
    let (ctx, server) = context();
    let server = server.run(vec![Step::JsonPatch {
        path: pipeline_path(&p),
        check: Box::new(|patch| {
            assert_eq!(patch[1], json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}));
        }),
        reply: Box::new(finalized(p.clone())),
    }]);
    let action = reconcile(Arc::new(p.clone()), ctx).await.expect("finalizer added");
    finish(server).await;
    assert_eq!(action, Action::await_change());
    assert_eq!(queue_attributes(&spec.queues.orders.name).await, None, "nothing is created before the finalizer");

    // 2. With the finalizer: queues, databases, published config, status.
    let p = finalized(p);
    let (ctx, server) = context();
    let expect_config = spec.clone();
    let mut steps = vec![
        Step::Get { path: secret_path("postgres-admin"), reply: Some(serde_json::to_value(admin_secret()).unwrap()) },
        Step::Get { path: secret_path(&orders_secret), reply: None },
        Step::Get { path: secret_path(&delivery_secret), reply: None },
        Step::Get { path: config_map_path(&config), reply: None },
    ];
    steps.extend(key_gets(&p, &[]));
    steps.extend([
        Step::Apply {
            path: config_map_path(&config),
            check: Box::new(move |cm| {
                assert_eq!(cm["data"]["ORDERS_QUEUE"], expect_config.queues.orders.name.as_str());
                assert_eq!(cm["data"]["DELIVERY_STATUS_QUEUE"], expect_config.queues.delivery_status.name.as_str());
                assert_eq!(cm["data"]["SQS_ENDPOINT_URL"], expect_config.sqs.endpoint.as_deref().unwrap());
                assert_eq!(cm["metadata"]["ownerReferences"][0]["kind"], "OrderPipeline");
            }),
        },
        Step::Apply {
            path: secret_path(&orders_secret),
            check: Box::new(|s| assert!(secret_url(s).contains("_orders:"))),
        },
        Step::Apply {
            path: secret_path(&delivery_secret),
            check: Box::new(|s| assert!(secret_url(s).contains("_delivery:"))),
        },
    ]);
    steps.extend(key_creates(&p));
    steps.extend(events(&FIRST_RECONCILE_EVENTS));
    steps.push(Step::ApplyStatus {
        pipeline: Box::new(p.clone()),
        check: Box::new(|body| assert_eq!(body["kind"], "OrderPipeline")),
    });
    let server = server.run(steps);
    let action = reconcile(Arc::new(p.clone()), ctx).await.expect("reconciled");
    let seen = finish(server).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(300)), "a periodic resync repairs drift");

    let status = applied_status(&seen);
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        conditions(&status).iter().map(|(t, s, _)| (t.as_str(), s.as_str())).collect::<Vec<_>>(),
        [("Ready", "True"), ("QueuesReady", "True"), ("DatabasesReady", "True"), ("ConfigPublished", "True")]
    );
    let queues = status.queues.clone().unwrap();
    let orders_queue = queues.orders.unwrap();
    assert!(orders_queue.url.ends_with(&spec.queues.orders.name), "{orders_queue:?}");
    assert!(orders_queue.dead_letter_arn.ends_with(&spec.queues.orders.dead_letter.name));
    let databases = status.databases.clone().unwrap();
    let latest = |s: Service| s.migration_versions().last().copied();
    assert_eq!(databases.orders.as_ref().unwrap().migration_version, latest(Service::Orders));
    assert_eq!(databases.delivery.as_ref().unwrap().migration_version, latest(Service::Delivery));

    // In SQS: the main queue redrives to its dead-letter queue, with the spec's attributes.
    let main = queue_attributes(&spec.queues.orders.name).await.expect("orders queue exists");
    let dlq = queue_attributes(&spec.queues.orders.dead_letter.name).await.expect("orders DLQ exists");
    let redrive: Value = serde_json::from_str(&main["RedrivePolicy"]).unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], dlq["QueueArn"].as_str());
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "5");
    assert_eq!((main["VisibilityTimeout"].as_str(), main["ReceiveMessageWaitTimeSeconds"].as_str()), ("30", "20"));
    assert_eq!(main["FifoQueue"], "true");
    assert_eq!(dlq["MessageRetentionPeriod"], "1209600");

    // In PostgreSQL: least privilege, ownership, isolation, migrations.
    let published: BTreeMap<String, Value> = seen
        .iter()
        .filter(|s| s.method == http::Method::PATCH && s.path.contains("/secrets/"))
        .map(|s| (s.path.clone(), s.body.clone()))
        .collect();
    let orders_url = secret_url(&published[&secret_path(&orders_secret)]);
    let delivery_url = secret_url(&published[&secret_path(&delivery_secret)]);
    assert!(
        orders_url.ends_with(&format!("@127.0.0.1:5432/{}?sslmode=disable", spec.databases.orders.name)),
        "{orders_url}"
    );
    let mut admin_conn = admin("postgres").await;
    let role = sqlx::query(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolpassword FROM pg_authid WHERE rolname = $1",
    )
    .bind(&spec.databases.orders.role)
    .fetch_one(&mut admin_conn)
    .await
    .unwrap();
    assert_eq!(
        (role.get::<bool, _>(0), role.get::<bool, _>(1), role.get::<bool, _>(2), role.get::<bool, _>(3)),
        (false, false, false, true)
    );
    assert!(role.get::<String, _>(4).starts_with("SCRAM-SHA-256$4096:"), "the password is stored as a SCRAM verifier");
    let owner: String = sqlx::query_scalar("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1")
        .bind(&spec.databases.orders.name)
        .fetch_one(&mut admin_conn)
        .await
        .unwrap();
    assert_eq!(owner, spec.databases.orders.role);
    let mut orders_conn = PgConnection::connect(&orders_url).await.expect("the published URL connects");
    let table_owner: String = sqlx::query_scalar("SELECT tableowner FROM pg_tables WHERE tablename = 'orders'")
        .fetch_one(&mut orders_conn)
        .await
        .unwrap();
    assert_eq!(table_owner, spec.databases.orders.role, "the role owns what its migrations made");
    let create_db =
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {tag}_sneaky"))).execute(&mut orders_conn).await;
    assert!(create_db.unwrap_err().to_string().contains("permission denied"), "no CREATEDB");
    // The delivery role cannot even connect to the orders database.
    let cross = delivery_url
        .replace(&format!("/{}?", spec.databases.delivery.name), &format!("/{}?", spec.databases.orders.name));
    let refused = PgConnection::connect(&cross).await.expect_err("CONNECT is revoked from PUBLIC");
    assert!(refused.to_string().contains("permission denied for database"), "{refused}");

    // 3. Reconciling again with everything in place makes no write at all.
    let mut p = p;
    p.status = Some(status);
    let by_path = |path: String| published.get(&path).cloned();
    let live_config: ConfigMap = serde_json::from_value(
        seen.iter().find(|s| s.method == http::Method::PATCH && s.path.contains("/configmaps/")).unwrap().body.clone(),
    )
    .unwrap();
    // The key Secrets as created: present now, so never written again.
    let created_keys: Vec<Secret> = seen
        .iter()
        .filter(|s| s.method == http::Method::POST && s.path == secrets_path())
        .map(|s| serde_json::from_value(s.body.clone()).unwrap())
        .collect();
    let (ctx, server) = context();
    let mut steps = vec![
        Step::Get { path: secret_path("postgres-admin"), reply: Some(serde_json::to_value(admin_secret()).unwrap()) },
        Step::Get { path: secret_path(&orders_secret), reply: by_path(secret_path(&orders_secret)) },
        Step::Get { path: secret_path(&delivery_secret), reply: by_path(secret_path(&delivery_secret)) },
        Step::Get { path: config_map_path(&config), reply: Some(serde_json::to_value(&live_config).unwrap()) },
    ];
    steps.extend(key_gets(&p, &created_keys));
    let server = server.run(steps);
    let action = reconcile(Arc::new(p), ctx).await.expect("reconciled again");
    finish(server).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

/// Provisions `spec` through the engine (no API), returning the published
/// Secrets as the API server would hold them.
async fn provision(spec: &orderflow_controller::OrderPipelineSpec, p: &OrderPipeline) -> (Secret, Secret, ConfigMap) {
    let inputs = Inputs {
        admin: AdminCredentials { username: "postgres".into(), password: String::new().into() },
        sqs_credentials: None,
        kept_passwords: BTreeMap::new(),
    };
    let outcome = engine::reconcile(spec, &inputs).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure());
    let owner = publish::Owner {
        name: p.metadata.name.clone().unwrap(),
        namespace: NAMESPACE.into(),
        uid: p.metadata.uid.clone(),
    };
    let published = publish::desired(&owner, spec, &outcome.passwords);
    (published.orders_db, published.delivery_db, published.config)
}

fn published_gets(p: &OrderPipeline, orders: &Secret, delivery: &Secret, config: &ConfigMap) -> Vec<Step> {
    let name = p.metadata.name.clone().unwrap();
    let mut steps = vec![
        Step::Get { path: secret_path("postgres-admin"), reply: Some(serde_json::to_value(admin_secret()).unwrap()) },
        Step::Get {
            path: secret_path(&OrderPipeline::orders_secret_name(&name)),
            reply: Some(serde_json::to_value(orders).unwrap()),
        },
        Step::Get {
            path: secret_path(&OrderPipeline::delivery_secret_name(&name)),
            reply: Some(serde_json::to_value(delivery).unwrap()),
        },
        Step::Get {
            path: config_map_path(&OrderPipeline::config_map_name(&name)),
            reply: Some(serde_json::to_value(config).unwrap()),
        },
    ];
    steps.extend(key_gets(p, &key_secrets(p)));
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drifted_queue_attributes_are_set_back_without_recreating_the_queue() {
    let tag = tag();
    let spec = spec(&tag);
    let _cleanup = Cleanup::new(&spec);
    let p = finalized(pipeline(&tag, spec.clone()));
    let (orders, delivery, config) = provision(&spec, &p).await;

    // Someone shortens the visibility timeout and raises the receive count by hand.
    let sqs = sqs().await;
    let url = sqs.get_queue_url().queue_name(&spec.queues.orders.name).send().await.unwrap().queue_url.unwrap();
    let before = queue_attributes(&spec.queues.orders.name).await.unwrap();
    let dlq_arn = queue_attributes(&spec.queues.orders.dead_letter.name).await.unwrap()["QueueArn"].clone();
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "5")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 9}).to_string(),
        )
        .send()
        .await
        .unwrap();

    let (ctx, server) = context();
    let mut steps = published_gets(&p, &orders, &delivery, &config);
    steps.extend(events(&["QueueRepaired"]));
    steps.push(Step::ApplyStatus { pipeline: Box::new(p.clone()), check: Box::new(|_| {}) });
    let server = server.run(steps);
    reconcile(Arc::new(p), ctx).await.expect("reconciled");
    let seen = finish(server).await;
    let note = seen.iter().find(|s| s.path.contains("events")).unwrap().body["note"].as_str().unwrap().to_owned();
    assert!(note.contains("VisibilityTimeout 5 -> 30") && note.contains("RedrivePolicy"), "{note}");

    let after = queue_attributes(&spec.queues.orders.name).await.unwrap();
    assert_eq!(after["VisibilityTimeout"], "30");
    let redrive: Value = serde_json::from_str(&after["RedrivePolicy"]).unwrap();
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "5");
    assert_eq!(after["CreatedTimestamp"], before["CreatedTimestamp"], "the same queue, not a new one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_key_secret_is_reported_in_the_status_and_never_overwritten() {
    let tag = tag();
    let spec = spec(&tag);
    let _cleanup = Cleanup::new(&spec);
    let p = finalized(pipeline(&tag, spec.clone()));
    let (orders, delivery, config) = provision(&spec, &p).await;
    let name = p.metadata.name.clone().unwrap();
    // Someone emptied the signing key. The script has no write to it: the
    // controller reports, it does not undo a person's edit.
    let jwt = secret_path(&Key::Signing.secret_name(&name));
    let emptied = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": Key::Signing.secret_name(&name),
        "namespace": NAMESPACE}, "data": {"jwt.pem": ""}});
    let mut steps = published_gets(&p, &orders, &delivery, &config);
    for step in &mut steps {
        if let Step::Get { path, reply } = step
            && *path == jwt
        {
            *reply = Some(emptied.clone());
        }
    }
    steps.push(warning("KeyUnusable"));
    steps.push(Step::ApplyStatus { pipeline: Box::new(p.clone()), check: Box::new(|_| {}) });
    let (ctx, server) = context();
    let server = server.run(steps);
    let action = reconcile(Arc::new(p), ctx).await.expect("nothing to retry: a person has to act");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let seen = finish(server).await;
    let status = applied_status(&seen);
    assert_eq!(
        conditions(&status)
            .iter()
            .filter(|(t, _, _)| t == "Ready" || t == "ConfigPublished")
            .map(|(t, s, r)| (t.as_str(), s.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        [("Ready", "False", "KeyUnusable"), ("ConfigPublished", "False", "KeyUnusable")]
    );
    let message = &status.conditions.iter().find(|c| c.type_ == "ConfigPublished").unwrap().message;
    assert!(message.starts_with(&format!("Secret {name}-jwt jwt.pem: no PEM block")), "{message}");
    assert!(message.contains("delete it for a new JWT signing key"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_spec_reports_what_to_fix_and_creates_nothing() {
    let tag = tag();
    let mut bad = spec(&tag);
    bad.queues.orders.name = format!("{tag}-orders");
    bad.queues.delivery_status.dead_letter.max_receive_count = 0;
    let _cleanup = Cleanup::new(&bad);
    let p = finalized(pipeline(&tag, bad.clone()));

    let (ctx, server) = context();
    let server = server.run(vec![
        warning("InvalidSpec"),
        Step::ApplyStatus { pipeline: Box::new(p.clone()), check: Box::new(|_| {}) },
    ]);
    let p = Arc::new(p);
    let error = reconcile(p.clone(), ctx.clone()).await.expect_err("an invalid spec fails the reconcile");
    assert_eq!(error_policy(p.clone(), &error, ctx.clone()), Action::requeue(Duration::from_secs(1)));
    drop(ctx);
    let seen = finish(server).await;

    let status = applied_status(&seen);
    let ready = &status.conditions[0];
    assert_eq!((ready.type_.as_str(), ready.status.as_str(), ready.reason.as_str()), ("Ready", "False", "InvalidSpec"));
    assert!(
        ready.message.contains(&format!("spec.queues.orders.name: \"{tag}-orders\" is not a FIFO queue name")),
        "{}",
        ready.message
    );
    assert!(
        ready
            .message
            .contains("spec.queues.deliveryStatus.deadLetter.maxReceiveCount: 0 is out of range: use 1..=1000")
    );
    assert!(status.conditions[1..].iter().all(|c| c.status == "Unknown"), "{:?}", status.conditions);
    let warning = seen.iter().find(|s| s.path.contains("events")).unwrap();
    assert_eq!(warning.body["note"].as_str(), Some(ready.message.as_str()));

    // Nothing half-way: no queue, no database, no role.
    for name in [&bad.queues.orders.dead_letter.name, &bad.queues.delivery_status.name] {
        assert_eq!(queue_attributes(name).await, None, "{name} was not created");
    }
    let mut conn = admin("postgres").await;
    let made: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_database WHERE datname LIKE $1) + (SELECT count(*) FROM pg_roles WHERE rolname LIKE $1)",
    )
    .bind(format!("{tag}%"))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(made, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_longer_than_the_api_server_takes_is_cut_and_the_status_keeps_it_all() {
    let tag = tag();
    let mut bad = spec(&tag);
    // Four names that are not FIFO queue names, each quoted back in the message: well over 1 KiB.
    for (i, queue) in [&mut bad.queues.orders, &mut bad.queues.delivery_status].into_iter().enumerate() {
        queue.name = format!("{tag}-{i}-{}", "é".repeat(150));
        queue.dead_letter.name = format!("{tag}-{i}-dlq-{}", "é".repeat(150));
    }
    let p = finalized(pipeline(&tag, bad));

    let (ctx, server) = context();
    let server = server.run(vec![
        warning("InvalidSpec"),
        Step::ApplyStatus { pipeline: Box::new(p.clone()), check: Box::new(|_| {}) },
    ]);
    reconcile(Arc::new(p), ctx).await.expect_err("an invalid spec fails the reconcile");
    let seen = finish(server).await;

    let message = applied_status(&seen).conditions[0].message.clone();
    assert!(message.len() > 2048, "the status keeps every problem ({} bytes)", message.len());
    let note = seen.iter().find(|s| s.path.contains("events")).unwrap().body["note"].as_str().unwrap().to_owned();
    assert!(note.len() <= orderflow_controller::note::MAX_NOTE_BYTES, "{} bytes", note.len());
    let kept = note.strip_suffix(orderflow_controller::note::TRUNCATED).expect("the note says it was cut");
    assert!(message.starts_with(kept), "the note is the message's beginning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_admin_secret_says_what_to_create_and_creates_nothing() {
    let tag = tag();
    let spec = spec(&tag);
    let _cleanup = Cleanup::new(&spec);
    let p = finalized(pipeline(&tag, spec.clone()));
    let (ctx, server) = context();
    let server = server.run(vec![
        Step::Get { path: secret_path("postgres-admin"), reply: None },
        warning("SecretMissing"),
        Step::ApplyStatus { pipeline: Box::new(p.clone()), check: Box::new(|_| {}) },
    ]);
    reconcile(Arc::new(p), ctx).await.expect_err("no admin Secret, no reconcile");
    let status = applied_status(&finish(server).await);
    assert_eq!(
        status.conditions[0].message,
        format!(
            "Secret {NAMESPACE}/postgres-admin (spec.databases.server.adminSecretRef) does not exist: create it with keys username, password"
        )
    );
    assert_eq!(queue_attributes(&spec.queues.orders.dead_letter.name).await, None);
}

async fn exists(spec: &orderflow_controller::OrderPipelineSpec) -> (usize, usize, usize) {
    let mut queues = 0;
    for name in [
        &spec.queues.orders.name,
        &spec.queues.orders.dead_letter.name,
        &spec.queues.delivery_status.name,
        &spec.queues.delivery_status.dead_letter.name,
    ] {
        queues += usize::from(queue_attributes(name).await.is_some());
    }
    let mut conn = admin("postgres").await;
    let dbs: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname IN ($1, $2)")
        .bind(&spec.databases.orders.name)
        .bind(&spec.databases.delivery.name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2)")
        .bind(&spec.databases.orders.role)
        .bind(&spec.databases.delivery.role)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    (queues, dbs as usize, roles as usize)
}

/// Deletes a provisioned pipeline under `policy`; returns the Event reasons.
async fn delete_with(policy: DeletionPolicy, drop_databases: bool) -> ((usize, usize, usize), Vec<String>) {
    let tag = tag();
    let mut spec = spec(&tag);
    spec.deletion_policy = policy;
    spec.drop_databases_on_delete = drop_databases;
    let _cleanup = Cleanup::new(&spec);
    let p = finalized(pipeline(&tag, spec.clone()));
    provision(&spec, &p).await;
    assert_eq!(exists(&spec).await, (4, 2, 2));

    let p = deleting(p);
    let mut steps = Vec::new();
    if drop_databases {
        steps.push(Step::Get {
            path: secret_path("postgres-admin"),
            reply: Some(serde_json::to_value(admin_secret()).unwrap()),
        });
    }
    let reasons: Vec<&str> = match (policy, drop_databases) {
        (DeletionPolicy::Retain, _) => vec!["Retained"],
        (DeletionPolicy::Delete, false) => vec!["QueueDeleted"; 4],
        (DeletionPolicy::Delete, true) => {
            let mut r = vec!["QueueDeleted"; 4];
            r.extend(["DatabaseDropped", "RoleDropped", "DatabaseDropped", "RoleDropped", "KeyDeleted", "KeyDeleted"]);
            r
        }
    };
    // With the databases gone, so are the keys their client secrets needed:
    // each is read, then handed to the garbage collector (the pipeline becomes
    // its owner) on the condition that it is still the version read.
    if drop_databases {
        for (i, mut key) in key_secrets(&p).into_iter().enumerate() {
            let name = key.metadata.name.clone().unwrap();
            let version = format!("{}", 10 + i);
            key.metadata.resource_version = Some(version.clone());
            let uid = p.metadata.uid.clone().unwrap();
            let reply = serde_json::to_value(&key).unwrap();
            steps.push(Step::Get { path: secret_path(&name), reply: Some(reply.clone()) });
            steps.push(Step::StrategicPatch {
                path: secret_path(&name),
                check: Box::new(move |body| {
                    assert_eq!(body["metadata"]["resourceVersion"], version.as_str(), "{body}");
                    let owner = &body["metadata"]["ownerReferences"][0];
                    assert_eq!(
                        (owner["kind"].as_str(), owner["uid"].as_str()),
                        (Some("OrderPipeline"), Some(uid.as_str()))
                    );
                }),
                reply,
            });
        }
    }
    steps.extend(events(&reasons));
    let mut gone = p.clone();
    gone.metadata.finalizers = None;
    steps.push(Step::JsonPatch {
        path: pipeline_path(&p),
        check: Box::new(|patch| {
            assert_eq!(patch[0], json!({"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER}));
            assert_eq!(patch[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
        }),
        reply: Box::new(gone),
    });
    let (ctx, server) = context();
    let server = server.run(steps);
    reconcile(Arc::new(p), ctx).await.expect("cleaned up");
    let seen = finish(server).await;
    let notes = seen
        .iter()
        .filter(|s| s.path.contains("events"))
        .map(|s| s.body["note"].as_str().unwrap().to_owned())
        .collect();
    (exists(&spec).await, notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_under_retain_keeps_queues_and_databases() {
    let (left, notes) = delete_with(DeletionPolicy::Retain, false).await;
    assert_eq!(left, (4, 2, 2));
    assert!(notes[0].starts_with("deletionPolicy Retain: kept queues"), "{notes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_under_delete_removes_the_queues_but_keeps_the_databases() {
    let (left, notes) = delete_with(DeletionPolicy::Delete, false).await;
    assert_eq!(left, (0, 2, 2));
    assert!(notes.iter().all(|n| n.starts_with("deleted SQS queue")), "{notes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_with_drop_databases_removes_queues_databases_and_roles() {
    let (left, notes) = delete_with(DeletionPolicy::Delete, true).await;
    assert_eq!(left, (0, 0, 0));
    assert!(notes.iter().any(|n| n.starts_with("dropped database")), "{notes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_sqs_failure_requeues_with_backoff_and_recovers() {
    let metrics = telemetry::Metrics::global();
    let proxy = testkit::Proxy::start(testkit::sqs_endpoint().trim_start_matches("http://")).await;
    let tag = tag();
    let mut spec = spec(&tag);
    spec.sqs.endpoint = Some(proxy.http_url());
    let _cleanup = Cleanup::new(&spec);
    let p = finalized(pipeline(&tag, spec.clone()));
    let name = p.metadata.name.clone().unwrap();
    let (orders_secret, delivery_secret, config) = (
        secret_path(&OrderPipeline::orders_secret_name(&name)),
        secret_path(&OrderPipeline::delivery_secret_name(&name)),
        config_map_path(&OrderPipeline::config_map_name(&name)),
    );
    let admin_get = || Step::Get {
        path: secret_path("postgres-admin"),
        reply: Some(serde_json::to_value(admin_secret()).unwrap()),
    };

    // Round 1, SQS does not answer: the databases are made (and their Secrets
    // published, so their passwords are kept), the queues are not, and the reconcile fails.
    let mut steps = vec![
        admin_get(),
        Step::Get { path: orders_secret.clone(), reply: None },
        Step::Get { path: delivery_secret.clone(), reply: None },
        Step::Get { path: config.clone(), reply: None },
    ];
    steps.extend(key_gets(&p, &[]));
    steps.extend([
        Step::Apply { path: orders_secret.clone(), check: Box::new(|_| {}) },
        Step::Apply { path: delivery_secret.clone(), check: Box::new(|_| {}) },
    ]);
    // The keys need neither SQS nor PostgreSQL: made in this round all the same.
    steps.extend(key_creates(&p));
    steps.extend(events(&FIRST_RECONCILE_EVENTS[4..12]));
    steps.extend(events(&["SecretPublished", "SecretPublished", "KeyCreated", "KeyCreated"]));
    steps.push(warning("SqsUnavailable"));
    steps.push(Step::ApplyStatus { pipeline: Box::new(p.clone()), check: Box::new(|_| {}) });
    // Round 2, SQS is back: the queues and the ConfigMap follow; the databases
    // and Secrets (read back as round 1 published them) are left alone.
    steps.extend([
        admin_get(),
        Step::GetApplied { path: orders_secret },
        Step::GetApplied { path: delivery_secret },
        Step::Get { path: config.clone(), reply: None },
    ]);
    steps.extend(key_gets(&p, &[]).into_iter().map(|s| match s {
        Step::Get { path, .. } => Step::GetApplied { path },
        other => other,
    }));
    steps.push(Step::Apply { path: config, check: Box::new(|_| {}) });
    steps.extend(events(&["QueueCreated", "QueueCreated", "QueueCreated", "QueueCreated", "ConfigPublished"]));
    steps.push(Step::ApplyStatus { pipeline: Box::new(p.clone()), check: Box::new(|_| {}) });

    let (ctx, server) = context();
    let server = server.run(steps);
    proxy.down();
    let p = Arc::new(p);
    let error = reconcile(p.clone(), ctx.clone()).await.expect_err("SQS is down");
    assert_eq!(error.metric_label(), "sqs");
    // The controller calls error_policy after each failed reconcile: 1 s, then 2 s, 4 s ...
    assert_eq!(error_policy(p.clone(), &error, ctx.clone()), Action::requeue(Duration::from_secs(1)));
    assert_eq!(error_policy(p.clone(), &error, ctx.clone()), Action::requeue(Duration::from_secs(2)));
    assert_eq!(error_policy(p.clone(), &error, ctx.clone()), Action::requeue(Duration::from_secs(4)));

    proxy.up();
    let action = reconcile(p.clone(), ctx.clone()).await.expect("SQS is back");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert_eq!(
        error_policy(p, &error, ctx.clone()),
        Action::requeue(Duration::from_secs(1)),
        "a success resets the backoff"
    );
    drop(ctx);
    let seen = finish(server).await;

    let statuses: Vec<_> =
        seen.iter().filter(|s| s.path.ends_with("/status")).map(|s| s.body["status"].clone()).collect();
    let first: orderflow_controller::OrderPipelineStatus = serde_json::from_value(statuses[0].clone()).unwrap();
    assert_eq!(
        conditions(&first).iter().map(|(t, s, r)| (t.as_str(), s.as_str(), r.as_str())).collect::<Vec<_>>(),
        [
            ("Ready", "False", "SqsUnavailable"),
            ("QueuesReady", "False", "SqsUnavailable"),
            ("DatabasesReady", "True", "DatabasesReconciled"),
            ("ConfigPublished", "Unknown", "WaitingForDependencies"),
        ]
    );
    let last: orderflow_controller::OrderPipelineStatus = serde_json::from_value(statuses[1].clone()).unwrap();
    assert!(last.conditions.iter().all(|c| c.status == "True"), "{:?}", last.conditions);
    assert_eq!(exists(&spec).await, (4, 2, 2));

    let text = metrics.render();
    assert!(sample(&text, "controller_reconcile_errors_total", "reason=\"sqs\"") >= 1.0, "errors by reason: {text}");
    assert!(sample(&text, "controller_reconcile_duration_seconds_count", "") >= 2.0, "{text}");
}

/// The sum of samples of `name` whose labels contain `label`.
fn sample(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}
