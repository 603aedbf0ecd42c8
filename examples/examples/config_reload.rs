//! Hot reload with `diff` and change notification.
//!
//! A feature-flag map is reloaded from successive versions of a config text
//! (simulated edits; the `service` example reads a real file, and also waits
//! for its text to settle before it parses it). Each reload is ONE `update`
//! batch, so readers never see half a reload, and text that does not parse
//! publishes nothing: an empty text, or a line without `=`, is refused, not
//! applied as "no flags". A watcher task awaits `subscribe().changed()` and
//! logs what each new version changed with `diff` against the previous
//! snapshot: O(changes), however big the map.
//!
//! `cargo run --release -p snapview-examples --example config_reload -- --seconds 2`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use snapview::{Change, SnapMap};

type Flags = SnapMap<String, String>;

/// The successive contents of the "file": `flag = value` lines.
const EDITS: [&str; 4] = [
    "checkout.v2 = off\nsearch.backend = solr\nbanner = none",
    "checkout.v2 = 10%\nsearch.backend = solr\nbanner = none",
    "checkout.v2 = 50%\nsearch.backend = elastic\nbanner = none\ndark_mode = on",
    "checkout.v2 = 100%\nsearch.backend = elastic\ndark_mode = on",
];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let seconds = snapview_examples::seconds_flag("config_reload", 2);
    let flags: Arc<Flags> = Arc::new(SnapMap::builder().name("flags").build());
    reload(&flags, EDITS[0]).expect("the first edit parses");
    println!("loaded version {}: {:?}", flags.version(), sorted(&flags));

    let watcher = tokio::spawn(watch(flags.subscribe(), flags.snapshot()));
    let pause = seconds / EDITS.len() as u32;
    for (i, text) in EDITS.iter().enumerate().skip(1) {
        tokio::time::sleep(pause).await;
        reload(&flags, text).expect("every edit parses");
        println!("edit {i} applied");
    }
    // A file caught mid-rewrite can be empty, or cut before a line's `=`:
    // refused whole. (A cut after the `=` still parses: reading a file
    // that is being rewritten needs the `service` example's wait for its
    // text to settle.)
    let before = flags.version();
    for garbled in ["", "checkout.v2 = 100%\nsearch.back"] {
        let refused = reload(&flags, garbled).expect_err("garbled text is refused");
        assert_eq!(flags.version(), before, "a refused text publishes nothing");
        println!("refused {garbled:?}: {refused}; still version {before}");
    }
    tokio::time::sleep(pause.min(Duration::from_millis(200))).await;
    // Reloading the same text publishes nothing: no change, no notification.
    let before = flags.version();
    reload(&flags, EDITS[EDITS.len() - 1]).expect("the last edit parses");
    assert_eq!(flags.version(), before, "an unchanged config publishes no version");
    println!("re-applied the last edit: still version {before}, nobody notified");

    // Dropping the map ends the subscription: `changed()` returns None.
    drop(flags);
    let seen = watcher.await.expect("the watcher task");
    println!("the watcher saw {seen} versions, then the map was dropped");
}

/// Parses `flag = value` lines and makes the map equal to them in one batch,
/// writing only the flags that differ (`Tx::assign`). The whole text is
/// parsed before the batch starts: a text with no flag, or with a line that is
/// not `flag = value`, is an error and the map keeps its version.
fn reload(flags: &Flags, text: &str) -> Result<(), String> {
    let wanted = parse(text)?;
    flags.update(|tx| tx.assign(wanted));
    Ok(())
}

/// `flag = value` lines, blank lines ignored; at least one flag.
fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut flags = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => flags.push((k.trim().to_owned(), v.trim().to_owned())),
            _ => return Err(format!("line {} is not `flag = value`", n + 1)),
        }
    }
    if flags.is_empty() {
        return Err("no flag in the text".to_owned());
    }
    Ok(flags)
}

/// Logs the diff of every new version against the one before it.
async fn watch(
    mut changes: snapview::Subscription<String, String>,
    mut previous: snapview::Snapshot<String, String>,
) -> usize {
    let mut seen = 0;
    while let Some(current) = changes.changed().await {
        seen += 1;
        let mut lines: Vec<String> = previous
            .diff(&current)
            .map(|change| match change {
                Change::Added(k, v) => format!("+ {k} = {v}"),
                Change::Removed(k, v) => format!("- {k} (was {v})"),
                Change::Updated { key, old, new } => format!("~ {key}: {old} -> {new}"),
            })
            .collect();
        lines.sort();
        println!("  watcher: version {} -> {}: {}", previous.version(), current.version(), lines.join(", "));
        previous = current;
    }
    seen
}

fn sorted(flags: &Flags) -> BTreeMap<String, String> {
    flags.snapshot().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
