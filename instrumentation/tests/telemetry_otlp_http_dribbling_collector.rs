//! An HTTP collector that answers `200 OK` and then sends its body a byte
//! at a time, each a little sooner than the export timeout, holds no export
//! past that timeout. reqwest's blocking client bounds the wait for the
//! response's headers, then gives each read of the body a fresh timeout, so
//! such a collector held the span-export thread and the metrics reader for
//! as long as it dribbled (the metrics exporter reads up to 64 KiB: some
//! 65 000 export timeouts). Here each export gives up on the body within
//! the timeout, and once the collector answers properly again, later spans
//! and metrics reach it.

#![cfg(feature = "otlp")]

#[path = "support/export_bounds.rs"]
mod export_bounds;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use export_bounds::{BOUND, PATIENCE, flush_within_bound, pipeline, span};
use snapview_instrument::Protocol;

/// Between two bytes of a dribbled body: well within the export timeout,
/// so that no single read ever waits that long.
const DRIBBLE: Duration = Duration::from_millis(50);
/// The longest a dribbled answer goes on, so that the collector's threads
/// end even if the client never gives up.
const DRIBBLE_AT_MOST: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    dribble: AtomicBool,
    stop: AtomicBool,
    /// The path of each request answered properly.
    answered: Mutex<Vec<String>>,
    /// The path of each request answered with a dribble.
    dribbled: Mutex<Vec<String>>,
    /// The path of each dribbled answer, and how long it went on before
    /// the client closed the connection.
    given_up: Mutex<Vec<(String, Duration)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An HTTP/1.1 collector on `127.0.0.1:0`, a thread per connection.
struct DribblingCollector {
    endpoint: String,
    state: Arc<State>,
    accepting: Option<JoinHandle<()>>,
}

impl DribblingCollector {
    fn start() -> DribblingCollector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let serving = Arc::clone(&state);
        let accepting = thread::spawn(move || {
            while !serving.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let state = Arc::clone(&serving);
                        thread::spawn(move || serve(stream, &state));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        DribblingCollector { endpoint, state, accepting: Some(accepting) }
    }

    fn dribble(&self, on: bool) {
        self.state.dribble.store(on, Ordering::SeqCst);
    }

    fn answered(&self, path: &str) -> usize {
        lock(&self.state.answered).iter().filter(|p| *p == path).count()
    }

    fn dribbled(&self) -> Vec<String> {
        lock(&self.state.dribbled).clone()
    }

    fn given_up(&self) -> Vec<(String, Duration)> {
        lock(&self.state.given_up).clone()
    }

    fn wait_until(&self, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for DribblingCollector {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
    }
}

/// Answers the requests of one connection until the client closes it.
fn serve(stream: TcpStream, state: &State) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some(path) = read_request(&mut reader) {
        if state.dribble.load(Ordering::SeqCst) {
            lock(&state.dribbled).push(path.clone());
            let started = Instant::now();
            dribble(&mut writer, state);
            lock(&state.given_up).push((path, started.elapsed()));
            return;
        }
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
        lock(&state.answered).push(path);
    }
}

/// Reads one request, its body included; returns its path, `None` once the
/// connection is closed.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(path)
}

/// A `200 OK` whose chunked body comes a byte every [`DRIBBLE`], until
/// the client closes the connection (a write then fails).
fn dribble(writer: &mut TcpStream, state: &State) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ntransfer-encoding: chunked\r\n\r\n";
    if writer.write_all(head.as_bytes()).is_err() {
        return;
    }
    let end = Instant::now() + DRIBBLE_AT_MOST;
    while Instant::now() < end && !state.stop.load(Ordering::SeqCst) {
        // One byte, `0x00`: the start of no valid answer, so the client
        // cannot take a prefix for the whole.
        if writer.write_all(b"1\r\n\0\r\n").and_then(|()| writer.flush()).is_err() {
            return;
        }
        thread::sleep(DRIBBLE);
    }
}

#[test]
fn exports_to_a_collector_that_dribbles_its_answer_give_up() {
    let collector = DribblingCollector::start();
    collector.dribble(true);
    let (dispatch, guard) = pipeline(Protocol::HttpProtobuf, &collector.endpoint);

    span(&dispatch, "dribbled");
    flush_within_bound(&guard, "dribbled");
    let both = |paths: &[String]| ["/v1/traces", "/v1/metrics"].iter().all(|path| paths.iter().any(|p| p == path));
    assert!(collector.wait_until(|c| both(&c.dribbled())), "the exports never reached the collector");
    // Both exports stop reading the body, closing their connections,
    // within the timeout.
    let given_up = |c: &DribblingCollector| both(&c.given_up().into_iter().map(|(path, _)| path).collect::<Vec<_>>());
    assert!(collector.wait_until(given_up), "an export still reads a dribbled answer: {:?}", collector.given_up());
    for (path, waited) in collector.given_up() {
        assert!(waited < BOUND, "the export to {path} read a dribbled answer for {waited:?}");
    }
    // A 2xx took the batch: the body would only have told of spans it
    // turned down one by one.
    assert_eq!(guard.dropped_spans(), 0);

    // The export threads are free: the next exports go through.
    collector.dribble(false);
    span(&dispatch, "answered");
    flush_within_bound(&guard, "answered");
    let through = |c: &DribblingCollector| {
        let done = c.answered("/v1/traces") >= 1 && c.answered("/v1/metrics") >= 1;
        // Flushed again while waiting: that flush may have found the
        // previous one's tasks still finishing, and left without its own.
        if !done {
            guard.flush();
        }
        done
    };
    assert!(collector.wait_until(through), "no export went through afterwards");
    // Again, now that every export has ended: a dribbled one that failed
    // would have been counted by now.
    assert_eq!(guard.dropped_spans(), 0, "a batch answered 2xx counted as dropped");

    let dropping = Instant::now();
    drop(guard);
    assert!(dropping.elapsed() < BOUND, "dropping the guard took {:?}", dropping.elapsed());
}
