//! The `service` example's command line and start-up banner.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use snapview::debug::DebugConfig;

use super::Config;
use super::load::{self, LoadConfig};

/// The usage message (bad flags print it and exit with status 2).
pub const USAGE: &str = "\
usage: service [OPTIONS]

  --addr ADDR          listen here (default 127.0.0.1:8080, else a free port if it is taken;
                       port 0 picks a free port)
  --allow-remote       allow a non-loopback --addr, and any Host on /debug/pprof and /metrics
                       (set --token too: without one, a web page could reach them by DNS rebinding)
  --routes PATH        routes file (default examples/data/routes.toml)
  --seconds N          run N seconds, then shut down cleanly (default: until Ctrl-C)
  --no-load            do not start the built-in load generator
  --rate N             load generator route requests/s, 1..=5000 (default 200; plus /metrics once a second)
  --load-seconds N     stop the load generator after N seconds, 1..=3600 (default 300)
  --token TOKEN        bearer token for /debug/pprof/* and /metrics (default: $SNAPVIEW_DEBUG_TOKEN;
                       an empty TOKEN is refused at start: to serve without a token, leave out
                       --token with SNAPVIEW_DEBUG_TOKEN unset or empty)
  -h, --help           this message

environment: RUST_LOG (log filter, default info), OTEL_EXPORTER_OTLP_ENDPOINT (export
traces and metrics over OTLP, e.g. http://localhost:4317 for Jaeger),
OTEL_EXPORTER_OTLP_PROTOCOL (grpc, the default, or http/protobuf)";

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Args {
    /// The service's configuration.
    pub config: Config,
    /// Run this long, then shut down; `None`: until Ctrl-C.
    pub run_for: Option<Duration>,
    /// Whether `--addr` was given: if not, and the default port is taken,
    /// the service listens on a free port instead of failing.
    pub addr_given: bool,
}

/// Parses the arguments (without the program name). `Ok(None)` means
/// `--help` was asked for.
///
/// # Errors
///
/// A message naming the bad flag or value.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut config = Config::default();
    let mut load = Some(LoadConfig::default());
    let (mut rate, mut load_seconds) = (load::DEFAULT_RATE, load::DEFAULT_DURATION.as_secs());
    let (mut run_for, mut addr_given) = (None, false);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--addr" => {
                let v = value()?;
                config.addr = v.parse().map_err(|_| format!("--addr: not an IP:port address: {v:?}"))?;
                addr_given = true;
            }
            "--allow-remote" => config.allow_remote = true,
            "--routes" => config.routes_path = PathBuf::from(value()?),
            "--seconds" => run_for = Some(Duration::from_secs(number(&flag, &value()?, 1..=86_400)?)),
            "--no-load" => load = None,
            "--rate" => rate = number(&flag, &value()?, 1..=u64::from(load::MAX_RATE))? as u32,
            "--load-seconds" => load_seconds = number(&flag, &value()?, 1..=load::MAX_DURATION.as_secs())?,
            "--token" => {
                let token = value()?;
                // Said here in the flag's terms: `DebugConfig::validate`'s
                // message would point a command-line user at code.
                if token.is_empty() {
                    return Err("--token is empty (an unset variable?): give a token, or leave out --token \
                                to serve without one (with SNAPVIEW_DEBUG_TOKEN unset or empty)"
                        .to_owned());
                }
                config.debug = DebugConfig::default().token(token);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !config.addr.ip().is_loopback() && !config.allow_remote {
        return Err(format!("--addr {}: not a loopback address; add --allow-remote (and --token)", config.addr));
    }
    config.load = load.map(|_| LoadConfig { rate, duration: Duration::from_secs(load_seconds) });
    Ok(Some(Args { config, run_for, addr_given }))
}

fn number(flag: &str, value: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!("{flag} must be a whole number in {}..={}, got {value:?}", range.start(), range.end())),
    }
}

/// What to open and try, printed at start.
pub fn banner(addr: SocketAddr, args: &Args) -> String {
    let base = format!("http://{addr}");
    let routes = args.config.routes_path.display();
    let load = match &args.config.load {
        Some(load) => format!("on: {} requests/s for {} s (--no-load to turn off)", load.rate, load.duration.as_secs()),
        None => "off".to_owned(),
    };
    let until = match args.run_for {
        Some(d) => format!("for {} s", d.as_secs()),
        None => "until Ctrl-C".to_owned(),
    };
    let tokened = args.config.debug.token.is_some();
    let auth = if tokened { " -H \"Authorization: Bearer $SNAPVIEW_DEBUG_TOKEN\"" } else { "" };
    // A browser and `go tool pprof` cannot send the token's header: with a
    // token, fetch with curl and read the file.
    let (index, go_tools) = if tokened {
        (
            format!("curl{auth} {base}/debug/pprof/                # the index of the debug endpoints"),
            format!(
                "curl{auth} -o views.pb.gz '{base}/debug/pprof/views?seconds=5&format=pprof' && go tool pprof -top views.pb.gz
  curl{auth} -o cpu.pb.gz '{base}/debug/pprof/profile?seconds=5' && go tool pprof -top cpu.pb.gz   # CPU profile"
            ),
        )
    } else {
        (
            format!(
                "curl {base}/debug/pprof/                # the index of the debug endpoints (or open it in a browser)"
            ),
            format!(
                "go tool pprof -top '{base}/debug/pprof/views?seconds=5&format=pprof'
  go tool pprof -top '{base}/debug/pprof/profile?seconds=5'      # CPU profile"
            ),
        )
    };
    let token_note = if tokened {
        "\nThe debug endpoints need the token: export SNAPVIEW_DEBUG_TOKEN=<the token> for the commands below.\n"
    } else {
        ""
    };
    format!(
        "\
snapview demo gateway listening on {base} ({until}); load generator {load}
{token_note}
Try:
  curl {base}/route/api/users/42          # resolved on one snapshot of `routes` (JSON; not proxied)
  curl {base}/route/nowhere               # 404: no route
  curl{auth} {base}/metrics                     # per-route counters from one snapshot of `request_stats`
  curl{auth} {base}/debug/pprof/histograms       # latency of every snapshot, iteration, publish
  {index}
  curl{auth} -o views.svg '{base}/debug/pprof/views?seconds=5'   # view-cost flamegraph (SVG)
  {go_tools}
  curl{auth} -o cpu.svg '{base}/debug/pprof/flamegraph?seconds=5'

Edit the routes while it runs (the change is published as one version and its diff logged):
  $EDITOR {routes}

Traces in Jaeger: run
  docker run --rm -p 16686:16686 -p 4317:4317 -p 4318:4318 jaegertracing/all-in-one:latest
then start this with OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 and open http://localhost:16686
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Option<Args>, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults() {
        let args = parse_strs(&[]).unwrap().unwrap();
        assert_eq!(args.config.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(args.config.load, Some(LoadConfig::default()));
        assert_eq!(args.run_for, None);
    }

    #[test]
    fn flags() {
        let args = parse_strs(&["--addr", "127.0.0.1:0", "--seconds", "2", "--rate", "50", "--routes", "r.toml"])
            .unwrap()
            .unwrap();
        assert_eq!(args.config.addr.port(), 0);
        assert_eq!(args.run_for, Some(Duration::from_secs(2)));
        assert_eq!(args.config.load.unwrap().rate, 50);
        assert_eq!(args.config.routes_path, PathBuf::from("r.toml"));
        assert_eq!(parse_strs(&["--no-load"]).unwrap().unwrap().config.load, None);
        assert!(parse_strs(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn bad_flags_are_named() {
        for (args, needle) in [
            (&["--rate", "6000"][..], "--rate"),
            (&["--seconds", "x"], "--seconds"),
            (&["--seconds"], "needs a value"),
            (&["--addr", "0.0.0.0:80"], "loopback"),
            (&["--frobnicate"], "--frobnicate"),
        ] {
            let err = parse_strs(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        assert!(parse_strs(&["--addr", "0.0.0.0:80", "--allow-remote"]).is_ok());
    }

    #[test]
    fn with_a_token_every_debug_command_sends_it() {
        let addr = "127.0.0.1:8080".parse().unwrap();
        let tokened = parse_strs(&["--token", "s3cret"]).unwrap().unwrap();
        let text = banner(addr, &tokened);
        assert!(text.contains("export SNAPVIEW_DEBUG_TOKEN"), "{text}");
        let debug_lines: Vec<&str> =
            text.lines().filter(|line| line.contains("/debug/pprof") || line.contains("/metrics")).collect();
        assert!(debug_lines.len() >= 7, "{text}");
        for line in debug_lines {
            assert!(line.contains("Bearer $SNAPVIEW_DEBUG_TOKEN"), "{line}");
            assert!(!line.trim_start().starts_with("open ") && !line.trim_start().starts_with("go tool"), "{line}");
        }
        let mut untokened = parse_strs(&[]).unwrap().unwrap();
        untokened.config.debug = DebugConfig::default().without_token();
        let open = banner(addr, &untokened);
        assert!(!open.contains("Authorization"), "{open}");
        assert!(open.contains("go tool pprof -top 'http://127.0.0.1:8080/debug/pprof/profile"), "{open}");
        // Every command runs as printed on Linux (there, `open` is not a browser).
        assert!(open.lines().all(|line| !line.trim_start().starts_with("open ")), "{open}");
    }
}
