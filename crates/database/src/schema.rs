//! Whether the database's schema is the one this binary was built for: every
//! migration embedded in it is applied. During an upgrade the new pods start
//! with `DATABASE_MIGRATE=false` while the new controller migrates; until it
//! has, `/readyz` reports the schema check down with the versions in hand.
//!
//! Once reached the answer is kept (a schema only moves forward), so a ready
//! pod's probes cost no query for it.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use sqlx::{PgPool, migrate::Migrator};

/// PostgreSQL's SQLSTATE for a table that does not exist.
const UNDEFINED_TABLE: &str = "42P01";

/// The schema check of one service's database.
#[derive(Clone, Debug)]
pub struct SchemaCheck {
    pool: PgPool,
    migrator: &'static Migrator,
    reached: Arc<AtomicBool>,
}

impl SchemaCheck {
    pub fn new(pool: PgPool, migrator: &'static Migrator) -> Self {
        Self { pool, migrator, reached: Arc::new(AtomicBool::new(false)) }
    }

    /// The newest migration embedded in the binary (`None`: it embeds none).
    pub fn wanted(&self) -> Option<i64> {
        self.embedded().max()
    }

    /// Whether a check has already found every embedded migration applied.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    /// `Ok` when every migration the binary embeds is applied; otherwise the
    /// reason, naming the newest applied version and the first one missing.
    pub async fn check(&self) -> Result<(), String> {
        if self.reached() {
            return Ok(());
        }
        let applied = self.applied().await.map_err(|e| format!("cannot read the applied migrations: {e}"))?;
        match self.embedded().filter(|v| !applied.contains(v)).min() {
            None => {
                self.reached.store(true, Ordering::Relaxed);
                Ok(())
            }
            Some(missing) => Err(not_yet(applied.iter().max().copied(), missing, self.wanted().unwrap_or(missing))),
        }
    }

    /// The versions recorded as successfully applied (none before the first migration).
    async fn applied(&self) -> Result<Vec<i64>, sqlx::Error> {
        // The table name comes from the embedded migrator, never from input.
        let sql = format!("SELECT version FROM {} WHERE success", self.migrator.table_name);
        match sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await {
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some(UNDEFINED_TABLE) => Ok(vec![]),
            other => other,
        }
    }

    fn embedded(&self) -> impl Iterator<Item = i64> + '_ {
        self.migrator.iter().filter(|m| m.migration_type.is_up_migration()).map(|m| m.version)
    }
}

/// The readiness detail while migrations are pending.
fn not_yet(applied: Option<i64>, missing: i64, wanted: i64) -> String {
    let at = applied.map_or_else(|| "no migration applied".to_owned(), |v| format!("schema at migration {v}"));
    format!(
        "{at}, this binary needs {wanted} (migration {missing} is not applied): \
         waiting for the migrations (the controller's, or DATABASE_MIGRATE=true)"
    )
}

#[cfg(test)]
mod tests {
    use super::not_yet;

    #[test]
    fn the_reason_names_the_versions() {
        let reason = not_yet(Some(20261129000010), 20261129000020, 20261129000020);
        assert!(reason.starts_with("schema at migration 20261129000010, this binary needs 20261129000020"), "{reason}");
        assert!(not_yet(None, 1, 2).starts_with("no migration applied, this binary needs 2 (migration 1"));
    }
}
