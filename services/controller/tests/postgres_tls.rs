//! The controller's admin connection with `sslMode: verify-full` against a
//! private PostgreSQL that takes only TLS, its certificate signed by a CA made
//! for the test ([`testkit::TlsPostgres`]). The controller trusts a private CA
//! only through `PGSSLROOTCERT` (what the chart sets from the mounted bundle):
//! without it the admin connection fails naming the certificate problem; the
//! real binary (`reconcile-once`, a process of its own, so the variable is its
//! alone) with it provisions both databases over TLS and publishes a
//! `DATABASE_URL` with `sslmode=verify-full` that the services' connect path
//! opens with the same CA; with another CA it fails, naming the problem.

mod common;

use std::{path::Path, process::Output};

use common::*;
use orderflow_controller::{
    OrderPipelineSpec,
    once::parse_published,
    postgres::{AdminCredentials, Postgres},
    resource::SslMode,
    testing::{self, spec},
};
use testkit::TlsPostgres;

/// The fixture spec, its databases on `server` with verify-full.
fn tls_spec(tag: &str, server: &TlsPostgres) -> OrderPipelineSpec {
    let mut spec = spec(tag);
    spec.databases.server.host = "127.0.0.1".into();
    spec.databases.server.port = server.port;
    spec.databases.server.ssl_mode = SslMode::VerifyFull;
    spec
}

fn reconcile_once(dir: &Path, tag: &str, spec: &OrderPipelineSpec, ca: &Path) -> Output {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {}, namespace: {NAMESPACE}}}\nstringData: {{username: postgres, password: \"\"}}\n---\n",
        testing::ADMIN_SECRET
    );
    yaml.push_str(&serde_yaml::to_string(&pipeline(tag, spec.clone())).unwrap());
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, yaml).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_orderflow-controller"))
        .args(["reconcile-once", "--file"])
        .arg(&file)
        .env("PGSSLROOTCERT", ca)
        .output()
        .expect("run orderflow-controller")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn without_the_ca_the_admin_connection_names_the_certificate_problem() {
    assert!(
        std::env::var_os("PGSSLROOTCERT").is_none(),
        "PGSSLROOTCERT is set in the test environment: unset it, this test shows the default trust"
    );
    let server = TlsPostgres::start();
    let spec = tls_spec(&tag(), &server);
    let admin = AdminCredentials { username: "postgres".into(), password: String::new().into() };
    let err = Postgres::new(spec.databases.server, admin).lock("orders").await.unwrap_err();
    assert_eq!(err.reason, "PostgresUnavailable");
    assert!(err.message.contains("invalid peer certificate: UnknownIssuer"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pgsslrootcert_the_controller_provisions_over_verify_full_and_publishes_a_url_that_works() {
    let server = TlsPostgres::start();
    let tag = tag();
    let spec = tls_spec(&tag, &server);
    let _cleanup = Cleanup::new(&spec); // the queues (the databases go with the server)
    let dir = std::env::temp_dir().join(format!("orderflow-tls-once-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();

    let refused = reconcile_once(&dir, &tag, &spec, &server.other_ca_file());
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("invalid peer certificate: UnknownIssuer"), "{}", text(&refused.stderr));

    let done = reconcile_once(&dir, &tag, &spec, &server.ca_file());
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert!(text(&done.stderr).contains("Ready            True"), "{}", text(&done.stderr));
    let (_, secrets) = parse_published(&text(&done.stdout)).unwrap();
    // The database Secrets (the key Secrets printed beside them hold no URL).
    let urls: Vec<String> = secrets
        .iter()
        .filter_map(|s| s.data.as_ref()?.get("DATABASE_URL"))
        .map(|url| String::from_utf8(url.0.clone()).unwrap())
        .collect();
    assert_eq!(urls.len(), 2, "one DATABASE_URL per database");
    for db in [&spec.databases.orders, &spec.databases.delivery] {
        let role = format!("postgres://{}:", db.role);
        let url = urls.iter().find(|u| u.starts_with(&role)).unwrap_or_else(|| panic!("no URL for {}", db.role));
        assert!(url.ends_with("?sslmode=verify-full"), "the published URL keeps the TLS mode: {url}");
        // The services' connect path, with the CA as the URL may name it.
        let with_ca = format!("{url}&sslrootcert={}", server.ca_file().display());
        let mut env = settings::Env::from_pairs([("DATABASE_URL", with_ca.as_str())]);
        let pool = database::DatabaseSettings::from_env(&mut env, "unused", 2).direct_pool(1).unwrap();
        env.finish().expect("the published URL is a valid DATABASE_URL");
        let (user, ssl, migrations): (String, bool, i64) = sqlx::query_as(
            "SELECT current_user::text, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()),
                    (SELECT count(*) FROM _sqlx_migrations WHERE success)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((user.as_str(), ssl), (db.role.as_str(), true));
        assert!(migrations > 0, "the controller migrated {} over TLS", db.name);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
