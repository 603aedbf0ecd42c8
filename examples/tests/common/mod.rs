//! What the test binaries share: a temporary routes file, a service on an
//! ephemeral loopback port, an HTTP client.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use snapview::debug::DebugConfig;
use snapview_examples::gateway::{Config, Service};

/// The routes most tests start with.
pub const ROUTES: &str = r#"
[[route]]
prefix = "/api"
upstream = "http://10.0.0.1:8080"

[[route]]
prefix = "/api/users"
upstream = "http://10.0.0.2:8080"

[[route]]
prefix = "/static"
upstream = "http://10.0.1.1:80"
"#;

/// A routes file in the temporary directory, removed on drop.
pub struct TempRoutes {
    pub path: PathBuf,
}

impl TempRoutes {
    pub fn new(text: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("snapview-examples-{}-{}.toml", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, text).expect("write the routes file");
        TempRoutes { path }
    }

    pub fn write(&self, text: &str) {
        self.write_bytes(text.as_bytes());
    }

    pub fn write_bytes(&self, bytes: &[u8]) {
        // Write a sibling and rename, as editors do: the reloader never reads half a file.
        let tmp = self.path.with_extension("toml.tmp");
        std::fs::write(&tmp, bytes).expect("write the routes file");
        std::fs::rename(&tmp, &self.path).expect("replace the routes file");
    }
}

impl Drop for TempRoutes {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts the service on 127.0.0.1:0 with `routes`, no load, a fast reloader, no token.
pub async fn start(routes: &str) -> (Service, TempRoutes) {
    let file = TempRoutes::new(routes);
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        routes_path: file.path.clone(),
        reload_every: Duration::from_millis(50),
        load: None,
        debug: DebugConfig::default().without_token(),
        ..Config::default()
    };
    let service = Service::start(config).await.expect("the service starts");
    (service, file)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap()
}

/// GET `path` on the service: status and body.
pub async fn get(client: &reqwest::Client, service: &Service, path: &str) -> (u16, String) {
    let response =
        client.get(format!("http://{}{path}", service.local_addr())).send().await.expect("the request is answered");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// GET `/route{path}`: status and JSON.
pub async fn route(client: &reqwest::Client, service: &Service, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(client, service, &format!("/route{path}")).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")))
}

/// Polls `/route{path}` until its `route` is `want` (`None`: a 404), for at most 5 s.
pub async fn wait_for_route(
    client: &reqwest::Client,
    service: &Service,
    path: &str,
    want: Option<&str>,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, json) = route(client, service, path).await;
        if json["route"].as_str() == want {
            return json;
        }
        assert!(Instant::now() < deadline, "{path} still resolves to {json} after 5 s, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything the process logs, for the assertions: the test binary's only
/// global subscriber (the reloader logs from a tokio worker thread).
#[derive(Clone)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The test binary's logs: the first call sets the global subscriber,
    /// which writes here; later calls (other tests of the binary) share it.
    pub fn capture() -> Self {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs(Arc::default());
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
            logs
        })
        .clone()
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The first line logged that contains `needle`, waited for up to 10 s.
    /// (The reloader logs after it publishes: a request may see the new
    /// version before its line is written.)
    pub async fn line_with(&self, needle: &str) -> String {
        self.line_with_all(&[needle]).await
    }

    /// The first line logged that contains each of `needles`, waited for
    /// up to 10 s: a message and the fields (a path) that tell it from the
    /// same message of another test of the binary.
    pub async fn line_with_all(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text();
            if let Some(line) = text.lines().find(|line| needles.iter().all(|needle| line.contains(needle))) {
                return line.to_owned();
            }
            assert!(Instant::now() < deadline, "nothing logged with {needles:?} in 10 s:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
