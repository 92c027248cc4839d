//! `loadgen`: the load generator behind `make bench`. Loopback targets only.
//!
//! ```text
//! loadgen orders --concurrency 32 --duration 10s             # POST /orders, closed loop
//! loadgen orders --concurrency 32 --duration 10s --rate 500  # open loop at 500 orders/s
//! loadgen get --concurrency 32 --duration 10s                # GET /orders/{id} of placed orders
//! loadgen watch --rate 50 --duration 20s                     # order -> DELIVERED seen on the SSE stream
//! loadgen sqs --endpoint http://127.0.0.1:9324 --duration 5s # the SQS endpoint's batched ceiling
//! loadgen fill --queue orders-queue.fifo --event order-created --count 10000  # work for a consumer
//! loadgen delete-queues --prefix bench123-                   # remove a run's queues
//! ```
//!
//! Each prints a human summary or, with `--json`, one JSON line for scripts.
//! Open-loop runs schedule every request and measure latency from that
//! schedule, so a stalled server shows up in the percentiles instead of
//! silently slowing the load (no coordinated omission).

mod api;
mod fill;
mod sqs;
mod stats;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Load generator for orderflow (make bench)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print one JSON line instead of the human summary.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Place distinct orders (POST /orders).
    Orders {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        load: Load,
    },
    /// Read orders back (GET /orders/{id}), after placing `--orders` of them.
    Get {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        load: Load,
        /// Orders placed first and then read in turn.
        #[arg(long, default_value_t = 1000)]
        orders: usize,
    },
    /// Place orders at `--rate` and follow each on its SSE stream until DELIVERED.
    Watch {
        #[command(flatten)]
        target: Target,
        /// Orders per second (open loop).
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        #[arg(long, default_value = "20s", value_parser = settings::parse_duration)]
        duration: Duration,
        /// Longest wait for one order's DELIVERED before it counts as missing.
        #[arg(long, default_value = "30s", value_parser = settings::parse_duration)]
        timeout: Duration,
    },
    /// Delete every queue whose name starts with `--prefix` (a benchmark's leftovers).
    DeleteQueues {
        #[arg(long, default_value = "http://127.0.0.1:9324")]
        endpoint: String,
        #[arg(long)]
        prefix: String,
    },
    /// Fill a queue with one event per order, as the services send them (for
    /// measuring a consumer's drain rate).
    Fill {
        /// SQS endpoint (loopback).
        #[arg(long, default_value = "http://127.0.0.1:9324")]
        endpoint: String,
        /// Queue name, e.g. orders-queue.fifo.
        #[arg(long)]
        queue: String,
        /// The event each order gets.
        #[arg(long, value_enum)]
        event: fill::Event,
        /// A file of order ids, one per line; without it, `--count` new ones.
        #[arg(long)]
        ids: Option<std::path::PathBuf>,
        /// How many new order ids to make up when no `--ids` file is given.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
    },
    /// Measure the SQS endpoint's ceiling with batches of 10: send, then receive + delete.
    Sqs {
        /// SQS endpoint (loopback).
        #[arg(long, default_value = "http://127.0.0.1:9324")]
        endpoint: String,
        /// Concurrent callers per phase.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// How long each phase runs.
        #[arg(long, default_value = "5s", value_parser = settings::parse_duration)]
        duration: Duration,
    },
}

/// Which order-service, as which client.
#[derive(Args, Clone)]
struct Target {
    /// Base URL of the order-service (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value = "demo")]
    client_id: String,
    #[arg(long, default_value = "demo-secret")]
    client_secret: String,
}

/// How hard and how long.
#[derive(Args, Clone, Copy)]
struct Load {
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to run, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = settings::parse_duration)]
    duration: Duration,
    /// Target requests per second (open loop); without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
}

fn loopback_only(url: &str) -> anyhow::Result<()> {
    let host = reqwest::Url::parse(url).context("not a URL")?.host_str().unwrap_or_default().to_owned();
    if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1") {
        bail!("loadgen only targets loopback addresses, not {host}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match cli.command {
        Command::Orders { target, load } => {
            loopback_only(&target.url)?;
            let client = api::Client::connect(&target, load.concurrency).await?;
            client.place_orders(load).await
        }
        Command::Get { target, load, orders } => {
            loopback_only(&target.url)?;
            let client = api::Client::connect(&target, load.concurrency).await?;
            let ids = client.seed_orders(orders).await?;
            client.read_orders(load, ids).await
        }
        Command::Watch { target, rate, duration, timeout } => {
            loopback_only(&target.url)?;
            let client = api::Client::connect(&target, 64).await?;
            client.watch_orders(rate, duration, timeout).await
        }
        Command::DeleteQueues { endpoint, prefix } => {
            loopback_only(&endpoint)?;
            sqs::delete_queues(&endpoint, &prefix).await?
        }
        Command::Fill { endpoint, queue, event, ids, count } => {
            loopback_only(&endpoint)?;
            let ids = fill::order_ids(ids.as_deref(), count)?;
            fill::fill(&endpoint, &queue, event, ids).await?
        }
        Command::Sqs { endpoint, concurrency, duration } => {
            loopback_only(&endpoint)?;
            sqs::ceiling(&endpoint, concurrency, duration).await?
        }
    };
    if cli.json {
        println!("{}", report.json)
    } else {
        println!("{}", report.human)
    }
    Ok(())
}
