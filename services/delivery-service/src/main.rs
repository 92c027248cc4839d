//! `delivery-service`: run the service (default) or apply migrations.
//! Configuration comes from the environment (README, "Configuration").
//!
//! ```text
//! delivery-service            # serve: consumer, scheduler, outbox relay, HTTP on :8081
//! delivery-service migrate    # apply database migrations and exit
//! ```

use anyhow::Context;
use clap::{Parser, Subcommand};
use delivery_service::{Application, MIGRATOR, Settings};

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
    /// Apply pending database migrations, then exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry =
        telemetry::init("delivery-service", telemetry::LogFormat::from_env(), "info,sqlx=warn,aws_config=warn");
    let settings = settings::or_exit(Settings::from_env(settings::Env::from_process()), "delivery-service");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            MIGRATOR.run(&settings.database.pool()?).await.context("failed to apply migrations")?;
            eprintln!("migrations applied");
        }
        Command::Serve => Application::build(settings).await?.run_until_stopped(shutdown::on_signal()).await?,
    }
    telemetry.shutdown();
    Ok(())
}
