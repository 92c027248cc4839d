//! End-to-end through the controller: `orderflow-controller reconcile-once`
//! (the real binary) provisions a pipeline with unique names from a file; its
//! printed ConfigMap and Secrets become the environment of the real
//! order-service and delivery-service, which run without migrating
//! (`DATABASE_MIGRATE=false`, as in a cluster) and with the roles the
//! controller made; an order placed on them reaches DELIVERED.

use std::time::Duration;

use e2e::{bin, order_body};
use orderflow_controller::{OrderPipeline, once::parse_published, testing};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// Drops what the pipeline made, whatever happened to the test.
struct Cleanup(orderflow_controller::OrderPipelineSpec);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let spec = self.0.clone();
        let cleanup = async move {
            let sqs = messaging::connect(&messaging::SqsSettings::local(testkit::sqs_endpoint())).await;
            let q = &spec.queues;
            for name in [
                &q.orders.name,
                &q.orders.dead_letter.name,
                &q.delivery_status.name,
                &q.delivery_status.dead_letter.name,
            ] {
                if let Ok(out) = sqs.get_queue_url().queue_name(name).send().await {
                    let _ = sqs.delete_queue().set_queue_url(out.queue_url).send().await;
                }
            }
            if let Ok(mut conn) = PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres").await {
                for db in [&spec.databases.orders, &spec.databases.delivery] {
                    for sql in [
                        format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", db.name),
                        format!("DROP ROLE IF EXISTS \"{}\"", db.role),
                    ] {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
                    }
                }
            }
        };
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(cleanup)
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_started_from_the_controllers_output_deliver_an_order() {
    telemetry::init_test_logging("warn");
    let tag = format!("e{}", testkit::unique_tag());
    let spec = testing::spec(&tag);
    let _cleanup = Cleanup(spec.clone());
    let dir = std::env::temp_dir().join(format!("orderflow-e2e-controller-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut pipeline = OrderPipeline::new(&format!("p{tag}"), spec.clone());
    pipeline.metadata.namespace = Some("orderflow".into());
    let file = dir.join("pipeline.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {}, namespace: orderflow}}\nstringData: {{username: postgres, password: \"\"}}\n---\n{}",
            testing::ADMIN_SECRET,
            serde_yaml::to_string(&pipeline).unwrap()
        ),
    )
    .unwrap();

    let reconcile = || {
        std::process::Command::new(bin("orderflow-controller"))
            .args(["reconcile-once", "--file", file.to_str().unwrap()])
            .output()
            .expect("run orderflow-controller")
    };
    let out = reconcile();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (config, secrets) = parse_published(&String::from_utf8(out.stdout.clone()).unwrap()).unwrap();
    let again = reconcile();
    assert!(again.status.success() && again.stdout == out.stdout, "a second run publishes the same");

    // envFrom: the ConfigMap's keys, then the service's Secret.
    let config: Vec<(String, String)> = config.data.unwrap().into_iter().collect();
    let database_url = |secret_name: String| -> String {
        let secret = secrets.iter().find(|s| s.metadata.name.as_deref() == Some(&secret_name)).unwrap();
        String::from_utf8(secret.data.as_ref().unwrap()["DATABASE_URL"].0.clone()).unwrap()
    };
    let name = pipeline.metadata.name.clone().unwrap();
    let orders_url = database_url(OrderPipeline::orders_secret_name(&name));
    let delivery_url = database_url(OrderPipeline::delivery_secret_name(&name));
    assert!(
        orders_url.contains(&format!("://{}:", spec.databases.orders.role)),
        "the service's own role: {orders_url}"
    );

    let env = |url: &str, extra: &[(&str, String)]| {
        let mut env = config.clone();
        env.push(("DATABASE_URL".into(), url.to_owned()));
        env.push(("DATABASE_MIGRATE".into(), "false".into()));
        env.push(("CONSUMER_WAIT_TIME".into(), "2s".into()));
        env.push(("OUTBOX_POLL_INTERVAL".into(), "200ms".into()));
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env
    };
    let _delivery = e2e::start(
        "delivery-service",
        &[],
        env(
            &delivery_url,
            &[
                ("SHIP_AFTER", "300ms".into()),
                ("DELIVER_AFTER", "300ms".into()),
                ("STEP_JITTER", "100ms".into()),
                ("SCHEDULER_INTERVAL", "100ms".into()),
            ],
        ),
        "warn",
    )
    .await;
    let orders = e2e::start(
        "order-service",
        &[],
        env(
            &orders_url,
            &[
                ("JWT_PRIVATE_KEY", order_service::auth::keys::generate_private_key_pem()),
                ("REDIS_URL", testkit::redis_url()),
                ("REDIS_KEY_PREFIX", format!("{tag}:")),
            ],
        ),
        "warn",
    )
    .await;

    // A client registered through the service role's own connection.
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&orders_url).await.unwrap();
    let client =
        order_service::auth::clients::create(&pool, Uuid::now_v7(), "orders:read orders:write", None, None, false)
            .await
            .expect("the service role writes its own tables");
    let http = reqwest::Client::new();
    let token = testkit::token(&orders.url, &client.client_id, &client.client_secret).await;
    let created = http
        .post(format!("{}/orders", orders.url))
        .bearer_auth(&token)
        .json(&order_body("CTRL-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let delivered = testkit::eventually(Duration::from_secs(60), Duration::from_millis(200), || async {
        let order: Value =
            http.get(format!("{}/orders/{id}", orders.url)).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
        (order["status"] == "DELIVERED").then_some(())
    })
    .await;
    assert!(delivered.is_some(), "the order {id} reached DELIVERED");
    pool.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
