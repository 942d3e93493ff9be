//! The TCP plumbing the watch and GT06 listeners share, in the shape of mini-redis: an accept
//! loop bounded by a semaphore, one task per connection, and a [`Connection`] that owns a
//! receive buffer and cuts frames from it (check → parse → advance), never assuming that one
//! `read()` is one message.
//!
//! Each connection has its own task, read timeout and frame size cap, so a slow, silent or
//! garbage-sending device costs only its own task and buffer and never holds up another.
//!
//! The two protocols run one connection loop, [`serve_connection`]: frame, identify, refresh the
//! registration, store, then reply. What truly differs (framing, which frames name the device,
//! what a frame stores and how it is acknowledged) is a [`DeviceProtocol`], so a fix to the
//! loop (identity, the link registry, closing) reaches both protocols at once.
//!
//! Most connections are idle most of the time (a watch reports every few minutes), so what an
//! idle task holds is what 20,000 connections cost. The loop therefore boxes the work on a frame
//! (identity lookup, commit, alarms): the task's own future then only needs room for waiting on
//! bytes, not for the largest future of its frame handling.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use trygg_store::Protocol;

use crate::device::{DeviceIngest, Outgoing, Session};
use crate::{DeviceMetrics, IngestError};
use tokio::task::JoinSet;

/// How long a reply or command may take to be written before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a protocol's framer found at the front of the buffer.
#[derive(Debug)]
pub(crate) enum Cut<F> {
    /// More bytes are needed.
    Incomplete,
    /// A frame: remove `consumed` bytes, of which `skipped` were garbage before it.
    Frame { frame: F, consumed: usize, skipped: usize },
    /// A broken frame: remove `consumed` bytes and go on.
    Drop { consumed: usize, reason: &'static str },
    /// The stream cannot be framed (too large, no frame start): close the connection.
    Close(String),
}

/// What [`Connection::read_frame`] returns.
#[derive(Debug)]
pub(crate) enum Read<F> {
    /// A frame, and how many garbage bytes came before it.
    Frame(F, usize),
    /// A broken frame was dropped.
    Dropped(&'static str),
}

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The stream cannot be framed.
    #[error("{0}")]
    Unframeable(String),
    /// A write did not complete in time.
    #[error("write timed out")]
    WriteTimeout,
}

/// A device connection: the socket and the bytes received but not yet framed.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
}

/// Room for a typical frame (100–300 bytes) when reading; a longer one grows the buffer, up to
/// the frame cap.
const READ_ROOM: usize = 256;

impl Connection {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self { stream, buffer: BytesMut::new() }
    }

    /// The next frame, or `None` when the peer closed cleanly between frames.
    ///
    /// While nothing is buffered it waits for the socket without holding a buffer: most
    /// connections are idle most of the time, and there are tens of thousands of them.
    ///
    /// Cancel-safe: the only await is the wait for the socket, so a frame is never lost when
    /// a `select!` picks another branch (a command to send, a shutdown).
    pub(crate) async fn read_frame<F>(
        &mut self,
        cut: impl Fn(&[u8]) -> Cut<F>,
    ) -> Result<Option<Read<F>>, ConnectionError> {
        loop {
            match cut(&self.buffer) {
                Cut::Incomplete => {}
                Cut::Frame { frame, consumed, skipped } => {
                    self.buffer.advance(consumed);
                    return Ok(Some(Read::Frame(frame, skipped)));
                }
                Cut::Drop { consumed, reason } => {
                    self.buffer.advance(consumed.min(self.buffer.len()));
                    return Ok(Some(Read::Dropped(reason)));
                }
                Cut::Close(reason) => return Err(ConnectionError::Unframeable(reason)),
            }
            if self.buffer.is_empty() && self.buffer.capacity() > 0 {
                self.buffer = BytesMut::new();
            }
            self.stream.readable().await?;
            self.buffer.reserve(READ_ROOM);
            match self.stream.try_read_buf(&mut self.buffer) {
                Ok(0) => {
                    return if self.buffer.iter().all(u8::is_ascii_whitespace) {
                        Ok(None)
                    } else {
                        Err(ConnectionError::Truncated)
                    };
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes bytes (a reply or a command), bounded by a timeout.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnectionError> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(bytes)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ConnectionError::WriteTimeout),
        }
    }
}

/// What one TCP device protocol does differently; [`serve_connection`] does the rest.
pub(crate) trait DeviceProtocol {
    /// A frame cut from the stream, with whatever of its content is read once for both the
    /// identity check and [`Self::store`].
    type Frame: Send + Sync;
    /// The protocol, for identity, metrics and logs.
    const PROTOCOL: Protocol;
    /// The device in log lines ("Watch", "GT06 tracker").
    const NAME: &'static str;

    /// Frames bytes: what is at the front of `buf`, frames capped at `max` bytes.
    fn cut(buf: &[u8], max: usize) -> Cut<Self::Frame>;
    /// The frame counter's outcome for a frame that was cut: `ok`, or what was off about it.
    fn outcome(frame: &Self::Frame) -> &'static str;
    /// The device id the frame names, if it names one (a watch frame always, a GT06 login).
    fn claimed_id(frame: &Self::Frame) -> Option<&str>;
    /// Takes into the session what an identifying frame says besides the id; called on the
    /// first identification and on every repeated one.
    fn identified(_session: &mut Session, _frame: &Self::Frame) {}
    /// The maker prefix registered with the connection, used in commands.
    fn maker(_frame: &Self::Frame) -> &str {
        ""
    }
    /// Stores what a frame of an identified device carries. `Ok` means the reply may be sent.
    fn store(
        ctx: &DeviceIngest,
        session: &Session,
        frame: &Self::Frame,
    ) -> impl Future<Output = Result<(), IngestError>> + Send;
    /// The reply (acknowledgement) to a stored frame, if the frame wants one.
    fn reply(frame: &Self::Frame) -> Option<Vec<u8>>;
}

/// Serves one device connection until it closes, misbehaves or the server stops.
///
/// The first frame that names a device identifies the connection (it must be registered under
/// this protocol); frames before it are dropped and counted, and a later frame naming another
/// device closes the connection. Each frame's data is committed before its reply is written:
/// a device that gets no reply resends, and the connection stays. `_slot` is the connection's
/// place under the connection limit, given back when it ends.
pub(crate) async fn serve_connection<P: DeviceProtocol>(
    ctx: Arc<DeviceIngest>,
    socket: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let protocol = P::PROTOCOL;
    ctx.metrics.connection_opened(protocol);
    let mut conn = Connection::new(socket);
    let outgoing = Arc::new(Outgoing::default());
    let mut session: Option<(Session, u64)> = None;
    let max = ctx.config.max_frame_bytes;
    let reason = loop {
        let next = next_frame(
            &mut conn,
            |b| P::cut(b, max),
            ctx.config.read_timeout,
            &outgoing,
            &mut shutdown,
            &ctx.metrics,
            protocol,
            peer,
        )
        .await;
        let frame = match next {
            Ok(frame) => frame,
            Err(reason) => break reason,
        };
        ctx.metrics.frame(protocol, P::outcome(&frame));

        if let Some(id) = P::claimed_id(&frame) {
            match &mut session {
                None => match Box::pin(ctx.identify(id, protocol)).await {
                    Ok(mut s) => {
                        P::identified(&mut s, &frame);
                        let connection =
                            ctx.links.open(&s.device, protocol, P::maker(&frame), outgoing.clone());
                        Box::pin(ctx.heard(&s, None)).await;
                        tracing::info!(device = %s.device, %peer, "{} connected", P::NAME);
                        session = Some((s, connection));
                    }
                    Err(refused) => break format!("device refused ({refused:?})"),
                },
                Some((s, _)) if s.device.as_str() != id => {
                    ctx.metrics.refused(protocol, "device_id_changed");
                    break format!("device id changed from {} on the connection", s.device);
                }
                Some((s, _)) => P::identified(s, &frame),
            }
        }
        let Some((s, _)) = &mut session else {
            ctx.metrics.frame(protocol, "before_login");
            tracing::debug!(%peer, "{} frame before login dropped", P::NAME);
            continue;
        };
        if let Err(refused) = Box::pin(ctx.refresh(s)).await {
            break format!("device no longer accepted ({refused:?})");
        }

        match Box::pin(P::store(&ctx, s, &frame)).await {
            Ok(()) => {
                if let Some(reply) = P::reply(&frame)
                    && let Err(e) = conn.write(&reply).await
                {
                    break format!("writing a reply failed: {e}");
                }
            }
            // Nothing was stored: no reply, so the device resends. The connection stays.
            Err(e) => {
                tracing::warn!(device = %s.device, error = %e, "{} frame not stored; not acknowledged", P::NAME)
            }
        }
    };
    if let Some((s, connection)) = &session {
        ctx.links.close(&s.device, *connection);
        tracing::info!(device = %s.device, %peer, reason, "{} disconnected", P::NAME);
    } else {
        tracing::debug!(%peer, reason, "{} connection closed before it was identified", P::NAME);
    }
    ctx.metrics.connection_closed(protocol);
}

/// The connection's next frame, writing meanwhile the commands queued for the device, counting
/// broken frames (dropped, the connection goes on) and garbage skipped before a frame. `Err`
/// says why the connection ends: the device closed or went silent past `read_timeout`, the
/// stream cannot be framed, a command could not be written, or the server is stopping.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn next_frame<F>(
    conn: &mut Connection,
    cut: impl Fn(&[u8]) -> Cut<F>,
    read_timeout: Duration,
    commands: &Outgoing,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &DeviceMetrics,
    protocol: Protocol,
    peer: SocketAddr,
) -> Result<F, String> {
    loop {
        let read = tokio::select! {
            read = tokio::time::timeout(read_timeout, conn.read_frame(&cut)) => read,
            command = commands.next() => {
                conn.write(&command).await.map_err(|e| format!("writing a command failed: {e}"))?;
                continue;
            }
            () = stopped(shutdown) => return Err("server shutting down".to_owned()),
        };
        match read {
            Err(_) => return Err("read timeout".to_owned()),
            Ok(Ok(None)) => return Err("closed by the device".to_owned()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(Some(Read::Dropped(why)))) => {
                metrics.frame(protocol, "malformed");
                tracing::debug!(%peer, protocol = protocol.as_str(), reason = why, "Malformed frame dropped");
            }
            Ok(Ok(Some(Read::Frame(frame, skipped)))) => {
                metrics.garbage(protocol, skipped);
                return Ok(frame);
            }
        }
    }
}

/// Resolves once shutdown has been requested (or the sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Accepts connections until shutdown, at most `limit` open at once (shared by all listeners),
/// one task each; then waits for the open ones to finish their current frame and close. The
/// handler's future holds the connection's permit until it ends.
pub(crate) async fn accept_loop<H, Fut>(
    name: &'static str,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(TcpStream, SocketAddr, watch::Receiver<bool>, OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    loop {
        // Wait for a free slot before accepting: at the limit, new devices wait in the backlog.
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stopped(&mut shutdown) => break,
        };
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, listener = name, "Accepting a device connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let _ = socket.set_nodelay(true);
        // The handler's future is spawned as it is: wrapped in an `async` block that also held
        // the permit, it was stored twice in the task (once captured, once being awaited),
        // 1.5 KiB more for every open connection.
        tasks.spawn(handler(socket, peer, shutdown.clone(), permit));
        while tasks.try_join_next().is_some() {}
    }
    tracing::info!(
        listener = name,
        open = tasks.len(),
        "Device listener stopped accepting; closing connections"
    );
    while tasks.join_next().await.is_some() {}
}
