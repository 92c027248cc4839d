//! `orderflow-controller reconcile-once`, the real binary, against the real SQS
//! emulator and PostgreSQL: idempotent when run again (same output, no
//! change, passwords kept), a bad file exits non-zero saying what is wrong,
//! an existing database made by someone else is adopted, and a lost state
//! file costs new passwords and keys but nothing else. The key Secrets are
//! printed with the rest, kept in the state file, and written as files.

mod common;

use std::{path::Path, process::Output};

use common::*;
use k8s_openapi::api::core::v1::Secret;
use orderflow_controller::{
    OrderPipelineSpec,
    once::parse_published,
    plan::{databases::Service, keys::Key},
    testing::{self, spec},
};
use sqlx::{Connection, PgConnection};

fn write_pipeline(dir: &Path, tag: &str, spec: &OrderPipelineSpec, with_admin: bool) -> std::path::PathBuf {
    let p = pipeline(tag, spec.clone());
    let mut yaml = String::from("# a test pipeline\n");
    if with_admin {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {}, namespace: {NAMESPACE}}}\nstringData: {{username: postgres, password: \"\"}}\n---\n",
            testing::ADMIN_SECRET
        ));
    }
    yaml.push_str(&serde_yaml::to_string(&p).unwrap());
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, yaml).unwrap();
    file
}

fn run(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_orderflow-controller"))
        .arg("reconcile-once")
        .args(args)
        .output()
        .expect("run orderflow-controller")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn database_url(secret: &Secret) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()["DATABASE_URL"].0.clone()).unwrap()
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("orderflow-once-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn running_twice_changes_nothing_the_second_time_and_keeps_the_passwords() {
    let tag = tag();
    let spec = spec(&tag);
    let _cleanup = Cleanup::new(&spec);
    let dir = temp_dir(&tag);
    let file = write_pipeline(&dir, &tag, &spec, true);
    let file_arg = file.to_str().unwrap();
    let env_dir = dir.join("env");

    let first = run(&["--file", file_arg, "--env-dir", env_dir.to_str().unwrap()]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let summary = text(&first.stderr);
    assert!(summary.contains("Ready            True"), "{summary}");
    assert!(summary.contains("14 change(s)"), "{summary}");
    assert_eq!(summary.matches("KeyCreated").count(), 2, "{summary}");
    let (config, secrets) = parse_published(&text(&first.stdout)).unwrap();
    let data = config.data.unwrap();
    assert_eq!(data["ORDERS_QUEUE"], spec.queues.orders.name);
    assert_eq!(data["SQS_ENDPOINT_URL"], "http://127.0.0.1:9324");
    let names: Vec<_> = secrets.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
    assert_eq!(
        names,
        [
            format!("p{tag}-orders-db"),
            format!("p{tag}-delivery-db"),
            format!("p{tag}-jwt"),
            format!("p{tag}-client-secret-key")
        ]
    );
    let name = format!("p{tag}");
    for (secret, key) in secrets[2..].iter().zip(Key::ALL) {
        assert_new_key_secret(&serde_json::to_value(secret).unwrap(), &name, key);
    }
    let orders_url = database_url(&secrets[0]);
    assert!(orders_url.starts_with(&format!("postgres://{}:", spec.databases.orders.role)), "{orders_url}");

    // The passwords are kept beside the file, readable by the owner only.
    let state = dir.join(".pipeline.yaml.state");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&state).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let env = std::fs::read_to_string(env_dir.join(format!("p{tag}-orders-db.env"))).unwrap();
    assert_eq!(env, format!("DATABASE_URL='{orders_url}'\n"));
    // The keys as a Secret volume holds them: one file per key, what JWT_PRIVATE_KEY_FILE reads.
    for (secret, key) in secrets[2..].iter().zip(Key::ALL) {
        let file = env_dir.join(secret.metadata.name.as_deref().unwrap()).join(key.data_key());
        let text = std::fs::read(&file).unwrap();
        assert_eq!(text, secret.data.as_ref().unwrap()[key.data_key()].0, "{}", file.display());
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
    }

    let second = run(&["--file", file_arg]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(
        text(&second.stderr).contains("no changes: everything already matched the spec"),
        "{}",
        text(&second.stderr)
    );
    assert_eq!(second.stdout, first.stdout, "the same ConfigMap and Secrets, passwords and keys included");

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_spec_exits_non_zero_saying_what_is_wrong_and_creates_nothing() {
    let tag = tag();
    let mut bad = spec(&tag);
    bad.queues.orders.name = format!("{tag}-orders");
    bad.queues.orders.visibility_timeout_seconds = 50_000;
    let _cleanup = Cleanup::new(&bad);
    let dir = temp_dir(&tag);
    let file = write_pipeline(&dir, &tag, &bad, true);

    let out = run(&["--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "spec.queues.orders.name: \"{tag}-orders\" is not a FIFO queue name: FIFO queue names end in .fifo"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("spec.queues.orders.visibilityTimeoutSeconds: 50000 is out of range: use 0..=43200 seconds"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(!dir.join(".pipeline.yaml.state").exists());

    // And without the admin Secret in the file:
    let good = spec(&tag);
    let file = write_pipeline(&dir, &tag, &good, false);
    let out = run(&["--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("Secret orderflow-test/postgres-admin (spec.databases.server.adminSecretRef) does not exist"),
        "{}",
        text(&out.stderr)
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        assert_eq!(queue_attributes(&good.queues.orders.dead_letter.name).await, None, "no queue was created");
        let mut conn = admin("postgres").await;
        let dbs: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{tag}%"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(dbs, 0, "no database was created");
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_existing_database_made_by_postgres_is_adopted_with_its_data() {
    let tag = tag();
    let spec = spec(&tag);
    let _cleanup = Cleanup::new(&spec);
    let orders_db = spec.databases.orders.name.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // What `make run` used to do: the database made and migrated as postgres.
    rt.block_on(async {
        let mut conn = admin("postgres").await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {orders_db}"))).execute(&mut conn).await.unwrap();
        let mut db = admin(&orders_db).await;
        Service::Orders.migrator().run(&mut db).await.unwrap();
        sqlx::query("INSERT INTO clients (client_id, secret_hash, customer_id, scopes) VALUES ('kept', 'x', gen_random_uuid(), '{}')")
            .execute(&mut db)
            .await
            .unwrap();
    });
    let dir = temp_dir(&tag);
    let file = write_pipeline(&dir, &tag, &spec, true);
    let out = run(&["--file", file.to_str().unwrap()]);
    let summary = text(&out.stderr);
    assert!(out.status.success(), "{summary}");
    assert!(
        summary.contains(&format!(
            "adopted existing database {orders_db}: owner postgres -> {}",
            spec.databases.orders.role
        )),
        "{summary}"
    );
    assert!(summary.contains("ObjectsAdopted"), "{summary}");
    assert!(!summary.contains(&format!("migrations to database {orders_db}")), "already migrated: {summary}");

    let (_, secrets) = parse_published(&text(&out.stdout)).unwrap();
    let url = database_url(&secrets[0]);
    rt.block_on(async {
        let mut db = PgConnection::connect(&url).await.unwrap();
        let foreign: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> current_user",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!(foreign, 0, "every table now belongs to the service role");
        let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM clients WHERE client_id = 'kept'")
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert_eq!(kept, 1, "the data stays");
        sqlx::raw_sql("CREATE TABLE adopted_role_can_migrate (id int)").execute(&mut db).await.unwrap();
    });

    let again = run(&["--file", file.to_str().unwrap()]);
    assert!(text(&again.stderr).contains("no changes"), "{}", text(&again.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_lost_state_file_costs_new_passwords_and_keys_and_nothing_else() {
    let tag = tag();
    let spec = spec(&tag);
    let _cleanup = Cleanup::new(&spec);
    let dir = temp_dir(&tag);
    let file = write_pipeline(&dir, &tag, &spec, true);
    let first = run(&["--file", file.to_str().unwrap()]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    std::fs::remove_file(dir.join(".pipeline.yaml.state")).unwrap();

    let second = run(&["--file", file.to_str().unwrap()]);
    let summary = text(&second.stderr);
    assert!(second.status.success(), "{summary}");
    assert!(summary.contains("4 change(s)"), "{summary}");
    assert_eq!(summary.matches("PasswordSet").count(), 2, "{summary}");
    assert_eq!(summary.matches("KeyCreated").count(), 2, "{summary}");
    let (_, before) = parse_published(&text(&first.stdout)).unwrap();
    let (_, after) = parse_published(&text(&second.stdout)).unwrap();
    assert_ne!(database_url(&before[0]), database_url(&after[0]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_key_secret_in_the_file_is_used_as_it_is() {
    let tag = tag();
    let spec = spec(&tag);
    let _cleanup = Cleanup::new(&spec);
    let dir = temp_dir(&tag);
    let file = write_pipeline(&dir, &tag, &spec, true);
    // The file also holds the signing key, as a cluster would (a person's, or a sealed secret's).
    let key = keygen::ed25519_private_key_pem();
    let mut yaml = std::fs::read_to_string(&file).unwrap();
    yaml.push_str(&format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: p{tag}-jwt, namespace: {NAMESPACE}}}\nstringData:\n  jwt.pem: |\n{}",
        key.lines().map(|l| format!("    {l}\n")).collect::<String>()
    ));
    std::fs::write(&file, yaml).unwrap();

    let out = run(&["--file", file.to_str().unwrap()]);
    let summary = text(&out.stderr);
    assert!(out.status.success(), "{summary}");
    assert_eq!(summary.matches("KeyCreated").count(), 1, "only the client secret key is new: {summary}");
    let (_, secrets) = parse_published(&text(&out.stdout)).unwrap();
    let jwt = secrets.iter().find(|s| s.metadata.name == Some(format!("p{tag}-jwt"))).unwrap();
    assert_eq!(jwt.data.as_ref().unwrap()["jwt.pem"].0, key.into_bytes(), "the file's key, unchanged");
    std::fs::remove_dir_all(&dir).unwrap();
}
