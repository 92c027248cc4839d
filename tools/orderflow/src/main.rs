//! `orderflow`: the command-line client of the order API. This file only parses
//! the arguments, runs the command and maps failures to exit codes; the commands
//! are in `commands.rs`, the flags and help in `cli.rs`, HTTP in `api.rs`, and
//! what gets printed in `output.rs`.
//!
//! ```text
//! export ORDERFLOW_CLIENT_ID=demo ORDERFLOW_CLIENT_SECRET=demo-secret   # ORDERFLOW_URL defaults to http://127.0.0.1:8080
//! orderflow orders create --item SKU-123:2:1299 --name 'Ada Lovelace' --line1 '12 Example Street' \
//!     --city London --postal-code 'N1 9GU' --country GB
//! orderflow orders watch ID                      # one line per status until DELIVERED
//! orderflow --json orders list --all             # JSON for scripts
//! ```
//!
//! Exit codes: 0 ok, 1 refused by the server (4xx), 2 usage, 3 unreachable or
//! server failure (5xx), 4 not found; `orderflow --help` lists them.

mod api;
mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message() {
                eprintln!("{message}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
