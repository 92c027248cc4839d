//! Running a service: serve HTTP until the stop token fires, then shut down in
//! order — stop accepting (and report not ready), finish in-flight requests,
//! stop the background loops (each finishes its unit of work and the outbox
//! relay flushes) — all within the shutdown timeout.

use std::time::Duration;

use axum::Router;
use shutdown::{Background, CancellationToken};
use tokio::net::TcpListener;

use crate::health::Accepting;

pub async fn run(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    background: Background,
    accepting: Accepting,
    stop: CancellationToken,
    shutdown_timeout: Duration,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(service = name, %addr, "listening");
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                server_stop.cancelled().await;
                accepting.stop();
            })
            .await
    });
    stop.cancelled().await;
    let clean = shutdown::drain_deadline(shutdown_timeout, async {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "HTTP server task panicked"),
        }
        background.stop().await;
    })
    .await;
    tracing::info!(service = name, clean, "stopped");
    Ok(())
}
