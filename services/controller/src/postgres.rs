//! PostgreSQL, as the controller sees and changes it: reading the catalog into
//! the observed state the planner takes ([`crate::plan::databases`]), running
//! the planned statements, and dropping databases and roles on deletion.
//!
//! Database and role names cannot be bind parameters in DDL, so they are
//! spliced into the statements — only after [`crate::validate`] held them to
//! `^[a-z_][a-z0-9_]{0,62}$` (the same pattern the CRD schema enforces), and
//! always through [`quote_ident`] as well. Catalog values that flow back into
//! DDL (object names during adoption) are quoted the same way. Passwords go in
//! as SCRAM-SHA-256 verifiers ([`scram_verifier`]), never in clear, and statement logging
//! is off on every connection the controller opens.

use std::time::Duration;

use settings::{ExposeSecret, SecretString};
use sqlx::{
    ConnectOptions, Connection, PgConnection,
    postgres::{PgConnectOptions, PgSslMode},
};

use crate::{
    plan::databases::{
        DbAction, ForeignObject, ObjectKind, Observed, ObservedDatabase, ObservedRole, PasswordState, Service,
    },
    resource::{DatabaseSpec, ServerSpec, SslMode},
    validate::is_identifier,
};

/// The database the admin connects to for server-wide statements.
const MAINTENANCE_DB: &str = "postgres";
/// Bound on connecting, so an unreachable server fails a reconcile instead of hanging it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin role's credentials (from the `adminSecretRef` Secret).
#[derive(Clone, Debug)]
pub struct AdminCredentials {
    pub username: String,
    /// May be empty, for trust authentication.
    pub password: SecretString,
}

/// A failed PostgreSQL step.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PgError {
    /// `PostgresUnavailable` (try again later), `PostgresRefused` (the server
    /// said no: privileges, conflicts) or `MigrationFailed`.
    pub reason: &'static str,
    pub message: String,
}

impl PgError {
    fn new(context: &str, e: sqlx::Error) -> Self {
        let reason = match &e {
            sqlx::Error::Database(_) => "PostgresRefused",
            sqlx::Error::Migrate(_) => "MigrationFailed",
            _ => "PostgresUnavailable",
        };
        PgError { reason, message: format!("{context}: {e}") }
    }

    fn migrate(context: &str, e: sqlx::migrate::MigrateError) -> Self {
        PgError { reason: "MigrationFailed", message: format!("{context}: {e}") }
    }
}

/// `"name"`, with embedded quotes doubled: an SQL identifier that means
/// exactly `name` (libpq's PQescapeIdentifier, as postgres-protocol ports it).
pub fn quote_ident(name: &str) -> String {
    postgres_protocol::escape::escape_identifier(name)
}

/// `'text'`, with embedded quotes doubled, and in the `E'...'` form when it
/// holds a backslash, so it means `text` whatever standard_conforming_strings
/// says (libpq's PQescapeLiteral, as postgres-protocol ports it).
pub fn quote_literal(text: &str) -> String {
    postgres_protocol::escape::escape_literal(text)
}

/// A name checked against the identifier pattern, then quoted. Validation has
/// already refused any other; this keeps the promise where the SQL is built.
fn ident(name: &str) -> Result<String, PgError> {
    if is_identifier(name) {
        Ok(quote_ident(name))
    } else {
        Err(PgError { reason: "InvalidSpec", message: format!("{name:?} is not a plain SQL identifier") })
    }
}

/// `CREATE ROLE` / `ALTER ROLE` options of a login role with nothing more.
const ROLE_OPTIONS: &str = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";

/// The SQLSTATEs of interest.
mod code {
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const DUPLICATE_OBJECT: &str = "42710";
    pub const DUPLICATE_DATABASE: &str = "42P04";
    /// A concurrent CREATE that lost the race on the catalog's unique index.
    pub const UNIQUE_VIOLATION: &str = "23505";
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned())
}

/// One PostgreSQL server, reached as its admin role.
#[derive(Clone, Debug)]
pub struct Postgres {
    server: ServerSpec,
    admin: AdminCredentials,
}

impl Postgres {
    pub fn new(server: ServerSpec, admin: AdminCredentials) -> Self {
        Self { server, admin }
    }

    fn options(&self, user: &str, password: &SecretString, database: &str) -> PgConnectOptions {
        let ssl_mode = match self.server.ssl_mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow => PgSslMode::Allow,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        };
        let mut options = PgConnectOptions::new()
            .host(&self.server.host)
            .port(self.server.port)
            .username(user)
            .database(database)
            .ssl_mode(ssl_mode)
            .application_name("orderflow-controller")
            // Statements carry password verifiers; keep them out of the logs.
            .disable_statement_logging();
        if !password.expose_secret().is_empty() {
            options = options.password(password.expose_secret());
        }
        options
    }

    async fn connect(&self, options: PgConnectOptions, what: &str) -> Result<PgConnection, sqlx::Error> {
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(result) => result,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to {what} took longer than {CONNECT_TIMEOUT:?}"),
            ))),
        }
    }

    async fn admin(&self, database: &str) -> Result<PgConnection, PgError> {
        let options = self.options(&self.admin.username, &self.admin.password, database);
        let what = format!("{}:{}/{database} as {}", self.server.host, self.server.port, self.admin.username);
        self.connect(options, &what).await.map_err(|e| PgError::new(&format!("cannot connect to {what}"), e))
    }

    /// Runs one statement on `conn`.
    ///
    /// DDL is the one place SQL is assembled at run time: role and database
    /// names cannot be bind parameters. Every name goes through [`ident`] (a
    /// strict pattern, also enforced by the CRD schema, then quoted) and every
    /// password is a SCRAM verifier computed here, never the secret itself.
    async fn exec(conn: &mut PgConnection, sql: String, context: &str) -> Result<(), sqlx::Error> {
        tracing::debug!(context, "running DDL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await.map(|_| ())
    }

    /// Holds a session advisory lock on `database`'s name until the returned
    /// connection is closed or dropped: two reconciles of the same database
    /// (two `reconcile-once` runs, a controller and a person) then take turns
    /// instead of interleaving their DDL.
    pub async fn lock(&self, database: &str) -> Result<PgConnection, PgError> {
        let mut conn = self.admin(MAINTENANCE_DB).await?;
        sqlx::raw_sql("SET lock_timeout = '60s'")
            .execute(&mut conn)
            .await
            .map_err(|e| PgError::new("SET lock_timeout", e))?;
        sqlx::query!("SELECT pg_advisory_lock(hashtext($1))", format!("orderflow-controller/{database}"))
            .fetch_one(&mut conn)
            .await
            .map_err(|e| PgError::new(&format!("waiting for another reconcile of {database}"), e))?;
        Ok(conn)
    }

    /// Everything the planner needs to know about one service's role and database.
    #[tracing::instrument(skip_all, fields(db.name = %want.name, db.role = %want.role))]
    pub async fn observe(&self, want: &DatabaseSpec, kept: Option<&SecretString>) -> Result<Observed, PgError> {
        let mut admin = self.admin(MAINTENANCE_DB).await?;
        let role = sqlx::query_as!(
            ObservedRole,
            r#"SELECT rolcanlogin AS "can_login!", rolsuper AS "superuser!", rolcreatedb AS "create_db!",
                      rolcreaterole AS "create_role!", rolreplication AS "replication!", rolbypassrls AS "bypass_rls!"
                 FROM pg_roles WHERE rolname = $1"#,
            want.role,
        )
        .fetch_optional(&mut admin)
        .await
        .map_err(|e| PgError::new("reading pg_roles", e))?;
        let database = sqlx::query!(
            r#"SELECT pg_get_userbyid(d.datdba) AS "owner!",
                      ARRAY(SELECT DISTINCT a.privilege_type::text
                              FROM aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a
                             WHERE a.grantee = 0 ORDER BY 1) AS "public_privileges!"
                 FROM pg_database d WHERE d.datname = $1"#,
            want.name,
        )
        .fetch_optional(&mut admin)
        .await
        .map_err(|e| PgError::new("reading pg_database", e))?
        .map(|r| (r.owner, r.public_privileges));
        let _ = admin.close().await;

        let database = match database {
            None => None,
            Some((owner, public_privileges)) => {
                let mut conn = self.admin(&want.name).await?;
                let foreign_objects = foreign_objects(&mut conn, &want.role).await?;
                let applied_migrations = applied_migrations(&mut conn).await?;
                let _ = conn.close().await;
                Some(ObservedDatabase { owner, public_privileges, foreign_objects, applied_migrations })
            }
        };

        let password = match (&role, kept) {
            (Some(_), Some(password)) => self.check_password(want, database.is_some(), password).await?,
            _ => PasswordState::Unknown,
        };
        Ok(Observed { role, database, password })
    }

    /// Whether the kept password logs the role in.
    async fn check_password(
        &self,
        want: &DatabaseSpec,
        database_exists: bool,
        password: &SecretString,
    ) -> Result<PasswordState, PgError> {
        let database = if database_exists { want.name.as_str() } else { MAINTENANCE_DB };
        let what = format!("{}:{}/{database} as {}", self.server.host, self.server.port, want.role);
        match self.connect(self.options(&want.role, password, database), &what).await {
            Ok(conn) => {
                let _ = conn.close().await;
                Ok(PasswordState::Accepted)
            }
            Err(e) => match sqlstate(&e).as_deref() {
                Some(code::INVALID_PASSWORD) => Ok(PasswordState::Refused),
                // Authenticated, but not allowed in (e.g. no CONNECT yet): the password itself is fine.
                Some(c) if !c.starts_with("28") && !c.starts_with("08") => Ok(PasswordState::Accepted),
                _ => Err(PgError::new(&format!("cannot log in to {what} to check its password"), e)),
            },
        }
    }

    /// Runs one planned action. `password` is the role's password (kept or new).
    #[tracing::instrument(skip_all, fields(action = ?std::mem::discriminant(action)))]
    pub async fn apply(&self, service: Service, action: &DbAction, password: &SecretString) -> Result<(), PgError> {
        match action {
            DbAction::CreateRole { role } => {
                let mut admin = self.admin(MAINTENANCE_DB).await?;
                let verifier = quote_literal(&scram_verifier(password.expose_secret()));
                let create = format!("CREATE ROLE {} {ROLE_OPTIONS} PASSWORD {verifier}", ident(role)?);
                match Self::exec(&mut admin, create, "create role").await {
                    Ok(()) => {}
                    // Another reconcile created it first: make it ours all the same.
                    Err(e)
                        if matches!(sqlstate(&e).as_deref(), Some(code::DUPLICATE_OBJECT | code::UNIQUE_VIOLATION)) =>
                    {
                        let alter = format!("ALTER ROLE {} {ROLE_OPTIONS} PASSWORD {verifier}", ident(role)?);
                        Self::exec(&mut admin, alter, "alter role").await.map_err(|e| PgError::new("ALTER ROLE", e))?;
                    }
                    Err(e) => return Err(PgError::new(&format!("CREATE ROLE {role}"), e)),
                }
                self.grant_to_admin(&mut admin, role).await?;
                let _ = admin.close().await;
            }
            DbAction::RestrictRole { role, attributes } => {
                let mut admin = self.admin(MAINTENANCE_DB).await?;
                // The attributes are fixed keywords from the planner, not input.
                let sql = format!("ALTER ROLE {} {}", ident(role)?, attributes.join(" "));
                Self::exec(&mut admin, sql, "restrict role")
                    .await
                    .map_err(|e| PgError::new(&format!("ALTER ROLE {role}"), e))?;
                let _ = admin.close().await;
            }
            DbAction::SetPassword { role, .. } => {
                let mut admin = self.admin(MAINTENANCE_DB).await?;
                let verifier = quote_literal(&scram_verifier(password.expose_secret()));
                let sql = format!("ALTER ROLE {} PASSWORD {verifier}", ident(role)?);
                Self::exec(&mut admin, sql, "set password")
                    .await
                    .map_err(|e| PgError::new(&format!("setting the password of {role}"), e))?;
                let _ = admin.close().await;
            }
            DbAction::CreateDatabase { database, owner } => {
                let mut admin = self.admin(MAINTENANCE_DB).await?;
                let sql = format!("CREATE DATABASE {} OWNER {}", ident(database)?, ident(owner)?);
                match Self::exec(&mut admin, sql, "create database").await {
                    Ok(()) => {}
                    // Created meanwhile by a concurrent reconcile: own it all the same.
                    Err(e)
                        if matches!(
                            sqlstate(&e).as_deref(),
                            Some(code::DUPLICATE_DATABASE | code::UNIQUE_VIOLATION)
                        ) =>
                    {
                        let sql = format!("ALTER DATABASE {} OWNER TO {}", ident(database)?, ident(owner)?);
                        Self::exec(&mut admin, sql, "alter database owner")
                            .await
                            .map_err(|e| PgError::new(&format!("ALTER DATABASE {database}"), e))?;
                    }
                    Err(e) => return Err(PgError::new(&format!("CREATE DATABASE {database}"), e)),
                }
                let _ = admin.close().await;
            }
            DbAction::ChangeOwner { database, to, .. } => {
                let mut admin = self.admin(MAINTENANCE_DB).await?;
                let sql = format!("ALTER DATABASE {} OWNER TO {}", ident(database)?, ident(to)?);
                Self::exec(&mut admin, sql, "alter database owner")
                    .await
                    .map_err(|e| PgError::new(&format!("ALTER DATABASE {database} OWNER"), e))?;
                let _ = admin.close().await;
            }
            DbAction::RevokePublic { database, .. } => {
                let mut admin = self.admin(MAINTENANCE_DB).await?;
                let sql = format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", ident(database)?);
                Self::exec(&mut admin, sql, "revoke public")
                    .await
                    .map_err(|e| PgError::new(&format!("REVOKE ON DATABASE {database}"), e))?;
                let _ = admin.close().await;
            }
            DbAction::AdoptObjects { database, role, objects } => {
                let mut conn = self.admin(database).await?;
                let mut tx = conn.begin().await.map_err(|e| PgError::new("BEGIN", e))?;
                for object in objects {
                    let target = match (object.kind, &object.arguments) {
                        (ObjectKind::Schema, _) => quote_ident(&object.name),
                        // PostgreSQL printed these argument types itself (pg_get_function_identity_arguments).
                        (ObjectKind::Function | ObjectKind::Procedure, Some(args)) => {
                            format!("{}.{}({args})", quote_ident(&object.schema), quote_ident(&object.name))
                        }
                        _ => format!("{}.{}", quote_ident(&object.schema), quote_ident(&object.name)),
                    };
                    let sql = format!("ALTER {} {target} OWNER TO {}", object.kind.keyword(), ident(role)?);
                    Self::exec(&mut tx, sql, "adopt object")
                        .await
                        .map_err(|e| PgError::new(&format!("adopting {target} in {database}"), e))?;
                }
                tx.commit().await.map_err(|e| PgError::new("COMMIT", e))?;
                let _ = conn.close().await;
            }
            DbAction::Migrate { database, role, .. } => {
                // As the role itself: what the migrations create is the role's.
                let what = format!("{}:{}/{database} as {role}", self.server.host, self.server.port);
                // A one-connection pool: `Migrator::run` on a pool keeps the future `Send`.
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_with(self.options(role, password, database))
                    .await
                    .map_err(|e| PgError::new(&format!("cannot connect to {what} to migrate"), e))?;
                let result = service.migrator().run(&pool).await;
                pool.close().await;
                result.map_err(|e| PgError::migrate(&format!("migrating {database}"), e))?;
            }
        }
        Ok(())
    }

    /// An admin that is not a superuser can only hand a database to a role it
    /// is a member of (`CREATE DATABASE ... OWNER`, `ALTER DATABASE ... OWNER`).
    async fn grant_to_admin(&self, admin: &mut PgConnection, role: &str) -> Result<(), PgError> {
        let superuser =
            sqlx::query_scalar!(r#"SELECT rolsuper AS "rolsuper!" FROM pg_roles WHERE rolname = current_user"#)
                .fetch_one(&mut *admin)
                .await
                .map_err(|e| PgError::new("reading the admin's attributes", e))?;
        if !superuser {
            let sql = format!("GRANT {} TO CURRENT_USER", ident(role)?);
            Self::exec(admin, sql, "grant role to admin")
                .await
                .map_err(|e| PgError::new(&format!("GRANT {role} TO the admin"), e))?;
        }
        Ok(())
    }

    /// Drops the database (closing its sessions) and then its role; returns
    /// what existed and was dropped.
    #[tracing::instrument(skip_all, fields(db.name = %want.name, db.role = %want.role))]
    pub async fn drop(&self, want: &DatabaseSpec) -> Result<(bool, bool), PgError> {
        let mut admin = self.admin(MAINTENANCE_DB).await?;
        let db_exists = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS "exists!""#,
            want.name
        )
        .fetch_one(&mut admin)
        .await
        .map_err(|e| PgError::new("reading pg_database", e))?;
        if db_exists {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&want.name)?);
            Self::exec(&mut admin, sql, "drop database")
                .await
                .map_err(|e| PgError::new(&format!("DROP DATABASE {}", want.name), e))?;
        }
        let role_exists =
            sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS "exists!""#, want.role)
                .fetch_one(&mut admin)
                .await
                .map_err(|e| PgError::new("reading pg_roles", e))?;
        if role_exists {
            let sql = format!("DROP ROLE IF EXISTS {}", ident(&want.role)?);
            Self::exec(&mut admin, sql, "drop role")
                .await
                .map_err(|e| PgError::new(&format!("DROP ROLE {} (does it own objects elsewhere?)", want.role), e))?;
        }
        let _ = admin.close().await;
        Ok((db_exists, role_exists))
    }
}

/// Objects in the connected database not owned by `role`, outside the system
/// schemas and extensions. Indexes and the sequences behind identity or serial
/// columns follow their tables, so they are left out.
async fn foreign_objects(conn: &mut PgConnection, role: &str) -> Result<Vec<ForeignObject>, PgError> {
    let rows = sqlx::query!(
        r#"
        WITH user_ns AS (
            SELECT oid, nspname FROM pg_namespace
             WHERE nspname NOT IN ('pg_catalog', 'information_schema')
               AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp%'
        ), ext AS (
            SELECT classid, objid FROM pg_depend WHERE deptype = 'e'
        )
        SELECT 'schema' AS "kind!", n.nspname::text AS "schema!", n.nspname::text AS "name!", NULL::text AS args,
               pg_get_userbyid(n.nspowner) AS "owner!"
          FROM pg_namespace n JOIN user_ns u ON u.oid = n.oid
         WHERE n.nspname <> 'public' AND pg_get_userbyid(n.nspowner) <> $1
           AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_namespace'::regclass AND ext.objid = n.oid)
        UNION ALL
        SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized_view'
                              WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign_table' ELSE 'table' END,
               u.nspname::text, c.relname::text, NULL, pg_get_userbyid(c.relowner)
          FROM pg_class c JOIN user_ns u ON u.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND pg_get_userbyid(c.relowner) <> $1
           AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_class'::regclass AND ext.objid = c.oid)
           AND NOT (c.relkind = 'S' AND EXISTS (
                 SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
        UNION ALL
        SELECT CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END,
               u.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid), pg_get_userbyid(p.proowner)
          FROM pg_proc p JOIN user_ns u ON u.oid = p.pronamespace
         WHERE p.prokind IN ('f', 'p') AND pg_get_userbyid(p.proowner) <> $1
           AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_proc'::regclass AND ext.objid = p.oid)
        UNION ALL
        SELECT 'type', u.nspname::text, t.typname::text, NULL, pg_get_userbyid(t.typowner)
          FROM pg_type t JOIN user_ns u ON u.oid = t.typnamespace
         WHERE (t.typtype IN ('e', 'd', 'r')
                OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
           AND pg_get_userbyid(t.typowner) <> $1
           AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_type'::regclass AND ext.objid = t.oid)
        "#,
        role,
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| PgError::new("listing the objects of the database", e))?;
    Ok(rows
        .into_iter()
        .map(|r| ForeignObject {
            kind: match r.kind.as_str() {
                "schema" => ObjectKind::Schema,
                "view" => ObjectKind::View,
                "materialized_view" => ObjectKind::MaterializedView,
                "sequence" => ObjectKind::Sequence,
                "foreign_table" => ObjectKind::ForeignTable,
                "function" => ObjectKind::Function,
                "procedure" => ObjectKind::Procedure,
                "type" => ObjectKind::Type,
                _ => ObjectKind::Table,
            },
            schema: r.schema,
            name: r.name,
            arguments: r.args,
            owner: r.owner,
        })
        .collect())
}

/// Versions `_sqlx_migrations` records as applied (none when the table is absent).
async fn applied_migrations(conn: &mut PgConnection) -> Result<Vec<i64>, PgError> {
    let exists = sqlx::query_scalar!(r#"SELECT to_regclass('public._sqlx_migrations') IS NOT NULL AS "exists!""#)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| PgError::new("looking for _sqlx_migrations", e))?;
    if !exists {
        return Ok(Vec::new());
    }
    // Checked against a migrated database, where sqlx's bookkeeping table exists.
    sqlx::query_scalar!("SELECT version FROM public._sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| PgError::new("reading _sqlx_migrations", e))
}

/// The SCRAM-SHA-256 verifier of `password` with a fresh salt, the form in
/// which PostgreSQL stores passwords. The controller sends `ALTER ROLE ...
/// PASSWORD 'SCRAM-SHA-256$...'` rather than the password itself, as `psql`'s
/// `\password` does: a server that logs DDL then never writes a usable
/// password to its log. Computed by postgres-protocol (tokio-postgres's own
/// SCRAM code, SASLprep included).
pub fn scram_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_verifiers_have_postgresqls_format_and_their_own_salt() {
        let v = scram_verifier("secret");
        let (params, keys) = v.strip_prefix("SCRAM-SHA-256$").unwrap().split_once('$').unwrap();
        assert!(params.starts_with("4096:"), "{v}");
        assert_eq!(keys.split(':').count(), 2, "{v}");
        assert_ne!(scram_verifier("secret"), v, "each verifier has its own salt");
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("orders"), "\"orders\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b"), r" E'a\\b'");
        assert!(ident("orders; DROP TABLE x").is_err());
        assert_eq!(ident("orderflow_orders").unwrap(), "\"orderflow_orders\"");
    }
}
