//! Database decisions: from a spec and what PostgreSQL reports, the statements
//! that give each service its own database, owned by its own login role, with
//! least privilege and the schema migrated.
//!
//! - The role logs in and is nothing more: not superuser, no CREATEDB, no
//!   CREATEROLE, no replication, no RLS bypass. An attribute someone granted
//!   later is taken away again.
//! - The role owns its database and every object in it, so the service needs
//!   no grants and a migration it runs later works the same. An existing
//!   database (say, made by `psql` as `postgres`) is adopted: its owner and its
//!   objects' owners move to the role.
//! - PUBLIC loses CONNECT and TEMPORARY, so one service's role cannot connect
//!   to the other's database.
//! - The password is generated once and kept (where, is the caller's business:
//!   the published Secret in a cluster, a state file for `reconcile-once`); it
//!   is set again only when it is unknown or PostgreSQL refuses it.
//! - Pending migrations are applied as the role, so it owns what they create.

use std::collections::BTreeMap;

use crate::resource::{DatabaseSpec, OrderPipelineSpec};

/// A role's attributes, as `pg_roles` has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObservedRole {
    pub can_login: bool,
    pub superuser: bool,
    pub create_db: bool,
    pub create_role: bool,
    pub replication: bool,
    pub bypass_rls: bool,
}

impl ObservedRole {
    /// What the controller makes: a login role and nothing more.
    pub const LEAST_PRIVILEGE: ObservedRole = ObservedRole {
        can_login: true,
        superuser: false,
        create_db: false,
        create_role: false,
        replication: false,
        bypass_rls: false,
    };
}

/// The kind of an object found in a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    Schema,
    Table,
    View,
    MaterializedView,
    ForeignTable,
    Sequence,
    Function,
    Procedure,
    Type,
}

impl ObjectKind {
    /// The keyword of `ALTER <kind> ... OWNER TO`.
    pub fn keyword(self) -> &'static str {
        match self {
            ObjectKind::Schema => "SCHEMA",
            ObjectKind::Table => "TABLE",
            ObjectKind::View => "VIEW",
            ObjectKind::MaterializedView => "MATERIALIZED VIEW",
            ObjectKind::ForeignTable => "FOREIGN TABLE",
            ObjectKind::Sequence => "SEQUENCE",
            ObjectKind::Function => "FUNCTION",
            ObjectKind::Procedure => "PROCEDURE",
            ObjectKind::Type => "TYPE",
        }
    }
}

/// An object owned by another role than the database's service role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignObject {
    pub kind: ObjectKind,
    /// Schema of the object; for a schema, its own name.
    pub schema: String,
    pub name: String,
    /// Argument types of a function or procedure, as PostgreSQL prints them.
    pub arguments: Option<String>,
    pub owner: String,
}

/// A database, as the catalog has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedDatabase {
    pub owner: String,
    /// Privileges PUBLIC holds on the database (`CONNECT`, `TEMPORARY`, `CREATE`).
    pub public_privileges: Vec<String>,
    /// Objects in it not owned by the service role (system schemas and
    /// extension members aside).
    pub foreign_objects: Vec<ForeignObject>,
    /// Versions recorded as applied in `_sqlx_migrations`.
    pub applied_migrations: Vec<i64>,
}

/// What is known of a role's password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordState {
    /// No password was kept (first run, or the keeper lost it): generate one.
    Unknown,
    /// The kept password logs in.
    Accepted,
    /// The kept password was refused (someone changed it): set it again.
    Refused,
}

/// One database and its role, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub role: Option<ObservedRole>,
    pub database: Option<ObservedDatabase>,
    pub password: PasswordState,
}

impl Observed {
    /// Neither role nor database exists yet.
    pub fn fresh() -> Self {
        Observed { role: None, database: None, password: PasswordState::Unknown }
    }
}

/// Why a password is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordReason {
    /// No password was kept for an existing role.
    Unknown,
    /// The kept password was refused.
    Refused,
}

/// A statement (or a few) to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbAction {
    /// `CREATE ROLE ... LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE ... PASSWORD ...`.
    CreateRole { role: String },
    /// `ALTER ROLE` taking back attributes beyond LOGIN (or giving LOGIN back).
    RestrictRole { role: String, attributes: Vec<&'static str> },
    /// `ALTER ROLE ... PASSWORD`, with the kept password or a new one.
    SetPassword { role: String, reason: PasswordReason },
    /// `CREATE DATABASE ... OWNER role`.
    CreateDatabase { database: String, owner: String },
    /// `ALTER DATABASE ... OWNER TO role` of a database that exists.
    ChangeOwner { database: String, from: String, to: String },
    /// `REVOKE ALL ON DATABASE ... FROM PUBLIC`.
    RevokePublic { database: String, privileges: Vec<String> },
    /// `ALTER <kind> ... OWNER TO role` for each object.
    AdoptObjects { database: String, role: String, objects: Vec<ForeignObject> },
    /// Apply these migrations, connected as the role.
    Migrate { database: String, role: String, versions: Vec<i64> },
}

/// Privileges a fresh database grants PUBLIC.
const DEFAULT_PUBLIC_PRIVILEGES: [&str; 2] = ["CONNECT", "TEMPORARY"];

/// The statements for one database, in the order they must run.
pub fn plan_database(want: &DatabaseSpec, observed: &Observed, migrations: &[i64]) -> Vec<DbAction> {
    let role = want.role.clone();
    let database = want.name.clone();
    let mut actions = Vec::new();

    match &observed.role {
        None => actions.push(DbAction::CreateRole { role: role.clone() }),
        Some(live) => {
            let attributes = role_fixes(live);
            if !attributes.is_empty() {
                actions.push(DbAction::RestrictRole { role: role.clone(), attributes });
            }
            match observed.password {
                PasswordState::Accepted => {}
                PasswordState::Unknown => {
                    actions.push(DbAction::SetPassword { role: role.clone(), reason: PasswordReason::Unknown })
                }
                PasswordState::Refused => {
                    actions.push(DbAction::SetPassword { role: role.clone(), reason: PasswordReason::Refused })
                }
            }
        }
    }

    match &observed.database {
        None => {
            actions.push(DbAction::CreateDatabase { database: database.clone(), owner: role.clone() });
            actions.push(DbAction::RevokePublic {
                database: database.clone(),
                privileges: DEFAULT_PUBLIC_PRIVILEGES.map(String::from).to_vec(),
            });
            if !migrations.is_empty() {
                actions.push(DbAction::Migrate { database, role, versions: migrations.to_vec() });
            }
        }
        Some(live) => {
            if live.owner != role {
                actions.push(DbAction::ChangeOwner {
                    database: database.clone(),
                    from: live.owner.clone(),
                    to: role.clone(),
                });
            }
            if !live.public_privileges.is_empty() {
                actions.push(DbAction::RevokePublic {
                    database: database.clone(),
                    privileges: live.public_privileges.clone(),
                });
            }
            if !live.foreign_objects.is_empty() {
                let mut objects = live.foreign_objects.clone();
                // Schemas first: a schema's new owner must own it before its objects move.
                objects.sort();
                actions.push(DbAction::AdoptObjects { database: database.clone(), role: role.clone(), objects });
            }
            let pending: Vec<i64> =
                migrations.iter().copied().filter(|v| !live.applied_migrations.contains(v)).collect();
            if !pending.is_empty() {
                actions.push(DbAction::Migrate { database, role, versions: pending });
            }
        }
    }
    actions
}

/// `ALTER ROLE` keywords that bring `live` back to a login role with nothing more.
fn role_fixes(live: &ObservedRole) -> Vec<&'static str> {
    let mut fixes = Vec::new();
    if !live.can_login {
        fixes.push("LOGIN");
    }
    if live.superuser {
        fixes.push("NOSUPERUSER");
    }
    if live.create_db {
        fixes.push("NOCREATEDB");
    }
    if live.create_role {
        fixes.push("NOCREATEROLE");
    }
    if live.replication {
        fixes.push("NOREPLICATION");
    }
    if live.bypass_rls {
        fixes.push("NOBYPASSRLS");
    }
    fixes
}

/// Which service a database belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Orders,
    Delivery,
}

impl Service {
    pub const BOTH: [Service; 2] = [Service::Orders, Service::Delivery];

    pub fn spec(self, spec: &OrderPipelineSpec) -> &DatabaseSpec {
        match self {
            Service::Orders => &spec.databases.orders,
            Service::Delivery => &spec.databases.delivery,
        }
    }

    /// The migrations embedded for this service's database.
    pub fn migrator(self) -> &'static sqlx::migrate::Migrator {
        match self {
            Service::Orders => &database::migrations::ORDERS,
            Service::Delivery => &database::migrations::DELIVERY,
        }
    }

    /// Every migration version of this service, oldest first.
    pub fn migration_versions(self) -> Vec<i64> {
        self.migrator().iter().filter(|m| m.migration_type.is_up_migration()).map(|m| m.version).collect()
    }
}

/// The statements for both databases.
pub fn plan_databases(spec: &OrderPipelineSpec, observed: &BTreeMap<Service, Observed>) -> Vec<(Service, DbAction)> {
    Service::BOTH
        .into_iter()
        .flat_map(|service| {
            let seen = observed.get(&service).cloned().unwrap_or_else(Observed::fresh);
            plan_database(service.spec(spec), &seen, &service.migration_versions())
                .into_iter()
                .map(move |a| (service, a))
        })
        .collect()
}

/// A one-line account of an action, for Events and logs.
pub fn describe(action: &DbAction) -> String {
    match action {
        DbAction::CreateRole { role } => format!(
            "created login role {role} with a generated password (not superuser, cannot create databases or roles)"
        ),
        DbAction::RestrictRole { role, attributes } => {
            format!("restricted role {role} back to least privilege: {}", attributes.join(" "))
        }
        DbAction::SetPassword { role, reason: PasswordReason::Unknown } => {
            format!("set a generated password for existing role {role} (no kept password was found)")
        }
        DbAction::SetPassword { role, reason: PasswordReason::Refused } => {
            format!("set the kept password of role {role} again: PostgreSQL refused it")
        }
        DbAction::CreateDatabase { database, owner } => format!("created database {database} owned by role {owner}"),
        DbAction::ChangeOwner { database, from, to } => {
            format!("adopted existing database {database}: owner {from} -> {to}")
        }
        DbAction::RevokePublic { database, privileges } => {
            format!("revoked {} on database {database} from PUBLIC", privileges.join(", "))
        }
        DbAction::AdoptObjects { database, role, objects } => {
            let names: Vec<String> = objects.iter().take(5).map(|o| format!("{}.{}", o.schema, o.name)).collect();
            let more = if objects.len() > 5 { format!(" and {} more", objects.len() - 5) } else { String::new() };
            format!(
                "moved {} objects in database {database} to owner {role} ({}{more})",
                objects.len(),
                names.join(", ")
            )
        }
        DbAction::Migrate { database, role, versions } => format!(
            "applied {} migration{} to database {database} as role {role} (now at {})",
            versions.len(),
            if versions.len() == 1 { "" } else { "s" },
            versions.last().copied().unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::spec;

    fn up_to_date(service: Service, spec: &OrderPipelineSpec) -> Observed {
        Observed {
            role: Some(ObservedRole::LEAST_PRIVILEGE),
            database: Some(ObservedDatabase {
                owner: service.spec(spec).role.clone(),
                public_privileges: vec![],
                foreign_objects: vec![],
                applied_migrations: service.migration_versions(),
            }),
            password: PasswordState::Accepted,
        }
    }

    #[test]
    fn a_fresh_pipeline_creates_roles_then_databases_then_migrates_both() {
        let s = spec("t1");
        let actions = plan_databases(&s, &BTreeMap::new());
        let orders_versions = Service::Orders.migration_versions();
        assert!(orders_versions.len() >= 2, "the orders migrations are embedded");
        assert_eq!(
            actions.iter().filter(|(svc, _)| *svc == Service::Orders).map(|(_, a)| a.clone()).collect::<Vec<_>>(),
            [
                DbAction::CreateRole { role: "t1_orders".into() },
                DbAction::CreateDatabase { database: "t1_orders".into(), owner: "t1_orders".into() },
                DbAction::RevokePublic {
                    database: "t1_orders".into(),
                    privileges: vec!["CONNECT".into(), "TEMPORARY".into()]
                },
                DbAction::Migrate { database: "t1_orders".into(), role: "t1_orders".into(), versions: orders_versions },
            ]
        );
        assert_eq!(actions.iter().filter(|(svc, _)| *svc == Service::Delivery).count(), 4);
    }

    #[test]
    fn an_up_to_date_pipeline_runs_no_statement() {
        let s = spec("t1");
        let observed = Service::BOTH.into_iter().map(|svc| (svc, up_to_date(svc, &s))).collect();
        assert_eq!(plan_databases(&s, &observed), []);
    }

    #[test]
    fn drift_is_taken_back_and_only_what_drifted() {
        let s = spec("t1");
        let mut orders = up_to_date(Service::Orders, &s);
        orders.role = Some(ObservedRole { create_db: true, superuser: true, ..ObservedRole::LEAST_PRIVILEGE });
        orders.password = PasswordState::Refused;
        let db = orders.database.as_mut().unwrap();
        db.public_privileges = vec!["CONNECT".into()];
        db.applied_migrations.pop();
        let observed =
            BTreeMap::from([(Service::Orders, orders), (Service::Delivery, up_to_date(Service::Delivery, &s))]);

        let latest = *Service::Orders.migration_versions().last().unwrap();
        assert_eq!(
            plan_databases(&s, &observed),
            [
                (
                    Service::Orders,
                    DbAction::RestrictRole { role: "t1_orders".into(), attributes: vec!["NOSUPERUSER", "NOCREATEDB"] }
                ),
                (Service::Orders, DbAction::SetPassword { role: "t1_orders".into(), reason: PasswordReason::Refused }),
                (
                    Service::Orders,
                    DbAction::RevokePublic { database: "t1_orders".into(), privileges: vec!["CONNECT".into()] }
                ),
                (
                    Service::Orders,
                    DbAction::Migrate {
                        database: "t1_orders".into(),
                        role: "t1_orders".into(),
                        versions: vec![latest]
                    }
                ),
            ]
        );
    }

    #[test]
    fn an_existing_database_made_by_someone_else_is_adopted() {
        let s = spec("t1");
        let table = |name: &str| ForeignObject {
            kind: ObjectKind::Table,
            schema: "public".into(),
            name: name.into(),
            arguments: None,
            owner: "postgres".into(),
        };
        let observed = Observed {
            role: None,
            database: Some(ObservedDatabase {
                owner: "postgres".into(),
                public_privileges: vec!["CONNECT".into(), "TEMPORARY".into()],
                foreign_objects: vec![table("orders"), table("_sqlx_migrations")],
                applied_migrations: Service::Orders.migration_versions(),
            }),
            password: PasswordState::Unknown,
        };
        let actions = plan_database(&s.databases.orders, &observed, &Service::Orders.migration_versions());
        assert_eq!(actions[0], DbAction::CreateRole { role: "t1_orders".into() });
        assert_eq!(
            actions[1],
            DbAction::ChangeOwner { database: "t1_orders".into(), from: "postgres".into(), to: "t1_orders".into() }
        );
        let DbAction::AdoptObjects { objects, .. } = &actions[3] else { panic!("{actions:?}") };
        assert_eq!(objects.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["_sqlx_migrations", "orders"]);
        assert_eq!(actions.len(), 4, "all migrations were applied already: {actions:?}");
    }

    #[test]
    fn an_existing_role_without_a_kept_password_gets_a_new_one() {
        let s = spec("t1");
        let mut observed = up_to_date(Service::Delivery, &s);
        observed.password = PasswordState::Unknown;
        assert_eq!(
            plan_database(&s.databases.delivery, &observed, &Service::Delivery.migration_versions()),
            [DbAction::SetPassword { role: "t1_delivery".into(), reason: PasswordReason::Unknown }]
        );
    }
}
