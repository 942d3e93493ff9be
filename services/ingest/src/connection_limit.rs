//! A bound on the open connections of an HTTP listener.
//!
//! Every open HTTP connection costs the server its buffers (hyper reads ahead up to ~400 KiB)
//! and, while a request is in flight, whatever its handler holds. Without a bound, a flood of
//! large posts — even with a bad token — takes memory without limit: 500 concurrent 0.5 MB
//! device posts once grew the server from 19 to 503 MiB. With one, the connection past the limit
//! waits in the listen backlog, as the device TCP listeners' connections do, and memory stays
//! bounded by the limit; the clients it keeps waiting time out and retry.
//!
//! [`LimitedListener`] is an [`axum::serve::Listener`]: each accepted connection holds a
//! permit until it closes, and the next `accept` waits for a free one.
//!
//! Connections past a limit wait in the listen backlog, so the backlog must hold a burst:
//! [`listen`] binds every listener of trygg (HTTP and devices) with room for
//! [`LISTEN_BACKLOG`]. `TcpListener::bind` gives 128 (`ss -ltn` showed it): a flood of 1,000
//! logins against the HTTP limit of 256 overflowed it, the kernel fell back on SYN cookies and
//! now and then reset a connection mid-request ("connection reset by peer" instead of an
//! answer); 19,900 watches reconnecting after an outage overflowed it thousands of times.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections the kernel completes and holds for a listener until it accepts them. The kernel
/// caps it at `net.core.somaxconn` (4,096 on current kernels).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listening socket as `TcpListener::bind` does (address reuse on Unix), with a backlog
/// of [`LISTEN_BACKLOG`].
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A TCP listener that keeps at most `max` connections open.
#[derive(Debug)]
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl LimitedListener {
    /// Wraps `inner`; at least one connection is always allowed.
    pub fn new(inner: TcpListener, max: usize) -> Self {
        Self::sharing(inner, Arc::new(Semaphore::new(max.max(1))))
    }

    /// Wraps `inner`, its connections counting against `permits` with those of other listeners
    /// (the OsmAnd listener shares the device connection limit with the TCP protocols).
    pub fn sharing(inner: TcpListener, permits: Arc<Semaphore>) -> Self {
        Self { inner, permits }
    }

    /// Connections that may still be opened now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Never closed: the listener owns the semaphore.
        let permit = self.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        (LimitedStream { stream, _permit: permit }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection; its permit returns to the listener when it is dropped.
#[derive(Debug)]
pub struct LimitedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get_over(stream: &mut TcpStream) -> String {
        stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0; 512];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn the_connection_past_the_limit_waits_until_one_closes() {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(LimitedListener::new(inner, 2), app).await });

        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(get_over(&mut first).await.ends_with("ok"));
        assert!(get_over(&mut second).await.ends_with("ok"));

        // The kernel completes the handshake, but the server does not take the connection.
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0; 512];
        let waited = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
        assert!(waited.is_err(), "the third connection was served while two were open");

        drop(first);
        let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("ok"));
    }

    #[tokio::test]
    async fn a_burst_past_the_default_backlog_is_held_at_once() {
        // Nobody accepts: every connection waits in the backlog, as past a connection limit.
        // Past a full backlog the kernel drops the handshake, and the client tries again only
        // a second later (then three, …).
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut connects = tokio::task::JoinSet::new();
        for _ in 0..1500 {
            connects.spawn(TcpStream::connect(addr));
        }
        let mut held = Vec::new();
        let all = tokio::time::timeout(Duration::from_millis(900), async {
            while let Some(connected) = connects.join_next().await {
                held.push(connected.unwrap().unwrap());
            }
        })
        .await;
        assert!(
            all.is_ok(),
            "{} of 1500 connections were held at once (is net.core.somaxconn below {LISTEN_BACKLOG}?)",
            held.len()
        );
    }
}
