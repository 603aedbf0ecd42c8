//! An in-process OTLP/HTTP receiver for tests: `POST /v1/traces` and
//! `POST /v1/metrics` on `127.0.0.1:0` (axum), keeping every request's
//! path, headers and body, and answering `200 OK` as a collector does.
//!
//! Include it with `#[path = "support/otlp_http_receiver.rs"] mod
//! otlp_http_receiver;`; the including crate needs the dev-dependencies
//! `axum` (`tokio`, `http1`), `tokio` (`rt-multi-thread`, `net`), `prost`
//! and `opentelemetry-proto` (`gen-tonic`, `metrics`).

// Each including test crate uses a part of this module.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use tokio::runtime::Runtime;

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// A running receiver; it stops when dropped.
pub struct HttpReceiver {
    /// `http://127.0.0.1:<port>`: the base of its `/v1/...` paths.
    pub endpoint: String,
    log: Log,
    _runtime: Runtime,
}

/// Starts a receiver on its own one-thread tokio runtime.
pub fn start() -> HttpReceiver {
    serve(Router::new().route("/v1/traces", post(keep)).route("/v1/metrics", post(keep)))
}

/// Like [`start`], but serving only `/v1/traces`, as Jaeger does: a metrics
/// export gets `404 Not Found`.
pub fn start_traces_only() -> HttpReceiver {
    serve(Router::new().route("/v1/traces", post(keep)))
}

/// Like [`start`], over TLS (the including crate's feature `otlp-tls`,
/// and the dev-dependencies `rustls`, `tokio-rustls`, `hyper`, `hyper-util`):
/// the server presents `certificate` with `key` (PEM), at
/// `https://127.0.0.1:<port>`, and if `client_ca` (PEM) is given, takes
/// only clients presenting a certificate it signed (mutual TLS).
#[cfg(feature = "otlp-tls")]
pub fn start_tls(certificate: &str, key: &str, client_ca: Option<&str>) -> HttpReceiver {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let chain = CertificateDer::pem_slice_iter(certificate.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let config = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(certificate.unwrap()).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            config.with_client_cert_verifier(verifier)
        }
        None => config.with_no_client_auth(),
    };
    let config = config.with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let log = Log::default();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    let app =
        Router::new().route("/v1/traces", post(keep)).route("/v1/metrics", post(keep)).with_state(Arc::clone(&log));
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate ends here.
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    HttpReceiver { endpoint, log, _runtime: runtime }
}

fn serve(routes: Router<Log>) -> HttpReceiver {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let log = Log::default();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = routes.with_state(Arc::clone(&log));
    runtime.spawn(async move { axum::serve(listener, app).await });
    HttpReceiver { endpoint, log, _runtime: runtime }
}

async fn keep(State(log): State<Log>, uri: Uri, headers: HeaderMap, body: Bytes) {
    let received = Received { path: uri.path().to_owned(), headers, body };
    log.lock().unwrap_or_else(PoisonError::into_inner).push(received);
}

impl HttpReceiver {
    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The requests to `/v1/metrics`, decoded; panics on a body that is not
    /// an `ExportMetricsServiceRequest`.
    pub fn metrics_requests(&self) -> Vec<(Received, ExportMetricsServiceRequest)> {
        let decode = |r: Received| {
            let request = prost::Message::decode(r.body.clone()).expect("an OTLP metrics request");
            (r, request)
        };
        self.requests().into_iter().filter(|r| r.path == "/v1/metrics").map(decode).collect()
    }

    /// Waits up to 10 s for a request to `path` (e.g. `/v1/traces`); returns
    /// whether one arrived.
    pub fn wait_for_request(&self, path: &str) -> bool {
        self.wait_until(Duration::from_secs(10), |r| r.requests().iter().any(|r| r.path == path))
    }

    /// Polls `done` every 10 ms until it holds or `timeout` has passed;
    /// returns whether it held.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

/// Every metric of `request`, whatever its resource and scope.
pub fn metrics_of(request: &ExportMetricsServiceRequest) -> impl Iterator<Item = &Metric> {
    request.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics)
}
