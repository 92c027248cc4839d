//! Serving a service's router over TCP, with the limits every listener needs
//! against slow, idle and numerous clients, and graceful shutdown that reports
//! "not ready" the moment it begins. The order in which the server and the
//! background loops then stop is the shutdown crate's
//! ([`shutdown::run_until_stopped`]).
//!
//! Each accepted connection is served by hyper-util's HTTP/1 + HTTP/2 builder
//! with a timer, so:
//! - an HTTP/1 request head must arrive whole within `HTTP_HEADER_READ_TIMEOUT`
//!   (counted from when the server starts waiting for it, so it also bounds the
//!   wait for the next request on a kept-alive connection): a client that
//!   trickles header lines is cut off;
//! - a connection on which no byte moves either way for `HTTP_IDLE_TIMEOUT` is
//!   closed (first gracefully, then dropped), whatever its protocol;
//! - at most `HTTP_MAX_CONNECTIONS` connections are open at once: at the cap the
//!   server stops accepting, and new connections wait in the kernel's backlog
//!   until one closes.
//!
//! Handlers see the peer's socket address as `axum::extract::ConnectInfo<SocketAddr>`.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use settings::Env;
use shutdown::{Background, CancellationToken};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::Instant,
};
use tower::Service;

use crate::{health::Accepting, metrics};

/// Limits of every HTTP listener, from `HTTP_HEADER_READ_TIMEOUT`,
/// `HTTP_IDLE_TIMEOUT` and `HTTP_MAX_CONNECTIONS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSettings {
    /// Longest time to receive a whole HTTP/1 request head.
    pub header_read_timeout: Duration,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 2048,
        }
    }
}

/// The listener's variables, for the configuration reference.
pub const SETTINGS: &[settings::Doc] = &[
    settings::Doc::tuning("HTTP_ADDR", "where HTTP listens (port 0 picks a free one)"),
    settings::Doc::tuning("HTTP_REQUEST_TIMEOUT", "longest request (then 408, counted in the HTTP metrics)"),
    settings::Doc::tuning(
        "SHUTDOWN_TIMEOUT",
        "longest time from SIGTERM to exit: finish requests, hand back messages, flush the relay",
    ),
    settings::Doc::tuning(
        "HTTP_HEADER_READ_TIMEOUT",
        "a request head must arrive whole within this (also the longest wait for the next request on a kept-alive connection); slow clients are cut off",
    ),
    settings::Doc::tuning(
        "HTTP_IDLE_TIMEOUT",
        "a connection on which nothing moves either way for this long is closed; must exceed `HTTP_REQUEST_TIMEOUT` (and the order API's `SSE_KEEPALIVE`)",
    ),
    settings::Doc::tuning(
        "HTTP_MAX_CONNECTIONS",
        "connections open at once; past it new ones wait in the kernel backlog (the order API: must exceed `SSE_MAX_STREAMS`)",
    ),
];

impl ServeSettings {
    /// Reads the three variables, with the defaults above.
    pub fn from_env(env: &mut Env) -> Self {
        let default = Self::default();
        let s = Self {
            header_read_timeout: env.duration("HTTP_HEADER_READ_TIMEOUT", default.header_read_timeout),
            idle_timeout: env.duration("HTTP_IDLE_TIMEOUT", default.idle_timeout),
            max_connections: env.get("HTTP_MAX_CONNECTIONS", default.max_connections),
        };
        if s.header_read_timeout.is_zero() {
            env.invalid("HTTP_HEADER_READ_TIMEOUT", "must be longer than 0s");
        }
        if s.idle_timeout.is_zero() {
            env.invalid("HTTP_IDLE_TIMEOUT", "must be longer than 0s");
        }
        if s.max_connections == 0 || s.max_connections > Semaphore::MAX_PERMITS.min(u32::MAX as usize) {
            env.invalid(
                "HTTP_MAX_CONNECTIONS",
                format!("must be from 1 to {}", Semaphore::MAX_PERMITS.min(u32::MAX as usize)),
            );
        }
        s
    }
}

/// Serves `router` on `listener` and runs `background` until `stop`, then
/// shuts both down in order within `shutdown_timeout`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: &ServeSettings,
    background: Background,
    accepting: Accepting,
    stop: CancellationToken,
    shutdown_timeout: Duration,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(service = name, %addr, "listening");
    let server_stop = stop.clone();
    let limits = limits.clone();
    let server = async move {
        let stopping = async move {
            server_stop.cancelled().await;
            accepting.stop();
        };
        serve(listener, router, &limits, stopping).await;
        Ok::<(), io::Error>(())
    };
    shutdown::run_until_stopped(name, server, background, stop, shutdown_timeout).await;
    Ok(())
}

/// Serves `router` on `listener` within `limits` until `stop` resolves, then
/// stops accepting, lets every open connection finish (idle ones close at once)
/// and returns when the last one has closed.
pub async fn serve(listener: TcpListener, router: Router, limits: &ServeSettings, stop: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let closing = CancellationToken::new();
    let open = metrics::HTTP_CONNECTIONS.as_gauge();
    tokio::pin!(stop);
    loop {
        // At the cap, wait for a connection to close before accepting another.
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: pause, go on.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        open.increment(1.0);
        let (builder, router, closing, idle, open) =
            (builder.clone(), router.clone(), closing.clone(), limits.idle_timeout, open.clone());
        tokio::spawn(async move {
            serve_connection(&builder, stream, peer, router, idle, closing).await;
            open.decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    closing.cancel();
    // Every permit back means every connection has closed.
    let _ = permits.acquire_many(limits.max_connections as u32).await;
}

async fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    idle_timeout: Duration,
    closing: CancellationToken,
) {
    let activity = Activity::default();
    let io = TokioIo::new(Tracked { inner: stream, activity: activity.clone() });
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move { router.call(req).await }
    });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = closing.cancelled(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(idle_timeout) => {
                if shutting_down {
                    // Asked to close and still silent: drop it.
                    tracing::debug!(%peer, "closing a silent connection");
                    return;
                }
                tracing::debug!(%peer, "closing an idle connection");
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// When a connection last moved a byte, as milliseconds since it opened.
#[derive(Clone)]
struct Activity {
    opened: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self { opened: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let deadline = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that records its traffic in an [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Serves a tiny router with `limits` until the returned token is cancelled.
    async fn start(limits: ServeSettings) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }));
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move { serve(listener, router, &limits, token.cancelled_owned()).await });
        (addr, stop, task)
    }

    /// Reads until the peer closes (Ok) or `limit` passes (Err).
    async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Result<Vec<u8>, ()> {
        let mut received = Vec::new();
        tokio::time::timeout(limit, async {
            let mut buf = [0u8; 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .map(|()| received)
        .map_err(|_| ())
    }

    async fn get_peer(stream: &mut TcpStream) -> String {
        stream.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let body = closed_within(stream, Duration::from_secs(5)).await.expect("an answer");
        String::from_utf8(body).unwrap()
    }

    #[tokio::test]
    async fn a_slowloris_client_is_cut_off_at_the_header_timeout() {
        let header_timeout = Duration::from_secs(2);
        let limits = ServeSettings { header_read_timeout: header_timeout, ..ServeSettings::default() };
        let (addr, stop, task) = start(limits).await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let started = std::time::Instant::now();
        writer.write_all(b"GET /peer HTTP/1.1\r\n").await.unwrap();
        // One header line a second, never the blank line that ends the head.
        let trickle = async {
            for i in 0.. {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = writer.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).await;
            }
        };
        let closed = async {
            let mut buf = [0u8; 256];
            while let Ok(n) = reader.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            () = trickle => unreachable!(),
            () = closed => {}
            () = tokio::time::sleep(Duration::from_secs(8)) => panic!("the server kept a trickling connection open"),
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= header_timeout - Duration::from_millis(100), "cut off too early: {elapsed:?}");
        assert!(elapsed < header_timeout + Duration::from_secs(1), "cut off after {elapsed:?}");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn idle_connections_are_closed() {
        let limits = ServeSettings {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(1),
            ..ServeSettings::default()
        };
        let (addr, stop, task) = start(limits).await;
        // Silent from the start (no protocol detected yet).
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(3)).await.is_ok(), "a silent connection stayed open");
        // Silent after one request on a kept-alive connection.
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = closed_within(&mut kept, Duration::from_secs(3)).await.expect("closed once idle");
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "answered first");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn open_connections_are_capped_and_handlers_see_the_peer() {
        let limits = ServeSettings { max_connections: 2, ..ServeSettings::default() };
        let (addr, stop, task) = start(limits).await;
        let mut held: Vec<TcpStream> = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            // A byte makes sure the server has accepted it before the next one.
            stream.write_all(b"G").await.unwrap();
            held.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let waited = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
        assert!(waited.is_err(), "a third connection was served past the cap of 2");
        drop(held.pop());
        let body = closed_within(&mut third, Duration::from_secs(5)).await.expect("served once a slot freed");
        assert!(String::from_utf8_lossy(&body).ends_with("127.0.0.1"), "{}", String::from_utf8_lossy(&body));
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        assert!(get_peer(&mut fourth).await.starts_with("HTTP/1.1 200"));
        drop(held);
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn settings_have_defaults_and_name_bad_values() {
        let mut env = Env::from_pairs([("HTTP_IDLE_TIMEOUT", "90s")]);
        let s = ServeSettings::from_env(&mut env);
        assert_eq!(s.idle_timeout, Duration::from_secs(90));
        assert_eq!(s.max_connections, 2048);
        assert!(env.finish().is_ok());
        let mut env = Env::from_pairs([("HTTP_MAX_CONNECTIONS", "0"), ("HTTP_HEADER_READ_TIMEOUT", "0s")]);
        let _ = ServeSettings::from_env(&mut env);
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("HTTP_MAX_CONNECTIONS") && err.contains("HTTP_HEADER_READ_TIMEOUT"), "{err}");
    }
}
