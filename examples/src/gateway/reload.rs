//! Hot reload of the routes file: poll, validate, publish as one version, log the diff.
//!
//! Polling rather than a file-watching crate: it is portable (editors that
//! replace the file by a rename, network file systems, containers' bind
//! mounts all just work), and reading a small file a few times a second costs
//! nothing. The whole text is compared, not the modification time, whose
//! granularity (a second on some file systems) can hide a quick second edit.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapview::Change;
use tokio::sync::watch;

use super::RouteMap;
use super::config::{self, RouteTable};

/// What one reload changed, between two versions of the `routes` map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDiff {
    /// The version before the reload.
    pub from_version: u64,
    /// The version the reload published.
    pub to_version: u64,
    /// New routes: prefix and upstream.
    pub added: Vec<(String, String)>,
    /// Routes that are gone: prefix and their last upstream.
    pub removed: Vec<(String, String)>,
    /// Routes whose upstream changed: prefix, old upstream, new upstream.
    pub changed: Vec<(String, String, String)>,
}

impl fmt::Display for RouteDiff {
    /// `routes v1 -> v2: +/api/v2 (http://a), -/static, ~/api (http://b -> http://c)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "routes v{} -> v{}:", self.from_version, self.to_version)?;
        let mut sep = " ";
        for (prefix, upstream) in &self.added {
            write!(f, "{sep}+{prefix} ({upstream})")?;
            sep = ", ";
        }
        for (prefix, _) in &self.removed {
            write!(f, "{sep}-{prefix}")?;
            sep = ", ";
        }
        for (prefix, old, new) in &self.changed {
            write!(f, "{sep}~{prefix} ({old} -> {new})")?;
            sep = ", ";
        }
        Ok(())
    }
}

/// Makes the `routes` map equal to `table` in ONE published version and
/// returns what changed, or `None` if nothing did (e.g. only a comment was
/// edited: no version is published then).
///
/// The diff is exactly this batch's writes. The version it starts from is
/// read inside the batch, under the writer lock, where no other write can
/// come between it and the publish (a snapshot taken before the batch could
/// take in such a write). It is diffed against the version current just
/// after, O(written) as the two share every node the batch did not copy;
/// if another writer published in that instant (the service has none: only
/// the reloader writes `routes`), the batch's writes are read off `table`
/// instead, which is what [`Tx::assign`](snapview::Tx::assign) wrote.
pub fn apply(routes: &RouteMap, table: &RouteTable) -> Option<RouteDiff> {
    let (before, written) = routes.update(|tx| {
        // Under the writer lock this batch holds: the version it starts from.
        let before = routes.snapshot();
        // Writes only the routes that differ, so the version shares everything
        // else with the last one and an unchanged file publishes nothing.
        let written = tx.assign(table.iter().map(|(prefix, upstream)| (prefix.clone(), upstream.clone())));
        (before, written)
    });
    if written == 0 {
        return None;
    }
    let after = routes.snapshot();
    let mut diff =
        RouteDiff { from_version: before.version(), to_version: before.version() + 1, ..RouteDiff::default() };
    if after.version() == diff.to_version {
        for change in before.diff(&after) {
            match change {
                Change::Added(k, v) => diff.added.push((k.clone(), v.clone())),
                Change::Removed(k, v) => diff.removed.push((k.clone(), v.clone())),
                Change::Updated { key, old, new } => diff.changed.push((key.clone(), old.clone(), new.clone())),
            }
        }
    } else {
        diff_against_table(&before, table, &mut diff);
    }
    // Either way in hash order; sorted for a readable log.
    diff.added.sort();
    diff.removed.sort();
    diff.changed.sort();
    debug_assert_eq!(written, diff.added.len() + diff.removed.len() + diff.changed.len());
    Some(diff)
}

/// What making `before` equal to `table` writes, looked up key by key.
fn diff_against_table(before: &snapview::Snapshot<String, String>, table: &RouteTable, diff: &mut RouteDiff) {
    for (prefix, upstream) in table {
        match before.get(prefix) {
            None => diff.added.push((prefix.clone(), upstream.clone())),
            Some(old) if old != upstream => diff.changed.push((prefix.clone(), old.clone(), upstream.clone())),
            Some(_) => {}
        }
    }
    let removed = before.iter().filter(|(prefix, _)| !table.contains_key(*prefix));
    diff.removed.extend(removed.map(|(prefix, upstream)| (prefix.clone(), upstream.clone())));
}

/// Reads `path` every `every` until `stop` turns true, publishing each valid
/// new table and logging its diff; an invalid or unreadable file is logged
/// (once per distinct problem) and the last good table stays in force. A
/// file with no `[[route]]` is invalid unless it says `route = []`
/// ([`config::NO_ROUTE`]). `loaded` is the
/// text the current table came from.
///
/// New text is acted on once two reads in a row give it, the second started
/// at least `every` after the first ended: a file rewritten in place (`cp`,
/// a shell's `>`, an editor saving without a rename) is empty or cut short
/// for a moment. Empty, it would only be rejected, but logged as an error
/// for a file that was fine; cut short after a complete route, it is valid
/// TOML with fewer routes, and would be published. So the reads are spaced
/// from the end of one to the start of the next, not by a fixed interval,
/// whose next tick would be due at once after a read slower than `every`
/// (on a slow mount, say), and two reads could then see the same moment. A
/// rename replaces the file at once, so the reload then takes one read
/// more, nothing else. A rewrite in place that takes longer than a poll (a
/// script printing its routes slowly into the file) can still be published
/// part-way: write such files elsewhere and rename them into place. A path
/// that is no regular file (a FIFO, a device) or is over
/// [`config::MAX_ROUTES_FILE`] is not read.
///
/// A read that never returns (a stalled network mount) does not hold the
/// reloader past `stop`: it is left to its blocking thread.
pub async fn run(path: PathBuf, every: Duration, routes: Arc<RouteMap>, loaded: String, stop: watch::Receiver<bool>) {
    run_reading_with(path, every, routes, loaded, stop, config::read).await;
}

/// [`run`], reading the file with `read` (which a test makes hang).
async fn run_reading_with<R>(
    path: PathBuf,
    every: Duration,
    routes: Arc<RouteMap>,
    loaded: String,
    mut stop: watch::Receiver<bool>,
    read: R,
) where
    R: Fn(&Path) -> Result<String, String> + Clone + Send + 'static,
{
    let mut settled = Settled::new(loaded, every);
    let mut read_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            () = tokio::time::sleep(every) => {}
        }
        let started = Instant::now();
        let read = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            read = read_routes(&path, read.clone()) => read,
        };
        let ended = Instant::now();
        let text = match read {
            Ok(text) => text,
            Err(message) => {
                if read_error.as_ref() != Some(&message) {
                    tracing::warn!(path = %path.display(), error = %message, version = routes.version(),
                        "cannot read the routes file; keeping the current routes");
                    read_error = Some(message);
                }
                continue;
            }
        };
        read_error = None;
        if let Some(text) = settled.read(text, started, ended) {
            reload(&path, &text, &routes);
        }
    }
    tracing::debug!("routes reloader stopped");
}

/// The rule of [`run`]: new text is acted on once two reads in a row give
/// it, the second started at least `every` after the first ended.
struct Settled {
    /// The text last acted on (published or rejected).
    seen: String,
    /// New text, and when the first of the reads in a row that gave it ended.
    settling: Option<(String, Instant)>,
    /// How long after that the read that settles it must start.
    every: Duration,
}

impl Settled {
    fn new(loaded: String, every: Duration) -> Self {
        Settled { seen: loaded, settling: None, every }
    }

    /// Takes one read, which ran from `started` to `ended`; returns the text
    /// to act on, if it is its time.
    fn read(&mut self, text: String, started: Instant, ended: Instant) -> Option<String> {
        if text == self.seen {
            self.settling = None;
            return None;
        }
        match &self.settling {
            Some((settling, since)) if *settling == text => {
                // Two reads close together may both fall in one short moment.
                if started.saturating_duration_since(*since) < self.every {
                    return None;
                }
                self.settling = None;
                self.seen = text.clone();
                Some(text)
            }
            _ => {
                self.settling = Some((text, ended));
                None
            }
        }
    }
}

/// The routes file's text (`read`: [`config::read`]), read on tokio's
/// blocking threads: a file on a stalled mount holds one of those, not a worker.
async fn read_routes<R>(path: &Path, read: R) -> Result<String, String>
where
    R: Fn(&Path) -> Result<String, String> + Send + 'static,
{
    let path = path.to_owned();
    match tokio::task::spawn_blocking(move || read(&path)).await {
        Ok(read) => read,
        Err(err) => Err(format!("the read failed: {err}")),
    }
}

fn reload(path: &Path, text: &str, routes: &RouteMap) {
    match config::parse(text) {
        Ok(table) => match apply(routes, &table) {
            Some(diff) => tracing::info!(
                from_version = diff.from_version,
                to_version = diff.to_version,
                added = diff.added.len(),
                removed = diff.removed.len(),
                changed = diff.changed.len(),
                "reloaded {}: {diff}",
                path.display()
            ),
            None => tracing::info!(version = routes.version(), "{} changed, but not its routes", path.display()),
        },
        Err(message) => tracing::error!(
            version = routes.version(),
            "rejected {}: {message}; keeping the routes of version {}",
            path.display(),
            routes.version()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &str)]) -> RouteTable {
        routes.iter().map(|(p, u)| (p.to_string(), u.to_string())).collect()
    }

    #[test]
    fn a_reload_is_one_version_and_its_diff() {
        let routes = RouteMap::new();
        let first = apply(&routes, &table(&[("/a", "http://1"), ("/b", "http://2")])).unwrap();
        assert_eq!((first.from_version, first.to_version, first.added.len()), (0, 1, 2));
        let diff = apply(&routes, &table(&[("/a", "http://9"), ("/c", "http://3")])).unwrap();
        assert_eq!((diff.from_version, diff.to_version), (1, 2), "one batch, one version");
        assert_eq!(diff.added, vec![("/c".to_string(), "http://3".to_string())]);
        assert_eq!(diff.removed, vec![("/b".to_string(), "http://2".to_string())]);
        assert_eq!(diff.changed, vec![("/a".to_string(), "http://1".to_string(), "http://9".to_string())]);
        assert_eq!(diff.to_string(), "routes v1 -> v2: +/c (http://3), -/b, ~/a (http://1 -> http://9)");
    }

    const EVERY: Duration = Duration::from_millis(100);

    /// Each text read in turn, by reads of 1 ms spaced as `run` spaces them.
    fn reads_a_poll_apart(settled: &mut Settled, at: &mut Instant, texts: &[&str]) -> Vec<Option<String>> {
        texts
            .iter()
            .map(|text| {
                let started = *at + EVERY;
                *at = started + Duration::from_millis(1);
                settled.read(text.to_string(), started, *at)
            })
            .collect()
    }

    /// The in-place rewrite's empty moment, whichever polls it falls
    /// between: read once, it is never acted on.
    #[test]
    fn text_is_acted_on_once_two_reads_in_a_row_give_it() {
        let (mut settled, mut at) = (Settled::new("a".into(), EVERY), Instant::now());
        let mut reads = |texts: &[&str]| reads_a_poll_apart(&mut settled, &mut at, texts);
        assert_eq!(reads(&["a", "", "a", "", "a", "a"]), vec![None; 6], "an empty moment now and then");
        assert_eq!(reads(&["", "b", "b", "b"]), vec![None, None, Some("b".into()), None]);
        assert_eq!(reads(&["c", "", "c", "c"]), vec![None, None, None, Some("c".into())]);
        // Acted on, and then rejected (`a_file_without_a_route_keeps_the_routes`).
        assert_eq!(reads(&["", ""]), vec![None, Some(String::new())], "a file left empty is acted on");
    }

    /// A failed `./render-routes > routes.toml` leaves the file empty, or
    /// with the comments printed before the failure: the routes stay.
    #[test]
    fn a_file_without_a_route_keeps_the_routes() {
        let routes = RouteMap::new();
        let path = Path::new("routes.toml");
        reload(path, "[[route]]\nprefix = \"/a\"\nupstream = \"http://1\"\n", &routes);
        assert_eq!(routes.version(), 1);
        for text in ["", "# rendered by render-routes\n"] {
            reload(path, text, &routes);
            assert_eq!(routes.version(), 1, "{text:?} published a version");
            assert_eq!(routes.snapshot().get("/a").map(String::as_str), Some("http://1"), "{text:?}");
        }
    }

    /// Another writer's change published right after the reload's batch is
    /// not in the reload's diff. (Here a subscription's waker makes it: the
    /// waker runs as the batch ends, on its thread, before `update` returns.)
    #[test]
    fn the_diff_is_the_reloads_batch_alone() {
        struct WritesOnWake(Arc<RouteMap>);
        impl std::task::Wake for WritesOnWake {
            fn wake(self: Arc<Self>) {
                self.0.insert("/other".into(), "http://other".into());
            }
        }
        let routes = Arc::new(RouteMap::new());
        apply(&routes, &table(&[("/a", "http://1")]));
        // A write published right after the reload's (from the waker its
        // publish wakes), before `apply` looks at the result.
        let mut subscription = routes.subscribe();
        let waker = std::task::Waker::from(Arc::new(WritesOnWake(Arc::clone(&routes))));
        assert!(subscription.poll_changed(&mut std::task::Context::from_waker(&waker)).is_pending());
        let diff = apply(&routes, &table(&[("/a", "http://2")])).unwrap();
        assert_eq!(routes.version(), 3, "the other write came after the reload's");
        assert_eq!(diff.to_string(), "routes v1 -> v2: ~/a (http://1 -> http://2)");
        // The next reload starts from the other write, and undoes it.
        let next = apply(&routes, &table(&[("/a", "http://2")])).unwrap();
        assert_eq!(next.to_string(), "routes v3 -> v4: -/other");
    }

    /// A read that never returns (a stalled network mount) does not keep the
    /// reloader from stopping, nor with it the shutdown.
    #[tokio::test]
    async fn a_read_that_hangs_does_not_hold_the_stop() {
        let (reading, read_started) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(std::sync::Mutex::new(released));
        let hanging_read = move |_: &Path| {
            let _ = reading.send(());
            // Until the test lets go of `release`.
            let _ = released.lock().unwrap().recv();
            Err("released".to_owned())
        };
        let (stop, stopped) = watch::channel(false);
        let routes = Arc::new(RouteMap::new());
        let reloader = tokio::spawn(run_reading_with(
            PathBuf::from("routes.toml"),
            Duration::from_millis(10),
            routes,
            String::new(),
            stopped,
            hanging_read,
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while read_started.try_recv().is_err() {
            assert!(Instant::now() < deadline, "the reloader never read");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(2), reloader).await;
        // Its blocking thread ends now, or the runtime's drop would wait for it.
        drop(release);
        stopped.expect("the reloader waited for its read").unwrap();
    }

    /// A slow read may see the file at its end, and the next read, started
    /// at once, see the same moment: reads that start within `every` of the
    /// end of the first that gave the text settle nothing.
    #[test]
    fn reads_closer_than_a_poll_settle_nothing() {
        let mut settled = Settled::new("a".into(), EVERY);
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        assert_eq!(settled.read(String::new(), ms(0), ms(130)), None, "a slow read, the empty moment at its end");
        assert_eq!(settled.read(String::new(), ms(130), ms(131)), None, "at once after it");
        assert_eq!(settled.read(String::new(), ms(229), ms(230)), None, "still within a poll of its end");
        assert_eq!(settled.read(String::new(), ms(230), ms(231)), Some(String::new()), "a poll after its end");
        // A text that came back counts from its first read after the change.
        assert_eq!(settled.read("b".into(), ms(250), ms(251)), None);
        assert_eq!(settled.read("c".into(), ms(300), ms(301)), None);
        assert_eq!(settled.read("b".into(), ms(360), ms(361)), None, "b again, but after c: its first read");
        assert_eq!(settled.read("b".into(), ms(400), ms(401)), None);
        assert_eq!(settled.read("b".into(), ms(461), ms(462)), Some("b".into()));
    }

    #[test]
    fn the_same_table_publishes_nothing() {
        let routes = RouteMap::new();
        let t = table(&[("/a", "http://1")]);
        apply(&routes, &t);
        assert_eq!(apply(&routes, &t), None);
        assert_eq!(routes.version(), 1);
    }
}
