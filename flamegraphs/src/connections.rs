//! Serving a router over HTTP/1.1 within bounds that a client cannot stretch.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never
//! fires: a client that opens connections and never finishes a request (or
//! keeps an idle one open) holds a file descriptor each for as long as it
//! likes, and enough of them leave the whole process unable to open files or
//! sockets. Here every connection must send its request head within
//! [`ConnectionLimits::header_timeout`] (which also closes idle keep-alive
//! connections), and at most [`ConnectionLimits::max_connections`] are open:
//! past that, new ones wait in the kernel's backlog until one closes.
//!
//! The connections are tasks owned by the serving future, so dropping it (a
//! caller's timeout, `JoinHandle::abort`) closes them all, requests still
//! running included.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

/// How long a client has to send a request's head, and how many connections
/// may be open at once. See [`serve_router`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The longest a connection may take to send a request's line and
    /// headers, counted from when the server starts waiting for them (for
    /// a kept-alive connection: from its previous answer). Default 10 s.
    pub header_timeout: Duration,
    /// How many connections may be open at once. Default 256; `usize::MAX`
    /// for as many as the process can open.
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

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { header_timeout: Duration::from_secs(10), max_connections: 256 }
    }
}

/// Serves `router` over HTTP/1.1 on `listener` until `signal` completes, then
/// stops accepting, lets running requests finish and closes idle
/// connections; returns once every connection is closed. Within `limits`:
/// a connection that does not send a request's head in time is closed, and
/// no more than `limits.max_connections` are open at once.
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
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        // Reap the connections that ended, so the set does not grow.
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = accept_within(&listener, &slots) => accepted,
            () = &mut signal => break,
        };
        let (stream, slot) = accepted;
        connections.spawn(serve_connection(stream, slot, router.clone(), limits, closing_seen.clone()));
    }
    drop(listener);
    // Every connection finishes what it is answering, then closes.
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The next connection, once one of `slots` is free.
async fn accept_within(listener: &TcpListener, slots: &Arc<Semaphore>) -> (TcpStream, OwnedSemaphorePermit) {
    let slot = Arc::clone(slots).acquire_owned().await.expect("the semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return (stream, slot),
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

/// Serves one connection until the client closes it, it breaks a limit, or
/// `closing` turns true (then after its running request, if any).
async fn serve_connection(
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    router: Router,
    limits: ConnectionLimits,
    mut closing: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = pin!(connection);
    // Errors are the client's (it went away, sent garbage or was too slow):
    // hyper has answered what it could, and there is no one else to tell.
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = closing.wait_for(|closing| *closing) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
