//! A routes file rewritten in place (truncated, then written: `cp`, a
//! shell's `>`, an editor that saves without a rename) is empty for a moment.
//! An empty file is rejected (it has no route), so that moment can never be
//! published; but a poll that acted on it would log an error for a file
//! that was fine. The reloader acts on new text only once two reads in a
//! row give it, the second started a poll after the first ended, so the
//! moment is not even acted on. The rule itself is checked read by read in
//! `gateway::reload`'s unit tests (which poll lands in the moment is the
//! scheduler's choice here); this test runs it end to end.

use std::time::Duration;

mod common;

/// The reloader's interval in `common::start`.
const POLL: Duration = Duration::from_millis(50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rewritten_in_place_never_acts_on_its_empty_moment() {
    let logs = common::Logs::capture();
    let (service, file) = common::start(common::ROUTES).await;
    let first = service.routes().version();
    let rejected = format!("rejected {}", file.path.display());
    // Each time, the file is empty for half a poll, and the two reads that
    // settle a text see it a poll apart at least: they cannot both see it
    // empty, unless the machine stalls this task for a whole poll (then the
    // file was empty that long, and only the log is not checked). Eight
    // times, so that some poll likely lands in an empty moment.
    let mut longest_empty = Duration::ZERO;
    for _ in 0..8 {
        // Timed from before the truncation: a stall between the two would
        // otherwise hide part of the empty moment.
        let emptied = std::time::Instant::now();
        std::fs::File::create(&file.path).unwrap();
        tokio::time::sleep(POLL / 2).await;
        std::fs::write(&file.path, common::ROUTES).unwrap();
        longest_empty = longest_empty.max(emptied.elapsed());
        tokio::time::sleep(POLL * 3).await;
    }
    // However long the file stayed empty: an empty file is never published.
    assert_eq!(service.routes().version(), first, "a version was published for a file that did not change");
    assert_eq!(service.routes().snapshot().len(), 3);
    if longest_empty < POLL {
        let log = logs.text();
        assert!(!log.contains(&rejected), "an empty moment shorter than a poll was acted on:\n{log}");
    } else {
        eprintln!("the file stayed empty for {longest_empty:?} (a stalled test): the log is not checked");
    }

    // An edit written in place is published once it reads the same twice.
    let before_edit = service.routes().version();
    let edited = common::ROUTES.replace("http://10.0.1.1:80", "http://10.0.1.9:80");
    std::fs::File::create(&file.path).unwrap();
    tokio::time::sleep(POLL / 2).await;
    std::fs::write(&file.path, &edited).unwrap();
    let client = common::client();
    let json = common::wait_for_route(&client, &service, "/static/x", Some("/static")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut json = json;
    while json["upstream"] != "http://10.0.1.9:80" {
        assert!(std::time::Instant::now() < deadline, "the edit was not picked up: {json}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        json = common::route(&client, &service, "/static/x").await.1;
    }
    assert_eq!(service.routes().version(), before_edit + 1, "one version for the edit, none for its empty moment");
    service.shutdown().await;
}
