//! The `outbox` admin subcommands both services offer: list the rows parked
//! after SQS refused them `OUTBOX_MAX_ATTEMPTS` times, and put them back in
//! line once the cause is fixed. Printed for an operator's terminal.

use sqlx::PgPool;

use crate::{Requeue, parked, requeue};

#[derive(Debug, clap::Subcommand)]
pub enum OutboxCommand {
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

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("no parked outbox row {0}")]
    NotParked(i64),
}

/// Runs `command` on the outbox of `pool`'s database and prints what it did.
pub async fn run(pool: &PgPool, command: OutboxCommand) -> Result<(), AdminError> {
    match command {
        OutboxCommand::Parked => {
            let rows = parked(pool).await?;
            println!("{} parked outbox row(s)", rows.len());
            for row in rows {
                println!("  {row}");
            }
        }
        OutboxCommand::Requeue { id, all: _ } => {
            let ids = requeue(pool, id.map_or(Requeue::All, Requeue::One)).await?;
            println!("re-queued {} outbox row(s): {ids:?}", ids.len());
            if let Some(id) = id.filter(|_| ids.is_empty()) {
                return Err(AdminError::NotParked(id));
            }
        }
    }
    Ok(())
}
