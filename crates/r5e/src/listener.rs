//! The accept loop of `r5e serve`, the same for TLS and plain HTTP, with limits that hold when
//! clients misbehave:
//!
//! - at most [`Limits::max_connections`] connections are open at once: the loop takes a slot
//!   before it accepts, so beyond the limit new connections wait in the kernel's listen backlog
//!   instead of being accepted and starved;
//! - a client has [`Limits::handshake_timeout`] to finish the TLS handshake, and
//!   [`Limits::header_timeout`] to start talking and, on HTTP/1, to send each request's headers
//!   (an idle keep-alive connection is closed after it too);
//! - HTTP/2 connections are pinged every [`H2_KEEP_ALIVE`] and closed when a ping goes
//!   unanswered that long;
//! - when `accept` itself fails (out of file descriptors), the loop waits, longer after each
//!   failure up to [`MAX_BACKOFF`], and logs at most one line per [`LOG_EVERY`], saying how many
//!   failures it did not log.
//!
//! A stop signal ends accepting; open connections get [`DRAIN`] to finish.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Longest wait for open connections to finish after a stop signal.
pub const DRAIN: Duration = Duration::from_secs(10);
/// How often an HTTP/2 connection is pinged, and how long the answer may take.
pub const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// First wait after a failed accept; it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest wait between two accepts that fail.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one log line about failing accepts per this long.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// The limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time for a client's first bytes, and for each HTTP/1 request's headers.
    pub header_timeout: Duration,
}

/// Serve `app` on `listener` (over TLS with `tls`) until `stop` completes, then let open
/// connections finish for up to [`DRAIN`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    limits: Limits,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut http = Builder::new(TokioExecutor::new());
    http.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    http.http2().timer(TokioTimer::new()).keep_alive_interval(H2_KEEP_ALIVE).keep_alive_timeout(H2_KEEP_ALIVE);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut failures = AcceptFailures::default();
    let mut stop = std::pin::pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut stop => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => {
                failures.succeeded(Instant::now());
                a
            }
            // The client went away before it was accepted: nothing wrong here.
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "a connection ended before it was accepted");
                continue;
            }
            Err(e) => {
                let wait = failures.failed(&e, Instant::now());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = &mut stop => break,
                }
            }
        };
        let (tls, app, http, watcher) = (tls.clone(), app.clone(), http.clone(), graceful.watcher());
        tokio::spawn(async move {
            connection(tcp, tls, app, http, watcher, limits).await;
            tracing::trace!(%peer, "connection closed");
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        eprintln!("stopping with connections still open after {DRAIN:?}");
    }
}

/// Accept errors that concern one connection only, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

/// One connection, from the TLS handshake to its end.
async fn connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    http: Builder<TokioExecutor>,
    watcher: Watcher,
    limits: Limits,
) {
    let _ = tcp.set_nodelay(true);
    match tls {
        None => serve_http(tcp, app, http, watcher, limits).await,
        Some(acceptor) => match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => serve_http(stream, app, http, watcher, limits).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        },
    }
}

/// HTTP/1 or HTTP/2 on `io`, whichever the client speaks.
async fn serve_http<I>(io: I, app: axum::Router, http: Builder<TokioExecutor>, watcher: Watcher, limits: Limits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // hyper would wait for these first bytes with no time limit, before its own header timer
    // starts: a client that connects and says nothing would hold its slot forever.
    let (version, io) = match tokio::time::timeout(limits.header_timeout, sniff(io)).await {
        Ok(Ok(Some(sniffed))) => sniffed,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return tracing::debug!(error = %e, "reading the first bytes failed"),
        Err(_) => return tracing::debug!("the client sent nothing in time"),
    };
    let http = match version {
        Version::H1 => http.http1_only(),
        Version::H2 => http.http2_only(),
    };
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = http.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The protocol a client speaks, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    H1,
    H2,
}

/// What an HTTP/2 client sends first (with prior knowledge, or after ALPN chose `h2`).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Read until the first bytes tell HTTP/2's preface from anything else; `None` if the client
/// closed without a byte. The bytes read are given back in front of the stream.
async fn sniff<I: AsyncRead + Unpin>(mut io: I) -> io::Result<Option<(Version, Replay<I>)>> {
    let mut seen = Vec::with_capacity(H2_PREFACE.len());
    let mut chunk = [0u8; 24];
    loop {
        let n = io.read(&mut chunk[..H2_PREFACE.len() - seen.len()]).await?;
        if n == 0 {
            if seen.is_empty() {
                return Ok(None);
            }
            // Let HTTP/1 report the cut-off request.
            return Ok(Some((Version::H1, Replay::new(seen, io))));
        }
        seen.extend_from_slice(&chunk[..n]);
        if !H2_PREFACE.starts_with(&seen) {
            return Ok(Some((Version::H1, Replay::new(seen, io))));
        }
        if seen.len() == H2_PREFACE.len() {
            return Ok(Some((Version::H2, Replay::new(seen, io))));
        }
    }
}

/// A stream whose first bytes, already read, are read again.
#[derive(Debug)]
struct Replay<I> {
    prefix: Vec<u8>,
    at: usize,
    inner: I,
}

impl<I> Replay<I> {
    fn new(prefix: Vec<u8>, inner: I) -> Self {
        Replay { prefix, at: 0, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Replay<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replay<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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

/// Failed accepts: how long to wait before the next one, and whether to say so. At most one
/// line about failures and one about recovering are logged per [`LOG_EVERY`], however often a
/// server at the edge of its descriptors goes from one to the other.
#[derive(Debug, Default)]
struct AcceptFailures {
    /// Failures since the last accept that worked.
    in_a_row: u32,
    /// Failures not logged since the last line about failures.
    unlogged: u64,
    /// When the last line about failures was logged.
    failure_logged_at: Option<Instant>,
    /// When the last line about accepting again was logged.
    recovery_logged_at: Option<Instant>,
}

/// Whether a line last logged at `last` may be logged again at `now`.
fn may_log(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
}

impl AcceptFailures {
    /// Record a failure at `now`; returns how long to wait before accepting again.
    fn failed(&mut self, e: &io::Error, now: Instant) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        if may_log(self.failure_logged_at, now) {
            tracing::warn!(
                error = %e,
                "cannot accept connections (out of file descriptors?); retrying with backoff, {} \
                 more failures since the last report",
                self.unlogged
            );
            self.failure_logged_at = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        backoff(self.in_a_row)
    }

    /// Record an accept that worked at `now`, saying so after failures.
    fn succeeded(&mut self, now: Instant) {
        if self.in_a_row == 0 {
            return;
        }
        if may_log(self.recovery_logged_at, now) {
            tracing::warn!("accepting connections again after {} failures", self.in_a_row);
            self.recovery_logged_at = Some(now);
        }
        self.in_a_row = 0;
    }
}

/// The wait after the `n`th failure in a row: [`FIRST_BACKOFF`], doubling, at most
/// [`MAX_BACKOFF`].
fn backoff(n: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << n.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_and_stops_at_a_second() {
        let waits: Vec<u128> = (1..=9).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn failures_are_logged_at_most_once_per_interval_and_counted() {
        let mut f = AcceptFailures::default();
        let e = io::Error::from_raw_os_error(24);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(f.failed(&e, t0), FIRST_BACKOFF);
        assert_eq!((f.failure_logged_at, f.unlogged), (Some(t0), 0), "the first failure is logged");
        for i in 1..=100 {
            f.failed(&e, at(i * 10));
        }
        assert_eq!((f.failure_logged_at, f.unlogged), (Some(t0), 100), "a second later nothing more was logged");
        assert_eq!(f.failed(&e, at(1010)), MAX_BACKOFF);
        f.succeeded(at(1020));
        assert_eq!((f.in_a_row, f.recovery_logged_at), (0, Some(at(1020))), "recovering is logged");

        // At the edge of the limit, failing and accepting in turn: no more lines until the
        // interval has passed, and then one of each.
        for i in 0..100 {
            assert_eq!(f.failed(&e, at(1100 + i * 20)), FIRST_BACKOFF, "the backoff starts over after a success");
            f.succeeded(at(1110 + i * 20));
        }
        assert_eq!((f.failure_logged_at, f.recovery_logged_at), (Some(t0), Some(at(1020))));
        assert_eq!(f.unlogged, 201);
        let later = at(1020) + LOG_EVERY;
        f.failed(&e, later);
        f.succeeded(later);
        assert_eq!((f.failure_logged_at, f.recovery_logged_at, f.unlogged), (Some(later), Some(later), 0));
    }

    #[tokio::test]
    async fn sniffing_tells_http2_from_http1_and_gives_the_bytes_back() {
        let cases: [(&[u8], Option<Version>); 4] = [
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Some(Version::H1)),
            (b"PUT / HTTP/1.1\r\n\r\n", Some(Version::H1)),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04", Some(Version::H2)),
            (b"", None),
        ];
        for (bytes, want) in cases {
            let (mut client, server) = tokio::io::duplex(64);
            tokio::io::AsyncWriteExt::write_all(&mut client, bytes).await.unwrap();
            drop(client);
            match (sniff(server).await.unwrap(), want) {
                (Some((version, mut io)), Some(want)) => {
                    assert_eq!(version, want);
                    let mut all = Vec::new();
                    io.read_to_end(&mut all).await.unwrap();
                    assert_eq!(all, bytes, "every byte is read again, in order");
                }
                (None, None) => {}
                (got, want) => panic!("{bytes:?}: got {:?}, want {want:?}", got.map(|g| g.0)),
            }
        }
    }
}
