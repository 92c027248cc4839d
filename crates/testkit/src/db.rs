//! A fresh PostgreSQL database per test, migrated, dropped on `Drop`.

use sqlx::{Connection, PgConnection, PgPool, postgres::PgPoolOptions};

pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates `orderflow_test_<tag>` and applies `migrator` to it.
    pub async fn create(migrator: &sqlx::migrate::Migrator) -> anyhow::Result<Self> {
        Self::create_to(migrator, None).await
    }

    /// Creates `orderflow_test_<tag>` and applies `migrator`'s migrations up to
    /// and including version `target` (all of them with `None`): the database
    /// an older release left behind.
    pub async fn create_to(migrator: &sqlx::migrate::Migrator, target: Option<i64>) -> anyhow::Result<Self> {
        let admin_url = crate::database_url();
        let name = format!("orderflow_test_{}", crate::unique_tag());
        let mut admin = PgConnection::connect(&admin_url).await?;
        // A database name cannot be a bind parameter; this one is generated
        // (`orderflow_test_` + hex), never taken from input.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#))).execute(&mut admin).await?;
        let url = replace_database(&admin_url, &name);
        let pool = PgPoolOptions::new().max_connections(1).connect(&url).await?;
        match target {
            Some(version) => migrator.run_to(version, &pool).await?,
            None => migrator.run(&pool).await?,
        }
        pool.close().await;
        Ok(Self { name, url, admin_url })
    }

    /// An outage of this database alone: it refuses new connections
    /// (`ALLOW_CONNECTIONS false`) and every open one is terminated, so the
    /// services' pools see what they would see if the server went away.
    /// Other tests' databases on the same server are untouched.
    pub async fn refuse_connections(&self) {
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("admin connection");
        let name = &self.name;
        // The name is generated (see `create`), never taken from input.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS false"#)))
            .execute(&mut admin)
            .await
            .expect("refuse connections");
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .expect("terminate backends");
    }

    /// Ends [`TestDb::refuse_connections`].
    pub async fn allow_connections(&self) {
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("admin connection");
        let name = &self.name;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS true"#)))
            .execute(&mut admin)
            .await
            .expect("allow connections");
    }

    /// A small pool on the test database, for assertions.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new().max_connections(4).connect(&self.url).await.expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        crate::block_on_cleanup(async move {
            if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#)))
                    .execute(&mut admin)
                    .await;
            }
        });
    }
}

/// Swaps the database name in a `postgres://` URL.
pub fn replace_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn swaps_database_names() {
        assert_eq!(super::replace_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            super::replace_database("postgres://u@h/p?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(super::replace_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
