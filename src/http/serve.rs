//! The accept loop: a connection limit and a header-read deadline, which `axum::serve` does
//! not offer, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Limits on the connections of one server.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once (`MAX_CONNECTIONS`). Further ones wait in the kernel's
    /// accept backlog, holding none of our file descriptors, until a slot frees.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (`HEADER_READ_TIMEOUT_SECS`), counted
    /// from the connection or from the previous response; a slower or silent client is
    /// disconnected, so idle connections cannot hold the slots.
    pub header_read_timeout: Duration,
    /// Time an idle keep-alive connection (one that has served a request) is kept
    /// (`KEEP_ALIVE_TIMEOUT_SECS`). Longer than the header deadline, so that a client or load
    /// balancer reusing its connection does not race our close.
    pub keep_alive: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub drain: Duration,
}

impl From<&crate::settings::HttpSettings> for ServeLimits {
    fn from(http: &crate::settings::HttpSettings) -> Self {
        ServeLimits {
            max_connections: http.max_connections,
            header_read_timeout: http.header_read_timeout,
            keep_alive: http.keep_alive,
            drain: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// (up to [`ServeLimits::drain`]). HTTP/1 and HTTP/2; each request carries the peer's
/// [`ConnectInfo`]`<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let app = app.clone();
        let counted = activity.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let busy = Busy::start(counted.clone());
            let app = app.clone();
            async move {
                let response = app.oneshot(req).await;
                drop(busy);
                response
            }
        });
        let stream = Tracked {
            inner: stream,
            activity: activity.clone(),
        };
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        let (fresh_limit, keep_alive) = (limits.header_read_timeout, limits.keep_alive);
        tokio::spawn(async move {
            tokio::pin!(conn);
            let mut check = tokio::time::interval(fresh_limit / 4);
            loop {
                tokio::select! {
                    result = &mut conn => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = check.tick() => {
                        // Silent since connecting: the header deadline; idle after serving
                        // requests: the keep-alive time.
                        let limit = if activity.served() { keep_alive } else { fresh_limit };
                        if activity.idle_for() > limit {
                            tracing::debug!(%peer, "idle connection closed");
                            break; // dropping the connection closes it
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open after {:?}; closing them",
            limits.drain
        );
    }
}

/// What a connection is doing: requests in progress and the time of its last byte.
struct Activity {
    started: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    in_flight: std::sync::atomic::AtomicUsize,
    served: std::sync::atomic::AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            started: std::time::Instant::now(),
            last_ms: Default::default(),
            in_flight: Default::default(),
            served: Default::default(),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long the connection has been silent with no request in progress (zero while one
    /// is: the request timeout bounds those).
    /// Whether the connection has served (or is serving) a request.
    fn served(&self) -> bool {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn idle_for(&self) -> Duration {
        use std::sync::atomic::Ordering::Relaxed;
        if self.in_flight.load(Relaxed) > 0 {
            return Duration::ZERO;
        }
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Relaxed)))
    }
}

/// Counts a request in progress while alive.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Busy {
        activity
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        activity
            .served
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.0.touch();
    }
}

/// A socket that records when bytes last moved.
struct Tracked {
    inner: tokio::net::TcpStream,
    activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Tracked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl tokio::io::AsyncWrite for Tracked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(poll, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
