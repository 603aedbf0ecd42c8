//! How the exporters reach the collector: the gRPC channel and the HTTP
//! client that both signals' exporters use, each bounded by the export
//! timeout, connecting included, and over TLS for an `https://` endpoint
//! (feature `otlp-tls`; without it such an endpoint is an error when the
//! pipeline is built).
//!
//! The endpoint is found as the SDK finds it: the explicit one, else the
//! signal's variable, else `OTEL_EXPORTER_OTLP_ENDPOINT`. With TLS, the
//! server is checked against the platform's roots, or only against
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`'s when it names a file (the signal's own
//! variable first, then the general one; the builder's setting before
//! either), and a client certificate is presented if
//! `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `..._CLIENT_KEY` name one.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry_otlp::{OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_INSECURE};
use tonic::transport::{Channel, Endpoint};

use super::TelemetryError;
use super::process_env;

/// Who is exporting, for the collector's logs (the SDK's exporter says
/// `OTel-OTLP-Exporter-Rust/<version>`).
pub(super) const USER_AGENT: &str =
    concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"), " OTel-OTLP-Exporter-Rust/0.33");

/// One signal's variables and defaults.
#[derive(Debug)]
// The TLS variables are read only with `otlp-tls`.
#[cfg_attr(not(feature = "otlp-tls"), allow(dead_code))]
pub(super) struct Signal {
    /// For errors: "trace exporter", "metric exporter".
    pub(super) what: &'static str,
    endpoint_var: &'static str,
    insecure_var: &'static str,
    /// Appended to a base endpoint for HTTP.
    http_path: &'static str,
    certificate_var: &'static str,
    client_certificate_var: &'static str,
    client_key_var: &'static str,
}

impl Signal {
    pub(super) const TRACES: Signal = Signal {
        what: "trace exporter",
        endpoint_var: opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        insecure_var: opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_INSECURE,
        http_path: "/v1/traces",
        certificate_var: "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        client_certificate_var: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
        client_key_var: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    };
    pub(super) const METRICS: Signal = Signal {
        what: "metric exporter",
        endpoint_var: opentelemetry_otlp::OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
        insecure_var: opentelemetry_otlp::OTEL_EXPORTER_OTLP_METRICS_INSECURE,
        http_path: "/v1/metrics",
        certificate_var: "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
        client_certificate_var: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
        client_key_var: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
    };

    pub(super) fn error(&self, message: impl Into<String>) -> TelemetryError {
        TelemetryError::Exporter { what: self.what, source: message.into().into() }
    }
}

/// The builder's TLS files (feature `otlp-tls`), for both signals; each
/// unset one falls back to the environment.
#[derive(Clone, Debug, Default)]
#[cfg_attr(not(feature = "otlp-tls"), allow(dead_code))]
pub(super) struct TlsFiles {
    pub(super) certificate: Option<PathBuf>,
    /// The client's certificate chain and private key.
    pub(super) client: Option<(PathBuf, PathBuf)>,
}

/// What an exporter connects with: the explicit endpoint (a base, for
/// HTTP), the export timeout and the TLS files.
#[derive(Clone, Copy, Debug)]
pub(super) struct Connect<'a> {
    pub(super) endpoint: Option<&'a str>,
    pub(super) timeout: Duration,
    pub(super) tls: &'a TlsFiles,
}

/// A gRPC channel to the signal's endpoint that gives up *connecting*, as
/// well as waiting for each response's headers, after the export timeout,
/// and that replaces a connection gone dead. Must run inside the export
/// runtime (the channel spawns its task there). What comes after the
/// headers is bounded by the exporters themselves
/// ([`bounded`](super::bounded)).
///
/// The SDK's own channel bounds each request but not the connection under
/// it: toward a host that silently drops connection attempts (a firewall, a
/// full accept queue) every export would wait for the kernel's connect
/// timeout, some two minutes on Linux, and the spans behind it with it.
pub(super) fn grpc_channel(connect: Connect<'_>, signal: &Signal) -> Result<Channel, TelemetryError> {
    let url = grpc_endpoint(connect.endpoint, signal, process_env);
    let endpoint = Endpoint::from_shared(url.clone())
        .and_then(|endpoint| endpoint.user_agent(USER_AGENT))
        .map_err(|source| signal.error(format!("endpoint {:?}: {source}", redacted(&url))))?
        .timeout(connect.timeout)
        .connect_timeout(connect.timeout);
    let endpoint = with_keep_alive(endpoint, connect.timeout);
    let endpoint = match scheme(&url).as_deref() {
        Some("http") => endpoint,
        Some("https") => tls::grpc(endpoint, &url, connect.timeout, connect.tls, signal)?,
        _ => return Err(signal.error(format!("endpoint {:?}: the scheme must be http:// or https://", redacted(&url)))),
    };
    Ok(endpoint.connect_lazy())
}

/// How long a connection may go without a frame from the collector, while
/// an export uses it, before it is pinged (at least: see [`with_keep_alive`]).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection is closed.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 pings, so that a connection whose collector went away without a
/// word (a host gone, a NAT entry dropped) is closed and the next export
/// connects anew, where each export would otherwise run out its timeout on
/// it until TCP gave up, some 15 minutes on Linux. Pinged only while an
/// export is under way (at its start, if the connection was quiet for the
/// interval): a collector built on grpc-go (the OpenTelemetry Collector)
/// takes pings on a connection without calls more often than every 5
/// minutes as abuse, and closes it with `too_many_pings`.
///
/// And at most once per export: the interval is at least the export
/// `timeout`, which ends the export first. grpc-go counts a ping within 5
/// minutes of the last as a strike unless it has written to the connection
/// since, and closes the connection at the third; a collector slower than
/// three intervals to answer one export (a timeout of 35 s or more) would
/// otherwise have its connection closed under it.
fn with_keep_alive(endpoint: Endpoint, timeout: Duration) -> Endpoint {
    endpoint
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL.max(timeout))
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(false)
}

/// The gRPC endpoint the SDK would use: the explicit one, else the signal's
/// variable, else `OTEL_EXPORTER_OTLP_ENDPOINT` (empty values skipped), else
/// `http://localhost:4317`; one without a scheme gets `http://` if the
/// `INSECURE` variables say `true`, else `https://`.
pub(super) fn grpc_endpoint(explicit: Option<&str>, signal: &Signal, env: impl Fn(&str) -> Option<String>) -> String {
    let set = |var: &str| env(var).filter(|value| !value.is_empty());
    let endpoint = explicit
        .filter(|endpoint| !endpoint.is_empty())
        .map(str::to_owned)
        .or_else(|| set(signal.endpoint_var))
        .or_else(|| set(OTEL_EXPORTER_OTLP_ENDPOINT))
        .unwrap_or_else(|| "http://localhost:4317".to_owned());
    let has_scheme = endpoint.split_once("://").is_some_and(|(scheme, _)| !scheme.contains(['/', '?', '#']));
    if has_scheme {
        return endpoint;
    }
    let insecure = env(signal.insecure_var)
        .or_else(|| env(OTEL_EXPORTER_OTLP_INSECURE))
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    format!("{}://{endpoint}", if insecure { "http" } else { "https" })
}

/// The HTTP URL the SDK would post the signal to: the explicit base with
/// the signal's path, else the signal's variable as it is, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` with the path, else
/// `http://localhost:4318` with it (empty values skipped).
pub(super) fn http_url(explicit: Option<&str>, signal: &Signal, env: impl Fn(&str) -> Option<String>) -> String {
    let set = |var: &str| env(var).filter(|value| !value.is_empty());
    let with_path = |base: &str| format!("{}{}", base.trim_end_matches('/'), signal.http_path);
    match explicit.filter(|base| !base.is_empty()) {
        Some(base) => with_path(base),
        None => set(signal.endpoint_var)
            .or_else(|| set(OTEL_EXPORTER_OTLP_ENDPOINT).map(|base| with_path(&base)))
            .unwrap_or_else(|| with_path("http://localhost:4318")),
    }
}

/// A blocking HTTP client for posting to `url`, bounded by the export
/// timeout, connecting included, with TLS for an `https://` one. It bounds
/// the wait for an answer's headers, and then each read of its body apart:
/// a whole answer is bounded by the request's own timeout
/// ([`bounded::send_within`](super::bounded::send_within)).
pub(super) fn http_client(
    url: &str,
    connect: Connect<'_>,
    signal: &'static Signal,
) -> Result<reqwest::blocking::Client, TelemetryError> {
    let builder = reqwest::blocking::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(connect.timeout)
        .connect_timeout(connect.timeout);
    let builder = match scheme(url).as_deref() {
        Some("http") => tls::plain(builder),
        Some("https") => tls::http(builder, url, connect.tls, signal)?,
        _ => return Err(signal.error(format!("endpoint {:?}: the scheme must be http:// or https://", redacted(url)))),
    };
    // After the scheme's check, whose message says more for `host:port`
    // (read as a scheme `host` without a host).
    check_http_url(url, signal)?;
    // reqwest's blocking client starts a runtime of its own, which must
    // not happen on a thread of the application's runtime, where the
    // builder may be called.
    std::thread::Builder::new()
        .name("snapview-otlp-client".into())
        .spawn(move || builder.build())
        .map_err(|source| signal.error(source.to_string()))?
        .join()
        .map_err(|_| signal.error("building the HTTP client panicked"))?
        .map_err(|error| signal.error(with_causes(&error)))
}

/// An error now for a URL that every export would fail on: the client is
/// built without one, and the exporters post to it only at their first
/// export, where the failure would be one more SDK warning.
fn check_http_url(url: &str, signal: &Signal) -> Result<(), TelemetryError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|source| signal.error(format!("endpoint {:?}: {source}", redacted(url))))?;
    match parsed.host_str() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(signal.error(format!("endpoint {:?}: no host", redacted(url)))),
    }
}

/// An error and its causes, one after another: reqwest's says only "builder
/// error", and why (no CA certificates on the host, say) is in its source.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

/// `url` with its user part, if it has one (`user:password@`), shown as
/// `***@`, and its query and fragment as `?***`: endpoints appear in errors
/// and logs, and a user part carries a secret, as a query often does
/// (`?api_key=...`; reqwest strips the user part from its own messages,
/// these are ours). A password with an unencoded `/` hides the rest of the
/// authority from this split, so the last `@` before the query counts.
pub(super) fn redacted(url: &str) -> std::borrow::Cow<'_, str> {
    // Without a scheme (an endpoint given as `host:port`) the authority starts the string.
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(scheme, rest)| (scheme, rest));
    let (located, query) = rest.split_at(rest.find(['?', '#']).unwrap_or(rest.len()));
    let host_and_path = match located.rfind('@') {
        Some(at) => format!("***@{}", &located[at + 1..]),
        None if query.is_empty() => return url.into(),
        None => located.to_owned(),
    };
    let scheme = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
    let query = if query.is_empty() { "" } else { "?***" };
    format!("{scheme}{host_and_path}{query}").into()
}

/// The URL's scheme, in lower case; `None` if it has none.
fn scheme(url: &str) -> Option<String> {
    url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase())
}

/// Without `otlp-tls`: an `https://` endpoint is refused, saying what would take it.
#[cfg(not(feature = "otlp-tls"))]
mod tls {
    use std::time::Duration;

    use tonic::transport::Endpoint;

    use super::{Signal, TelemetryError, TlsFiles, redacted};

    fn refused(url: &str, signal: &Signal) -> TelemetryError {
        signal.error(format!(
            "endpoint {:?}: TLS needs the `otlp-tls` feature (of snapview or snapview-instrument)",
            redacted(url)
        ))
    }

    pub(super) fn grpc(
        _: Endpoint,
        url: &str,
        _: Duration,
        _: &TlsFiles,
        signal: &Signal,
    ) -> Result<Endpoint, TelemetryError> {
        Err(refused(url, signal))
    }

    pub(super) fn plain(builder: reqwest::blocking::ClientBuilder) -> reqwest::blocking::ClientBuilder {
        builder
    }

    pub(super) fn http(
        _: reqwest::blocking::ClientBuilder,
        url: &str,
        _: &TlsFiles,
        signal: &Signal,
    ) -> Result<reqwest::blocking::ClientBuilder, TelemetryError> {
        Err(refused(url, signal))
    }
}

/// With `otlp-tls`: rustls (aws-lc-rs, rustls' and reqwest's default
/// provider), the platform's roots unless a certificate file is given.
#[cfg(feature = "otlp-tls")]
mod tls {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    use super::{Signal, TelemetryError, TlsFiles, process_env, redacted};

    const CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
    const CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
    const CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";

    /// The PEM files one signal connects with, read and checked.
    struct Pem {
        /// Certificates to trust instead of the platform's roots.
        roots: Option<Vec<u8>>,
        /// The client's certificate chain and key.
        identity: Option<(Vec<u8>, Vec<u8>)>,
    }

    pub(super) fn grpc(
        endpoint: Endpoint,
        url: &str,
        timeout: Duration,
        files: &TlsFiles,
        signal: &Signal,
    ) -> Result<Endpoint, TelemetryError> {
        let pem = Pem::for_signal(files, signal)?;
        // The handshake has no bound of its own: the channel's connect
        // timeout ends with the TCP connection, and the request's starts
        // only once connected. A collector that takes the connection and
        // never answers would hold every later export.
        let config = ClientTlsConfig::new().timeout(timeout);
        // tonic names the server by the URI's host, brackets and all for an
        // IPv6 literal, which no certificate matches.
        let config = match endpoint.uri().host() {
            Some(host) if host.starts_with('[') => {
                config.domain_name(host.trim_start_matches('[').trim_end_matches(']'))
            }
            _ => config,
        };
        let config = match pem.roots {
            Some(roots) => config.ca_certificate(Certificate::from_pem(roots)),
            None => config.with_native_roots(),
        };
        let config = match pem.identity {
            Some((certificate, key)) => config.identity(Identity::from_pem(certificate, key)),
            None => config,
        };
        endpoint.tls_config(config).map_err(|source| signal.error(format!("endpoint {:?}: {source}", redacted(url))))
    }

    /// A client for `http://` only: reqwest builds its TLS setup for every
    /// client, and with no certificates of its own it loads the platform's,
    /// failing the build on a host that has none (a `scratch` image), which
    /// a plain endpoint does not need.
    pub(super) fn plain(builder: reqwest::blocking::ClientBuilder) -> reqwest::blocking::ClientBuilder {
        builder.tls_certs_only([])
    }

    pub(super) fn http(
        builder: reqwest::blocking::ClientBuilder,
        url: &str,
        files: &TlsFiles,
        signal: &Signal,
    ) -> Result<reqwest::blocking::ClientBuilder, TelemetryError> {
        let pem = Pem::for_signal(files, signal)?;
        let invalid = |source: reqwest::Error| signal.error(format!("endpoint {:?}: {source}", redacted(url)));
        let builder = match pem.roots {
            Some(roots) => builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(&roots).map_err(invalid)?),
            None => builder,
        };
        Ok(match pem.identity {
            Some((certificate, key)) => {
                // On lines of their own: a certificate file without a final
                // newline would run its END line into the key's BEGIN line.
                let both = [certificate, b"\n".to_vec(), key].concat();
                builder.identity(reqwest::Identity::from_pem(&both).map_err(invalid)?)
            }
            None => builder,
        })
    }

    impl Pem {
        fn for_signal(files: &TlsFiles, signal: &Signal) -> Result<Pem, TelemetryError> {
            let from_env = |own: &'static str, general: &'static str| {
                [own, general].into_iter().find_map(|var| {
                    process_env(var).filter(|path| !path.trim().is_empty()).map(|path| (var, PathBuf::from(path)))
                })
            };
            let roots = match &files.certificate {
                Some(path) => Some(("otlp_certificate", path.clone())),
                None => from_env(signal.certificate_var, CERTIFICATE),
            };
            let roots = roots.map(|(origin, path)| read_certificates(origin, &path, signal)).transpose()?;
            let identity = match &files.client {
                Some((certificate, key)) => {
                    Some((("otlp_client_identity", certificate.clone()), ("otlp_client_identity", key.clone())))
                }
                None => match (
                    from_env(signal.client_certificate_var, CLIENT_CERTIFICATE),
                    from_env(signal.client_key_var, CLIENT_KEY),
                ) {
                    (Some(certificate), Some(key)) => Some((certificate, key)),
                    (None, None) => None,
                    (Some((var, _)), None) | (None, Some((var, _))) => {
                        return Err(signal.error(format!(
                            "{var} is set without its pair: a client certificate needs both \
                             {CLIENT_CERTIFICATE} and {CLIENT_KEY} (or the signal's own)"
                        )));
                    }
                },
            };
            let identity = identity
                .map(|((origin, certificate), (key_origin, key))| {
                    Ok::<_, TelemetryError>((
                        read_certificates(origin, &certificate, signal)?,
                        read_key(key_origin, &key, signal)?,
                    ))
                })
                .transpose()?;
            Ok(Pem { roots, identity })
        }
    }

    /// A PEM file holding at least one certificate and nothing malformed.
    fn read_certificates(origin: &str, path: &Path, signal: &Signal) -> Result<Vec<u8>, TelemetryError> {
        let pem = read(origin, path, signal)?;
        let mut count = 0;
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            certificate.map_err(|source| signal.error(format!("{origin} {}: {source}", path.display())))?;
            count += 1;
        }
        if count == 0 {
            return Err(signal.error(format!("{origin} {}: no PEM certificate in it", path.display())));
        }
        Ok(pem)
    }

    /// A PEM file holding a private key.
    fn read_key(origin: &str, path: &Path, signal: &Signal) -> Result<Vec<u8>, TelemetryError> {
        let pem = read(origin, path, signal)?;
        PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|source| signal.error(format!("{origin} {}: no PEM private key: {source}", path.display())))?;
        Ok(pem)
    }

    fn read(origin: &str, path: &Path, signal: &Signal) -> Result<Vec<u8>, TelemetryError> {
        std::fs::read(path).map_err(|source| signal.error(format!("{origin} {}: {source}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoints_user_part_is_not_shown() {
        for (url, shown) in [
            ("http://user:s3cret@collector:4318/v1/metrics", "http://***@collector:4318/v1/metrics"),
            ("https://s3cret@collector", "https://***@collector"),
            ("http://collector:4317/v1?api_key=s3cret", "http://collector:4317/v1?***"),
            ("http://collector:4317/v1#s3cret", "http://collector:4317/v1?***"),
            ("http://user:s3/cret@collector:4318/v1", "http://***@collector:4318/v1"),
            ("collector:4317", "collector:4317"),
            ("user:s3cret@collector:4318", "***@collector:4318"),
        ] {
            assert_eq!(redacted(url), shown);
        }
        let error = check_http_url("http://user:s3cret@:4318", &Signal::METRICS).unwrap_err().to_string();
        assert!(error.contains("***@") && !error.contains("s3cret"), "{error}");
    }

    fn env_of<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |var| vars.iter().find(|(name, _)| *name == var).map(|(_, value)| (*value).to_owned())
    }

    fn endpoint_with(explicit: Option<&str>, vars: &[(&str, &str)]) -> String {
        grpc_endpoint(explicit, &Signal::TRACES, env_of(vars))
    }

    #[test]
    fn an_http_url_that_cannot_be_posted_to_is_an_error() {
        for url in ["http://bad host:4318/v1/metrics", "http://:4318/v1/metrics", "not a url", "http://[::1/v1/traces"]
        {
            let error = check_http_url(url, &Signal::METRICS).expect_err(url);
            assert!(error.to_string().contains(&format!("{url:?}")), "{url}: {error}");
        }
        for url in ["http://collector:4318/v1/metrics", "https://[::1]:4318/v1/traces", "http://127.0.0.1:1/x"] {
            assert!(check_http_url(url, &Signal::METRICS).is_ok(), "{url}");
        }
    }

    #[test]
    fn the_explicit_endpoint_wins_over_the_environment() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:1"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://all:2"),
        ];
        assert_eq!(endpoint_with(Some("http://mine:3"), &vars), "http://mine:3");
        assert_eq!(endpoint_with(Some(""), &vars), "http://traces:1");
    }

    #[test]
    fn the_signal_variable_wins_over_the_general_one_and_empty_ones_are_skipped() {
        assert_eq!(endpoint_with(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://all:2")]), "http://all:2");
        let vars = [("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://all:2")];
        assert_eq!(endpoint_with(None, &vars), "http://all:2");
        let vars = [("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4")];
        assert_eq!(endpoint_with(None, &vars), "http://localhost:4317", "another signal's variable");
    }

    #[test]
    fn an_endpoint_without_scheme_is_tls_unless_insecure() {
        assert_eq!(endpoint_with(Some("collector:4317"), &[]), "https://collector:4317");
        let insecure = [("OTEL_EXPORTER_OTLP_INSECURE", "TRUE")];
        assert_eq!(endpoint_with(Some("collector:4317"), &insecure), "http://collector:4317");
        let vars = [("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "false"), ("OTEL_EXPORTER_OTLP_INSECURE", "true")];
        assert_eq!(endpoint_with(Some("collector:4317"), &vars), "https://collector:4317", "the signal's own wins");
        assert_eq!(endpoint_with(Some("collector:4317/p://q"), &insecure), "http://collector:4317/p://q");
        assert_eq!(endpoint_with(Some("https://collector:4317"), &insecure), "https://collector:4317");
    }

    #[test]
    fn the_http_url_follows_the_sdks_variables() {
        let url = |explicit, vars| http_url(explicit, &Signal::METRICS, env_of(vars));
        assert_eq!(url(None, &[]), "http://localhost:4318/v1/metrics");
        assert_eq!(url(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1/")]), "http://c:1/v1/metrics");
        let both =
            [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"), ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:2/x")];
        assert_eq!(url(None, &both), "http://m:2/x");
        let empty = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"), ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "")];
        assert_eq!(url(None, &empty), "http://c:1/v1/metrics");
        assert_eq!(url(Some("https://mine:3/"), &both), "https://mine:3/v1/metrics", "the explicit base wins");
        let traces = http_url(None, &Signal::TRACES, env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1")]));
        assert_eq!(traces, "http://c:1/v1/traces");
    }

    #[test]
    fn schemes_are_read_in_any_case() {
        assert_eq!(scheme("HTTPS://c:1").as_deref(), Some("https"));
        assert_eq!(scheme("c:1"), None);
    }
}
