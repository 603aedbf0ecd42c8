//! `/debug/pprof/profile` and `/debug/pprof/flamegraph`: CPU profiles taken
//! with pprof-rs, one at a time.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Once, PoisonError};
use std::time::Duration;

use axum::extract::RawQuery;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use pprof::{ProfilerGuard, ProfilerGuardBuilder, Report};
use tokio::sync::{Mutex, MutexGuard};

use crate::query::Query;
use crate::reply::{self, Failure, blocking};

/// Shared objects whose code must not be unwound from the signal handler:
/// unwinding through them can deadlock (`_Unwind_Backtrace` taking a lock
/// the interrupted code holds) or read broken DWARF (`vdso`).
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// Held while a CPU profile runs: the profiler is process-wide. Released
/// when the guard drops, also when the handler's future is dropped because
/// the client went away.
static PROFILER: Mutex<()> = Mutex::const_new(());

/// How long a request waits for the profiler before answering 409. A client
/// that gave up frees it only once the server notices the closed connection,
/// a few to a few hundred milliseconds later; a request that follows it
/// right away should not be refused for that.
const GRACE: Duration = Duration::from_millis(500);

async fn take_profiler() -> Option<MutexGuard<'static, ()>> {
    tokio::time::timeout(GRACE, PROFILER.lock()).await.ok()
}

/// What `/debug/pprof/profile` and `/debug/pprof/flamegraph` take.
const PARAMETERS: [&str; 2] = ["seconds", "frequency"];

/// `GET /debug/pprof/profile`: gzipped `profile.proto`.
///
/// Encoding and compressing a profile of thousands of stacks takes
/// milliseconds, as does drawing one: both run on the blocking pool, so
/// that the runtime's workers go on answering other requests.
pub(crate) async fn profile(method: Method, RawQuery(raw): RawQuery) -> Result<Response, Failure> {
    if method == Method::HEAD {
        return checked(raw.as_deref()).map(|()| reply::profile_head("profile"));
    }
    let report = capture(raw.as_deref()).await?;
    blocking(move || {
        let profile = report.pprof().map_err(|err| internal_error("could not encode the profile", err))?;
        Ok(reply::profile(&profile, "profile"))
    })
    .await?
}

/// `GET /debug/pprof/flamegraph`: the CPU profile as an SVG.
pub(crate) async fn flamegraph(method: Method, RawQuery(raw): RawQuery) -> Result<Response, Failure> {
    if method == Method::HEAD {
        return checked(raw.as_deref()).map(|()| reply::head("image/svg+xml"));
    }
    let report = capture(raw.as_deref()).await?;
    blocking(move || {
        let svg = reply::flamegraph("CPU profile", "samples", folded(&report).iter().map(String::as_str))
            .map_err(|err| internal_error("could not draw the flamegraph", err))?;
        Ok(reply::svg(svg))
    })
    .await?
}

/// What a `HEAD` request gets instead of a profile: the checks of its
/// parameters, so that it answers as a `GET` would begin to, but no
/// profiling. A monitor's or link checker's probe must not hold the
/// process-wide profiler for a window (a real request meanwhile gets 409).
fn checked(raw: Option<&str>) -> Result<(), Failure> {
    parameters(raw).map(drop)
}

/// The window and the sampling frequency (Hz) a request asks for.
fn parameters(raw: Option<&str>) -> Result<(Duration, i32), Failure> {
    let query = Query::parse(raw);
    query.misspelt(&PARAMETERS).map_err(bad_request)?;
    Ok((query.seconds().map_err(bad_request)?, query.frequency().map_err(bad_request)?))
}

/// Parses the window, takes the profiler, profiles for the window and
/// builds the report; the response to send instead when any of it fails.
async fn capture(raw: Option<&str>) -> Result<Report, Failure> {
    let (window, hz) = parameters(raw)?;
    // Taken before the slow part of starting, so that requests get the
    // profiler in the order they came: two that both waited for the one-time
    // load of debug info would race for it, and the later one could win
    // while the earlier got 409. A client leaving during the load drops this
    // future, and `held` with it.
    let held = take_profiler().await.ok_or_else(busy)?;
    let builder = blocking(move || prepare(hz)).await?;
    // `held` goes along so that it is released only after the profiler
    // stops, even if this future is dropped while it starts (then the
    // runtime drops the finished task's output).
    let running = blocking(move || start(builder).map(|guard| Running::new(guard, held))).await??;
    // Dropping this future (client gone) drops `running`: the profiler
    // stops (on the blocking pool), then `held` goes.
    tokio::time::sleep(window).await;
    // Symbolizing every sampled frame takes a while too.
    blocking(move || running.finish().map_err(|err| internal_error("profiling failed", err))).await?
}

/// A running CPU profile and the lock on the profiler. The fields drop in
/// this order, so the lock is released only once the profiler has stopped:
/// a request waiting for it then cannot find pprof-rs still running (409).
struct Profiling {
    guard: ProfilerGuard<'static>,
    _held: MutexGuard<'static, ()>,
}

/// A [`Profiling`] that, dropped on a runtime's thread (the client left
/// mid-window, the server's future was dropped), stops on the blocking
/// pool: stopping frees pprof-rs's sample collector and makes a new one
/// with a temporary file, tens of milliseconds in which a worker would
/// answer nothing else.
struct Running(Option<Profiling>);

impl Running {
    fn new(guard: ProfilerGuard<'static>, held: MutexGuard<'static, ()>) -> Running {
        Running(Some(Profiling { guard, _held: held }))
    }

    /// The report, then the profile stopped here: on the blocking pool
    /// already.
    fn finish(mut self) -> pprof::Result<Report> {
        let profiling = self.0.take().expect("a profile is taken out only here and by drop");
        profiling.guard.report().build()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(profiling) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => stop_on_the_blocking_pool(&runtime, profiling),
            // No runtime's thread to hold up.
            Err(_) => drop(profiling),
        }
    }
}

/// Stops `profiling` on `runtime`'s blocking pool, or here if the pool does
/// not take it. A runtime shutting down drops the task, which stops it,
/// where it is spawned. `spawn_blocking` panics when the OS refuses a thread
/// and none is free, leaving the task queued: stopping here then keeps the
/// profiler from being held until some later thread runs it.
fn stop_on_the_blocking_pool(runtime: &tokio::runtime::Handle, profiling: Profiling) {
    let slot = Arc::new(std::sync::Mutex::new(Some(profiling)));
    let stop = Stop(Arc::clone(&slot));
    let spawned = std::panic::catch_unwind(AssertUnwindSafe(|| drop(runtime.spawn_blocking(move || drop(stop)))));
    if spawned.is_err() {
        drop(Stop(slot));
    }
}

/// Stops the profile in its slot, if still there, when dropped.
struct Stop(Arc<std::sync::Mutex<Option<Profiling>>>);

impl Drop for Stop {
    fn drop(&mut self) {
        // The slot stays whole if a holder panicked: it is only ever taken.
        let profiling = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(profiling);
    }
}

fn internal_error(what: &str, err: impl std::fmt::Display) -> Failure {
    Failure::internal(what, err)
}

/// A profiler builder with the address ranges of [`BLOCKLIST`] (read from
/// the loaded objects), after the one-time loading of the debug info that
/// pprof-rs's start does through a resolved backtrace: seconds in a debug build.
fn prepare(hz: i32) -> ProfilerGuardBuilder {
    static DEBUG_INFO: Once = Once::new();
    DEBUG_INFO.call_once(|| drop(backtrace::Backtrace::new()));
    ProfilerGuardBuilder::default().frequency(hz).blocklist(&BLOCKLIST)
}

fn start(builder: ProfilerGuardBuilder) -> Result<ProfilerGuard<'static>, Failure> {
    match builder.build() {
        Ok(guard) => Ok(guard),
        // This server's own profiles hold `PROFILER` while pprof-rs runs, so
        // this is one it did not start: someone else in the process started
        // pprof-rs directly, or pprof-rs stopped one of ours only half (it
        // keeps saying `Running` when the temporary file for its next
        // samples cannot be made, e.g. `TMPDIR` gone or read-only).
        Err(pprof::Error::Running) => Err(Failure::new(
            StatusCode::CONFLICT,
            "pprof-rs reports a CPU profile running that this server did not start: another user of pprof-rs \
             in this process (retry when it ends), or pprof-rs left running by a failed stop (an unwritable \
             TMPDIR), which only a restart of the process clears",
        )),
        Err(err) => Err(internal_error("cannot start the profiler", err)),
    }
}

fn bad_request(message: String) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, message)
}

fn busy() -> Failure {
    Failure::new(StatusCode::CONFLICT, "a CPU profile is already running in this process; retry when it ends")
}

/// The report as folded stacks, thread first, root frame next, as pprof-rs
/// draws its own flamegraphs.
fn folded(report: &Report) -> Vec<String> {
    report
        .data
        .iter()
        .map(|(frames, count)| {
            // A thread's name is as free as a symbol's.
            let mut stack = vec![frame_name(&frames.thread_name_or_id())];
            stack.extend(frames.frames.iter().rev().flat_map(|frame| frame.iter().rev().map(frame_name)));
            format!("{} {count}", stack.join(";"))
        })
        .collect()
}

/// A symbol or thread name as one frame of a folded stack: `;` separates
/// frames there, and Rust's array types have one (`<[T; N]>::map`). The view
/// profiles use the same rule.
fn frame_name(symbol: &impl std::fmt::Display) -> String {
    snapview_instrument::text::folded_frame(&symbol.to_string()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::frame_name;

    #[test]
    fn a_symbol_is_one_frame_of_a_folded_stack() {
        assert_eq!(frame_name(&"<[T; N]>::map"), "<[T: N]>::map");
        assert_eq!(frame_name(&"core::ptr::drop_in_place"), "core::ptr::drop_in_place");
    }
}
