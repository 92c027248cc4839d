//! `sslmode=verify-full` through the connect path the services use
//! ([`DatabaseSettings`]: the shared pool, the hot paths' pool and the direct
//! one) against a private PostgreSQL that takes only TLS, its certificate
//! signed by a CA made for the test ([`testkit::TlsPostgres`]). The CA named by
//! `sslrootcert=` in `DATABASE_URL` is trusted; without it, or with another
//! CA, the connection fails saying which certificate check failed; and
//! verify-full checks the host name where verify-ca does not. A pooler
//! address (`DATABASE_POOLER=host:port`) keeps `DATABASE_URL`'s TLS mode
//! unless `DATABASE_POOLER_SSLMODE` gives that hop its own.
//!
//! The same CA given as `PGSSLROOTCERT` (as the chart does) is proven by the
//! services' and the controller's own processes (`services/*/tests/tls_postgres.rs`,
//! `services/controller/tests/postgres_tls.rs`):
//! an environment variable is process-wide and these tests run in parallel.

use database::DatabaseSettings;
use settings::Env;
use testkit::TlsPostgres;

fn settings(url: &str) -> DatabaseSettings {
    let mut env = Env::from_pairs([("DATABASE_URL", url), ("DATABASE_MAX_CONNECTIONS", "4")]);
    let s = DatabaseSettings::from_env(&mut env, "postgres", 4);
    env.finish().expect("valid settings");
    s
}

const SSL_IN_USE: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// Whether each of the three pools connects, over TLS: the error otherwise.
async fn connect_all(url: &str) -> Result<(), String> {
    let s = settings(url);
    let shared = s.pool().map_err(|e| e.to_string())?;
    let hot = s.hot_pool(&shared).map_err(|e| e.to_string())?;
    let direct = s.direct_pool(1).map_err(|e| e.to_string())?;
    for (name, ssl) in [
        ("shared", sqlx::query_scalar::<_, bool>(SSL_IN_USE).fetch_one(&shared).await),
        ("hot", hot.run(async |c| sqlx::query_scalar::<_, bool>(SSL_IN_USE).fetch_one(c).await).await),
        ("direct", sqlx::query_scalar::<_, bool>(SSL_IN_USE).fetch_one(&direct).await),
    ] {
        match ssl {
            Ok(ssl) => assert!(ssl, "the {name} pool's connection is not TLS"),
            Err(e) => return Err(format!("{name} pool: {e}")),
        }
    }
    Ok(())
}

fn assert_certificate_refused(result: Result<(), String>, problem: &str) {
    let err = result.expect_err("connected without trusting the server's certificate");
    assert!(err.contains("invalid peer certificate") && err.contains(problem), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_trusts_the_ca_named_in_the_url_and_only_that() {
    let server = TlsPostgres::start();
    let with_ca = |ca: &std::path::Path| format!("sslmode=verify-full&sslrootcert={}", ca.display());
    connect_all(&server.url("127.0.0.1", "postgres", &with_ca(&server.ca_file())))
        .await
        .expect("verify-full with the server's CA");

    // Without a CA only the web roots are trusted, and no web root signed this server.
    let no_ca = connect_all(&server.url("127.0.0.1", "postgres", "sslmode=verify-full")).await;
    assert_certificate_refused(no_ca, "UnknownIssuer");
    let other_ca = connect_all(&server.url("127.0.0.1", "postgres", &with_ca(&server.other_ca_file()))).await;
    assert_certificate_refused(other_ca, "UnknownIssuer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let server = TlsPostgres::start();
    let ca = server.ca_file();
    // The certificate names 127.0.0.1 only; `localhost` reaches the same server.
    let url = |mode: &str| server.url("localhost", "postgres", &format!("sslmode={mode}&sslrootcert={}", ca.display()));
    assert_certificate_refused(connect_all(&url("verify-full")).await, "not valid for name \"localhost\"");
    connect_all(&url("verify-ca")).await.expect("verify-ca checks the chain, not the name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_takes_tls_connections_only() {
    let server = TlsPostgres::start();
    let err = connect_all(&server.url("127.0.0.1", "postgres", "sslmode=disable")).await.unwrap_err();
    assert!(err.contains("no pg_hba.conf entry") && err.contains("no encryption"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_without_tls_is_reached_with_its_own_tls_mode() {
    let server = TlsPostgres::start();
    let url =
        server.url("127.0.0.1", "postgres", &format!("sslmode=verify-full&sslrootcert={}", server.ca_file().display()));
    // The shared local PostgreSQL plays a PgBouncer that offers no trusted TLS.
    let local: sqlx::postgres::PgConnectOptions = testkit::database_url().parse().unwrap();
    let pooler = format!("{}:{}", local.get_host(), local.get_port());
    let read = |pairs: &[(&str, &str)]| {
        let mut all = vec![
            ("DATABASE_URL", url.as_str()),
            ("DATABASE_POOLER", pooler.as_str()),
            ("DATABASE_ACQUIRE_TIMEOUT", "2s"),
        ];
        all.extend_from_slice(pairs);
        let mut env = Env::from_pairs(all);
        let s = DatabaseSettings::from_env(&mut env, "postgres", 4);
        env.finish().expect("valid settings");
        s
    };

    let kept = read(&[]).pool().unwrap();
    let err = sqlx::query_scalar::<_, bool>(SSL_IN_USE).fetch_one(&kept).await.unwrap_err().to_string();
    // Its certificate is not trusted (Debian's snakeoil), or it has no TLS at all.
    assert!(err.contains("certificate") || err.contains("TLS"), "verify-full towards the pooler too: {err}");

    let s = read(&[("DATABASE_POOLER_SSLMODE", "disable")]);
    let ssl = sqlx::query_scalar::<_, bool>(SSL_IN_USE).fetch_one(&s.pool().unwrap()).await.unwrap();
    assert!(!ssl, "the pool reaches the pooler in the clear, as told");
    let ssl = sqlx::query_scalar::<_, bool>(SSL_IN_USE).fetch_one(&s.direct_pool(1).unwrap()).await.unwrap();
    assert!(ssl, "the direct connection still verifies the server");
}
