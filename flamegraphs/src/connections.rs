//! Serving a router over HTTP/1.1 within bounds that a client cannot stretch.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never
//! fires: a client that opens connections and never finishes a request (or
//! keeps an idle one open) holds a file descriptor each for as long as it
//! likes, and enough of them leave the whole process unable to open files or
//! sockets. Here every connection must send its request head within
//! [`ConnectionLimits::header_timeout`] (which also closes idle keep-alive
//! connections), and at most [`ConnectionLimits::max_connections`] are open.
//! Past that, a new connection takes the place of the one that has waited
//! longest for a request head ([`waiting`](crate::waiting)), so that clients
//! holding connections without asking anything cannot keep others out for a
//! header timeout; only while every open connection is answering a request
//! (or has waited less than [`CLOSE_WAITING_AFTER`]) does the newcomer wait
//! for one to close.
//!
//! At the shutdown signal, hyper's graceful shutdown alone would not do:
//! it keeps a connection that holds part of a request head (and serves the
//! request once the head is complete), and it sends the whole of an answer
//! before closing, with no write timeout, to a client that may never read
//! it. So a connection is closed at once unless it is answering a request
//! or has bytes of an answer left to send, and one whose write has waited
//! [`ConnectionLimits::header_timeout`] for its client is closed then.
//!
//! The connections are tasks owned by the serving future, so dropping it (a
//! caller's timeout, `JoinHandle::abort`) closes them all, requests still
//! running included.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::waiting::{Registered, Waiting};

/// How long a client has to send a request's head, and how many connections
/// may be open at once. See [`serve_router`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The longest a connection may take to send a request's line and
    /// headers, counted from when the server starts waiting for them (for
    /// a kept-alive connection: from its previous answer). Default 10 s.
    /// After the shutdown signal, also how long an answer may wait for its
    /// client to read before the connection is cut off.
    pub header_timeout: Duration,
    /// How many connections may be open at once. Default 256; `usize::MAX`
    /// for as many as the process can open. A connection arriving past it
    /// closes the open one that has waited longest for a request head (one
    /// that never sent a whole request first, then an idle kept-alive one),
    /// if that one has waited at least [`CLOSE_WAITING_AFTER`]; otherwise it
    /// waits, accepted (the one connection open beyond the limit), until one
    /// closes. A connection answering a request is not closed for it, nor
    /// one whose answer waits for its client to read it, until that has
    /// waited `header_timeout` since its last write.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The longest [`header_timeout`](Self::header_timeout) taken: a day.
    /// Longer ones would overflow the deadlines hyper computes from it.
    pub const MAX_HEADER_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

    /// Checks that the limits can be served: a `header_timeout` from 1 ms to
    /// [`MAX_HEADER_TIMEOUT`](Self::MAX_HEADER_TIMEOUT), and at least one
    /// connection. [`serve_router`] checks them first.
    ///
    /// # Errors
    ///
    /// `InvalidInput`, naming the limit and what it may be.
    pub fn validate(&self) -> io::Result<()> {
        let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        if self.header_timeout < Duration::from_millis(1) || self.header_timeout > Self::MAX_HEADER_TIMEOUT {
            return invalid(format!(
                "ConnectionLimits::header_timeout must be from 1 ms to {:?}, got {:?}",
                Self::MAX_HEADER_TIMEOUT,
                self.header_timeout
            ));
        }
        if self.max_connections == 0 {
            return invalid("ConnectionLimits::max_connections must be at least 1, got 0".to_owned());
        }
        Ok(())
    }
}

/// How long an open connection must have waited for a request head (since
/// it opened, or since it last wrote) before a connection arriving past
/// [`ConnectionLimits::max_connections`] may take its place: long enough
/// that a client sending its request at once is not cut off. (One whose
/// answer is still waiting for the client to read it must have waited
/// [`ConnectionLimits::header_timeout`].)
pub const CLOSE_WAITING_AFTER: Duration = Duration::from_millis(250);

/// How often a connection arriving past the limit looks again for one to
/// close, while none can be.
const LOOK_AGAIN_AFTER: Duration = Duration::from_millis(50);

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { header_timeout: Duration::from_secs(10), max_connections: 256 }
    }
}

/// Serves `router` over HTTP/1.1 on `listener` until `signal` completes, then
/// stops accepting, closes the connections that are not answering a request
/// (idle ones, and those part way through sending a head, whose request
/// would otherwise still be served), lets running requests finish and their
/// answers be sent, then closes those connections too; returns once every
/// connection is closed. A connection that could not be written to for
/// `limits.header_timeout` meanwhile is cut off, so that a client that
/// stops reading cannot keep this from returning. Within `limits`:
/// a connection that does not send a request's head in time is closed, and
/// no more than `limits.max_connections` are open at once (past that, a new
/// one takes the place of the one that has waited longest for a request
/// head, see [`ConnectionLimits::max_connections`]).
///
/// Dropping the returned future closes every connection at once.
///
/// # Errors
///
/// `InvalidInput` for limits that cannot be served
/// ([`ConnectionLimits::validate`]), before anything is served. Nothing
/// after: an error accepting a connection (e.g. out of file descriptors) is
/// logged and retried after a short pause, as `axum::serve` does.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    limits.validate()?;
    let mut signal = pin!(signal);
    // Past tokio's own bound, the semaphore would panic; no process opens
    // that many connections anyway.
    let slots = Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS)));
    let waiting = Waiting::new(limits.header_timeout);
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        // Reap the connections that ended, so the set does not grow.
        while connections.try_join_next().is_some() {}
        // Accepted before it has a slot, so that a full server knows someone
        // is waiting: at most this one connection is open beyond the limit.
        let stream = tokio::select! {
            stream = accept(&listener) => stream,
            () = &mut signal => break,
        };
        let slot = tokio::select! {
            slot = admit(&slots, &waiting) => slot,
            () = &mut signal => break,
        };
        let connection = waiting.open();
        connections.spawn(serve_connection(stream, slot, connection, router.clone(), limits, closing_seen.clone()));
    }
    drop(listener);
    // Every connection finishes what it is answering, then closes.
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// A slot for a connection that has arrived: a free one, or the one of the
/// connection that has waited longest for a request head, closed for it.
async fn admit(slots: &Arc<Semaphore>, waiting: &Waiting) -> OwnedSemaphorePermit {
    loop {
        if let Ok(slot) = Arc::clone(slots).try_acquire_owned() {
            return slot;
        }
        if waiting.close_longest_waiting(CLOSE_WAITING_AFTER) {
            // Its task lets go of the slot at its next poll.
            return Arc::clone(slots).acquire_owned().await.expect("the semaphore is never closed");
        }
        // Every connection is answering, or has only just begun to wait.
        if let Ok(slot) = tokio::time::timeout(LOOK_AGAIN_AFTER, Arc::clone(slots).acquire_owned()).await {
            return slot.expect("the semaphore is never closed");
        }
    }
}

/// The next connection.
async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            // The client gave up before it was accepted: nothing to do.
            Err(err) if is_connection_error(&err) => {}
            Err(err) => {
                // Out of file descriptors, typically: accepting again at once
                // would spin.
                tracing::error!(error = %err, "accepting a connection failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until the client closes it, it breaks a limit, it
/// is closed for a newcomer, or `closing` turns true (then see [`finish`]).
async fn serve_connection(
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    registered: Registered,
    router: Router,
    limits: ConnectionLimits,
    mut closing: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let service = registered.track(TowerToHyperService::new(router));
    let connection = builder.serve_connection(TokioIo::new(registered.watch(stream)), service);
    let mut connection = pin!(connection);
    // Errors are the client's (it went away, sent garbage or was too slow):
    // hyper has answered what it could, and there is no one else to tell.
    tokio::select! {
        // In this order, so that a connection told to close starts no new
        // request: polled first, it could complete a head that is waiting
        // in its socket.
        biased;
        _ = closing.wait_for(|closing| *closing) => {}
        // Dropping the connection closes its socket; it was answering nothing.
        () = registered.closed_for_newcomer() => return,
        _ = connection.as_mut() => return,
    }
    connection.as_mut().graceful_shutdown();
    finish(connection, &registered, limits.header_timeout).await;
}

/// After the signal: lets the connection finish the answer it has under way
/// (hyper, told to shut down, closes it after that). Drops it at once if it
/// has none: idle, or holding part of a request head, which hyper would
/// still serve once complete. Drops it too once it could not be written to
/// for `stall`: a client that stops reading would hold shutdown up for ever.
async fn finish<F: Future>(mut connection: Pin<&mut F>, registered: &Registered, stall: Duration) {
    while let Some(look_again) = registered.answer_under_way(stall) {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = tokio::time::sleep_until(look_again.into()) => {}
        }
    }
}
