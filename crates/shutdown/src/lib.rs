//! Process lifecycle: one place that turns SIGTERM/SIGINT into a cancellation
//! token that the HTTP server and every background loop watch, the order in
//! which they stop ([`run_until_stopped`]), and how loops pace their retries
//! ([`retry`]).
//!
//! Loops are expected to finish the unit of work in hand when the token fires,
//! then return ([`Background`] runs and stops them in order); the whole drain
//! is bounded by the shutdown timeout ([`drain_deadline`]).

pub mod retry;

use std::{future::Future, time::Duration};

use tokio::task::JoinHandle;
pub use tokio_util::sync::CancellationToken;

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT, shutting down"),
        () = terminate => tracing::info!("received SIGTERM, shutting down"),
    }
}

/// A token cancelled when the process is asked to stop.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        signal().await;
        child.cancel();
    });
    token
}

/// Runs `drain` but gives up after `limit`, so a stuck dependency cannot keep a
/// terminating pod alive past its grace period. Returns whether it finished.
pub async fn drain_deadline(limit: Duration, drain: impl Future<Output = ()>) -> bool {
    match tokio::time::timeout(limit, drain).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(limit_secs = limit.as_secs_f64(), "shutdown drain did not finish in time; exiting anyway");
            false
        }
    }
}

/// Runs a service until `stop` fires, then shuts it down in order, within
/// `limit`: the server stops accepting and finishes the requests in flight
/// (`server` must begin its graceful shutdown when `stop` fires and resolve
/// when done), then the background loops stop ([`Background::stop`]: consumers
/// and schedulers first, the outbox relay last, so its final flush sees every
/// row the others wrote). Returns whether everything finished in time.
pub async fn run_until_stopped<S>(
    name: &'static str,
    server: S,
    background: Background,
    stop: CancellationToken,
    limit: Duration,
) -> bool
where
    S: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let server = tokio::spawn(server);
    stop.cancelled().await;
    let clean = drain_deadline(limit, async {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server failed"),
            Err(e) => tracing::error!(error = %e, "server task panicked"),
        }
        background.stop().await;
    })
    .await;
    tracing::info!(service = name, clean, "stopped");
    clean
}

/// The background loops of a service (consumers, schedulers, the outbox
/// relay). On [`Background::stop`] the loops spawned with [`Background::spawn`]
/// are stopped together and awaited; then those spawned with
/// [`Background::spawn_last`] (the outbox relay), so the relay's final flush sees
/// every row the others wrote. Each loop must return once its token is
/// cancelled, after finishing the unit of work in hand.
#[derive(Default)]
pub struct Background {
    first: Vec<(&'static str, CancellationToken, JoinHandle<()>)>,
    last: Vec<(&'static str, CancellationToken, JoinHandle<()>)>,
}

impl Background {
    pub fn new() -> Self {
        Self::default()
    }

    fn start<F, Fut>(make: F) -> (CancellationToken, JoinHandle<()>)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let token = CancellationToken::new();
        let task = tokio::spawn(make(token.clone()));
        (token, task)
    }

    /// Spawns `make(token)`, stopped in the first group.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, make: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (token, task) = Self::start(make);
        self.first.push((name, token, task));
    }

    /// Spawns `make(token)`, stopped only after the first group has finished.
    pub fn spawn_last<F, Fut>(&mut self, name: &'static str, make: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (token, task) = Self::start(make);
        self.last.push((name, token, task));
    }

    /// Stops the first group, then the last.
    pub async fn stop(self) {
        for group in [self.first, self.last] {
            for (_, token, _) in &group {
                token.cancel();
            }
            for (name, _, task) in group {
                match task.await {
                    Ok(()) => tracing::debug!(task = name, "background loop stopped"),
                    Err(e) => tracing::error!(task = name, error = %e, "background loop panicked"),
                }
            }
        }
    }
}

/// Runs `step` every `interval` until `stop`, at once again while it reports
/// more work (`Ok(true)`). For housekeeping loops whose step tests call directly.
pub async fn every<F, Fut, E>(name: &'static str, interval: Duration, stop: CancellationToken, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
    E: std::fmt::Display,
{
    while !stop.is_cancelled() {
        let pause = match step().await {
            Ok(true) => Duration::ZERO,
            Ok(false) => interval,
            Err(e) => {
                tracing::warn!(task = name, error = %e, "periodic task failed");
                interval
            }
        };
        if pause.is_zero() {
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
