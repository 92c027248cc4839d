//! The order API under load: a client with its token, and the three HTTP
//! workloads (place, read, watch) on one open/closed-loop runner.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::{
    Load, Target,
    stats::{Latencies, Report, requests},
};

/// An authenticated client of one order-service.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: Arc<String>,
}

/// A distinct order (distinct SKU), so the double-submit window never folds two together.
fn order(tag: &str, i: u64) -> Value {
    json!({
        "currency": "EUR",
        "items": [{"sku": format!("LG-{tag}-{i}"), "quantity": 1, "unit_price_minor": 1000}],
        "shipping_address": {"name": "Load Test", "line1": "1 Bench Road", "line2": null,
                             "city": "London", "postal_code": "N1", "country": "GB"}
    })
}

/// Runs `request(i)` `load.concurrency` at a time until `load.duration` is up,
/// as fast as answers come (closed loop) or at `load.rate` (open loop, latency
/// measured from each request's scheduled start). Returns the latencies of the
/// requests that succeeded, the failures, and the seconds taken.
async fn run<F, Fut>(load: Load, request: F) -> (Latencies, u64, f64)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let deadline = started + load.duration;
    let (next, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..load.concurrency.max(1))
        .map(|_| {
            let (next, errors, request) = (next.clone(), errors.clone(), request.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let scheduled = match load.rate {
                        Some(rate) => started + Duration::from_secs_f64(i as f64 / rate),
                        None => Instant::now(),
                    };
                    if scheduled >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(scheduled.into()).await;
                    if request(i).await {
                        latencies.push(scheduled.elapsed());
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap_or_default());
    }
    (Latencies::new(latencies), errors.load(Ordering::Relaxed), started.elapsed().as_secs_f64())
}

impl Client {
    /// Gets a token for `target`'s client; `connections` sizes the idle pool.
    pub async fn connect(target: &Target, connections: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
        let token: Value = http
            .post(format!("{}/auth/token", target.url))
            .basic_auth(&target.client_id, Some(&target.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .context("cannot reach the order-service")?
            .error_for_status()
            .context("token request refused")?
            .json()
            .await?;
        let token = token["access_token"].as_str().context("no access_token")?.to_owned();
        Ok(Self { http, url: target.url.clone(), token: Arc::new(token) })
    }

    /// POSTs one order; its id when it was created.
    async fn place(&self, body: &Value) -> Option<String> {
        let response = self
            .http
            .post(format!("{}/orders", self.url))
            .bearer_auth(self.token.as_str())
            .json(body)
            .send()
            .await
            .ok()?;
        if response.status() != reqwest::StatusCode::CREATED {
            return None;
        }
        response.json::<Value>().await.ok()?["id"].as_str().map(str::to_owned)
    }

    /// `loadgen orders`.
    pub async fn place_orders(&self, load: Load) -> Report {
        let tag = uuid_tag();
        let client = self.clone();
        let (latencies, errors, seconds) = run(load, move |i| {
            let (client, body) = (client.clone(), order(&tag, i));
            async move { client.place(&body).await.is_some() }
        })
        .await;
        requests(
            "POST /orders",
            &latencies,
            errors,
            seconds,
            json!({"concurrency": load.concurrency, "target_rate": load.rate}),
        )
    }

    /// Places `n` orders (32 at a time) and returns their ids.
    pub async fn seed_orders(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let tag = uuid_tag();
        let ids: Vec<Option<String>> = futures::stream::iter(0..n as u64)
            .map(|i| {
                let (client, body) = (self.clone(), order(&tag, i));
                async move { client.place(&body).await }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let ids: Vec<String> = ids.into_iter().flatten().collect();
        anyhow::ensure!(ids.len() == n, "only {} of {n} seed orders were created", ids.len());
        Ok(ids)
    }

    /// `loadgen get`: reads the seeded orders in turn.
    pub async fn read_orders(&self, load: Load, ids: Vec<String>) -> Report {
        let (client, ids) = (self.clone(), Arc::new(ids));
        let (latencies, errors, seconds) = run(load, move |i| {
            let (client, ids) = (client.clone(), ids.clone());
            async move {
                let url = format!("{}/orders/{}", client.url, ids[i as usize % ids.len()]);
                let response = client.http.get(url).bearer_auth(client.token.as_str()).send().await;
                match response {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .await;
        requests("GET /orders/{id}", &latencies, errors, seconds, json!({"concurrency": load.concurrency}))
    }

    /// Follows `id`'s SSE stream until DELIVERED (bounded by `timeout`).
    async fn until_delivered(&self, id: &str, timeout: Duration) -> bool {
        let follow = async {
            let response = self
                .http
                .get(format!("{}/orders/{id}/events", self.url))
                .bearer_auth(self.token.as_str())
                .send()
                .await
                .ok()?;
            let mut events = response.bytes_stream().eventsource();
            while let Some(Ok(event)) = events.next().await {
                if event.event == "DELIVERED" {
                    return Some(());
                }
            }
            None
        };
        matches!(tokio::time::timeout(timeout, follow).await, Ok(Some(())))
    }

    /// `loadgen watch`: orders placed at `rate`; latency from each order's
    /// scheduled placement to its DELIVERED event on the live stream.
    pub async fn watch_orders(&self, rate: f64, duration: Duration, timeout: Duration) -> Report {
        let tag = uuid_tag();
        let client = self.clone();
        // Enough workers that a slow order never delays the next one's schedule.
        let concurrency = ((rate * timeout.as_secs_f64()).ceil() as usize).clamp(1, 4096);
        let load = Load { concurrency, duration, rate: Some(rate) };
        let (latencies, errors, seconds) = run(load, move |i| {
            let (client, body) = (client.clone(), order(&tag, i));
            async move {
                match client.place(&body).await {
                    Some(id) => client.until_delivered(&id, timeout).await,
                    None => false,
                }
            }
        })
        .await;
        requests("order -> DELIVERED on SSE", &latencies, errors, seconds, json!({"target_rate": rate}))
    }
}

/// A short tag that keeps one run's SKUs apart from another's.
fn uuid_tag() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos())
}
