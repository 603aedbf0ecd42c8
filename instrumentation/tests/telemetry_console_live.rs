//! With `--cfg tokio_unstable`, `console(true)` serves tokio-console: a
//! client speaking its protocol (console-api's, which the `tokio-console`
//! tool uses) connects and is told of the application's tasks by name. An
//! address it cannot use is an error of `build()` (console-subscriber
//! panics on it), a build that fails leaves no console serving, and
//! dropping the guard stops the server, ending its clients' streams.
//!
//! CI runs it in a build of its own:
//! `RUSTFLAGS="--cfg tokio_unstable" CARGO_TARGET_DIR=target/console cargo test
//! -p snapview-instrument --features console --test telemetry_console_live`.

#![cfg(all(feature = "console", tokio_unstable))]

#[path = "support/child.rs"]
mod child;

use std::time::{Duration, Instant};

use child::run_child;
use console_api::instrument::InstrumentRequest;
use console_api::instrument::instrument_client::InstrumentClient;
use snapview_instrument::{Telemetry, TelemetryError};

const TASK: &str = "snapview-console-test-task";

/// On a port the system chooses, which the guard reports.
#[test]
fn the_console_is_told_of_the_tasks() {
    run_child("child_serves_the_console", &[("TOKIO_CONSOLE_BIND", "127.0.0.1:0")]);
}

#[test]
#[ignore = "run by the_console_is_told_of_the_tasks, in a child process"]
fn child_serves_the_console() {
    if !child::in_child() {
        return;
    }
    let guard = Telemetry::builder().fmt(false).console(true).install().expect("the console layer installs");
    let addr = guard.console_addr().expect("the console is on");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "the address it listens on: {addr}");
    let port = addr.port().to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        // A task that keeps running, under a name the console shows.
        tokio::task::Builder::new()
            .name(TASK)
            .spawn(async {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut updates = watch_updates(&port, deadline).await;
        let mut names = Vec::new();
        while Instant::now() < deadline {
            let Ok(update) = tokio::time::timeout(Duration::from_secs(5), updates.message()).await else { continue };
            let update = update.expect("the stream holds").expect("the stream goes on");
            let new_tasks = update.task_update.map(|tasks| tasks.new_tasks).unwrap_or_default();
            names.extend(new_tasks.iter().flat_map(|task| &task.fields).filter_map(|field| {
                let name = match field.name.as_ref()? {
                    console_api::field::Name::StrName(name) => name.as_str(),
                    console_api::field::Name::NameIdx(_) => return None,
                };
                (name == "task.name").then(|| format!("{:?}", field.value))
            }));
            if names.iter().any(|name| name.contains(TASK)) {
                return;
            }
        }
        panic!("no task named {TASK} in the console's updates; named: {names:?}");
    });
    // The global subscriber, and the console's layer in it, outlive the
    // guard: tasks made after it is gone still run, their events dropped.
    drop(guard);
    assert!(std::net::TcpStream::connect(addr).is_err(), "a console still listens on {addr}");
    let done = runtime.block_on(async {
        let tasks: Vec<_> =
            (0..100).map(|i| tokio::task::Builder::new().name(TASK).spawn(async move { i }).unwrap()).collect();
        let mut sum = 0;
        for task in tasks {
            sum += task.await.unwrap();
        }
        sum
    });
    assert_eq!(done, (0..100).sum::<i32>());
}

/// A stream of the console's updates from its server on `port`, retrying
/// the connection until `deadline`.
async fn watch_updates(port: &str, deadline: Instant) -> tonic::Streaming<console_api::instrument::Update> {
    let mut client = loop {
        match InstrumentClient::connect(format!("http://127.0.0.1:{port}")).await {
            Ok(client) => break client,
            Err(err) if Instant::now() < deadline => {
                eprintln!("connecting to the console: {err}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("the console server never answered: {err}"),
        }
    };
    client.watch_updates(InstrumentRequest {}).await.expect("a stream of updates").into_inner()
}

/// A free port, released: for a child's console server.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn an_address_taken_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    run_child("child_an_address_taken_is_an_error", &[("TOKIO_CONSOLE_BIND", &bind)]);
    drop(taken);
}

#[test]
#[ignore = "run by an_address_taken_is_an_error, in a child process"]
fn child_an_address_taken_is_an_error() {
    if !child::in_child() {
        return;
    }
    let bind: std::net::SocketAddr = std::env::var("TOKIO_CONSOLE_BIND").unwrap().parse().unwrap();
    match Telemetry::builder().fmt(false).console(true).build().map(drop) {
        Err(TelemetryError::ConsoleServer { addr, .. }) => assert_eq!(addr, bind),
        other => panic!("a taken address: {other:?}"),
    }
}

#[test]
fn an_address_that_does_not_parse_is_an_error() {
    run_child("child_an_address_that_does_not_parse_is_an_error", &[("TOKIO_CONSOLE_BIND", "nonsense")]);
}

#[test]
#[ignore = "run by an_address_that_does_not_parse_is_an_error, in a child process"]
fn child_an_address_that_does_not_parse_is_an_error() {
    if !child::in_child() {
        return;
    }
    match Telemetry::builder().fmt(false).console(true).build().map(drop) {
        Err(TelemetryError::InvalidEnvironment { var, value, .. }) => {
            assert_eq!((var, value.as_str()), ("TOKIO_CONSOLE_BIND", "nonsense"));
        }
        other => panic!("TOKIO_CONSOLE_BIND=nonsense: {other:?}"),
    }
}

#[test]
fn a_build_that_fails_leaves_no_console_serving() {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    run_child("child_a_build_that_fails_leaves_no_console_serving", &[("TOKIO_CONSOLE_BIND", &bind)]);
}

#[test]
#[ignore = "run by a_build_that_fails_leaves_no_console_serving, in a child process"]
fn child_a_build_that_fails_leaves_no_console_serving() {
    if !child::in_child() {
        return;
    }
    let bind = std::env::var("TOKIO_CONSOLE_BIND").unwrap();
    let built = Telemetry::builder().console(true).filter("a=b=c").build().map(drop);
    assert!(matches!(built, Err(TelemetryError::InvalidFilter { .. })), "{built:?}");
    // A server started anyway would be listening by now, or soon.
    for _ in 0..10 {
        assert!(std::net::TcpStream::connect(&bind).is_err(), "a console serves on {bind} after the build failed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dropping_the_guard_stops_the_console() {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    run_child("child_dropping_the_guard_stops_the_console", &[("TOKIO_CONSOLE_BIND", &bind)]);
}

/// A client watching the console holds a stream open that never ends on its
/// own: the guard's drop must not wait for it, must end it, and must free
/// the address, so that a second pipeline serves there.
#[test]
#[ignore = "run by dropping_the_guard_stops_the_console, in a child process"]
fn child_dropping_the_guard_stops_the_console() {
    if !child::in_child() {
        return;
    }
    let bind = std::env::var("TOKIO_CONSOLE_BIND").unwrap();
    let port = bind.rsplit(':').next().unwrap().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for round in 0..2 {
        let (_subscriber, guard) = Telemetry::builder().fmt(false).console(true).build().expect("the console builds");
        assert_eq!(guard.console_addr().map(|addr| addr.to_string()), Some(bind.clone()));
        runtime.block_on(async {
            let mut updates = watch_updates(&port, Instant::now() + Duration::from_secs(30)).await;
            let first = tokio::time::timeout(Duration::from_secs(30), updates.message()).await;
            assert!(matches!(first, Ok(Ok(Some(_)))), "round {round}: no first update: {first:?}");
            let dropping = Instant::now();
            drop(guard);
            // Generous: a drop that waited for the stream would never end.
            assert!(dropping.elapsed() < Duration::from_secs(10), "round {round}: the drop waited for the client");
            // The stream ends (an error or its end), within the time it takes
            // to see the connection close, not at the next publish interval.
            let ended = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match updates.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => return,
                    }
                }
            })
            .await;
            assert!(ended.is_ok(), "round {round}: the client's stream goes on after the guard was dropped");
        });
        assert!(std::net::TcpStream::connect(&bind).is_err(), "round {round}: a console still listens on {bind}");
    }
}
