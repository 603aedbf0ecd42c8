//! With `--cfg tokio_unstable`, `console(true)` serves tokio-console: a
//! client speaking its protocol (console-api's, which the `tokio-console`
//! tool uses) connects and is told of the application's tasks by name.
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
use snapview_instrument::Telemetry;

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
