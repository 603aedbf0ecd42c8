//! The metrics exporter. Each export sends one OTLP request holding the
//! SDK's instruments, as the SDK aggregated them, and the latency histograms
//! of the same collection ([`Histograms`]), which the SDK's own exporter
//! cannot carry: its data points can only be built by its aggregation.
//!
//! It speaks gRPC (through a channel that bounds connecting, as the span
//! exporter's) or HTTP/protobuf (`POST .../v1/metrics`), each export bounded
//! as a whole by the export timeout ([`bounded`](super::bounded)), and
//! reads the SDK exporter's variables: the headers of
//! `OTEL_EXPORTER_OTLP_METRICS_HEADERS` or else `OTEL_EXPORTER_OTLP_HEADERS`
//! (`key=value,...`, values percent-decoded, empty ones skipped), and
//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`. Unlike the SDK's it
//! does not retry (the next export carries the cumulative counts anyway;
//! with delta temporality a failed interval is lost, as it is for the
//! SDK's own delta instruments). A
//! collector's partial success (rejected points) is logged as a warning. A
//! collector that takes no metrics at all (Jaeger takes only traces: gRPC
//! `Unimplemented`, HTTP 404, the warning then naming the URL) is told once, as a warning, and not as an
//! export error every interval; exports go on, in case it starts taking them,
//! and once one has gone through, a refusal is told again.
//! Its channel and client come from [`transport`](super::transport), TLS included.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use opentelemetry_otlp::{
    OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_METRICS_HEADERS, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::runtime::Handle;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

use super::bounded::{on_runtime, send_within};
use super::metrics::Histograms;
use super::transport::redacted;
use super::{TelemetryError, process_env};
use crate::sync::unmodelled::{AtomicBool, Ordering};

/// Sends the metrics of each collection, histograms included.
#[derive(Debug)]
pub(super) struct MetricExport {
    transport: Transport,
    histograms: Histograms,
    temporality: Temporality,
    /// Whether the collector's refusal of all metrics has been told since
    /// the last export it took.
    told_no_metrics: AtomicBool,
}

/// Why an export did not go through.
enum Failure {
    /// The collector has no metrics service (Jaeger).
    NoMetricsService,
    Other(String),
}

enum Transport {
    /// Each export runs on `runtime`, the export runtime.
    Grpc {
        client: MetricsServiceClient<Channel>,
        headers: MetadataMap,
        runtime: Handle,
        timeout: Duration,
    },
    Http {
        client: reqwest::blocking::Client,
        url: String,
        headers: HeaderMap,
        timeout: Duration,
    },
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Grpc { .. } => f.write_str("Grpc"),
            Transport::Http { url, .. } => f.debug_struct("Http").field("url", &redacted(url)).finish_non_exhaustive(),
        }
    }
}

impl MetricExport {
    /// Exports over gRPC through `channel`, on `runtime`, each export
    /// given up after `timeout`.
    pub(super) fn grpc(channel: Channel, runtime: Handle, timeout: Duration, histograms: Histograms) -> Self {
        let headers = grpc_headers(&configured_headers(process_env));
        let transport = Transport::Grpc { client: MetricsServiceClient::new(channel), headers, runtime, timeout };
        Self { transport, temporality: histograms.temporality(), histograms, told_no_metrics: AtomicBool::new(false) }
    }

    /// Exports over HTTP/protobuf to `url` with `client`, each export given
    /// up after `timeout`.
    pub(super) fn http(
        client: reqwest::blocking::Client,
        url: String,
        timeout: Duration,
        histograms: Histograms,
    ) -> Self {
        let headers = http_headers(&configured_headers(process_env));
        let transport = Transport::Http { client, url, headers, timeout };
        Self { transport, temporality: histograms.temporality(), histograms, told_no_metrics: AtomicBool::new(false) }
    }

    fn tell_no_metrics_once(&self) {
        // Relaxed: a flag for a log line, ordering nothing else.
        if self.told_no_metrics.swap(true, Ordering::Relaxed) {
            return;
        }
        match &self.transport {
            Transport::Grpc { .. } => tracing::warn!(
                "the OTLP collector takes no metrics (Jaeger takes only traces): the latency histograms are not \
                 exported to it, while traces are; the report and Prometheus text still have them"
            ),
            // A 404 is also what a collector answers to a wrong path, and a
            // signal-specific endpoint variable is used as given, path and all.
            Transport::Http { url, .. } => tracing::warn!(
                "the OTLP collector takes no metrics at {} (404; Jaeger takes only traces): the latency \
                 histograms are not exported to it, while traces are; the report and Prometheus text still have \
                 them. If the collector does take metrics, check the path: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT \
                 is used as given and needs its /v1/metrics",
                redacted(url)
            ),
        }
    }

    fn request(&self, metrics: &ResourceMetrics) -> ExportMetricsServiceRequest {
        let mut request = ExportMetricsServiceRequest::from(metrics);
        self.histograms.add_to(&mut request);
        request
    }
}

impl PushMetricExporter for MetricExport {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let request = self.request(metrics);
        let sent = match &self.transport {
            Transport::Grpc { client, headers, runtime, timeout } => {
                let mut call = tonic::Request::new(request);
                *call.metadata_mut() = headers.clone();
                let mut client = client.clone();
                match on_runtime(runtime, *timeout, async move { client.export(call).await }).await {
                    Ok(Ok(response)) => {
                        warn_of_rejections(response.into_inner().partial_success);
                        Ok(())
                    }
                    Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => Err(Failure::NoMetricsService),
                    Ok(Err(status)) => Err(Failure::Other(grpc_error(&status))),
                    Err(gave_up) => Err(Failure::Other(gave_up.to_string())),
                }
            }
            // The SDK's reader thread runs this future with a plain executor,
            // not on a tokio runtime, so blocking here is allowed.
            Transport::Http { client, url, headers, timeout } => post(client, url, headers, &request, *timeout),
        };
        match sent {
            Ok(()) => {
                // A collector that takes metrics again and later stops for
                // good (redeployed without them) is worth a new warning.
                // Relaxed, as the swap in `tell_no_metrics_once`.
                self.told_no_metrics.store(false, Ordering::Relaxed);
                Ok(())
            }
            Err(Failure::NoMetricsService) => {
                self.tell_no_metrics_once();
                Ok(())
            }
            Err(Failure::Other(error)) => {
                Err(OTelSdkError::InternalFailure(format!("OTLP metrics export failed: {error}")))
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(()) // nothing is held between exports
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(()) // nothing to release: the reader stops calling `export`
    }

    fn temporality(&self) -> Temporality {
        self.temporality
    }
}

fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    headers: &HeaderMap,
    request: &ExportMetricsServiceRequest,
    timeout: Duration,
) -> Result<(), Failure> {
    let failed = |error: reqwest::Error| Failure::Other(error.to_string());
    let body = prost::Message::encode_to_vec(request);
    let request = client
        .post(url)
        .headers(headers.clone())
        .header(CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .build()
        .map_err(failed)?;
    let answer = send_within(client, request, timeout).map_err(failed)?;
    if answer.status == reqwest::StatusCode::NOT_FOUND {
        return Err(Failure::NoMetricsService);
    }
    if !answer.status.is_success() {
        return Err(Failure::Other(format!("{} answered {}", redacted(url), answer.status)));
    }
    // The export was taken (a 2xx); an empty body (none sent, or none read
    // in time) tells of no rejections.
    let decoded: Option<ExportMetricsServiceResponse> = prost::Message::decode(answer.body.as_slice()).ok();
    warn_of_rejections(decoded.and_then(|answer| answer.partial_success));
    Ok(())
}

/// A failed gRPC export, by its status code and local cause only: the
/// server's message may echo the request's headers, credentials included,
/// into the SDK's error log (the SDK's exporter leaves it out too).
fn grpc_error(status: &tonic::Status) -> String {
    let mut error = format!("gRPC status {:?}", status.code());
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        error.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    error
}

/// Logs a partial success: the collector refused some points, the only sign
/// of it a collector gives (the SDK's exporter logs it too).
fn warn_of_rejections(partial: Option<ExportMetricsPartialSuccess>) {
    if let Some(partial) = partial.filter(|p| p.rejected_data_points > 0 || !p.error_message.is_empty()) {
        tracing::warn!(
            rejected_data_points = partial.rejected_data_points,
            "the OTLP collector refused part of a metrics export: {}",
            partial.error_message
        );
    }
}

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` (`cumulative`,
/// `delta` or `lowmemory`, any case), cumulative if unset. Any other value
/// is an error, as for the pipeline's other variables: the SDK would warn
/// and export cumulative, but `build()` runs before any subscriber could
/// show that warning, so a misspelt `detla` would go unnoticed. Read with
/// [`process_env`], a value that is not Unicode is such an error too.
pub(super) fn temporality_preference(env: impl Fn(&str) -> Option<String>) -> Result<Temporality, TelemetryError> {
    let var = OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE;
    let Some(value) = env(var).filter(|v| !v.trim().is_empty()) else {
        return Ok(Temporality::Cumulative);
    };
    value.trim().parse().map_err(|()| TelemetryError::InvalidEnvironment {
        var,
        value,
        expected: "cumulative, delta or lowmemory",
    })
}

/// The extra headers: `OTEL_EXPORTER_OTLP_METRICS_HEADERS`, else
/// `OTEL_EXPORTER_OTLP_HEADERS`, as `key=value` pairs separated by commas,
/// keys and values trimmed, values percent-decoded (kept as written if an
/// escape is malformed); pairs without `=`, a key or a value are skipped.
/// (`check_headers` refused, at `build()`, a variable that is not Unicode.)
fn configured_headers(env: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let Some(value) = env(OTEL_EXPORTER_OTLP_METRICS_HEADERS).or_else(|| env(OTEL_EXPORTER_OTLP_HEADERS)) else {
        return Vec::new();
    };
    value
        .split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let (key, value) = (key.trim(), value.trim());
            let value = percent_decode(value).unwrap_or_else(|| value.to_owned());
            (!key.is_empty() && !value.is_empty()).then(|| (key.to_owned(), value))
        })
        .collect()
}

/// Checks the headers variable each exported signal reads (its own,
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or `..._METRICS_HEADERS`, else
/// `OTEL_EXPORTER_OTLP_HEADERS`), as the exporters will read it: this
/// crate's metrics exporter and the SDK's span exporter skip a pair they
/// cannot use, so that every export then fails, with a 401 say, and nothing
/// points at the variable. Each comma-separated pair is `key=value`, the
/// key can name a header and the value, percent-decoded, can be sent in
/// one; an empty pair (a trailing comma) is allowed. A signal not exported
/// has its variable left unread, as its others are. The error names the
/// variable, the pair's position and its key if the key is a header name,
/// never a value. A variable that is not Unicode is refused whole: the SDK's
/// span exporter would take it for unset, and its lossy text is not what
/// was set.
pub(super) fn check_headers(
    env: impl Fn(&str) -> Option<OsString>,
    traces: bool,
    metrics: bool,
) -> Result<(), TelemetryError> {
    let signals = [(traces, OTEL_EXPORTER_OTLP_TRACES_HEADERS), (metrics, OTEL_EXPORTER_OTLP_METRICS_HEADERS)];
    for (_, own) in signals.into_iter().filter(|(exported, _)| *exported) {
        let read = env(own).map(|pairs| (own, pairs));
        let Some((var, pairs)) =
            read.or_else(|| env(OTEL_EXPORTER_OTLP_HEADERS).map(|p| (OTEL_EXPORTER_OTLP_HEADERS, p)))
        else {
            continue;
        };
        let Some(pairs) = pairs.to_str() else {
            return Err(TelemetryError::InvalidHeaders { var, problem: "it is not valid Unicode".to_owned() });
        };
        for (n, pair) in (1..).zip(pairs.split(',')) {
            if let Some(problem) = header_pair_problem(n, pair) {
                return Err(TelemetryError::InvalidHeaders { var, problem });
            }
        }
    }
    Ok(())
}

/// What is wrong with the `n`th pair, if anything, without its value.
fn header_pair_problem(n: usize, pair: &str) -> Option<String> {
    if pair.trim().is_empty() {
        return None;
    }
    let Some((key, value)) = pair.split_once('=') else {
        return Some(format!("pair {n} has no `=`"));
    };
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty() {
        return Some(format!("pair {n} has no key"));
    }
    // Not shown: what stands before a misplaced `=` may be a secret
    // (`Authorization: Basic dXNlcjpwYXNz==` splits at the padding).
    if HeaderName::try_from(key).is_err() {
        let at = key.chars().position(|c| !c.is_ascii_alphanumeric() && !"!#$%&'*+-.^_`|~".contains(c));
        return Some(match at {
            Some(at) => format!("pair {n}'s key cannot name a header (its character {} is not allowed)", at + 1),
            None => format!("pair {n}'s key cannot name a header"),
        });
    }
    let value = percent_decode(value).unwrap_or_else(|| value.to_owned());
    if value.is_empty() {
        return Some(format!("pair {n} ({key}) has an empty value"));
    }
    // As the SDK's exporters convert it (`from_str`, which takes any byte
    // but the control characters other than a tab).
    HeaderValue::from_str(&value)
        .is_err()
        .then(|| format!("pair {n}'s value ({key}) cannot be sent in a header: it has a control character"))
}

/// `%XX` escapes decoded; `None` if one is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// The headers as the SDK's span exporter sends them over gRPC: a key
/// ending in `-bin` as binary metadata, its value sent as written (base64,
/// the form gRPC carries binary values in), any other as text. Taken one by
/// one as text keys, the `-bin` ones were refused and left out.
fn grpc_headers(pairs: &[(String, String)]) -> MetadataMap {
    MetadataMap::from_headers(http_headers(pairs))
}

fn http_headers(pairs: &[(String, String)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (key, value) in pairs {
        if let (Ok(key), Ok(value)) = (HeaderName::try_from(key.as_str()), HeaderValue::try_from(value.as_str())) {
            headers.insert(key, value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |var| vars.iter().find(|(name, _)| *name == var).map(|(_, value)| (*value).to_owned())
    }

    /// `env_of` as the headers check reads the environment.
    fn os_env_of<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |var| env_of(vars)(var).map(OsString::from)
    }

    #[test]
    fn headers_come_from_the_metrics_variable_first_and_are_decoded() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_HEADERS", "general=1"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", " api-key = a%20b%2Cc , bad, =x, empty= ,raw=%zz,x=1=2"),
        ];
        let headers = configured_headers(env_of(&vars));
        let wanted = [("api-key", "a b,c"), ("raw", "%zz"), ("x", "1=2")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(headers, wanted);
        assert_eq!(configured_headers(env_of(&vars[..1])), [("general".to_owned(), "1".to_owned())]);
        assert!(configured_headers(env_of(&[])).is_empty());
    }

    /// A pair the exporters would skip is an error at build, naming the
    /// variable, the pair and its key, and never the value.
    #[test]
    fn headers_the_exporters_would_skip_are_refused_without_their_values() {
        let problem = |var: &str, value: &str| match check_headers(os_env_of(&[(var, value)]), true, true) {
            Ok(()) => None,
            Err(err) => {
                assert!(!err.to_string().contains("s3cret"), "the value is not shown: {err}");
                Some(err.to_string())
            }
        };
        let traces = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
        for (var, value, why) in [
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization: Bearer s3cret", "pair 1 has no `=`"),
            (traces, "a=1,=s3cret", "pair 2 has no key"),
            (traces, "api key=s3cret", "pair 1's key cannot name a header (its character 4 is not allowed)"),
            (traces, "Authorization: Basic czNjcmV0==", "pair 1's key cannot name a header (its character 14"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-key=", "pair 1 (x-key) has an empty value"),
            (traces, "x-key=s3cret%0A", "pair 1's value (x-key) cannot be sent in a header"),
        ] {
            let message = problem(var, value).unwrap_or_else(|| panic!("{var}={value:?} passed"));
            assert!(message.starts_with(&format!("{var} is not valid: {why}")), "{message}");
        }
        for fine in ["", "a=1,", " api-key = a%20b%2Cc , x=1=2", "k=a\tb", "raw=%zz", "k=\u{e9}t\u{e9}", "k=%C3%A9"] {
            assert_eq!(problem(traces, fine), None, "{fine:?}");
        }
    }

    /// Only the variable each exported signal reads is checked: a signal's
    /// own hides the general one, and a signal not exported reads neither.
    #[test]
    fn only_the_headers_variables_the_exporters_read_are_checked() {
        let bad = "no-equals-sign";
        let general = ("OTEL_EXPORTER_OTLP_HEADERS", bad);
        let traces_own = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=1");
        let metrics_own = ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "b=2");
        let checked = |vars: &[(&str, &str)], traces, metrics| check_headers(os_env_of(vars), traces, metrics).is_ok();
        assert!(checked(&[general, traces_own, metrics_own], true, true), "both signals have their own");
        assert!(!checked(&[general, traces_own], true, true), "metrics read the general one");
        assert!(checked(&[general, traces_own], true, false), "metrics are not exported");
        assert!(checked(&[general], false, false), "nothing is exported");
        assert!(!checked(&[("OTEL_EXPORTER_OTLP_METRICS_HEADERS", bad)], false, true));
        assert!(checked(&[("OTEL_EXPORTER_OTLP_METRICS_HEADERS", bad)], true, false));
    }

    /// The SDK's span exporter reads the headers with `std::env::var`, which
    /// takes such a variable for unset: every export would go without them.
    #[cfg(unix)]
    #[test]
    fn a_headers_variable_that_is_not_unicode_is_refused() {
        use std::os::unix::ffi::OsStringExt;
        for var in [OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_METRICS_HEADERS, OTEL_EXPORTER_OTLP_TRACES_HEADERS] {
            let env = |name: &str| (name == var).then(|| OsString::from_vec(b"api-key=s3cret\xff".to_vec()));
            match check_headers(env, true, true) {
                Err(err @ TelemetryError::InvalidHeaders { .. }) => {
                    let message = err.to_string();
                    assert!(message.starts_with(&format!("{var} is not valid: it is not valid Unicode")), "{message}");
                    assert!(!message.contains("s3cret"), "{message}");
                }
                other => panic!("{var}: {other:?}"),
            }
        }
    }

    #[test]
    fn header_names_that_http_refuses_are_left_out() {
        let pairs =
            [("Good-Name", "v"), ("bad name", "v"), ("ok", "line\nbreak")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let http = http_headers(&pairs);
        assert_eq!(http.len(), 1);
        assert_eq!(http["good-name"], "v");
        let grpc = grpc_headers(&pairs);
        assert_eq!(grpc.len(), 1);
        assert_eq!(grpc.get("good-name").unwrap(), "v");
    }

    /// As the SDK's span exporter sends them: binary metadata, the value
    /// as written.
    #[test]
    fn binary_keys_go_as_binary_metadata() {
        let pairs = [("X-Tenant-Bin", "AAEC"), ("x-plain", "text")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let grpc = grpc_headers(&pairs);
        assert_eq!(grpc.len(), 2);
        assert_eq!(grpc.get_bin("x-tenant-bin").unwrap().to_bytes().unwrap().as_ref(), [0, 1, 2]);
        assert_eq!(grpc.get("x-plain").unwrap(), "text");
        assert_eq!(grpc.into_headers()["x-tenant-bin"], "AAEC", "sent as written");
    }

    #[test]
    fn the_temporality_preference_is_read_as_the_sdk_reads_it() {
        let var = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
        assert_eq!(temporality_preference(env_of(&[])).unwrap(), Temporality::Cumulative);
        assert_eq!(temporality_preference(env_of(&[(var, "Delta")])).unwrap(), Temporality::Delta);
        assert_eq!(temporality_preference(env_of(&[(var, " lowmemory ")])).unwrap(), Temporality::LowMemory);
        match temporality_preference(env_of(&[(var, "detla")])) {
            Err(TelemetryError::InvalidEnvironment { var: named, value, .. }) => {
                assert_eq!((named, &*value), (var, "detla"))
            }
            other => panic!("a misspelt preference: {other:?}"),
        }
    }
}
