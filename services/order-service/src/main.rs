//! `order-service`: run the API (default), apply migrations, manage OAuth2
//! clients or signing keys. Configuration comes from the environment (README,
//! "Configuration").
//!
//! ```text
//! order-service                       # serve (same as `order-service serve`)
//! order-service status-consumer       # only apply delivery status events
//! order-service migrate               # apply database migrations and exit
//! order-service clients create --customer-id UUID --scope "orders:read orders:write"
//! order-service keys generate         # print a new Ed25519 private key (PEM)
//! order-service openapi               # print the OpenAPI document
//! order-service dlq redrive [--dry-run]  # delivery-status DLQ -> its queue
//! order-service outbox parked         # list parked outbox rows
//! order-service outbox requeue [ID|--all]
//! ```

use anyhow::Context;
use clap::{Parser, Subcommand};
use database::DatabaseSettings;
use order_service::{
    Application, Settings, auth,
    config::{DEFAULT_DATABASE, Role},
    storage::MIGRATOR,
};
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "order-service", version, about = "orderflow order intake API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API, run the outbox relay and the status consumer (the default).
    Serve,
    /// Only apply delivery status events (with /healthz, /readyz, /metrics on
    /// HTTP_ADDR), so the API and the consumer scale as separate Deployments.
    StatusConsumer,
    /// Apply pending database migrations, then exit (needs only DATABASE_URL).
    Migrate,
    /// Manage OAuth2 clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Manage JWT signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Operate on the dead-letter queue of the queue this service consumes.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Inspect and re-queue parked outbox rows.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Create a client and print {"client_id", "client_secret"} (the secret is
    /// shown once). Needs only DATABASE_URL, and a migrated database.
    Create {
        /// The customer the client places orders for.
        #[arg(long)]
        customer_id: Uuid,
        /// Space-separated scopes: orders:read, orders:write.
        #[arg(long, default_value = "orders:read orders:write")]
        scope: String,
        /// Client id to use instead of a generated one.
        #[arg(long)]
        client_id: Option<String>,
        /// Secret to use instead of a generated one (development only: it ends up in shell history).
        #[arg(long, env = "ORDERFLOW_NEW_CLIENT_SECRET", hide_env_values = true)]
        client_secret: Option<String>,
        /// Overwrite an existing client with the same id.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new Ed25519 private key in PEM, for JWT_PRIVATE_KEY.
    Generate,
    /// Print the public key of a private key PEM read from stdin (to keep
    /// verifying a retired signer's tokens).
    Public,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Move every message of the dead-letter queue of DELIVERY_STATUS_QUEUE (the queue
    /// this service consumes) back to it, with its message group and a fresh
    /// deduplication id; prints what moved. Needs only the SQS settings.
    Redrive {
        /// Only list what would move.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// List the outbox rows parked after OUTBOX_MAX_ATTEMPTS refusals by SQS.
    Parked,
    /// Re-queue parked rows (attempts start again from 0); prints the ids.
    Requeue {
        /// The parked row's id (from `outbox parked`).
        #[arg(required_unless_present = "all")]
        id: Option<i64>,
        /// Every parked row.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Failure injection for the crash tests: `FAILPOINTS` names points to trip.
    // A no-op unless built with the `fail/failpoints` feature (test builds only).
    let _failpoints = fail::FailScenario::setup();
    let command = cli.command.unwrap_or(Command::Serve);
    match command {
        Command::Keys(KeysCommand::Generate) => print!("{}", auth::keys::generate_private_key_pem()),
        Command::Keys(KeysCommand::Public) => {
            let pem = std::io::read_to_string(std::io::stdin()).context("failed to read a PEM key from stdin")?;
            print!("{}", auth::keys::public_key_pem(&pem)?);
        }
        Command::Openapi => println!("{}", order_service::http::openapi_json()),
        // Administrative commands need only the database.
        Command::Migrate => {
            MIGRATOR.run(&database_only()?.direct_pool(1)?).await.context("failed to apply migrations")?;
            eprintln!("migrations applied");
        }
        Command::Clients(ClientsCommand::Create { customer_id, scope, client_id, client_secret, replace }) => {
            // Directly, not through DATABASE_POOLER: the process exits right after
            // the write, before a pooled checkout's transaction would be committed.
            let pool = database_only()?.direct_pool(1)?;
            let chosen = client_secret.is_some();
            let created = auth::clients::create(&pool, customer_id, &scope, client_id, client_secret, replace).await?;
            let mut shown = serde_json::to_value(&created)?;
            if chosen {
                // The caller already has the secret it chose: never echo it into a log.
                shown.as_object_mut().expect("a client is an object").remove("client_secret");
            }
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        Command::Dlq(DlqCommand::Redrive { dry_run }) => {
            let (sqs, queue) = sqs_only("DELIVERY_STATUS_QUEUE", "delivery-status-queue.fifo");
            let report = messaging::redrive(&messaging::connect(&sqs).await, &queue, dry_run).await?;
            print!("{report}");
            anyhow::ensure!(report.failed.is_empty(), "some messages could not be moved");
        }
        Command::Outbox(command) => outbox_admin(&database_only()?.pool()?, command).await?,
        Command::Serve | Command::StatusConsumer => {
            let role = if matches!(command, Command::Serve) { Role::Api } else { Role::StatusConsumer };
            let telemetry =
                telemetry::init("order-service", telemetry::LogFormat::from_env(), "info,sqlx=warn,aws_config=warn");
            let settings = settings::or_exit(Settings::from_env(settings::Env::from_process(), role), "order-service");
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown::on_signal()).await?;
            telemetry.shutdown();
        }
    }
    Ok(())
}

/// The SQS settings and the name of the queue in `var` alone, or exit 2.
fn sqs_only(var: &str, default: &str) -> (messaging::SqsSettings, String) {
    let mut env = settings::Env::from_process();
    let sqs = messaging::SqsSettings::from_env(&mut env);
    let queue = env.get(var, default.to_owned());
    settings::or_exit(env.finish(), "order-service");
    (sqs, queue)
}

/// `outbox parked` / `outbox requeue`: prints what it found or did.
async fn outbox_admin(pool: &sqlx::PgPool, command: OutboxCommand) -> anyhow::Result<()> {
    match command {
        OutboxCommand::Parked => {
            let rows = outbox::parked(pool).await?;
            println!("{} parked outbox row(s)", rows.len());
            for row in rows {
                println!("  {row}");
            }
        }
        OutboxCommand::Requeue { id, all: _ } => {
            let which = id.map_or(outbox::Requeue::All, outbox::Requeue::One);
            let ids = outbox::requeue(pool, which).await?;
            println!("re-queued {} outbox row(s): {ids:?}", ids.len());
            if let Some(id) = id {
                anyhow::ensure!(!ids.is_empty(), "no parked outbox row {id}");
            }
        }
    }
    Ok(())
}

/// The `DATABASE_*` settings alone, or exit 2 naming what is wrong.
fn database_only() -> anyhow::Result<DatabaseSettings> {
    Ok(settings::or_exit(DatabaseSettings::from_process(DEFAULT_DATABASE), "order-service"))
}
