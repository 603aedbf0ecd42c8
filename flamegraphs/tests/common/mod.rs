//! What the test binaries share: the telemetry subscriber, a workload that
//! takes snapview views inside an application span, a debug server on an
//! ephemeral loopback port, and decoders for what it answers.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pprof::protos::{Message, Profile};
use snapview::SnapMap;
use snapview_flame::{ConnectionLimits, DebugConfig};
use snapview_instrument::{Telemetry, TelemetryGuard};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The CPU workload's function, to find in CPU profiles.
pub const SPIN_FN: &str = "snapview_workload_spin";
/// The view frame the workload produces, to find in view profiles.
pub const SNAPSHOT_FRAME: &str = "snapview.snapshot{map=routes}";
/// The application span the workload's views nest under.
pub const ROUTE_FRAME: &str = "GET /route";

/// Installs the telemetry subscriber (no fmt output, view layer on) as the
/// global default, once: spans on the server's worker threads and on the
/// workload thread must all reach it.
pub fn install_telemetry() {
    static GUARD: OnceLock<TelemetryGuard> = OnceLock::new();
    GUARD.get_or_init(|| Telemetry::builder().fmt(false).install().expect("telemetry installs"));
}

/// Starts, once per process, a thread that keeps taking views of a map
/// called `routes` inside a `GET /route` span and burning CPU in
/// [`SPIN_FN`]. It stops by itself after two minutes.
pub fn start_workload() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        install_telemetry();
        std::thread::Builder::new().name("workload".into()).spawn(workload).expect("workload thread starts");
    });
}

fn workload() {
    let mut routes = SnapMap::<u64, u64>::builder().name("routes").sample_every(1).build();
    routes.extend((0..64).map(|k| (k, k)));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut round = 0u64;
    while Instant::now() < deadline {
        let _request = tracing::info_span!("request", otel.name = ROUTE_FRAME).entered();
        let snapshot = routes.snapshot();
        let sum: u64 = snapshot.values().sum();
        snapview_workload_spin(sum);
        round += 1;
        if round.is_multiple_of(64) {
            routes.insert(round % 128, round);
        }
    }
}

/// Busy work with a name that survives into the profile.
#[inline(never)]
fn snapview_workload_spin(seed: u64) -> u64 {
    let mut x = seed;
    for i in 0..20_000u64 {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// Whether `go` runs here; when it does not, a test that needs it is
/// skipped (saying so), unless `SNAPVIEW_REQUIRE_TOOLS` is set (as in CI,
/// which installs Debian's `golang-go`), where that is a failure.
pub fn go_is_installed() -> bool {
    if std::process::Command::new("go").arg("version").output().is_ok() {
        return true;
    }
    assert!(std::env::var_os("SNAPVIEW_REQUIRE_TOOLS").is_none(), "SNAPVIEW_REQUIRE_TOOLS is set but `go` is missing");
    eprintln!("skipped: `go` not found (Debian: apt-get install golang-go)");
    false
}

/// A debug server on 127.0.0.1:0; stopped when dropped.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    /// Serves `config` on an ephemeral loopback port of the current runtime.
    pub async fn start(config: DebugConfig) -> Server {
        Server::start_within(config, ConnectionLimits::default()).await
    }

    /// [`start`](Self::start) within `limits`.
    pub async fn start_within(config: DebugConfig, limits: ConnectionLimits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds loopback");
        let base = format!("http://{}", listener.local_addr().expect("has an address"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let signal = async {
                let _ = stopped.await;
            };
            snapview_flame::serve_with_limits(listener, config, limits, signal).await.expect("serves");
        });
        Server { base, stop: Some(stop) }
    }

    /// The server with no token.
    pub async fn open() -> Server {
        Server::start(DebugConfig::default().without_token()).await
    }

    /// The full URL of `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// `GET path_and_query`, read whole: (status, content type, body).
    pub async fn get(&self, path_and_query: &str) -> (u16, String, Vec<u8>) {
        get(&self.url(path_and_query), None).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `GET url` (with `Authorization` if given), read whole: (status, content type, body).
pub async fn get(url: &str, authorization: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().expect("ascii").to_owned()).unwrap_or_default();
    let body = response.bytes().await.expect("the body arrives").to_vec();
    (status, content_type, body)
}

/// [`get`] without a borrowed URL, for `tokio::spawn`.
pub async fn get_owned(url: String) -> (u16, String, Vec<u8>) {
    get(&url, None).await
}

/// A gzipped `profile.proto`, checked for the gzip magic and decoded with
/// pprof's own types.
pub fn decode_profile(body: &[u8]) -> Profile {
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip magic");
    let mut proto = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut proto).expect("gunzips");
    Profile::decode(proto.as_slice()).expect("decodes as profile.proto")
}

/// Whether a string of the profile's table contains `needle`.
pub fn has_string(profile: &Profile, needle: &str) -> bool {
    profile.string_table.iter().any(|s| s.contains(needle))
}

/// Parses an SVG as XML and returns all its text.
pub fn svg_text(body: &[u8]) -> String {
    let text = std::str::from_utf8(body).expect("utf-8");
    // With roxmltree's defaults, which refuse a DTD: the answer has none.
    let doc = roxmltree::Document::parse(text).expect("the SVG is XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants().filter_map(|node| node.text()).collect::<Vec<_>>().join("\n")
}

/// Set in a child process only: an ignored case run by hand (`--ignored`)
/// without it returns at once instead of acting on the runner's process.
const CHILD: &str = "SNAPVIEW_TEST_CHILD";

/// Runs the ignored `case` of this test binary in a child process with `env`
/// set (process-wide state: the environment, pprof-rs's profiler); asserts
/// that it ran (a name that matches no test runs none, and exits 0) and
/// passed.
pub fn run_child(case: &str, env: (&str, &std::ffi::OsStr)) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", case, "--nocapture"])
        .env(CHILD, "1")
        .env(env.0, env.1)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{case} failed in its child process:\n{stdout}\n{stderr}");
    assert!(stdout.contains("test result: ok. 1 passed"), "{case} did not run:\n{stdout}\n{stderr}");
}

/// Whether this is a child process of [`run_child`].
pub fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}
