//! With `--cfg tokio_unstable`, `console(true)` serves tokio-console: a
//! client speaking its protocol (console-api's, which the `tokio-console`
//! tool uses) connects and is told of the application's tasks by name. An
//! address it cannot use is an error of `build()` (console-subscriber
//! panics on it), and a build that fails leaves no console serving.
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

#[test]
fn the_console_is_told_of_the_tasks() {
    // A free port for the child's console server (released just before).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bind = format!("127.0.0.1:{port}");
    run_child("child_serves_the_console", &[("TOKIO_CONSOLE_BIND", &bind), ("CONSOLE_PORT", &port.to_string())]);
}

#[test]
#[ignore = "run by the_console_is_told_of_the_tasks, in a child process"]
fn child_serves_the_console() {
    if !child::in_child() {
        return;
    }
    let port = std::env::var("CONSOLE_PORT").unwrap();
    let _guard = Telemetry::builder().fmt(false).console(true).install().expect("the console layer installs");
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
        let mut updates = client.watch_updates(InstrumentRequest {}).await.expect("a stream of updates").into_inner();
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
