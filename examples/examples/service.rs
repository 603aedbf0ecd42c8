//! An HTTP gateway (axum on tokio) that uses snapview the way a real service
//! would: a hot-reloaded `routes` map, one snapshot per request, per-route
//! counters in `request_stats`, `/metrics`, `/debug/pprof` on the same port,
//! traces over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and a built-in
//! load generator so that the histograms and flamegraphs have something to show.
//!
//! `cargo run --release -p snapview-examples --example service` (`--help` for the flags)

use std::io;
use std::process::ExitCode;

use snapview::instrument::{Telemetry, TelemetryGuard};
use snapview_examples::gateway::cli::{self, Args};
use snapview_examples::gateway::{Service, ShutdownReport, StartError};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("service: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let telemetry = match install_telemetry() {
        Ok(guard) => guard,
        Err(message) => {
            eprintln!("service: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    let outcome = runtime.block_on(run(args));
    // Flushes the spans and metrics still queued for the collector (bounded
    // wait), while the runtime still runs the task that stops the program
    // at a second Ctrl-C: dropped after the runtime, that Ctrl-C did nothing.
    let flushed = runtime.block_on(runtime.spawn_blocking(move || drop(telemetry)));
    // Bounded: a blocking read of the routes file that never returns (a
    // stalled network mount) would hold a plain drop, and the exit, forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    // The guard's drop logs what its final export lost; an `Err` here is
    // that drop panicking.
    if let Err(err) = flushed {
        eprintln!("service: dropping the telemetry guard panicked (its final export may be lost): {err}");
    }
    match outcome {
        Ok(report) => {
            if let Some(load) = report.load {
                println!(
                    "load generator: {} requests sent, {} answered, {} failed",
                    load.sent, load.answered, load.failed
                );
            }
            println!(
                "\nlatency of each view (ns; one call in {} timed):",
                snapview::instrument::default_sample_every()
            );
            print!("{}", snapview::instrument::report());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("service: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the service; on the default address, if its port is taken, on a
/// free one instead (the banner says which): `cargo run` of the demo should
/// not fail because something else holds 8080.
async fn start(args: &Args) -> Result<Service, String> {
    match Service::start(args.config.clone()).await {
        Err(StartError::Bind(addr, err)) if err.kind() == io::ErrorKind::AddrInUse && !args.addr_given => {
            tracing::warn!(%addr, "the default address is in use: listening on a free port instead (--addr to choose)");
            let mut config = args.config.clone();
            config.addr.set_port(0);
            Service::start(config).await
        }
        started => started,
    }
    .map_err(|err| err.to_string())
}

/// Logs to stderr always (the reload diffs belong in the terminal), plus OTLP
/// export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, plus tokio-console with
/// the `console` feature in a `--cfg tokio_unstable` build.
fn install_telemetry() -> Result<TelemetryGuard, String> {
    // OTLP as the environment says: on when OTEL_EXPORTER_OTLP_ENDPOINT is
    // set, with the protocol of OTEL_EXPORTER_OTLP_PROTOCOL (a value the
    // pipeline does not speak stops the start with a message naming it).
    // The demo's name, unless the environment gives one (OTEL_SERVICE_NAME,
    // or service.name in OTEL_RESOURCE_ATTRIBUTES): the builder's name would
    // win over the environment's. Blank is unset, as the library reads it.
    let var = |name| std::env::var(name).unwrap_or_default();
    let named = !var("OTEL_SERVICE_NAME").trim().is_empty()
        || var("OTEL_RESOURCE_ATTRIBUTES").split(',').any(|pair| pair.trim_start().starts_with("service.name="));
    let mut builder = Telemetry::builder();
    if !named {
        builder = builder.service_name("snapview-demo");
    }
    #[cfg_attr(not(all(feature = "console", tokio_unstable)), allow(unused_mut))]
    let mut builder = builder.otlp_from_env();
    #[cfg(all(feature = "console", tokio_unstable))]
    {
        builder = builder.console(true);
    }
    #[cfg(all(feature = "console", not(tokio_unstable)))]
    eprintln!("service: the console feature needs RUSTFLAGS=\"--cfg tokio_unstable\"; tokio-console is off");
    let guard = builder.install().map_err(|err| err.to_string())?;
    // Once the console's server runs (`install` fails if it cannot).
    #[cfg(all(feature = "console", tokio_unstable))]
    if let Some(addr) = guard.console_addr() {
        eprintln!("service: tokio-console is on at {addr} (connect with `tokio-console http://{addr}`)");
    }
    Ok(guard)
}

async fn run(args: Args) -> Result<ShutdownReport, String> {
    // Both handlers are installed here, before the banner, and each stream
    // keeps a signal that comes before it is awaited: a Ctrl-C as soon as
    // the banner is out (a script reading it, say) shuts down cleanly, and
    // one right after the shutdown began stops at once. SIGTERM (`docker
    // stop`, systemd, Kubernetes) shuts down as Ctrl-C does.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|err| format!("cannot wait for Ctrl-C: {err}"))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|err| format!("cannot wait for SIGTERM: {err}"))?;
    let service = tokio::select! {
        started = start(&args) => started?,
        // Once the handlers are installed a signal no longer ends the
        // process by itself: a start held by a read of the routes file that
        // hangs (a stalled network mount; the read is on a blocking thread,
        // which the exit leaves) must still end at a Ctrl-C.
        _ = interrupt.recv() => return Err("Ctrl-C before the service started".to_owned()),
        _ = terminate.recv() => return Err("SIGTERM before the service started".to_owned()),
    };
    println!("{}", cli::banner(service.local_addr(), &args));
    let time_is_up = async {
        match args.run_for {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    let reason = tokio::select! {
        () = time_is_up => "time is up",
        _ = interrupt.recv() => "Ctrl-C",
        _ = terminate.recv() => "SIGTERM",
    };
    tracing::info!("{reason}: shutting down (Ctrl-C to stop at once)");
    // A Ctrl-C or SIGTERM now does not wait for running requests and the
    // exports; the exit status is the signal's, as a shell reports it.
    tokio::spawn(async move {
        let (name, status) = tokio::select! {
            Some(()) = interrupt.recv() => ("Ctrl-C", 130),
            Some(()) = terminate.recv() => ("SIGTERM", 143),
            else => return,
        };
        eprintln!("service: {name} during shutdown, stopping now");
        std::process::exit(status);
    });
    let report = service.shutdown().await;
    tracing::info!(forced = report.forced, "stopped");
    Ok(report)
}
