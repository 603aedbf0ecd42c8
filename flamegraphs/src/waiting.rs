//! Which open connections are waiting for a request head, so that a
//! connection arriving past the limit can take the place of the one that has
//! waited longest, instead of waiting itself.
//!
//! A server that only counts connections can be filled by clients that open
//! them and never finish a request (slowloris): every newcomer then waits for
//! a header timeout. So [`serve_router`](crate::serve_router) closes a
//! waiting connection to admit a new one, much as nginx reuses its idle
//! connections when it runs out (nginx only those that have sent nothing
//! yet or are idle between requests; here also those that have sent part of
//! a head, which is what a slowloris client holds).
//!
//! A connection is *answering* from when its request head is complete until
//! its response's body is dropped, and is never closed for a newcomer
//! meanwhile. Otherwise it is *waiting*: since it opened, or since it last
//! wrote to its socket. Counting from the last write keeps an answer that
//! hyper still holds in its buffer (it drops a body once it has queued the
//! last chunk, before sending it) from being cut off while the client is
//! still reading it. Linux wakes a blocked writer only once a third of the
//! socket's send buffer has drained (on loopback, megabytes), so a
//! connection whose last write could not finish is *blocked*, and is closed
//! for a newcomer only once it has waited a longer bound (the header
//! timeout): a client that stops reading an answer holds its slot no longer
//! than that. A request whose head completes at the moment its connection
//! is closed for a newcomer is lost, as it would be had it arrived a moment
//! later.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use hyper::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The open connections of one server.
#[derive(Debug)]
pub(crate) struct Waiting {
    start: Instant,
    /// How long a blocked connection must have waited to be closed.
    blocked_at_least: Duration,
    open: Mutex<Vec<Arc<Connection>>>,
}

/// One open connection's state, shared by its task, its service and the
/// server's accept loop.
#[derive(Debug)]
pub(crate) struct Connection {
    start: Instant,
    /// [`ANSWERING`], [`CLOSED_FOR_NEWCOMER`], or the millisecond (since
    /// `start`) from which it has waited for a request head.
    state: AtomicU64,
    /// Where it is in [`Waiting::open`]'s list; changed only under its lock.
    index: AtomicUsize,
    /// Whether it has had a request: an idle kept-alive client, which has,
    /// is closed only after every one that has not.
    answered: AtomicBool,
    /// Whether its last write to the socket could not finish: an answer is
    /// waiting for the client to read. (hyper writes until its buffer is
    /// empty or a write cannot finish, so between two polls of the
    /// connection, bytes are left to send exactly when this is set.)
    blocked: AtomicBool,
    /// The millisecond (since `start`) of its last write, or of its opening.
    wrote_at: AtomicU64,
    closed_for_newcomer: Notify,
}

const ANSWERING: u64 = u64::MAX;
const CLOSED_FOR_NEWCOMER: u64 = u64::MAX - 1;

impl Waiting {
    /// The connections of a server that closes a blocked connection for a
    /// newcomer only after it has waited `blocked_at_least`.
    pub(crate) fn new(blocked_at_least: Duration) -> Arc<Self> {
        Arc::new(Waiting { start: Instant::now(), blocked_at_least, open: Mutex::new(Vec::new()) })
    }

    /// Counts a connection that has just opened, as waiting, until the
    /// returned handle is dropped.
    pub(crate) fn open(self: &Arc<Self>) -> Registered {
        let mut open = self.connections();
        let now = millis_since(self.start);
        let connection = Arc::new(Connection {
            start: self.start,
            state: AtomicU64::new(now),
            index: AtomicUsize::new(open.len()),
            answered: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            wrote_at: AtomicU64::new(now),
            closed_for_newcomer: Notify::new(),
        });
        open.push(Arc::clone(&connection));
        Registered { waiting: Arc::clone(self), connection }
    }

    /// Closes the connection that has waited longest for a request head, if
    /// one has waited at least `at_least` (a blocked one, at least the
    /// server's longer bound too): first among those that never had a
    /// request, then among idle kept-alive ones. Returns whether it closed
    /// one (its task drops it, and its slot, at its next poll).
    pub(crate) fn close_longest_waiting(&self, at_least: Duration) -> bool {
        let open = self.connections();
        let now = millis_since(self.start);
        let millis = |bound: Duration| u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        let (at_least, blocked_at_least) = (millis(at_least), millis(self.blocked_at_least.max(at_least)));
        loop {
            let longest = open
                .iter()
                .filter_map(|c| {
                    let since = c.state.load(Ordering::Relaxed);
                    let needed = if c.blocked.load(Ordering::Relaxed) { blocked_at_least } else { at_least };
                    let waited = since < CLOSED_FOR_NEWCOMER && now.saturating_sub(since) >= needed;
                    waited.then(|| ((c.answered.load(Ordering::Relaxed), since), c))
                })
                .min_by_key(|&(order, _)| order);
            let Some(((_, since), connection)) = longest else { return false };
            // Relaxed: the exchange only decides between this and the
            // connection's own start of an answer (both RMWs on `state`);
            // the task learns of it through the `Notify`, which synchronizes.
            let closed =
                connection.state.compare_exchange(since, CLOSED_FOR_NEWCOMER, Ordering::Relaxed, Ordering::Relaxed);
            if closed.is_ok() {
                connection.closed_for_newcomer.notify_one();
                return true;
            }
            // It began answering, or wrote, meanwhile: look again.
        }
    }

    fn connections(&self) -> MutexGuard<'_, Vec<Arc<Connection>>> {
        // The list stays whole if a holder panicked: every change is one push
        // or one swap_remove.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Milliseconds since `start`, below the two state markers.
fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX).min(CLOSED_FOR_NEWCOMER - 1)
}

/// A connection counted by [`Waiting`] until dropped.
#[derive(Debug)]
pub(crate) struct Registered {
    waiting: Arc<Waiting>,
    connection: Arc<Connection>,
}

impl Registered {
    /// Completes once the connection has been closed for a newcomer.
    pub(crate) fn closed_for_newcomer(&self) -> impl Future<Output = ()> + '_ {
        self.connection.closed_for_newcomer.notified()
    }

    /// After the shutdown signal: when to look at the connection again while
    /// it has an answer under way (a request being answered, or bytes left
    /// to send); `None` once it has none, or once it could not be written
    /// to for `stall`: hyper has no write timeout, and would wait for a
    /// client that never reads for ever. A request still being worked on
    /// has as long as it takes; only a stalled write is cut.
    pub(crate) fn answer_under_way(&self, stall: Duration) -> Option<Instant> {
        let connection = &self.connection;
        // Relaxed: a snapshot taken by the connection's own task between two
        // polls of it, which is what writes them; nothing else is read
        // through them.
        let state = connection.state.load(Ordering::Relaxed);
        if !connection.blocked.load(Ordering::Relaxed) {
            return (state == ANSWERING).then(|| Instant::now() + stall);
        }
        if state == CLOSED_FOR_NEWCOMER {
            return None;
        }
        let stalled_at = connection.start + Duration::from_millis(connection.wrote_at.load(Ordering::Relaxed)) + stall;
        (Instant::now() < stalled_at).then_some(stalled_at)
    }

    /// `service`, marking the connection answering for each request.
    pub(crate) fn track<S>(&self, service: S) -> Tracked<S> {
        Tracked { inner: service, connection: Arc::clone(&self.connection) }
    }

    /// `stream`, counting the connection's wait from each write to it.
    pub(crate) fn watch(&self, stream: TcpStream) -> Watched {
        Watched { stream, connection: Arc::clone(&self.connection) }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = self.waiting.connections();
        // Relaxed: `index` is only read and written under the lock.
        let at = self.connection.index.load(Ordering::Relaxed);
        debug_assert!(Arc::ptr_eq(&open[at], &self.connection));
        open.swap_remove(at);
        if let Some(moved) = open.get(at) {
            moved.index.store(at, Ordering::Relaxed);
        }
    }
}

impl Connection {
    /// Marks it answering until the returned guard is dropped (with the
    /// response's body); a connection already closed for a newcomer stays so.
    fn answering(self: &Arc<Self>) -> Answering {
        self.answered.store(true, Ordering::Relaxed);
        // Relaxed: see `close_longest_waiting`.
        let _ = self.state.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |state| {
            (state != CLOSED_FOR_NEWCOMER).then_some(ANSWERING)
        });
        Answering(Arc::clone(self))
    }

    /// Counts its wait from now, if it is waiting: it has just written.
    fn wrote(&self) {
        let now = millis_since(self.start);
        self.wrote_at.store(now, Ordering::Relaxed);
        // Relaxed: see `close_longest_waiting`.
        let _ = self.state.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |state| {
            (state < CLOSED_FOR_NEWCOMER && state != now).then_some(now)
        });
    }
}

/// A connection's socket, which tells it of each write.
#[derive(Debug)]
pub(crate) struct Watched {
    stream: TcpStream,
    connection: Arc<Connection>,
}

impl Watched {
    /// Tells the connection how a write went. Only a write that sent bytes
    /// counts: hyper also flushes (a no-op on a socket) each time it reads,
    /// and a slowloris client's drip would otherwise keep its wait fresh.
    fn wrote(&self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(1..)) => {
                self.connection.blocked.store(false, Ordering::Relaxed);
                self.connection.wrote();
            }
            Poll::Pending => self.connection.blocked.store(true, Ordering::Relaxed),
            Poll::Ready(_) => {}
        }
        result
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// While it lives, its connection is answering.
#[derive(Debug)]
struct Answering(Arc<Connection>);

impl Drop for Answering {
    fn drop(&mut self) {
        let connection = &self.0;
        let now = millis_since(connection.start);
        // Relaxed: see `close_longest_waiting`.
        let _ = connection
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |state| (state == ANSWERING).then_some(now));
    }
}

/// A hyper service whose connection is answering from each call until the
/// response's body is dropped (sent, or the connection gone).
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    connection: Arc<Connection>,
}

type Answer<B, E> = Pin<Box<dyn Future<Output = Result<Response<AnsweringBody<B>>, E>> + Send>>;

impl<S, R, B> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<AnsweringBody<B>>;
    type Error = S::Error;
    type Future = Answer<B, S::Error>;

    fn call(&self, request: R) -> Self::Future {
        let answering = self.connection.answering();
        let answer = self.inner.call(request);
        Box::pin(async move { Ok(answer.await?.map(|body| AnsweringBody { body, _answering: answering })) })
    }
}

/// A response body that keeps its connection answering while it lives.
#[derive(Debug)]
pub(crate) struct AnsweringBody<B> {
    body: B,
    _answering: Answering,
}

impl<B: Body + Unpin> Body for AnsweringBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(registered: &Registered) -> u64 {
        registered.connection.state.load(Ordering::Relaxed)
    }

    #[test]
    fn only_a_connection_that_waited_long_enough_is_closed() {
        let waiting = Waiting::new(Duration::from_secs(3600));
        let connection = waiting.open();
        assert!(!waiting.close_longest_waiting(Duration::from_secs(3600)), "it has not waited an hour");
        assert!(waiting.close_longest_waiting(Duration::ZERO));
        assert_eq!(state(&connection), CLOSED_FOR_NEWCOMER);
        assert!(!waiting.close_longest_waiting(Duration::ZERO), "closed once");
    }

    #[test]
    fn an_answering_connection_is_never_closed() {
        let waiting = Waiting::new(Duration::from_secs(3600));
        let connection = waiting.open();
        let answering = connection.connection.answering();
        assert!(!waiting.close_longest_waiting(Duration::ZERO));
        drop(answering);
        assert!(state(&connection) < CLOSED_FOR_NEWCOMER, "waiting again once the answer is gone");
        assert!(waiting.close_longest_waiting(Duration::ZERO));
    }

    #[test]
    fn a_connection_closed_for_a_newcomer_stays_closed_through_an_answer() {
        let waiting = Waiting::new(Duration::from_secs(3600));
        let connection = waiting.open();
        assert!(waiting.close_longest_waiting(Duration::ZERO));
        drop(connection.connection.answering());
        assert_eq!(state(&connection), CLOSED_FOR_NEWCOMER);
    }

    #[test]
    fn connections_that_never_had_a_request_go_first_then_the_longest_waiting() {
        let waiting = Waiting::new(Duration::from_secs(3600));
        let kept_alive = waiting.open();
        drop(kept_alive.connection.answering());
        std::thread::sleep(Duration::from_millis(5));
        let (first, second) = (waiting.open(), waiting.open());
        for expected in [&first, &second, &kept_alive] {
            assert!(waiting.close_longest_waiting(Duration::ZERO));
            assert_eq!(state(expected), CLOSED_FOR_NEWCOMER);
        }
    }

    #[test]
    fn a_dropped_connection_is_no_longer_counted() {
        let waiting = Waiting::new(Duration::from_secs(3600));
        let connections: Vec<Registered> = (0..4).map(|_| waiting.open()).collect();
        let mut connections = connections.into_iter();
        let first = connections.next().unwrap();
        let rest: Vec<Registered> = connections.collect();
        drop(first);
        assert_eq!(waiting.connections().len(), 3);
        for (at, connection) in waiting.connections().iter().enumerate() {
            assert_eq!(connection.index.load(Ordering::Relaxed), at, "indexes follow the moves");
        }
        drop(rest);
        assert!(waiting.connections().is_empty());
        assert!(!waiting.close_longest_waiting(Duration::ZERO));
    }

    #[test]
    fn a_blocked_connection_is_closed_only_after_the_longer_bound() {
        let waiting = Waiting::new(Duration::from_millis(40));
        let connection = waiting.open();
        connection.connection.blocked.store(true, Ordering::Relaxed);
        assert!(!waiting.close_longest_waiting(Duration::ZERO), "blocked for less than 40 ms");
        std::thread::sleep(Duration::from_millis(50));
        assert!(waiting.close_longest_waiting(Duration::ZERO));
    }

    #[test]
    fn after_the_signal_only_an_answer_running_or_being_written_is_under_way() {
        let stall = Duration::from_millis(40);
        let waiting = Waiting::new(Duration::from_secs(3600));
        let connection = waiting.open();
        assert_eq!(connection.answer_under_way(stall), None, "idle, or part way through a head");
        let answering = connection.connection.answering();
        assert!(connection.answer_under_way(stall).is_some(), "answering, however long since it wrote");
        connection.connection.blocked.store(true, Ordering::Relaxed);
        connection.connection.wrote();
        assert!(connection.answer_under_way(stall).is_some(), "it wrote just now");
        drop(answering);
        assert!(connection.answer_under_way(stall).is_some(), "the end of its answer is still to send");
        std::thread::sleep(stall + Duration::from_millis(10));
        assert_eq!(connection.answer_under_way(stall), None, "its write has waited longer than the bound");
    }

    #[test]
    fn a_write_restarts_the_wait_but_not_an_answer_or_a_close() {
        let waiting = Waiting::new(Duration::from_secs(3600));
        let connection = waiting.open();
        std::thread::sleep(Duration::from_millis(30));
        connection.connection.wrote();
        assert!(!waiting.close_longest_waiting(Duration::from_millis(25)), "it wrote just now");
        let answering = connection.connection.answering();
        connection.connection.wrote();
        assert_eq!(state(&connection), ANSWERING);
        drop(answering);
        assert!(waiting.close_longest_waiting(Duration::ZERO));
        connection.connection.wrote();
        assert_eq!(state(&connection), CLOSED_FOR_NEWCOMER);
    }
}
