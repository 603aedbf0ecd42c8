//! `/debug/pprof/views`: the view-cost profile of `snapview-instrument`, as
//! an SVG flamegraph, folded stacks or a pprof profile.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::RawQuery;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use pprof::protos::{Function, Line, Location, Profile, Sample, ValueType};
use snapview_instrument::views::{self, ViewProfile, ViewsError};

use crate::query::Query;
use crate::reply::{self, Failure, blocking};

/// The `format` values, the default first.
const FORMATS: [&str; 3] = ["svg", "folded", "pprof"];

/// What `/debug/pprof/views` takes.
const PARAMETERS: [&str; 2] = ["seconds", "format"];

/// `GET /debug/pprof/views`.
///
/// A `HEAD` request is checked as a `GET` is, but opens no window (there
/// are only [`views::MAX_WINDOWS`]) and gets only the headers.
pub(crate) async fn views(method: Method, RawQuery(raw): RawQuery) -> Result<Response, Failure> {
    let query = Query::parse(raw.as_deref());
    let bad_request = |message| Failure::new(StatusCode::BAD_REQUEST, message);
    query.misspelt(&PARAMETERS).map_err(bad_request)?;
    let window = query.seconds().map_err(bad_request)?;
    let format = query.format(&FORMATS).map_err(bad_request)?;
    if method == Method::HEAD {
        return head(format);
    }
    let open = views::profiler().start().map_err(refused)?;
    // Dropping this future (client gone) drops `open`, which discards the window.
    tokio::time::sleep(window).await;
    let profile = open.finish();
    // Off the workers, as the CPU profile's encoding (see `cpu::profile`).
    blocking(move || render(&profile, format)).await?
}

fn refused(err: ViewsError) -> Failure {
    let status = match err {
        // Busy: another request may succeed once a window ends.
        ViewsError::TooManyWindows => StatusCode::CONFLICT,
        // Nothing is busy, this process was not set up for it.
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    Failure::new(status, err)
}

fn head(format: &str) -> Result<Response, Failure> {
    if !views::profiler().is_installed() {
        return Err(refused(ViewsError::NotInstalled));
    }
    Ok(match format {
        "folded" => reply::head("text/plain; charset=utf-8"),
        "pprof" => reply::profile_head("views"),
        _ => reply::head("image/svg+xml"),
    })
}

fn render(profile: &ViewProfile, format: &str) -> Result<Response, Failure> {
    Ok(match format {
        "folded" => reply::body("text/plain; charset=utf-8", profile.folded()),
        "pprof" => reply::profile(&to_pprof(profile), "views"),
        _ => reply::svg(
            reply::flamegraph("snapview view costs", "ns", profile.folded().lines())
                .map_err(|err| Failure::internal("could not draw the flamegraph", err))?,
        ),
    })
}

/// The view profile as a pprof `Profile`: one sample type, wall time in
/// nanoseconds; each distinct span frame a function with one location.
fn to_pprof(profile: &ViewProfile) -> Profile {
    let mut table = Table::default();
    let wall = ValueType { ty: table.string("wall"), unit: table.string("nanoseconds") };
    let sample = profile
        .stacks()
        .map(|(frames, nanos)| {
            let mut location_id: Vec<u64> = frames.map(|frame| table.location(frame)).collect();
            // pprof lists a sample's locations leaf first.
            location_id.reverse();
            Sample { location_id, value: vec![i64::try_from(nanos).unwrap_or(i64::MAX)], label: Vec::new() }
        })
        .collect();
    Profile {
        sample_type: vec![wall.clone()],
        sample,
        location: table.locations,
        function: table.functions,
        string_table: table.strings,
        time_nanos: nanos_since_epoch(SystemTime::now().checked_sub(profile.duration)),
        duration_nanos: nanos(profile.duration),
        period_type: Some(wall),
        period: 1,
        ..Profile::default()
    }
}

/// The string, function and location tables of a profile being built.
struct Table {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<Function>,
    locations: Vec<Location>,
    /// Frame -> its location id (equal to its function id).
    frame_ids: HashMap<String, u64>,
}

impl Default for Table {
    fn default() -> Self {
        // The string table starts with "" (index 0 means "no string").
        Table {
            strings: vec![String::new()],
            string_ids: HashMap::from([(String::new(), 0)]),
            functions: Vec::new(),
            locations: Vec::new(),
            frame_ids: HashMap::new(),
        }
    }
}

impl Table {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = i64::try_from(self.strings.len()).unwrap_or(i64::MAX);
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), id);
        id
    }

    fn location(&mut self, frame: &str) -> u64 {
        if let Some(&id) = self.frame_ids.get(frame) {
            return id;
        }
        let id = self.locations.len() as u64 + 1;
        let name = self.string(frame);
        self.functions.push(Function { id, name, system_name: name, ..Function::default() });
        self.locations.push(Location { id, line: vec![Line { function_id: id, line: 0 }], ..Location::default() });
        self.frame_ids.insert(frame.to_owned(), id);
        id
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn nanos_since_epoch(at: Option<SystemTime>) -> i64 {
    at.and_then(|at| at.duration_since(UNIX_EPOCH).ok()).map_or(0, nanos)
}
