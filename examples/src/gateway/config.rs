//! The routes file: parsing and validation.
//!
//! ```toml
//! [[route]]
//! prefix = "/api"
//! upstream = "http://10.0.0.1:8080"
//! ```
//!
//! A list of tables rather than one `prefix = upstream` table, so that a route
//! can grow fields (timeouts, weights) without changing the format.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::path;

/// A validated routing table: prefix → upstream URL.
///
/// A `BTreeMap` so that errors, logs and the publish batch come in a stable order.
pub type RouteTable = BTreeMap<String, String>;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    // Absent is not a TOML error, so that `parse` can say what is missing
    // in words rather than as serde's "missing field"; `None` (no route
    // written at all) is told from `route = []` (none, on purpose).
    #[serde(default)]
    route: Option<Vec<RouteEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    prefix: String,
    upstream: String,
}

/// Why a routes file was rejected. Its `Display` names the file and the
/// problem (with line and column for syntax errors), for the log.
#[derive(Debug)]
pub struct ConfigError {
    /// The file that was read.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the routes file at `path`; returns the table and the
/// text it came from (what the reloader then compares new text with).
///
/// # Errors
///
/// The file cannot be read, is not valid TOML, or breaks a rule of [`parse`].
pub fn load(path: &Path) -> Result<(RouteTable, String), ConfigError> {
    let text =
        read(path).map_err(|why| ConfigError { path: path.to_owned(), message: format!("cannot read: {why}") })?;
    let table = parse(&text).map_err(|message| ConfigError { path: path.to_owned(), message })?;
    Ok((table, text))
}

/// The routes file's text, unless it is no file to read ([`unreadable`]) or
/// cannot be read.
///
/// The file checked is the file read: the check that decides is made on the
/// open file. Checked only by path and opened again, a rename in between
/// could put a FIFO there, whose open waits for a writer (and with it the
/// reloader and the shutdown), or a file over the limit. (A check by path
/// comes first all the same, so that a path that is plainly no file, a
/// device, is not even opened: opening some has effects.) The open does not
/// wait for a FIFO's writer, and at most [`MAX_ROUTES_FILE`] bytes are
/// taken, however the file grows meanwhile.
///
/// # Errors
///
/// Why it was not read, as one line.
pub fn read(path: &Path) -> Result<String, String> {
    let by_path = std::fs::metadata(path).map_err(|err| err.to_string())?;
    if let Some(why) = unreadable(&by_path) {
        return Err(why);
    }
    let file = open_without_waiting(path).map_err(|err| err.to_string())?;
    let metadata = file.metadata().map_err(|err| err.to_string())?;
    if let Some(why) = unreadable(&metadata) {
        return Err(why);
    }
    // Sized as the file is (the limit's byte more tells that it grew).
    let mut bytes = Vec::with_capacity(metadata.len().min(MAX_ROUTES_FILE) as usize + 1);
    file.take(MAX_ROUTES_FILE + 1).read_to_end(&mut bytes).map_err(|err| err.to_string())?;
    if bytes.len() as u64 > MAX_ROUTES_FILE {
        return Err(format!("grew past the {MAX_ROUTES_FILE} bytes a routes file may have while read"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// Opens `path` for reading; a FIFO's open returns at once rather than wait
/// for a writer (`O_NONBLOCK`, which a regular file's reads ignore), and a
/// terminal swapped in does not become the process's (`O_NOCTTY`).
#[cfg(unix)]
fn open_without_waiting(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)
}

#[cfg(not(unix))]
fn open_without_waiting(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// The largest routes file read, in bytes.
pub const MAX_ROUTES_FILE: u64 = 1 << 20;

/// Why a file of `metadata` is not read as a routes file, if it is not: one
/// that is not a regular file (a FIFO, whose reads wait for a writer and
/// would hold the reloader, and with it the shutdown; a device such as
/// `/dev/zero`, which never ends), or one over [`MAX_ROUTES_FILE`].
pub fn unreadable(metadata: &std::fs::Metadata) -> Option<String> {
    if !metadata.is_file() {
        return Some("not a regular file".to_owned());
    }
    (metadata.len() > MAX_ROUTES_FILE)
        .then(|| format!("{} bytes, over the {MAX_ROUTES_FILE} a routes file may have", metadata.len()))
}

/// A TOML error as one line: where, and the parser's message with its
/// control characters escaped. The message quotes the file (a key it did
/// not expect, say), and a key may hold a line break (`"x\n2099-01-01 ERROR
/// forged" = 1`), which logged as it is would forge a log line.
fn toml_error(text: &str, err: &toml::de::Error) -> String {
    let message: String = err.message().chars().flat_map(escaped_if_control).collect();
    match err.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("TOML error at line {line}, column {column}: {message}")
        }
        None => format!("TOML error: {message}"),
    }
}

/// `c`, or its escape if it is a control character.
fn escaped_if_control(c: char) -> Vec<char> {
    if c.is_control() { c.escape_default().collect() } else { vec![c] }
}

/// The longest route prefix, in bytes: a request's path is looked up only
/// that far, so its cost does not grow with the path's length.
pub const MAX_PREFIX_LEN: usize = 1024;

/// Why a routes file without a single `[[route]]` is rejected. Such a file
/// is far more often one that a failed write left empty or cut short
/// (`./render-routes > routes.toml` that fails before it prints, a full
/// disk) than a wish to drop every route, and publishing it would answer
/// every request 404: it is refused, and the last good routes stay. A file
/// that says `route = []` means it, and is published.
pub const NO_ROUTE: &str = "has no [[route]] (an empty or comment-only file is taken for a failed write, \
                            not for \"no routes\"; write `route = []` for a table with none)";

/// Parses and validates the text of a routes file.
///
/// Rules: every `prefix` starts with `/` and has no trailing `/` (except `/`
/// itself, the catch-all), is at most [`MAX_PREFIX_LEN`] bytes, and is
/// written as requests send it: characters a path carries percent-encoded
/// (spaces, non-ASCII) must be written so (`/caf%C3%A9`), each `%` starting
/// an escape, and no `.` or `..` segment (requests are matched with theirs
/// resolved); prefixes are unique once in the normal form both prefixes and
/// requests are matched in ([`path::normalize`]: `/caf%c3%a9` is
/// `/caf%C3%A9`, `/%61pi` is `/api`), which is the form stored; every
/// `upstream` is an `http://` or `https://` URL with a host, ASCII without
/// spaces or control characters, no fragment and no user credentials; and
/// a route is written, or `route = []` says there is none ([`NO_ROUTE`]).
///
/// # Errors
///
/// A message naming the offending route, for the log.
pub fn parse(text: &str) -> Result<RouteTable, String> {
    let file: RoutesFile = toml::from_str(text).map_err(|err| toml_error(text, &err))?;
    let Some(routes) = file.route else {
        return Err(NO_ROUTE.to_owned());
    };
    let mut table = RouteTable::new();
    for (i, RouteEntry { prefix, upstream }) in routes.into_iter().enumerate() {
        let n = i + 1;
        if !prefix.starts_with('/') {
            return Err(format!("route #{n}: prefix {prefix:?} must start with '/'"));
        }
        if prefix.len() > 1 && prefix.ends_with('/') {
            return Err(format!("route #{n}: prefix {prefix:?} must not end with '/'"));
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(format!("route #{n}: prefix of {} bytes, longer than {MAX_PREFIX_LEN}", prefix.len()));
        }
        if let Some(c) = prefix.chars().find(|&c| !is_path_char(c)) {
            return Err(format!(
                "route #{n}: prefix {prefix:?} has {c:?}, which requests send percent-encoded; write it as {:?}",
                percent_encoded(&prefix)
            ));
        }
        if let Some(at) = prefix.match_indices('%').map(|(at, _)| at).find(|&at| !starts_an_escape(&prefix[at..])) {
            return Err(format!(
                "route #{n}: prefix {prefix:?} has a '%' at byte {at} that starts no escape (two hex digits); \
                 write a '%' itself as %25"
            ));
        }
        if path::has_dot_segments(&prefix) {
            return Err(format!(
                "route #{n}: prefix {prefix:?} has a '.' or '..' segment; requests are matched with theirs resolved"
            ));
        }
        if let Err(why) = check_upstream(&upstream) {
            return Err(format!("route #{n} ({prefix}): upstream {upstream:?} {why}"));
        }
        let normal = path::normalize(&prefix).into_owned();
        if table.insert(normal.clone(), upstream).is_some() {
            return Err(format!("route #{n}: prefix {prefix:?} appears twice (as {normal:?})"));
        }
    }
    Ok(table)
}

/// Why `upstream` is not an `http://` or `https://` URL with a host, if it
/// is not. A whole URI, not only its scheme: the upstream is logged and
/// answered as it is, so a space or a line break in it would forge a log line.
fn check_upstream(upstream: &str) -> Result<(), &'static str> {
    if !(upstream.starts_with("http://") || upstream.starts_with("https://")) {
        return Err("must be an http:// or https:// URL");
    }
    // `Uri` takes anything after a `#` unchecked, and non-ASCII bytes in the
    // path: a URL is ASCII without spaces or controls (RFC 3986).
    if let Some(c) = upstream.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(if c.is_ascii() {
            "has a space or a control character; percent-encode it"
        } else {
            "has a non-ASCII character; percent-encode it"
        });
    }
    if upstream.contains('#') {
        return Err("has a fragment ('#'), which is never sent upstream");
    }
    let uri: axum::http::Uri = upstream.parse().map_err(|_| "is not a URL")?;
    match uri.authority() {
        // Logged and answered to every client: no credentials in it.
        Some(authority) if authority.as_str().contains('@') => Err("has user credentials ('user@'), which are logged"),
        Some(authority) if !authority.host().is_empty() => Ok(()),
        _ => Err("has no host"),
    }
}

/// Whether `s` starts with `%` and two hex digits.
fn starts_an_escape(s: &str) -> bool {
    matches!(s.as_bytes(), [b'%', high, low, ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit())
}

/// Whether `c` may stand for itself in a URL's path (RFC 3986 `pchar`, and
/// `/`; `%` for an escape already written).
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(c)
}

/// `prefix` with each character that is not a path character percent-encoded.
fn percent_encoded(prefix: &str) -> String {
    let mut encoded = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if is_path_char(c) {
            encoded.push(c);
        } else {
            for byte in c.encode_utf8(&mut [0; 4]).bytes() {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file is opened once, and a FIFO's open does not wait for a
    /// writer: swapped in by a rename after a check by path, it would
    /// otherwise hold the reloader, and with it the shutdown.
    #[cfg(unix)]
    #[test]
    fn a_fifo_opens_without_waiting_for_a_writer() {
        let fifo = std::env::temp_dir().join(format!("snapview-examples-open-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs").success());
        let (opened, open) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || opened.send(open_without_waiting(&path).map(|_| ())));
        let result = open.recv_timeout(std::time::Duration::from_secs(10)).expect("the open waited for a writer");
        result.expect("a FIFO opens");
        assert_eq!(read(&fifo).unwrap_err(), "not a regular file");
        std::fs::remove_file(&fifo).unwrap();
    }

    /// The size is checked before anything is read, so a huge file costs
    /// the reloader a `stat`, not a megabyte read at every poll.
    #[test]
    fn a_file_over_the_limit_is_refused_by_its_size() {
        let file = std::env::temp_dir().join(format!("snapview-examples-big-{}.toml", std::process::id()));
        let limit = usize::try_from(MAX_ROUTES_FILE).unwrap();
        std::fs::write(&file, format!("#{}", " ".repeat(limit - 1))).unwrap();
        let at_the_limit = read(&file);
        std::fs::write(&file, format!("#{}", " ".repeat(limit))).unwrap();
        let over = read(&file);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(at_the_limit.map(|text| text.len()), Ok(limit), "a file of exactly the limit is read");
        assert_eq!(over, Err(format!("{} bytes, over the {MAX_ROUTES_FILE} a routes file may have", limit + 1)));
    }

    #[test]
    fn a_toml_error_is_one_line_that_forges_none() {
        let error = parse("\"x\\n2099-01-01T00:00:00Z ERROR FORGED\" = 1").unwrap_err();
        assert_eq!(error.lines().count(), 1, "{error}");
        assert!(error.starts_with("TOML error at line 1, column 1:") && error.contains("\\n2099"), "{error}");
        let error = parse("[[route]]\nprefix = \"/a\"\nupstream = 3\n").unwrap_err();
        assert!(error.starts_with("TOML error at line 3, column 12:"), "{error}");
    }

    #[test]
    fn the_shipped_file_parses() {
        let (table, _) = load(&crate::gateway::default_routes_path()).unwrap();
        assert_eq!(table.get("/api").map(String::as_str), Some("http://10.0.0.1:8080"));
        assert!(table.len() >= 4);
    }

    /// A failed `render > routes.toml` leaves the file empty, or with only
    /// the comments printed before the failure: either would have removed
    /// every route.
    #[test]
    fn a_file_without_a_route_is_refused() {
        for text in ["", "\n  \n", "# routes of the gateway\n# (rendered by render-routes)\n"] {
            assert_eq!(parse(text), Err(NO_ROUTE.to_owned()), "{text:?}");
        }
        // Written out, none is meant: a table with no routes.
        assert_eq!(parse("# every route withdrawn\nroute = []\n"), Ok(RouteTable::new()));
        let file = std::env::temp_dir().join(format!("snapview-examples-no-route-{}.toml", std::process::id()));
        std::fs::write(&file, "# nothing yet\n").unwrap();
        let err = load(&file).unwrap_err();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(err.to_string(), format!("{}: {NO_ROUTE}", file.display()));
        assert!(NO_ROUTE.starts_with("has no [[route]]"), "{NO_ROUTE}");
    }

    #[test]
    fn mistakes_are_named() {
        let syntax = parse("[[route]\nprefix = 1").unwrap_err();
        assert!(syntax.contains("line 1"), "{syntax}");
        let no_slash = parse("[[route]]\nprefix = \"api\"\nupstream = \"http://a\"").unwrap_err();
        assert!(no_slash.contains("must start with '/'"), "{no_slash}");
        let twice =
            "[[route]]\nprefix = \"/a\"\nupstream = \"http://a\"\n[[route]]\nprefix = \"/a\"\nupstream = \"http://b\"";
        assert!(parse(twice).unwrap_err().contains("twice"));
        let scheme = parse("[[route]]\nprefix = \"/a\"\nupstream = \"ftp://a\"").unwrap_err();
        assert!(scheme.contains("http://"), "{scheme}");
        let unknown = parse("[[route]]\nprefix = \"/a\"\nupstream = \"http://a\"\nweight = 3").unwrap_err();
        assert!(unknown.contains("weight"), "{unknown}");
    }

    /// The upstream is logged and answered as written: a line break in it
    /// would forge a log line, a space make a reload's diff ambiguous.
    #[test]
    fn an_upstream_is_a_whole_url_with_a_host() {
        let upstream = |u: &str| parse(&format!("[[route]]\nprefix = \"/a\"\nupstream = {u:?}"));
        for bad in [
            "http://a\n2099-01-01T00:00:00Z ERROR forged",
            "http://a#\n2099-01-01T00:00:00Z ERROR forged",
            "http://a/#frag",
            "http://x), -/api",
            "http://a\tb",
            "http://a/caf\u{e9}",
            "http://a/\u{3a9}",
            "http://user:secret@a",
            "http://",
        ] {
            let err = upstream(bad).unwrap_err();
            assert!(err.contains("route #1 (/a): upstream"), "{bad:?}: {err}");
        }
        for good in ["http://a", "https://user.example:8443/base?x=1", "http://[::1]:9000", "http://10.0.0.7/v1"] {
            assert_eq!(upstream(good).map(|t| t["/a"].clone()), Ok(good.to_owned()));
        }
    }

    fn route(prefix: &str) -> String {
        format!("[[route]]\nprefix = {prefix:?}\nupstream = \"http://a\"")
    }

    #[test]
    fn prefixes_are_written_as_requests_send_them() {
        let accented = parse(&route("/café")).unwrap_err();
        assert!(accented.contains("\"/caf%C3%A9\""), "{accented}");
        let spaced = parse(&route("/my docs")).unwrap_err();
        assert!(spaced.contains("\"/my%20docs\""), "{spaced}");
        assert!(parse(&route("/caf%C3%A9")).is_ok());
        assert!(parse(&route("/v1/items;matrix=1/~user@host:80")).is_ok());
        let stray = parse(&route("/100%")).unwrap_err();
        assert!(stray.contains("starts no escape") && stray.contains("%25"), "{stray}");
        let dots = parse(&route("/static/../api")).unwrap_err();
        assert!(dots.contains("'..' segment"), "{dots}");
        assert!(parse(&route("/%2E%2E")).unwrap_err().contains("'..' segment"), "escaped dots are dots");
        let long = parse(&route(&format!("/{}", "a".repeat(MAX_PREFIX_LEN)))).unwrap_err();
        assert!(long.contains("longer than 1024"), "{long}");
        assert!(parse(&route(&format!("/{}", "a".repeat(MAX_PREFIX_LEN - 1)))).is_ok());
    }

    #[test]
    fn prefixes_are_stored_in_the_normal_form_requests_are_matched_in() {
        let table = parse(&route("/caf%c3%a9/%61pi")).unwrap();
        assert_eq!(table.keys().collect::<Vec<_>>(), ["/caf%C3%A9/api"]);
        let twice = format!("{}\n{}", route("/api"), route("/%61pi"));
        let err = parse(&twice).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
