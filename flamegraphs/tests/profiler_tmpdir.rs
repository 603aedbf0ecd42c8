//! pprof-rs keeps samples in a temporary file, made at its first start and
//! again at each stop. Without a temporary directory the answers say what
//! failed without the file's path, and a profiler that pprof-rs left
//! running is told apart from a profile of this server's. `TMPDIR` and
//! pprof-rs's state are process-wide, so each case runs this binary again as
//! a child process with its own `TMPDIR`.

mod common;

/// A directory of this test's, absent.
fn gone_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("snapview-flame-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn text(body: &[u8]) -> &str {
    std::str::from_utf8(body).expect("a text answer")
}

#[test]
fn without_a_temporary_directory_a_profile_is_a_500_without_the_path() {
    common::run_child("child_without_a_temporary_directory", ("TMPDIR", gone_dir("no-tmp").as_os_str()));
}

#[test]
#[ignore = "run by without_a_temporary_directory_a_profile_is_a_500_without_the_path, in a child process"]
fn child_without_a_temporary_directory() {
    if !common::in_child() {
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let server = common::Server::open().await;
        let (status, _, body) = server.get("/debug/pprof/profile?seconds=1").await;
        assert_eq!(status, 500, "{}", text(&body));
        assert_eq!(text(&body), "cannot start the profiler (the cause is in the server's log)\n");
    });
}

#[test]
fn a_directory_gone_mid_profile_leaves_a_409_that_says_so() {
    let dir = gone_dir("tmp-gone");
    std::fs::create_dir(&dir).unwrap();
    common::run_child("child_a_directory_gone_mid_profile", ("TMPDIR", dir.as_os_str()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "run by a_directory_gone_mid_profile_leaves_a_409_that_says_so, in a child process"]
fn child_a_directory_gone_mid_profile() {
    if !common::in_child() {
        return;
    }
    let tmpdir = std::env::temp_dir();
    // The causes the server logs, for a failure's message.
    tracing_subscriber::fmt().with_ansi(false).with_writer(std::io::stderr).init();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let server = common::Server::open().await;
        // The first profile makes pprof-rs's state (and its first file) and
        // loads the debug info: the next one starts at once.
        assert_eq!(server.get("/debug/pprof/profile?seconds=1").await.0, 200);
        let profile = tokio::spawn(common::get_owned(server.url("/debug/pprof/profile?seconds=2")));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        std::fs::remove_dir_all(&tmpdir).unwrap();
        let (status, _, body) = profile.await.unwrap();
        assert_eq!(status, 500, "the report reads the samples' file back by its path: {}", text(&body));
        assert!(!text(&body).contains(tmpdir.to_str().unwrap()), "the path is for the log: {}", text(&body));
        // pprof-rs could not make its next file, so it still says it runs.
        let (status, _, body) = server.get("/debug/pprof/profile?seconds=1").await;
        assert_eq!(status, 409, "{}", text(&body));
        let message = text(&body);
        assert!(message.contains("this server did not start") && message.contains("TMPDIR"), "{message}");
        assert!(message.contains("only a restart of the process clears"), "{message}");
    });
}
