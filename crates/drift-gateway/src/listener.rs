//! Accepting connections. hyper keeps an 8 KB read buffer and an 8 KB write buffer for every
//! HTTP/1 connection for as long as it lives, with no option to start them smaller; for an idle
//! Server-Sent Events stream that was two thirds of its memory, and a blocked sync call holds
//! its connection as long. So the listener reads a connection's requests itself: an HTTP/1.1
//! `GET`, `POST`, `PUT` or `DELETE` with a body of declared length (at most `BODY_MAX`) is
//! answered here, through the same router (auth, CORS, limits, tracing), its response written
//! straight to the socket, and the connection then waits for its next request with no buffer.
//! The first request of any other kind (an upgrade, a chunked or long body, HTTP/2, a pipelined
//! request) goes to hyper with the connection and the bytes already read. Every connection
//! holds a place among the open ones (`conn::Connections`) and runs under its `conn::Clock`.

use super::conn::{Clock, ConnConfig, Connections, Held, Rewound, Timed, serve_with_hyper};
use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use bytes::{Buf, Bytes, BytesMut};
use drift_core::domain::routes;
use futures::{FutureExt, StreamExt};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

/// The longest request head answered here; a longer one goes to hyper, which applies its limits.
const HEAD_MAX: usize = 16 * 1024;
/// The longest request body read here; a longer one goes to hyper. A start or an answer is a
/// few hundred bytes; a definition may be longer.
const BODY_MAX: usize = 64 * 1024;
/// How long after its head a body may take to arrive whole here. A body sent after its head
/// follows it within a round trip; one slower than this goes to hyper, where the body timeout
/// (`--body-timeout-ms`, 408) bounds it.
const BODY_GRACE: Duration = Duration::from_millis(500);
/// Headers parsed here at most (hyper's default limit is 100; more goes to hyper to refuse).
const HEADERS_MAX: usize = 100;
/// The most one write gathers of what a stream has ready (a reconnect's catch-up can be long).
const WRITE_BATCH: usize = 64 * 1024;
/// How long a refused connection gets to take its refusal.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// The gateway's listener: serves plain requests itself and hands hyper every other connection.
pub struct Listener {
    tcp: TcpListener,
    router: Router,
    connections: Arc<Connections>,
    setups: Arc<tokio::sync::Semaphore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Listener {
    /// `tasks` tracks every connection, so shutdown can wait for them.
    pub fn new(
        tcp: TcpListener,
        router: Router,
        connections: Arc<Connections>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            tcp,
            router,
            connections,
            setups: Arc::new(tokio::sync::Semaphore::new(super::limits::SETUPS_AT_ONCE)),
            tasks,
            shutdown,
        }
    }

    /// Accepts until shutdown. A connection over a cap gets its refusal and is closed.
    pub async fn run(self) {
        loop {
            let accepted = tokio::select! {
                r = self.tcp.accept() => r,
                _ = self.shutdown.cancelled() => return,
            };
            let (mut tcp, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, say: the pending connections wait in the backlog.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.connections.admit(peer) {
                Ok(held) => {
                    let conn = Connection {
                        router: self.router.clone(),
                        setups: self.setups.clone(),
                        cfg: self.connections.config().clone(),
                        shutdown: self.shutdown.clone(),
                    };
                    self.tasks.spawn(conn.run(tcp, peer, held));
                }
                Err(refused) => {
                    self.tasks.spawn(async move {
                        let _ = tokio::time::timeout(REFUSAL_WRITE, tcp.write_all(&refused.response())).await;
                    });
                }
            }
        }
    }
}

/// One accepted connection until it is either answered here or handed to hyper.
struct Connection {
    router: Router,
    setups: Arc<tokio::sync::Semaphore>,
    cfg: ConnConfig,
    shutdown: CancellationToken,
}

impl Connection {
    /// Reads requests and answers them here until one that is not for here, which goes to
    /// hyper with the connection; a kept-alive connection thus serves its next request either
    /// way. The first head must arrive within the head timeout of the accept; a later one
    /// within the idle timeout of the last response, then whole within the head timeout of its
    /// first byte; a body slower than `BODY_GRACE` goes to hyper and its body timeout.
    ///
    /// The task holds this future for as long as the connection lives, sized for its largest
    /// phase; so each phase (reading, responding, hyper's whole connection) is boxed, and a
    /// connection whose call waits holds a few hundred bytes here, not 6 KB.
    async fn run(self, mut tcp: TcpStream, peer: SocketAddr, held: Held) {
        // Responses and events are small writes a client waits for.
        let _ = tcp.set_nodelay(true);
        let mut head_began = Instant::now();
        if self.cfg.hyper_only {
            let io = Rewound::new(Bytes::new(), tcp, Timed::new(Clock::new(&self.cfg, head_began)), held);
            return Box::pin(serve_with_hyper(io, self.router, self.shutdown)).await;
        }
        loop {
            let mut buf = BytesMut::new();
            let read = tokio::select! {
                r = tokio::time::timeout_at(head_began + self.cfg.head_timeout, Box::pin(read_request(&mut tcp, &mut buf))) => r,
                _ = self.shutdown.cancelled() => return,
            };
            let request = match read {
                Ok(Ok(Some(request))) => Some(request),
                Ok(Ok(None)) => None,
                // A whole head whose body is late (`BODY_GRACE` covers most): hyper's too.
                Err(_) if head_len(&buf).is_some() => None,
                // Closed, failed or too slow before a whole request head: nothing to answer.
                Ok(Err(_)) | Err(_) => return,
            };
            let Some(request) = request else {
                let io = Rewound::new(buf.freeze(), tcp, Timed::new(Clock::new(&self.cfg, head_began)), held);
                return Box::pin(serve_with_hyper(io, self.router, self.shutdown)).await;
            };
            drop(buf);
            let close = request.headers().get_all(header::CONNECTION).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
            });
            let stream =
                request.method() == Method::GET && routes::EVENTS.id_in(request.uri().path().as_bytes()).is_some();
            let mut router = self.router.clone();
            // Event streams take their turn (`limits::SETUPS_AT_ONCE`) here, around the whole
            // request, once the head is here, so a slow client cannot hold one. Other calls
            // may wait for their answer as long as their wait allows, so they take none.
            let setup = match stream {
                true => tokio::select! {
                    p = self.setups.acquire() => Some(p.expect("the set-up semaphore is never closed")),
                    _ = self.shutdown.cancelled() => return,
                },
                false => None,
            };
            // Boxed so the router's future is freed once the response head exists. A client
            // that hangs up meanwhile drops its call, as hyper drops it.
            let mut call = Box::pin(router.call(request));
            let response = tokio::select! {
                r = &mut call => r.unwrap_or_else(|e| match e {}),
                () = hung_up(&tcp) => return,
            };
            drop(call);
            drop(setup);
            match Box::pin(respond(&mut tcp, response, close)).await {
                Ok(Sent::Whole) if !close && !self.shutdown.is_cancelled() => {}
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "response ended early");
                    return;
                }
            }
            // Kept alive: the next request may take the idle timeout to begin.
            let idle = tokio::select! {
                r = tokio::time::timeout(self.cfg.idle_timeout, tcp.readable()) => r,
                _ = self.shutdown.cancelled() => return,
            };
            if !matches!(idle, Ok(Ok(()))) {
                return;
            }
            head_began = Instant::now();
        }
    }
}

/// Resolves when the client closes its side (or the connection fails) while its request is
/// served. Bytes it sends meanwhile (a pipelined request) wait for the response: watching ends.
async fn hung_up(tcp: &TcpStream) {
    let mut byte = [0u8; 1];
    if let Ok(1..) = tcp.peek(&mut byte).await {
        std::future::pending::<()>().await;
    }
}

/// The length of the request head at the start of `buf`, once it is whole.
fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|end| end + 4)
}

/// Reads until it is known whether the connection's next request is one this listener answers:
/// `Some` with the request if so (its head and body fully read, nothing after them), `None` for
/// anything else, with what was read left in `buf` for hyper.
async fn read_request(tcp: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Option<Request<Body>>> {
    // Once the head is parsed: the request (its body still empty), the head's and body's lengths.
    let mut parsed: Option<(Request<Body>, usize, usize)> = None;
    let mut body_due = Instant::now();
    loop {
        let want = match &parsed {
            None if buf.len() >= HEAD_MAX => return Ok(None),
            None => 1024.min(HEAD_MAX - buf.len()),
            Some((_, head, body)) => head + body - buf.len(),
        };
        if buf.is_empty() {
            // No buffer while a kept-alive connection waits for its next request.
            tcp.readable().await?;
        }
        buf.reserve(want);
        let read = match &parsed {
            None => tcp.read_buf(buf).await?,
            Some(_) => match tokio::time::timeout_at(body_due, tcp.read_buf(buf)).await {
                Ok(read) => read?,
                // A slow body: hyper's, under the body timeout where the body is read.
                Err(_) => return Ok(None),
            },
        };
        if read == 0 {
            if buf.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            return Ok(None);
        }
        if parsed.is_none() {
            let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
                continue;
            };
            if !is_ours_line(&buf[..line_end]) {
                return Ok(None);
            }
            let Some(head) = head_len(buf) else {
                continue;
            };
            let Some((request, body)) = parse(&buf[..head]) else {
                return Ok(None);
            };
            parsed = Some((request, head, body));
            body_due = Instant::now() + BODY_GRACE;
        }
        if let Some((_, head, body)) = &parsed {
            let whole = head + body;
            if buf.len() > whole {
                // A pipelined request behind this one: hyper's business.
                return Ok(None);
            }
            if buf.len() == whole {
                let (mut request, head, body) = parsed.take().expect("parsed above");
                if body > 0 {
                    *request.body_mut() = Body::from(buf.split().freeze().slice(head..));
                }
                return Ok(Some(request));
            }
        }
    }
}

/// `GET|POST|PUT|DELETE /… HTTP/1.1`.
fn is_ours_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_suffix(b" HTTP/1.1") else {
        return false;
    };
    let Some(target) = [&b"GET "[..], b"POST ", b"PUT ", b"DELETE "]
        .iter()
        .find_map(|m| rest.strip_prefix(*m))
    else {
        return false;
    };
    target.starts_with(b"/") && !target.contains(&b' ')
}

/// The request in `head` and its body's length, when it is one this listener answers: a body
/// of a declared length up to `BODY_MAX`, no upgrade or `Expect`, and every header well formed.
/// Anything unusual goes to hyper, which knows what to answer.
fn parse(head: &[u8]) -> Option<(Request<Body>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return None,
    }
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let uri: Uri = req.path?.parse().ok()?;
    let mut map = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        map.append(name, value);
    }
    if map.contains_key(header::TRANSFER_ENCODING)
        || map.contains_key(header::UPGRADE)
        || map.contains_key(header::EXPECT)
    {
        return None;
    }
    let mut lengths = map.get_all(header::CONTENT_LENGTH).iter();
    let body = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(v), None) if !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_digit) => {
            v.to_str().ok()?.parse::<usize>().ok().filter(|n| *n <= BODY_MAX)?
        }
        _ => return None,
    };
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = map;
    Some((request, body))
}

/// How a response ended.
enum Sent {
    /// All of it, so the connection can carry another request.
    Whole,
    /// Not all of it: the client went, or sent something mid-stream.
    Spoilt,
}

/// Writes the response: its head, then its body as it comes (chunked unless its length is
/// known). A client that leaves, or cannot take a write for the slow-consumer grace, ends it;
/// so does the body's end (the stream ends itself on shutdown). `close`: the client asked for
/// the connection to close after it.
async fn respond(tcp: &mut TcpStream, response: Response<Body>, close: bool) -> io::Result<Sent> {
    let (parts, body) = response.into_parts();
    let bodiless = parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let length = if bodiless { Some(0) } else { body.size_hint().exact() };
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in parts.headers.iter() {
        if name == header::CONNECTION || name == header::TRANSFER_ENCODING || name == header::CONTENT_LENGTH {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match length {
        _ if bodiless => {}
        Some(n) => head.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
        None => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if !parts.headers.contains_key(header::DATE) {
        head.extend_from_slice(
            format!("date: {}\r\n", httpdate::fmt_http_date(std::time::SystemTime::now())).as_bytes(),
        );
    }
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    write(tcp, &mut Bytes::from(head)).await?;
    if bodiless {
        return Ok(Sent::Whole);
    }
    let chunked = length.is_none();
    let mut data = body.into_data_stream();
    // A client sends nothing after its request; reading only notices that it has gone.
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            // The body first: once it has ended, the client's next request (it may come as
            // soon as the last bytes are out) is the next request, not a spoilt stream.
            biased;
            next = data.next() => {
                // Whatever else is ready goes out in the same write: a burst of states, or the
                // stream's end right after its last state.
                let mut out = BytesMut::new();
                let mut next = next;
                let ended = loop {
                    let Some(f) = next else { break true };
                    let bytes = f.map_err(io::Error::other)?;
                    if chunked && !bytes.is_empty() {
                        out.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
                        out.extend_from_slice(&bytes);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(&bytes);
                    }
                    if out.len() >= WRITE_BATCH {
                        break false;
                    }
                    match data.next().now_or_never() {
                        Some(n) => next = n,
                        None => break false,
                    }
                };
                if ended && chunked {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                write(tcp, &mut out).await?;
                if ended {
                    return Ok(Sent::Whole);
                }
            }
            // Gone, or sending mid-stream what no stream expects (a pipelined request that
            // could not be answered in order): either way the stream ends here.
            read = tcp.read(&mut probe) => {
                read?;
                return Ok(Sent::Spoilt);
            }
        }
    }
}

/// One write, bounded like every other stream's.
async fn write(tcp: &mut TcpStream, buf: &mut impl Buf) -> io::Result<()> {
    match tokio::time::timeout(super::SLOW_CONSUMER_GRACE, tcp.write_all_buf(buf)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client too slow to take a write",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_origin_form_http_1_1_requests_of_the_api_methods_are_answered_outside_hyper() {
        assert!(is_ours_line(b"GET /v3/workflow/abc/events HTTP/1.1"));
        assert!(is_ours_line(b"GET /v3/workflow/abc/events?token=x HTTP/1.1"));
        assert!(is_ours_line(b"POST /v3/workflow/start HTTP/1.1"));
        assert!(is_ours_line(b"PUT /v3/workflow/resume/abc HTTP/1.1"));
        assert!(is_ours_line(b"DELETE /v3/workflow/abc HTTP/1.1"));
        assert!(!is_ours_line(b"GET /v3/workflow/abc/events HTTP/1.0"));
        assert!(!is_ours_line(b"HEAD /healthz HTTP/1.1"));
        assert!(!is_ours_line(b"OPTIONS * HTTP/1.1"));
        assert!(!is_ours_line(b"GET http://x/healthz HTTP/1.1"));
        assert!(!is_ours_line(b"PRI * HTTP/2.0"));
        assert!(!is_ours_line(b"GET /v3/workflow/abc/events x HTTP/1.1"));
    }

    #[test]
    fn a_head_with_an_undeclared_or_long_body_or_an_upgrade_is_left_to_hyper() {
        let ok = b"GET /v3/workflow/a/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
        let (r, body) = parse(ok).expect("a plain GET is answered here");
        assert_eq!((r.uri().path(), body), ("/v3/workflow/a/events", 0));
        assert_eq!(r.headers()["accept"], "text/event-stream");
        let post = b"POST /v3/workflow/start HTTP/1.1\r\nHost: x\r\nContent-Length: 42\r\n\r\n";
        let (r, body) = parse(post).expect("a POST with a declared body is answered here");
        assert_eq!((r.method(), body), (&Method::POST, 42));
        for bad in [
            &b"POST /a HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"[..],
            b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"POST /a HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /v3/workflow/a/events HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /v3/workflow/a/events HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET /v3/workflow/a/events HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }

    /// The listener's own path against hyper's, on generated requests: the same router behind
    /// two listeners, one with `hyper_only`, must give the same answers (status line, headers
    /// but `date`, decoded body) to the same requests on one kept-alive connection.
    mod against_hyper {
        use super::super::*;
        use axum::extract::{Path, Query};
        use axum::routing::get;
        use proptest::prelude::*;
        use std::collections::BTreeMap;
        use std::sync::LazyLock;

        /// What the query asks for (status, a streamed body in parts, a header), and the
        /// request as the router saw it, so a difference in parsing or writing shows.
        async fn echo(
            method: Method,
            Path(id): Path<String>,
            Query(q): Query<BTreeMap<String, String>>,
            headers: HeaderMap,
            sent: Bytes,
        ) -> Response<Body> {
            let status = q
                .get("status")
                .and_then(|s| s.parse().ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::OK);
            let mut seen: Vec<String> = headers
                .iter()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v.as_bytes())))
                .collect();
            seen.sort();
            let text = format!(
                "{method} id={id}\n{}\n{}\n",
                seen.join("\n"),
                String::from_utf8_lossy(&sent)
            );
            let parts: usize = q.get("parts").and_then(|p| p.parse().ok()).unwrap_or(0);
            let body = match parts {
                0 => Body::from(text),
                n => Body::from_stream(futures::stream::iter(
                    (0..n).map(move |i| Ok::<_, io::Error>(Bytes::from(format!("{i}:{text}")))),
                )),
            };
            let mut r = Response::builder().status(status);
            if let Some(h) = q.get("h") {
                r = r.header("x-asked", h.as_str());
            }
            r.body(body).expect("a valid response")
        }

        async fn serve(hyper_only: bool) -> SocketAddr {
            let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = tcp.local_addr().unwrap();
            let router = Router::new().route(routes::EVENTS.template(), get(echo).post(echo).put(echo).delete(echo));
            let connections = Connections::new(ConnConfig {
                hyper_only,
                ..Default::default()
            });
            let l = Listener::new(tcp, router, connections, TaskTracker::new(), CancellationToken::new());
            tokio::spawn(l.run());
            addr
        }

        /// (runtime, the listener's address, hyper's), started once for all cases.
        static SERVERS: LazyLock<(tokio::runtime::Runtime, SocketAddr, SocketAddr)> = LazyLock::new(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let (ours, theirs) = rt.block_on(async { (serve(false).await, serve(true).await) });
            (rt, ours, theirs)
        });

        /// One response, normalised: status line, sorted headers without `date`, decoded body.
        #[derive(Debug, PartialEq)]
        struct Answer {
            status: String,
            headers: Vec<(String, String)>,
            body: Vec<u8>,
        }

        async fn fill(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => {
                    buf.extend_from_slice(&chunk[..n]);
                    true
                }
                _ => false,
            }
        }

        /// Reads one response off `buf` (filled from `tcp` as needed).
        async fn read_answer(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Answer> {
            let (head_len, code, status, mut headers) = loop {
                let mut hs = [httparse::EMPTY_HEADER; 64];
                let mut r = httparse::Response::new(&mut hs);
                if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
                    let status = format!("{} {}", r.code?, r.reason?);
                    let headers: Vec<(String, String)> = r
                        .headers
                        .iter()
                        .map(|h| {
                            let v = String::from_utf8_lossy(h.value).into_owned();
                            (h.name.to_ascii_lowercase(), v)
                        })
                        .collect();
                    break (n, r.code?, status, headers);
                }
                if !fill(tcp, buf).await {
                    return None;
                }
            };
            buf.drain(..head_len);
            let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let mut body = Vec::new();
            // 204 and 304 answers have no body whatever their headers say. (hyper writes the
            // length of the body it drops on a 204, which RFC 9110 forbids; the listener does
            // not, and the length is not compared for these.)
            let bodiless = code == 204 || code == 304;
            if bodiless {
                headers.retain(|(k, _)| k != "content-length");
            } else if get("transfer-encoding").is_some_and(|v| v == "chunked") {
                loop {
                    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if !fill(tcp, buf).await {
                            return None;
                        }
                        continue;
                    };
                    let size = usize::from_str_radix(std::str::from_utf8(&buf[..eol]).ok()?, 16).ok()?;
                    while buf.len() < eol + 2 + size + 2 {
                        if !fill(tcp, buf).await {
                            return None;
                        }
                    }
                    body.extend_from_slice(&buf[eol + 2..eol + 2 + size]);
                    buf.drain(..eol + 2 + size + 2);
                    if size == 0 {
                        break;
                    }
                }
            } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
                while buf.len() < n {
                    if !fill(tcp, buf).await {
                        return None;
                    }
                }
                body = buf.drain(..n).collect();
            }
            headers.retain(|(k, _)| k != "date");
            headers.sort();
            Some(Answer { status, headers, body })
        }

        async fn exchange(addr: SocketAddr, requests: &[Vec<u8>]) -> Vec<Option<Answer>> {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            let mut out = Vec::new();
            for r in requests {
                // In two writes, so a head or a body arrives in parts.
                let (a, b) = r.split_at(r.len() / 2);
                let sent = async {
                    tcp.write_all(a).await?;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    tcp.write_all(b).await
                };
                if sent.await.is_err() {
                    out.push(None);
                    break;
                }
                let a = read_answer(&mut tcp, &mut buf).await;
                let last = a.is_none();
                out.push(a);
                if last {
                    break;
                }
            }
            out
        }

        fn request() -> impl Strategy<Value = Vec<u8>> {
            let id = "[A-Za-z0-9._~-]{1,8}(%2[0-9A-F])?";
            let status = prop::sample::select(vec![200u16, 201, 204, 304, 400, 404, 500]);
            let header = (
                prop::sample::select(vec!["Accept", "X-Thing", "x-thing", "Last-Event-ID", "Cache-Control"]),
                "[!-~]([ !-~]{0,12}[!-~])?",
            );
            let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]);
            (
                (method, id),
                prop::option::of(status),
                0usize..3,
                prop::option::of("[a-z0-9]{0,10}"),
                prop::collection::vec(header, 0..4),
                prop::option::of("[ -~]{0,40}"),
                any::<bool>(),
            )
                .prop_map(|((method, id), status, parts, asked, headers, body, close)| {
                    let mut q = vec![format!("parts={parts}")];
                    q.extend(status.map(|s| format!("status={s}")));
                    q.extend(asked.map(|h| format!("h={h}")));
                    let mut r = format!(
                        "{method} /v3/workflow/{id}/events?{} HTTP/1.1\r\nHost: x\r\n",
                        q.join("&")
                    );
                    for (k, v) in headers {
                        r.push_str(&format!("{k}: {v}\r\n"));
                    }
                    if let Some(b) = &body {
                        r.push_str(&format!("Content-Length: {}\r\n", b.len()));
                    }
                    if close {
                        r.push_str("Connection: close\r\n");
                    }
                    r.push_str("\r\n");
                    r.push_str(body.as_deref().unwrap_or_default());
                    r.into_bytes()
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            #[test]
            fn the_listener_answers_requests_as_hyper_does(
                requests in prop::collection::vec(request(), 1..4)
            ) {
                let (rt, ours, theirs) = &*SERVERS;
                let (a, b) = rt.block_on(async { (exchange(*ours, &requests).await, exchange(*theirs, &requests).await) });
                prop_assert!(a.first().is_some_and(Option::is_some), "no answer: {a:?}");
                let sent: Vec<_> = requests.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect();
                prop_assert_eq!(a, b, "for {:#?}", sent);
            }
        }
    }
}
