//! Accepted connections, bounded: how many may be open, how long one may
//! stay silent before its first byte or idle between requests, and what the
//! accept loop does when the process runs out of descriptors.
//!
//! Without these, sockets that never send a byte were never closed and had
//! no cap: enough of them exhausted the descriptor limit, and the accept
//! loop then spun on `EMFILE` while `/healthz` went unanswered.
//!
//! - [`accept`]: the accept loop (backoff on `EMFILE` and its kin, shedding
//!   beyond the cap), yielding [`Tracked`] streams;
//! - [`Tracked`]: a stream that fails its reads once it has been silent too
//!   long (first byte, idle) or evicted, and frees its slot when dropped;
//! - at the cap, a new connection takes the slot of the oldest one that has
//!   not sent a byte yet (it has nothing in flight); with none, the new one
//!   is closed at once.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

/// The bounds on one listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Longest a new connection may stay silent before its first byte.
    pub first_byte: Duration,
    /// Longest a connection may go without a byte either way.
    pub idle: Duration,
}

/// Descriptors kept free for the database, files and the like: a quarter of
/// the limit, at most 1,024.
pub fn default_max_connections(descriptor_limit: u64) -> usize {
    let reserve = (descriptor_limit / 4).min(1024);
    usize::try_from(descriptor_limit.saturating_sub(reserve).max(16)).unwrap_or(usize::MAX)
}

/// Raises the soft descriptor limit to the hard one (as Go's runtime does at
/// start-up) and returns the limit now in force.
pub fn raise_descriptor_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::debug!(%error, "cannot read or raise the descriptor limit");
            1024
        }
    }
}

/// What every connection shares with the accept loop.
struct Shared {
    limits: ConnectionLimits,
    /// Open connections by id.
    open: Mutex<HashMap<u64, Arc<State>>>,
    next_id: AtomicU64,
    /// Time zero for the millisecond clocks in [`State`].
    epoch: Instant,
}

/// One connection as the accept loop sees it.
struct State {
    accepted_ms: u64,
    spoke: AtomicBool,
    last_activity_ms: AtomicU64,
    evicted: AtomicBool,
    /// Wakes the connection's reader so it notices an eviction.
    waker: AtomicWaker,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a new connection, making room at the cap if one may give
    /// its slot; `None` if the new one must be shed.
    fn admit(self: &Arc<Self>) -> Option<(u64, Arc<State>)> {
        let now = self.now_ms();
        let mut open = self.open.lock().ok()?;
        if open.len() >= self.limits.max_connections {
            // The oldest connection that has not sent a byte. One that has
            // spoke may have a call in flight (or a live tail), and an
            // attacker could otherwise push real clients out one by one.
            let victim = open
                .iter()
                .filter(|(_, s)| {
                    !s.evicted.load(Ordering::Relaxed) && !s.spoke.load(Ordering::Relaxed)
                })
                .map(|(id, s)| (s.accepted_ms, *id))
                .min()
                .map(|(_, id)| id)?;
            if let Some(state) = open.remove(&victim) {
                state.evicted.store(true, Ordering::Relaxed);
                state.waker.wake();
                metrics::counter!("gatehouse_connections_evicted_total").increment(1);
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(State {
            accepted_ms: now,
            spoke: AtomicBool::new(false),
            last_activity_ms: AtomicU64::new(now),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        open.insert(id, state.clone());
        metrics::gauge!("gatehouse_connections_open").set(open.len() as f64);
        Some((id, state))
    }

    fn release(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
            metrics::gauge!("gatehouse_connections_open").set(open.len() as f64);
        }
    }
}

/// An accepted stream within the listener's bounds.
pub struct Tracked<S> {
    inner: S,
    id: u64,
    state: Arc<State>,
    shared: Arc<Shared>,
    /// Fires at the first-byte deadline, then at each idle deadline.
    timer: Pin<Box<Sleep>>,
}

impl<S> Tracked<S> {
    fn new(inner: S, id: u64, state: Arc<State>, shared: Arc<Shared>) -> Self {
        let timer = Box::pin(tokio::time::sleep(shared.limits.first_byte));
        Self {
            inner,
            id,
            state,
            shared,
            timer,
        }
    }

    fn touch(&self) {
        self.state
            .last_activity_ms
            .store(self.shared.now_ms(), Ordering::Relaxed);
    }

    /// `Ready(error)` once the connection has been silent too long or was
    /// evicted; otherwise registers to be woken when it might be.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        self.state.waker.register(cx.waker());
        loop {
            if self.state.evicted.load(Ordering::Relaxed) {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection evicted for a new one at the connection limit",
                ));
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = self.shared.now_ms();
            let (from, bound, what) = if self.state.spoke.load(Ordering::Relaxed) {
                let last = self.state.last_activity_ms.load(Ordering::Relaxed);
                (last, self.shared.limits.idle, "idle")
            } else {
                (
                    self.state.accepted_ms,
                    self.shared.limits.first_byte,
                    "silent",
                )
            };
            let bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
            let due = from.saturating_add(bound_ms);
            if now >= due {
                metrics::counter!("gatehouse_connections_timed_out_total", "why" => what)
                    .increment(1);
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connection {what} for longer than {bound:?}"),
                ));
            }
            // Activity moved the deadline on: wait for the new one.
            let wait = Duration::from_millis(due - now);
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::now() + wait);
        }
    }
}

impl<S> Tracked<S> {
    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        self.shared.release(self.id);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.state.evicted.load(Ordering::Relaxed)
            && let Poll::Ready(error) = this.poll_expired(cx)
        {
            return Poll::Ready(Err(error));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    if !this.state.spoke.swap(true, Ordering::Relaxed) {
                        // From now on the timer keeps the idle deadline.
                        let idle = this.shared.limits.idle;
                        this.timer
                            .as_mut()
                            .reset(tokio::time::Instant::now() + idle);
                    }
                    this.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match this.poll_expired(cx) {
                Poll::Ready(error) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        written
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

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Tracked<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Errors of `accept` that mean the process (or system) is out of
/// descriptors or memory: retrying at once would spin.
fn out_of_resources(error: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM.
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Accepts connections on `listener` until `stop`, within `limits`: each
/// tuned (`TCP_NODELAY`, keep-alive), counted against the cap, and timed.
pub fn accept(
    listener: TcpListener,
    limits: ConnectionLimits,
    keepalive: Option<Duration>,
    stop: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Tracked<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let shared = Arc::new(Shared {
        limits,
        open: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    tokio::spawn(async move {
        let mut backoff = Duration::ZERO;
        let mut last_warning: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::ZERO;
                    stream
                }
                Err(error) if out_of_resources(&error) => {
                    // Out of descriptors: pause (5 ms doubling to 1 s), do
                    // not spin; warn at most once a second.
                    metrics::counter!("gatehouse_accept_errors_total").increment(1);
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(%error, pause = ?backoff, "cannot accept connections: out of descriptors");
                        last_warning = Some(Instant::now());
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => continue,
                    }
                }
                Err(error) => {
                    // A connection reset before it was accepted and the like.
                    tracing::debug!(%error, "accept failed");
                    continue;
                }
            };
            crate::startup::tune_socket(&stream, keepalive);
            let Some((id, state)) = shared.admit() else {
                metrics::counter!("gatehouse_connections_shed_total").increment(1);
                tracing::debug!("at the connection limit; closing a new connection");
                drop(stream);
                continue;
            };
            let tracked = Tracked::new(stream, id, state, shared.clone());
            if tx.send(Ok(tracked)).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_stream::StreamExt as _;

    async fn listen(
        limits: ConnectionLimits,
    ) -> (
        std::net::SocketAddr,
        tokio_stream::wrappers::ReceiverStream<io::Result<Tracked<TcpStream>>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (
            addr,
            accept(listener, limits, None, CancellationToken::new()),
        )
    }

    /// Echoes what it reads until the stream fails or ends; returns the error.
    async fn serve(mut stream: Tracked<TcpStream>) -> Option<io::Error> {
        let mut buf = [0u8; 64];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => stream.write_all(&buf[..n]).await.ok()?,
                Err(error) => return Some(error),
            }
        }
    }

    #[tokio::test]
    async fn silent_and_idle_connections_are_closed() {
        let limits = ConnectionLimits {
            max_connections: 8,
            first_byte: Duration::from_millis(200),
            idle: Duration::from_millis(400),
        };
        let (addr, mut incoming) = listen(limits).await;
        let _silent = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let error = serve(incoming.next().await.unwrap().unwrap())
            .await
            .unwrap();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));

        // A connection that speaks keeps going while it is busy, then idles out.
        let mut client = TcpStream::connect(addr).await.unwrap();
        let server = tokio::spawn(serve(incoming.next().await.unwrap().unwrap()));
        for _ in 0..6 {
            client.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            client.read_exact(&mut one).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let error = server.await.unwrap().unwrap();
        assert!(error.to_string().contains("idle"), "{error}");
    }

    #[tokio::test]
    async fn at_the_cap_a_new_connection_takes_a_silent_ones_slot() {
        let limits = ConnectionLimits {
            max_connections: 2,
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        };
        let (addr, mut incoming) = listen(limits).await;
        let mut talker = TcpStream::connect(addr).await.unwrap();
        let talking = tokio::spawn(serve(incoming.next().await.unwrap().unwrap()));
        talker.write_all(b"hi").await.unwrap();
        let mut two = [0u8; 2];
        talker.read_exact(&mut two).await.unwrap();
        let _silent = TcpStream::connect(addr).await.unwrap();
        let silent = tokio::spawn(serve(incoming.next().await.unwrap().unwrap()));
        // The third connection evicts the silent one, not the talker.
        let mut third = TcpStream::connect(addr).await.unwrap();
        let third_served = tokio::spawn(serve(incoming.next().await.unwrap().unwrap()));
        let error = silent.await.unwrap().unwrap();
        assert!(error.to_string().contains("evicted"), "{error}");
        third.write_all(b"ok").await.unwrap();
        third.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ok");
        talker.write_all(b"on").await.unwrap();
        talker.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"on");
        // With no connection to give way, a fourth is closed at once.
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        drop((talking, third_served));
    }

    #[test]
    fn the_default_cap_leaves_descriptors_free() {
        assert_eq!(default_max_connections(256), 192);
        assert_eq!(default_max_connections(1024), 768);
        assert_eq!(default_max_connections(1 << 20), (1 << 20) - 1024);
        assert_eq!(default_max_connections(8), 16);
    }
}
