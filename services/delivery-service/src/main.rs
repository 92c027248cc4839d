//! `delivery-service`: run the service (default) or apply migrations.
//! Configuration comes from the environment (docs/CONFIGURATION.md).
//!
//! ```text
//! delivery-service            # serve: consumer, scheduler, outbox relay, HTTP on :8081
//! delivery-service migrate    # apply database migrations and exit
//! delivery-service openapi    # print the OpenAPI document of the operator API
//! delivery-service dlq redrive [--dry-run]       # orders DLQ -> orders queue
//! delivery-service outbox parked                 # list parked outbox rows
//! delivery-service outbox requeue [ID|--all]     # re-queue parked rows
//! ```

use anyhow::Context;
use clap::{Parser, Subcommand};
use database::DatabaseSettings;
use delivery_service::{Application, MIGRATOR, Settings, config::DEFAULT_DATABASE};
use messaging::DlqCommand;
use outbox::admin::OutboxCommand;

/// The allocator: under load glibc malloc cost more CPU than any of our own code.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "delivery-service",
    version,
    about = "orderflow shipments: consume orders, run shipments, publish status"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the consumer, scheduler, outbox relay and HTTP server (the default).
    Serve,
    /// Apply pending database migrations, then exit (needs only DATABASE_URL).
    Migrate,
    /// Operate on the dead-letter queue of the queue this service consumes.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Inspect and re-queue parked outbox rows.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Print the OpenAPI document of the operator API.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Failure injection for the crash tests: `FAILPOINTS` names points to trip.
    // A no-op unless built with the `fail/failpoints` feature (test builds only).
    let _failpoints = fail::FailScenario::setup();
    let telemetry =
        telemetry::init("delivery-service", telemetry::LogFormat::from_env(), "info,sqlx=warn,aws_config=warn");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            // Migrating needs only the database.
            let database = settings::or_exit(DatabaseSettings::from_process(DEFAULT_DATABASE), "delivery-service");
            MIGRATOR.run(&database.direct_pool(1)?).await.context("failed to apply migrations")?;
            eprintln!("migrations applied");
        }
        Command::Serve => {
            let settings = settings::or_exit(Settings::from_env(settings::Env::from_process()), "delivery-service");
            Application::build(settings).await?.run_until_stopped(shutdown::on_signal()).await?
        }
        Command::Openapi => println!("{}", delivery_service::http::openapi_json()),
        Command::Dlq(DlqCommand::Redrive { dry_run }) => {
            let mut env = settings::Env::from_process();
            let sqs = messaging::SqsSettings::from_env(&mut env);
            let queue = env.get("ORDERS_QUEUE", "orders-queue.fifo".to_owned());
            settings::or_exit(env.finish(), "delivery-service");
            let report = messaging::redrive(&messaging::connect(&sqs).await, &queue, dry_run).await?;
            print!("{report}");
            anyhow::ensure!(report.failed.is_empty(), "some messages could not be moved");
        }
        Command::Outbox(command) => {
            let database = settings::or_exit(DatabaseSettings::from_process(DEFAULT_DATABASE), "delivery-service");
            outbox::admin::run(&database.direct_pool(1)?, command).await?;
        }
    }
    telemetry.shutdown();
    Ok(())
}
