//! The order-service's database connection as the chart sets it up against a
//! PostgreSQL with a private CA: `DATABASE_URL` with `sslmode=verify-full` and
//! the CA bundle in `PGSSLROOTCERT` (a process of its own, so the variable is
//! its alone). `order-service migrate` applies the migrations over TLS; with
//! another CA, or none, it fails naming the certificate problem. The server:
//! [`testkit::TlsPostgres`], its certificate signed by a CA made here.

use std::{path::Path, process::Output};

use testkit::TlsPostgres;

fn migrate(url: &str, ca: Option<&Path>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_order-service"));
    command.arg("migrate").env("DATABASE_URL", url).env_remove("PGSSLROOTCERT");
    if let Some(ca) = ca {
        command.env("PGSSLROOTCERT", ca);
    }
    command.output().expect("run order-service migrate")
}

#[tokio::test]
async fn migrates_over_verify_full_with_the_ca_in_pgsslrootcert_only() {
    let server = TlsPostgres::start();
    let url = server.url("127.0.0.1", "postgres", "sslmode=verify-full");
    for refused in [migrate(&url, Some(&server.other_ca_file())), migrate(&url, None)] {
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "migrated without trusting the server's certificate");
        assert!(stderr.contains("invalid peer certificate: UnknownIssuer"), "{stderr}");
    }

    let done = migrate(&url, Some(&server.ca_file()));
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let with_ca = format!("{url}&sslrootcert={}", server.ca_file().display());
    let mut check = <sqlx::PgConnection as sqlx::Connection>::connect(&with_ca).await.unwrap();
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(&mut check).await.unwrap();
    assert_eq!(applied as usize, order_service::storage::MIGRATOR.iter().count());
}
