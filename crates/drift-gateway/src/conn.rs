//! What a connection may hold: how many are open (in all and per peer address) and how long
//! each may take over a request head, or wait idle between requests. hyper has a header-read
//! timer, but it starts when a kept-alive connection begins to wait, so it cannot tell a slow
//! head from an idle connection; nor does it bound a body. So each connection has a `Clock`
//! that its requests and responses move (busy while a request is served, idle after its
//! response, reading a head from the next byte on), and its reads fail once the phase's time is
//! up. Request bodies are bounded where they are read (`extract::JsonBody`).

use super::error::{ErrorBody, ErrorCode};
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use bytes::{Buf, Bytes};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bounds on connections (flags of `drift serve`).
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// A request head must arrive whole within this of its first byte (a new connection's
    /// first head: of the connection's accept).
    pub head_timeout: Duration,
    /// A kept-alive connection may wait this long for its next request.
    pub idle_timeout: Duration,
    /// Open connections on this gateway at most (0: no cap).
    pub max_connections: usize,
    /// Open connections from one peer address at most (0: no cap).
    pub max_per_peer: usize,
    /// Serve every request through hyper, event streams too (the listener's own path off).
    pub hyper_only: bool,
}

impl Default for ConnConfig {
    fn default() -> Self {
        Self {
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 0,
            max_per_peer: 0,
            hyper_only: false,
        }
    }
}

/// The open connections, counted in all and per peer address.
pub struct Connections {
    cfg: ConnConfig,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refused {
    /// The gateway holds `--max-connections` already.
    Full,
    /// This peer holds `--max-connections-per-peer` already.
    PeerFull,
}

impl Refused {
    /// A whole HTTP/1.1 answer, written before anything is read, then the connection closes.
    pub fn response(self) -> Vec<u8> {
        let (code, message) = match self {
            Self::Full => (
                ErrorCode::Busy,
                "this gateway holds as many connections as it may (--max-connections); retry shortly or use another gateway",
            ),
            Self::PeerFull => (
                ErrorCode::TooManyConnections,
                "this address holds as many connections as one address may (--max-connections-per-peer); close some",
            ),
        };
        let body = serde_json::to_string(&ErrorBody {
            code,
            message: message.into(),
            details: None,
        })
        .expect("error bodies serialize");
        let status = code.status();
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            status.as_str(),
            status.canonical_reason().unwrap_or_default(),
            body.len()
        )
        .into_bytes()
    }

    fn label(self) -> &'static str {
        match self {
            Self::Full => "gateway",
            Self::PeerFull => "peer",
        }
    }
}

impl Connections {
    pub fn new(cfg: ConnConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    pub fn config(&self) -> &ConnConfig {
        &self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        // The counts stay consistent even if a holder panicked: each change is one statement.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a connection from `peer`, held until the returned guard drops.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Held, Refused> {
        let ip = peer.ip();
        let mut open = self.lock();
        let refused = if self.cfg.max_connections > 0 && open.0 >= self.cfg.max_connections {
            Some(Refused::Full)
        } else if self.cfg.max_per_peer > 0 && open.1.get(&ip).is_some_and(|n| *n >= self.cfg.max_per_peer) {
            Some(Refused::PeerFull)
        } else {
            None
        };
        if let Some(r) = refused {
            metrics::counter!(drift_core::metrics::CONNECTIONS_REFUSED.name, "limit" => r.label()).increment(1);
            return Err(r);
        }
        open.0 += 1;
        *open.1.entry(ip).or_default() += 1;
        metrics::gauge!(drift_core::metrics::HTTP_CONNECTIONS.name).increment(1.0);
        Ok(Held {
            ip,
            table: self.clone(),
        })
    }
}

/// One connection's place among the open ones.
pub struct Held {
    ip: IpAddr,
    table: Arc<Connections>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
        metrics::gauge!(drift_core::metrics::HTTP_CONNECTIONS.name).decrement(1.0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Reading a request head that began (or whose connection was accepted) then.
    Head(Instant),
    /// Serving this many requests: the handler bounds its own waits.
    Busy(usize),
    /// Waiting for the next request since then.
    Idle(Instant),
    /// Upgraded (a WebSocket): the socket's own pings and idle bound it.
    Upgraded,
}

/// Where one connection is in its request cycle, and so when its reads must give up.
pub struct Clock {
    head: Duration,
    idle: Duration,
    state: Mutex<(Phase, Option<Waker>)>,
}

impl Clock {
    /// A connection whose head began at `since`.
    pub fn new(cfg: &ConnConfig, since: Instant) -> Arc<Self> {
        Arc::new(Self {
            head: cfg.head_timeout,
            idle: cfg.idle_timeout,
            state: Mutex::new((Phase::Head(since), None)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Phase, Option<Waker>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the connection's reads give up, if they do in its phase.
    #[cfg(test)]
    fn deadline(&self) -> Option<Instant> {
        match self.lock().0 {
            Phase::Head(since) => Some(since + self.head),
            Phase::Idle(since) => Some(since + self.idle),
            Phase::Busy(_) | Phase::Upgraded => None,
        }
    }

    /// Bytes arrived: an idle connection is now reading a head.
    fn on_bytes(&self) {
        let mut s = self.lock();
        if let Phase::Idle(_) = s.0 {
            s.0 = Phase::Head(Instant::now());
        }
    }

    /// A request head was read; its response has not ended yet.
    pub fn request(self: &Arc<Self>) -> Busy {
        let mut s = self.lock();
        s.0 = match s.0 {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Upgraded => Phase::Upgraded,
            _ => Phase::Busy(1),
        };
        Busy(self.clone())
    }

    fn upgraded(&self) {
        self.lock().0 = Phase::Upgraded;
    }

    /// Registers the task whose read waits on this clock, and says until when it may wait: one
    /// lock for both, on every read that has to wait.
    fn park(&self, waker: &Waker) -> Option<Instant> {
        let mut s = self.lock();
        match &s.1 {
            Some(w) if w.will_wake(waker) => {}
            _ => s.1 = Some(waker.clone()),
        }
        match s.0 {
            Phase::Head(since) => Some(since + self.head),
            Phase::Idle(since) => Some(since + self.idle),
            Phase::Busy(_) | Phase::Upgraded => None,
        }
    }
}

/// One request being served; its end (the response body's end or drop) may leave the
/// connection idle.
pub struct Busy(Arc<Clock>);

impl Drop for Busy {
    /// Read and changed under one lock: with HTTP/2, another request may begin meanwhile.
    fn drop(&mut self) {
        let mut s = self.0.lock();
        match s.0 {
            Phase::Busy(n) if n > 1 => s.0 = Phase::Busy(n - 1),
            Phase::Busy(_) => {
                s.0 = Phase::Idle(Instant::now());
                // The connection's parked read must see its new deadline.
                if let Some(w) = s.1.take() {
                    w.wake();
                }
            }
            _ => {}
        }
    }
}

/// A response whose end moves its connection's clock; an upgrade stops the clock.
pub fn watched(response: Response<Body>, busy: Busy) -> Response<Body> {
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        busy.0.upgraded();
        return response;
    }
    response.map(|body| Body::new(Watched { body, _busy: busy }))
}

struct Watched {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The read side of a connection under its clock: a read that waits past its phase's deadline
/// fails with `TimedOut`, which closes the connection.
pub struct Timed {
    clock: Arc<Clock>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Timed {
    pub fn new(clock: Arc<Clock>) -> Self {
        Self { clock, sleep: None }
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// Wraps one read: `read` is the inner read, `got_bytes` whether it produced any.
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        read: Poll<std::io::Result<()>>,
        got_bytes: bool,
    ) -> Poll<std::io::Result<()>> {
        match read {
            Poll::Ready(Ok(())) if got_bytes => {
                self.clock.on_bytes();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                let Some(deadline) = self.clock.park(cx.waker()) else {
                    return Poll::Pending;
                };
                let sleep = match &mut self.sleep {
                    Some(s) => {
                        if s.deadline() != deadline {
                            s.as_mut().reset(deadline);
                        }
                        s
                    }
                    None => self.sleep.insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        metrics::counter!(drift_core::metrics::CONNECTIONS_TIMED_OUT.name).increment(1);
                        Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the client took too long to send a request (or to send its next one)",
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// Serves one connection with hyper: requests go to `router` with the clock moved by each.
pub async fn serve_with_hyper(io: Rewound, router: axum::Router, shutdown: tokio_util::sync::CancellationToken) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;
    let clock = io.clock().clone();
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let busy = clock.request();
        let router = router.clone();
        async move {
            let response = router
                .oneshot(request.map(Body::new))
                .await
                .unwrap_or_else(|e| match e {});
            Ok::<_, std::convert::Infallible>(watched(response, busy))
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended");
            }
            return;
        }
        _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended");
    }
}

/// A connection handed to hyper, with the bytes the listener already read put back in front,
/// its reads under its clock, holding its place among the open connections.
pub struct Rewound {
    head: Bytes,
    tcp: TcpStream,
    timed: Timed,
    _held: Held,
}

impl Rewound {
    pub fn new(head: Bytes, tcp: TcpStream, timed: Timed, held: Held) -> Self {
        Self {
            head,
            tcp,
            timed,
            _held: held,
        }
    }

    pub fn clock(&self) -> &Arc<Clock> {
        self.timed.clock()
    }
}

impl AsyncRead for Rewound {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.head.has_remaining() {
            let n = self.head.len().min(out.remaining());
            out.put_slice(&self.head[..n]);
            self.head.advance(n);
            if !self.head.has_remaining() {
                // Free the buffer rather than keep an empty view of it.
                self.head = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        let before = out.filled().len();
        let read = Pin::new(&mut this.tcp).poll_read(cx, out);
        let got = out.filled().len() > before;
        this.timed.poll_read(cx, read, got)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: [u8; 4]) -> SocketAddr {
        SocketAddr::from((ip, 4000))
    }

    #[test]
    fn connections_are_capped_in_all_and_per_peer_and_freed_on_drop() {
        let table = Connections::new(ConnConfig {
            max_connections: 3,
            max_per_peer: 2,
            ..Default::default()
        });
        let a1 = table.admit(peer([10, 0, 0, 1])).unwrap();
        let _a2 = table.admit(peer([10, 0, 0, 1])).unwrap();
        assert_eq!(table.admit(peer([10, 0, 0, 1])).err(), Some(Refused::PeerFull));
        let _b1 = table.admit(peer([10, 0, 0, 2])).unwrap();
        assert_eq!(table.admit(peer([10, 0, 0, 3])).err(), Some(Refused::Full));
        drop(a1);
        assert!(table.admit(peer([10, 0, 0, 1])).is_ok());
        assert!(
            String::from_utf8(Refused::Full.response())
                .unwrap()
                .starts_with("HTTP/1.1 503")
        );
    }

    #[tokio::test]
    async fn a_clock_gives_a_head_its_time_from_the_first_byte_and_none_while_busy() {
        let cfg = ConnConfig::default();
        let began = Instant::now();
        let clock = Clock::new(&cfg, began);
        assert_eq!(clock.deadline(), Some(began + cfg.head_timeout));
        let busy = clock.request();
        assert_eq!(clock.deadline(), None, "a handler bounds its own wait");
        let second = clock.request();
        drop(busy);
        assert_eq!(clock.deadline(), None, "still serving one");
        drop(second);
        let idle = clock.deadline().expect("an idle connection waits a bounded time");
        assert!(idle >= began + cfg.idle_timeout, "idle, not head time");
        clock.on_bytes();
        let head = clock.deadline().expect("a head began");
        assert!(
            head < idle && head >= began + cfg.head_timeout,
            "a head's time from its first byte"
        );
        clock.upgraded();
        assert_eq!(clock.deadline(), None);
    }
}
