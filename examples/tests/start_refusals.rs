//! What `Service::start` refuses before it binds anything, with a message
//! that says why.
//!
//! Each config sets its debug token: `DebugConfig::default()` reads
//! `SNAPVIEW_DEBUG_TOKEN`, and a developer's exported token must not change
//! what these tests check.

use snapview::debug::DebugConfig;

mod common;

/// The load generator only sends over loopback: asked for on a specific
/// remote address, the service refuses to start, instead of starting with a
/// generator that ends at its first request.
#[tokio::test]
async fn a_load_generator_on_a_remote_address_is_refused_at_start() {
    let file = common::TempRoutes::new(common::ROUTES);
    let config = snapview_examples::gateway::Config {
        addr: "192.0.2.1:8080".parse().unwrap(),
        allow_remote: true,
        routes_path: file.path.clone(),
        load: Some(snapview_examples::gateway::load::LoadConfig::default()),
        debug: DebugConfig::default().without_token(),
        ..Default::default()
    };
    let err = snapview_examples::gateway::Service::start(config).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("only targets loopback"), "{message}");
    assert!(message.contains("--no-load"), "the message names the way out: {message}");
}

/// A zero reload interval would have the reloader read the file in a loop
/// (before session 47, with `tokio::time::interval`, it panicked inside the
/// spawned reloader, and the service ran on without hot reload), and one
/// past a day is refused as a likely typo (`Duration::MAX` overflowed
/// tokio's `Instant` arithmetic after the first tick).
#[tokio::test]
async fn a_zero_or_endless_reload_interval_is_refused_at_start() {
    let file = common::TempRoutes::new(common::ROUTES);
    let max = snapview_examples::gateway::MAX_RELOAD_EVERY;
    for every in [std::time::Duration::ZERO, max + std::time::Duration::from_secs(1), std::time::Duration::MAX] {
        let config = snapview_examples::gateway::Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            routes_path: file.path.clone(),
            reload_every: every,
            load: None,
            debug: DebugConfig::default().without_token(),
            ..Default::default()
        };
        let err = snapview_examples::gateway::Service::start(config).await.unwrap_err();
        assert!(matches!(err, snapview_examples::gateway::StartError::ReloadInterval), "{every:?}: {err:?}");
        assert!(err.to_string().contains("reload interval"), "{err}");
    }
}

/// A token no request can present (a newline read along from a file, a
/// space) is refused at start, without echoing it, instead of a server that
/// answers every request 401.
#[tokio::test]
async fn a_token_that_cannot_be_sent_is_refused_at_start() {
    let file = common::TempRoutes::new(common::ROUTES);
    let config = snapview_examples::gateway::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        routes_path: file.path.clone(),
        load: None,
        debug: DebugConfig::default().token("s3cret\n"),
        ..Default::default()
    };
    let err = snapview_examples::gateway::Service::start(config).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("--token") && message.contains("printable ASCII"), "{message}");
    assert!(!message.contains("s3cret"), "the token is a secret: {message}");
}

/// `--token ""` (a `--token "$T"` whose variable is unset, say) is refused,
/// not taken for "no token": that would drop a token `SNAPVIEW_DEBUG_TOKEN`
/// had set and serve the debug routes to anyone.
#[tokio::test]
async fn an_empty_token_is_refused_at_start() {
    let file = common::TempRoutes::new(common::ROUTES);
    let routes = file.path.to_str().unwrap();
    let args = ["--addr", "127.0.0.1:0", "--no-load", "--routes", routes, "--token", ""];
    let refused = snapview_examples::gateway::cli::parse(args.map(String::from)).unwrap_err();
    assert!(refused.starts_with("--token is empty") && refused.contains("leave out --token"), "{refused}");
    // The same token set in code gets past the flags, and the start refuses it.
    let config = snapview_examples::gateway::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        routes_path: file.path.clone(),
        load: None,
        debug: DebugConfig::default().token(""),
        ..Default::default()
    };
    let err = snapview_examples::gateway::Service::start(config).await.unwrap_err();
    assert!(matches!(err, snapview_examples::gateway::StartError::Token(_)), "{err:?}");
    assert!(err.to_string().contains("empty"), "{err}");
}

/// A routes file with no `[[route]]` (empty, or only comments: what a
/// failed `./render-routes > routes.toml` leaves) is refused at start, as
/// any other bad file is, rather than serving nothing but 404s.
#[tokio::test]
async fn a_routes_file_without_a_route_is_refused_at_start() {
    for text in ["", "# the gateway's routes\n"] {
        let file = common::TempRoutes::new(text);
        let config = snapview_examples::gateway::Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            routes_path: file.path.clone(),
            load: None,
            debug: DebugConfig::default().without_token(),
            ..Default::default()
        };
        let err = snapview_examples::gateway::Service::start(config).await.unwrap_err();
        assert!(matches!(err, snapview_examples::gateway::StartError::Routes(_)), "{text:?}: {err:?}");
        let message = err.to_string();
        let want = format!("cannot load the routes: {}: has no [[route]]", file.path.display());
        assert!(message.starts_with(&want), "{text:?}: {message}");
    }
}

/// A routes path that is no regular file (a FIFO, whose open waits for a
/// writer; `/dev/zero`, which never ends) is refused at start, at once,
/// rather than holding the start (and later the reloader, and with it the
/// shutdown) or filling the memory.
#[tokio::test]
async fn a_routes_path_that_is_no_regular_file_is_refused_at_start() {
    let fifo = std::env::temp_dir().join(format!("snapview-examples-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    for path in [fifo.clone(), "/dev/zero".into()] {
        let config = snapview_examples::gateway::Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            routes_path: path.clone(),
            load: None,
            debug: DebugConfig::default().without_token(),
            ..Default::default()
        };
        let started = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            snapview_examples::gateway::Service::start(config),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: the start waited on the file", path.display()));
        let err = started.err().unwrap_or_else(|| panic!("{}: started", path.display()));
        assert!(err.to_string().contains("not a regular file"), "{}: {err}", path.display());
    }
    std::fs::remove_file(&fifo).unwrap();
}
