//! `order-service`: run the API (default), apply migrations, manage OAuth2
//! clients or signing keys. Configuration comes from the environment
//! (docs/CONFIGURATION.md).
//!
//! ```text
//! order-service                       # serve (same as `order-service serve`)
//! order-service status-consumer       # only apply delivery status events
//! order-service migrate               # apply database migrations and exit
//! order-service clients create --customer-id UUID --scope "orders:read orders:write" [--client-secret-file F]
//! order-service clients disable ID    # no more tokens; its tokens stop within a minute
//! order-service clients enable ID
//! order-service keys generate         # print a new Ed25519 private key (PEM)
//! order-service keys client-secret-key  # print a new CLIENT_SECRET_KEY
//! order-service openapi               # print the OpenAPI document
//! order-service dlq redrive [--dry-run]  # delivery-status DLQ -> its queue
//! order-service outbox parked         # list parked outbox rows
//! order-service outbox requeue [ID|--all]
//! ```

use anyhow::Context;
use clap::{Parser, Subcommand};
use database::DatabaseSettings;
use messaging::DlqCommand;
use order_service::{
    Application, Settings, auth,
    config::{DEFAULT_DATABASE, Role},
    storage::MIGRATOR,
};
use outbox::admin::OutboxCommand;
use uuid::Uuid;

/// The allocator: under load glibc malloc cost more CPU than any of our own code.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// A file holding the secret to use (surrounding whitespace trimmed), for
        /// a pod or script that makes the secret itself (`helm test` does).
        #[arg(long, env = "ORDERFLOW_NEW_CLIENT_SECRET_FILE", value_name = "PATH")]
        client_secret_file: Option<std::path::PathBuf>,
        /// Overwrite an existing client with the same id.
        #[arg(long)]
        replace: bool,
    },
    /// Disable a client: the token endpoint refuses it at once, and API
    /// processes refuse its tokens from their next revocation refresh
    /// (CLIENT_REVOCATION_REFRESH, within a minute). Needs only DATABASE_URL.
    Disable {
        /// The client id.
        client_id: String,
    },
    /// Enable a disabled client again. Needs only DATABASE_URL.
    Enable {
        /// The client id.
        client_id: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new Ed25519 private key in PEM, for JWT_PRIVATE_KEY.
    Generate,
    /// Print the public key of a private key PEM read from stdin (to keep
    /// verifying a retired signer's tokens).
    Public,
    /// Print a new random CLIENT_SECRET_KEY (the key generated client secrets
    /// are stored under).
    ClientSecretKey,
}

/// The secret `clients create` was given, from `--client-secret` or the
/// file `--client-secret-file` names (not both; an empty file is an error).
fn chosen_secret(given: Option<String>, file: Option<std::path::PathBuf>) -> anyhow::Result<Option<String>> {
    let Some(path) = file else { return Ok(given) };
    anyhow::ensure!(given.is_none(), "give the secret with --client-secret or --client-secret-file, not both");
    let text = std::fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))?;
    let secret = text.trim();
    anyhow::ensure!(!secret.is_empty(), "{} is empty", path.display());
    Ok(Some(secret.to_owned()))
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
        Command::Keys(KeysCommand::ClientSecretKey) => {
            println!("{}", auth::clients::ClientSecretKey::generate_text())
        }
        Command::Openapi => println!("{}", order_service::http::openapi_json()),
        // Administrative commands need only the database.
        Command::Migrate => {
            MIGRATOR.run(&database_only()?.direct_pool(1)?).await.context("failed to apply migrations")?;
            eprintln!("migrations applied");
        }
        Command::Clients(ClientsCommand::Create {
            customer_id,
            scope,
            client_id,
            client_secret,
            client_secret_file,
            replace,
        }) => {
            let client_secret = chosen_secret(client_secret, client_secret_file)?;
            let key = settings::or_exit(
                {
                    let mut env = settings::Env::from_process();
                    let key = order_service::config::client_secret_key(&mut env);
                    env.finish().map(|()| key)
                },
                "order-service",
            );
            // Directly, not through DATABASE_POOLER: the process exits right after
            // the write, before a pooled checkout's transaction would be committed.
            let pool = database_only()?.direct_pool(1)?;
            let chosen = client_secret.is_some();
            if !chosen && key.is_none() {
                eprintln!("note: CLIENT_SECRET_KEY is not set, so the generated secret is stored with argon2id");
            }
            let created = auth::clients::create_with_key(
                &pool,
                customer_id,
                &scope,
                client_id,
                client_secret,
                replace,
                key.as_ref(),
            )
            .await?;
            let mut shown = serde_json::to_value(&created)?;
            if chosen {
                // The caller already has the secret it chose: never echo it into a log.
                shown.as_object_mut().expect("a client is an object").remove("client_secret");
            }
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        Command::Clients(ClientsCommand::Disable { client_id }) => {
            auth::clients::set_disabled(&database_only()?.direct_pool(1)?, &client_id, true).await?;
            eprintln!("client {client_id} disabled; its tokens stop working within CLIENT_REVOCATION_REFRESH");
        }
        Command::Clients(ClientsCommand::Enable { client_id }) => {
            auth::clients::set_disabled(&database_only()?.direct_pool(1)?, &client_id, false).await?;
            eprintln!("client {client_id} enabled");
        }
        Command::Dlq(DlqCommand::Redrive { dry_run }) => {
            let (sqs, queue) = sqs_only("DELIVERY_STATUS_QUEUE", "delivery-status-queue.fifo");
            let report = messaging::redrive(&messaging::connect(&sqs).await, &queue, dry_run).await?;
            print!("{report}");
            anyhow::ensure!(report.failed.is_empty(), "some messages could not be moved");
        }
        Command::Outbox(command) => outbox::admin::run(&database_only()?.direct_pool(1)?, command).await?,
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
/// The `DATABASE_*` settings alone, or exit 2 naming what is wrong.
fn database_only() -> anyhow::Result<DatabaseSettings> {
    Ok(settings::or_exit(DatabaseSettings::from_process(DEFAULT_DATABASE), "order-service"))
}
