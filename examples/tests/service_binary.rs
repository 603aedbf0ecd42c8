//! The README's first command, shortened: the `service` example runs with
//! its load generator for 2 s, prints the URLs and the latency report, and
//! exits 0; bad flags exit 2; a Ctrl-C during shutdown stops it at once;
//! with `OTEL_EXPORTER_OTLP_ENDPOINT` its traces reach a collector.

#[path = "support/example_binary.rs"]
mod example_binary;
#[path = "../../instrumentation/tests/support/otlp_receiver.rs"]
mod otlp_receiver;

use std::process::{Command, Output};

/// The service, in an environment of the test's own: none of the runner's
/// `OTEL_*` variables (the demo reads them: an `OTEL_TRACES_EXPORTER=console`
/// of the machine's would stop it) nor its debug token, and `RUST_LOG=info`.
fn service() -> Command {
    let mut command = Command::new(example_binary::example_binary("service"));
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if name.starts_with("OTEL_") || name == "SNAPVIEW_DEBUG_TOKEN" {
            command.env_remove(&var);
        }
    }
    command.env("RUST_LOG", "info");
    command
}

fn run(args: &[&str]) -> Output {
    service().args(args).output().expect("the service example runs")
}

#[test]
fn runs_for_the_given_seconds_and_exits_0() {
    let output = run(&["--seconds", "2", "--addr", "127.0.0.1:0"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    assert!(stdout.contains("listening on http://127.0.0.1:"), "{stdout}");
    assert!(!stdout.contains("127.0.0.1:0/"), "the real port is printed: {stdout}");
    for wanted in ["/route/api/users", "/metrics", "/debug/pprof/histograms", "go tool pprof", "views?seconds=5"] {
        assert!(stdout.contains(wanted), "{wanted} missing:\n{stdout}");
    }
    // The load generator's requests show in the report, under both maps.
    assert!(stdout.contains("load generator: ") && stdout.contains(" answered, 0 failed"), "{stdout}");
    let report = stdout.split("latency of each view").nth(1).unwrap_or_else(|| panic!("no report:\n{stdout}"));
    assert!(report.lines().any(|l| l.starts_with("routes ") && l.contains("snapshot")), "{report}");
    assert!(report.lines().any(|l| l.starts_with("request_stats ") && l.contains("publish")), "{report}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[test]
fn bad_flags_exit_2_with_the_usage() {
    let output = run(&["--rate", "0"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--rate") && stderr.contains("usage: service"), "{stderr}");
}

/// An OTLP protocol the exporters do not speak (`http/json` is in the spec)
/// was taken as gRPC, and every export failed with only SDK warnings to say
/// so: the service now refuses to start, naming the variable.
#[test]
fn an_unsupported_otlp_protocol_is_refused_at_start() {
    let output = service()
        .args(["--addr", "127.0.0.1:0", "--no-load", "--seconds", "1"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .output()
        .expect("the service example runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\" is not valid: expected grpc or http/protobuf"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening on"), "it did not start");
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the demo's traces reach a real
/// OTLP gRPC receiver as Jaeger would get them: the load generator's requests,
/// each a `request` span named after its route template with an integer
/// status code, and under it the `routes` snapshot and the `route` span of
/// the version it resolved with, all in one trace, from service
/// `snapview-demo`; and the latency histograms of its maps.
/// `OTEL_SERVICE_NAME` names the service, as for any OpenTelemetry
/// program; `snapview-demo` is only the default.
#[test]
fn otel_service_name_names_it() {
    let (endpoint, receiver) = otlp_receiver::start();
    let output = service()
        .args(["--seconds", "1", "--addr", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_SERVICE_NAME", "edge-gateway")
        .output()
        .expect("the service example runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\n{stderr}", output.status);
    let named = |r: &otlp_receiver::ReceiverHandle| !r.service_names().is_empty();
    assert!(receiver.wait_until(std::time::Duration::from_secs(10), named), "nothing arrived\n{stderr}");
    assert!(receiver.service_names().iter().all(|name| name == "edge-gateway"), "{:?}", receiver.service_names());
}

#[test]
fn its_traces_reach_an_otlp_collector() {
    use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use otlp_receiver::{integer_attribute, string_attribute};

    let (endpoint, receiver) = otlp_receiver::start();
    let output = service()
        .args(["--seconds", "2", "--addr", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .output()
        .expect("the service example runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\n{stderr}", output.status);
    // The final export was sent before the exit; the receiver may still be
    // taking it in.
    // Spans and metrics are separate exports: both are waited for.
    let requests = |r: &otlp_receiver::ReceiverHandle| r.spans().iter().any(|s| s.name == "GET /route/{*path}");
    let histograms = |r: &otlp_receiver::ReceiverHandle| r.metrics().iter().any(|m| m.name == "snapview.op.duration");
    let both = |r: &otlp_receiver::ReceiverHandle| requests(r) && histograms(r);
    assert!(
        receiver.wait_until(std::time::Duration::from_secs(10), both),
        "no request span ({}) or no histograms ({}) arrived\n{stderr}",
        requests(&receiver),
        histograms(&receiver)
    );
    let spans = receiver.spans();
    let children = |parent: &Span, name: &str| -> Vec<&Span> {
        spans.iter().filter(|s| s.parent_span_id == parent.span_id && s.name.starts_with(name)).collect()
    };
    let routed = |request: &&Span| !children(request, "GET /api").is_empty();
    let request = spans
        .iter()
        .filter(|s| s.name == "GET /route/{*path}")
        .find(routed)
        .unwrap_or_else(|| panic!("a request routed to /api, among {} spans\n{stderr}", spans.len()));
    assert!(request.parent_span_id.is_empty(), "a request starts its trace: {request:#?}");
    assert_eq!(integer_attribute(&request.attributes, "http.response.status_code").as_deref(), Some("200"));
    let route = children(request, "GET /api")[0];
    let snapshot = match children(request, "snapview.snapshot")[..] {
        [snapshot] => snapshot,
        ref found => panic!("one snapshot per request, found {}: {request:#?}", found.len()),
    };
    assert_eq!(string_attribute(&snapshot.attributes, "map"), Some("routes"), "{snapshot:#?}");
    let version = integer_attribute(&snapshot.attributes, "version");
    assert!(version.is_some(), "{snapshot:#?}");
    assert_eq!(integer_attribute(&route.attributes, "routes.version"), version, "{route:#?}");
    assert!(snapshot.trace_id == request.trace_id && route.trace_id == request.trace_id);
    assert!(receiver.service_names().iter().all(|name| name == "snapview-demo"), "{:?}", receiver.service_names());

    // And its latency histograms, as OTLP histograms, for both maps.
    let metrics = receiver.metrics();
    let histogram = metrics.iter().rev().find(|m| m.name == "snapview.op.duration").expect("the histograms");
    let timed = |map: &str, op: &str| {
        let points = otlp_receiver::histogram_points(histogram);
        let of = |p: &&HistogramDataPoint| {
            string_attribute(&p.attributes, "map") == Some(map) && string_attribute(&p.attributes, "op") == Some(op)
        };
        points.iter().find(of).map_or(0, |p| p.count)
    };
    assert!(timed("routes", "snapshot") > 0 && timed("request_stats", "publish") > 0, "{histogram:#?}");
}

/// The service on a free loopback port, without load, OTLP or token, until
/// Ctrl-C; its stdout piped, and its stderr if `stderr` (then the caller
/// must read it).
fn spawn_until_ctrl_c(stderr: bool) -> std::process::Child {
    use std::process::Stdio;
    service()
        .args(["--addr", "127.0.0.1:0", "--no-load"])
        .stdout(Stdio::piped())
        .stderr(if stderr { Stdio::piped() } else { Stdio::null() })
        .spawn()
        .expect("the service example starts")
}

/// One Ctrl-C, sent as soon as the banner is out: a clean shutdown, exit 0,
/// with the latency report printed. (Before tokio's handler was installed,
/// which the first wait for Ctrl-C did after the banner, it killed.)
#[test]
fn one_ctrl_c_right_after_the_banner_shuts_down_cleanly() {
    shuts_down_cleanly_on("INT");
}

/// SIGTERM (`docker stop`, systemd) shuts down as Ctrl-C does: exit 0,
/// the report printed.
#[test]
fn sigterm_shuts_down_cleanly() {
    shuts_down_cleanly_on("TERM");
}

/// Sends `signal` as soon as the banner is out; the service must exit 0
/// with its latency report.
fn shuts_down_cleanly_on(signal: &str) {
    use std::io::{BufRead, BufReader, Read};
    use std::time::{Duration, Instant};

    let mut child = spawn_until_ctrl_c(false);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    stdout.read_line(&mut banner).unwrap();
    assert!(banner.contains("listening on http://127.0.0.1:"), "{banner}");
    let sent = Instant::now();
    send_signal(&child, signal);
    let status = exit_within(&mut child, sent, Duration::from_secs(10));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "a clean shutdown on SIG{signal}: {status:?}\n{rest}");
    assert!(rest.contains("latency of each view"), "the report is printed:\n{rest}");
}

/// `kill -<signal>` by the shell's own `kill`: no package to install for it.
fn send_signal(child: &std::process::Child, signal: &str) {
    let sent = Command::new("sh").args(["-c", &format!("kill -{signal} {}", child.id())]).status().expect("sh runs");
    assert!(sent.success(), "kill -{signal}");
}

/// A second SIGTERM, while the first waits for a running request, stops
/// the program at once, with the exit status of a SIGTERM (143).
#[test]
fn a_second_sigterm_stops_at_once() {
    a_second_signal_stops_at_once("TERM", 143);
}

/// Sends `signal`, and once the service is shutting down (a 30 s profile
/// keeps it waiting, at most the grace), `signal` again: the service must
/// stop at once with `status`.
fn a_second_signal_stops_at_once(signal: &str, status: i32) {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    let mut child = spawn_until_ctrl_c(true);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = lines.next().expect("a banner").unwrap();
    let addr = banner.split("listening on http://").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().to_owned();
    let shutting_down = shutting_down_lines(&mut child);
    let _profile = long_profile_holding_the_profiler(&addr);
    send_signal(&child, signal);
    // Two signals pending at once would be delivered as one.
    shutting_down.recv_timeout(Duration::from_secs(10)).expect("the first signal starts the shutdown");
    let second = Instant::now();
    send_signal(&child, signal);
    let exited = exit_within(&mut child, second, Duration::from_secs(3));
    assert_eq!(exited.code(), Some(status), "a second SIG{signal}: {exited:?}");
}

/// Reads `child`'s piped stderr on a thread of its own; each "shutting
/// down" line sends on the returned channel.
fn shutting_down_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<()> {
    use std::io::{BufRead, BufReader};
    let (shutting_down, told) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("shutting down") {
                let _ = shutting_down.send(());
            }
        }
    });
    told
}

/// A Ctrl-C flushes the telemetry: the span of a request answered just
/// before it reaches the collector, sent by the exiting process (the span
/// could not arrive after the exit otherwise).
#[test]
fn a_ctrl_c_flushes_the_traces() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let (endpoint, receiver) = otlp_receiver::start();
    let mut child = service()
        .args(["--addr", "127.0.0.1:0", "--no-load"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the service example starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    stdout.read_line(&mut banner).unwrap();
    let addr = banner.split("listening on http://").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().to_owned();
    let mut request = std::net::TcpStream::connect(&addr).unwrap();
    request.write_all(b"GET /route/api/users/7 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    request.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let sent = Instant::now();
    send_signal(&child, "INT");
    let status = exit_within(&mut child, sent, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
    let requests = |r: &otlp_receiver::ReceiverHandle| r.spans().iter().any(|s| s.name == "GET /route/{*path}");
    assert!(receiver.wait_until(Duration::from_secs(5), requests), "the request's span was not flushed at Ctrl-C");
}

/// Without `--addr`, a taken default port (8080) does not stop the demo: it
/// listens on a free port and says so in the banner. With `--addr`, the
/// address asked for is kept, and a taken one is an error.
#[test]
fn a_taken_default_port_falls_back_to_a_free_one() {
    use std::net::TcpListener;

    // Hold 8080 for the test, unless something else already does.
    let _held = TcpListener::bind("127.0.0.1:8080");
    assert!(TcpListener::bind("127.0.0.1:8080").is_err(), "8080 is taken, by this test or another program");
    let output = run(&["--seconds", "1", "--no-load"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "exit {:?}\n{stdout}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("listening on http://127.0.0.1:"), "{stdout}");
    assert!(!stdout.contains("listening on http://127.0.0.1:8080 "), "{stdout}");

    let output = run(&["--seconds", "1", "--no-load", "--addr", "127.0.0.1:8080"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen on 127.0.0.1:8080"));
}

/// Ctrl-C lets running requests finish (for up to 5 s); a second one stops
/// the program at once, with the exit status of an interrupt (130).
#[test]
fn a_second_ctrl_c_stops_at_once() {
    a_second_signal_stops_at_once("INT", 130);
}

/// A Ctrl-C while the final export waits for a collector that does not
/// answer stops the program at once too (130): the export ran after the
/// runtime, with the second Ctrl-C's listener, was gone.
#[test]
fn a_ctrl_c_during_the_final_export_stops_at_once() {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    // A collector that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let mut child = service()
        .args(["--addr", "127.0.0.1:0", "--no-load", "--seconds", "1"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the service example starts");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines().map_while(Result::ok);
    assert!(lines.any(|line| line.contains("stopped")), "the service reports it stopped");
    // Now it waits for the export (2 s at most); keep draining its stderr.
    std::thread::spawn(move || lines.for_each(drop));
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    send_signal(&child, "INT");
    let status = exit_within(&mut child, sent, Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "stopped by the Ctrl-C, not by the export's end: {status:?}");
    assert!(sent.elapsed() < Duration::from_secs(1), "{:?}", sent.elapsed());
}

/// A 30 s CPU profile requested from `addr`, once it holds the profiler (a
/// probe is then refused with 409): its connection, kept open. A probe that
/// finds the profiler free holds it for its second, and refuses the long
/// one if it comes meanwhile: that one is then sent again.
fn long_profile_holding_the_profiler(addr: &str) -> std::net::TcpStream {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let request = |path: &str| {
        let mut stream = TcpStream::connect(addr).unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream
    };
    let long_path = "/debug/pprof/profile?seconds=30";
    let mut long = request(long_path);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        // An answer already means it was refused.
        long.set_nonblocking(true).unwrap();
        let answered = !matches!(long.peek(&mut [0]), Err(err) if err.kind() == ErrorKind::WouldBlock);
        long.set_nonblocking(false).unwrap();
        if answered {
            long = request(long_path);
            continue;
        }
        let mut answer = String::new();
        let _ = request("/debug/pprof/profile?seconds=1").read_to_string(&mut answer);
        if answer.starts_with("HTTP/1.1 409") {
            return long;
        }
    }
    panic!("the 30 s profile never took the profiler");
}

/// The exit status of `child`, which must exit within `limit` of `since`.
fn exit_within(
    child: &mut std::process::Child,
    since: std::time::Instant,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(since.elapsed() < limit, "still running {limit:?} after the Ctrl-C");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
