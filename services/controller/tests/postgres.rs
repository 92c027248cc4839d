//! The PostgreSQL side against the real server: PostgreSQL keeps the SCRAM
//! verifier the controller sends as it is (it never sees the password), and
//! drifted role attributes are taken back.

mod common;

use std::collections::BTreeMap;

use common::*;
use orderflow_controller::{
    engine::{self, Inputs},
    postgres::{AdminCredentials, scram_verifier},
    testing::spec,
};
use sqlx::Row;

#[tokio::test]
async fn postgresql_stores_the_verifier_we_send_not_a_password() {
    let role = format!("{}_scram", tag());
    let verifier = scram_verifier("correct horse battery staple");
    let mut conn = admin("postgres").await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN PASSWORD '{verifier}'")))
        .execute(&mut conn)
        .await
        .unwrap();
    let stored: String = sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(&role)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {role}"))).execute(&mut conn).await.unwrap();

    // Taken as a verifier: a string PostgreSQL did not recognise as one would
    // have been hashed as a password, giving a different stored value.
    assert_eq!(stored, verifier);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileges_granted_behind_the_controllers_back_are_taken_away() {
    let tag = tag();
    let spec = spec(&tag);
    let _cleanup = Cleanup::new(&spec);
    let inputs = Inputs {
        admin: AdminCredentials { username: "postgres".into(), password: String::new().into() },
        sqs_credentials: None,
        kept_passwords: BTreeMap::new(),
    };
    let first = engine::reconcile(&spec, &inputs).await;
    assert!(first.succeeded(), "{:?}", first.failure());

    // Someone makes the orders role a superuser and opens the delivery database to everyone.
    let mut conn = admin("postgres").await;
    let (orders_role, delivery_db) = (&spec.databases.orders.role, &spec.databases.delivery.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE {orders_role} SUPERUSER CREATEDB; GRANT CONNECT ON DATABASE {delivery_db} TO PUBLIC"
    )))
    .execute(&mut conn)
    .await
    .unwrap();

    let inputs = Inputs { kept_passwords: first.passwords.clone(), ..inputs };
    let second = engine::reconcile(&spec, &inputs).await;
    assert!(second.succeeded(), "{:?}", second.failure());
    let reasons: Vec<&str> = second.changes.iter().map(|c| c.reason).collect();
    assert_eq!(reasons, ["RoleRestricted", "ConnectRevoked"], "{:?}", second.changes);
    assert_eq!(
        second.changes[0].message,
        format!("restricted role {orders_role} back to least privilege: NOSUPERUSER NOCREATEDB")
    );
    let row = sqlx::query("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = $1")
        .bind(orders_role)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!((row.get::<bool, _>(0), row.get::<bool, _>(1)), (false, false));

    let third = engine::reconcile(&spec, &inputs).await;
    assert_eq!(third.changes, [], "nothing left to do");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reconciles_racing_on_a_fresh_pipeline_both_succeed_and_converge() {
    let tag = tag();
    let spec = spec(&tag);
    let _cleanup = Cleanup::new(&spec);
    let inputs = Inputs {
        admin: AdminCredentials { username: "postgres".into(), password: String::new().into() },
        sqs_credentials: None,
        kept_passwords: BTreeMap::new(),
    };
    let (a, b) = tokio::join!(engine::reconcile(&spec, &inputs), engine::reconcile(&spec, &inputs));
    assert!(a.succeeded(), "{:?}", a.failure());
    assert!(b.succeeded(), "{:?}", b.failure());
    // Between them, each database was created and migrated exactly once.
    let all: Vec<&str> = a.changes.iter().chain(&b.changes).map(|c| c.reason).collect();
    assert_eq!(all.iter().filter(|r| **r == "DatabaseCreated").count(), 2, "{all:?}");
    assert_eq!(all.iter().filter(|r| **r == "MigrationsApplied").count(), 2, "{all:?}");

    // Whichever published last, the next reconcile with its passwords settles it.
    let settle = Inputs { kept_passwords: b.passwords.clone(), ..inputs.clone() };
    let next = engine::reconcile(&spec, &settle).await;
    assert!(next.succeeded(), "{:?}", next.failure());
    let again = engine::reconcile(&spec, &Inputs { kept_passwords: next.passwords.clone(), ..inputs }).await;
    assert_eq!(again.changes, [], "converged");
}
