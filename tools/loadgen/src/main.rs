//! `loadgen`: a load generator for `POST /orders`, used by `make bench`.
//!
//! ```text
//! loadgen --url http://127.0.0.1:8080 --concurrency 32 --duration 10s            # closed loop: as fast as it goes
//! loadgen --url http://127.0.0.1:8080 --concurrency 32 --duration 10s --rate 500 # open loop at 500 orders/s
//! ```
//!
//! Every request places a distinct order (distinct SKU), so none is folded into
//! another by the double-submit window. In open-loop mode each request has a
//! scheduled start and its latency is measured from that schedule, so a stalled
//! server shows up in the percentiles instead of silently slowing the load
//! (no coordinated omission). Prints a human summary and, with `--json`, one
//! JSON line for scripts. Loopback targets only: it refuses other hosts.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
#[command(about = "Load generator for orderflow's POST /orders")]
struct Args {
    /// Base URL of the order-service (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value = "demo")]
    client_id: String,
    #[arg(long, default_value = "demo-secret")]
    client_secret: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to run, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = settings::parse_duration)]
    duration: Duration,
    /// Target orders per second (open loop); without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let host = reqwest::Url::parse(&args.url).context("--url is not a URL")?.host_str().unwrap_or_default().to_owned();
    if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1") {
        bail!("loadgen only targets loopback addresses, not {host}");
    }
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let token: serde_json::Value = http
        .post(format!("{}/auth/token", args.url))
        .basic_auth(&args.client_id, Some(&args.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .context("cannot reach the order-service")?
        .error_for_status()
        .context("token request refused")?
        .json()
        .await?;
    let token = Arc::new(token["access_token"].as_str().context("no access_token")?.to_owned());

    let started = Instant::now();
    let deadline = started + args.duration;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (http, token, next, errors, url, rate) =
            (http.clone(), token.clone(), next.clone(), errors.clone(), args.url.clone(), args.rate);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let scheduled = match rate {
                    Some(rate) => started + Duration::from_secs_f64(i as f64 / rate),
                    None => Instant::now(),
                };
                if scheduled >= deadline {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let body = json!({
                    "currency": "EUR",
                    "items": [{"sku": format!("LG-{w}-{i}"), "quantity": 1, "unit_price_minor": 1000}],
                    "shipping_address": {"name": "Load Test", "line1": "1 Bench Road", "line2": null,
                                         "city": "London", "postal_code": "N1", "country": "GB"}
                });
                let result = http.post(format!("{url}/orders")).bearer_auth(token.as_str()).json(&body).send().await;
                match result {
                    Ok(resp) if resp.status() == reqwest::StatusCode::CREATED => latencies.push(scheduled.elapsed()),
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    let summary = json!({
        "orders": latencies.len(),
        "errors": errors.load(Ordering::Relaxed),
        "seconds": elapsed,
        "rate": latencies.len() as f64 / elapsed,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "concurrency": args.concurrency,
        "target_rate": args.rate,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "{} orders in {:.1}s = {:.0} orders/s, {} errors; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            summary["orders"],
            elapsed,
            summary["rate"].as_f64().unwrap_or(0.0),
            summary["errors"],
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(1.0)
        );
    }
    Ok(())
}
