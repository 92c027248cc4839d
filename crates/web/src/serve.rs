//! Serving a service's router: axum with graceful shutdown that reports "not
//! ready" the moment shutdown begins. The order in which the server and the
//! background loops then stop is the shutdown crate's
//! ([`shutdown::run_until_stopped`]).

use std::time::Duration;

use axum::Router;
use shutdown::{Background, CancellationToken};
use tokio::net::TcpListener;

use crate::health::Accepting;

/// Serves `router` on `listener` and runs `background` until `stop`, then
/// shuts both down in order within `shutdown_timeout`.
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
    let server = async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                server_stop.cancelled().await;
                accepting.stop();
            })
            .await
    };
    shutdown::run_until_stopped(name, server, background, stop, shutdown_timeout).await;
    Ok(())
}
