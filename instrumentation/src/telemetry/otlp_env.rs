//! The standard OpenTelemetry SDK variables that the pipeline reads itself,
//! because it configures the SDK in code and code wins over the SDK's own
//! reading of them: the protocol, the export timeout, the span queue's
//! size, the switch that turns the SDK off, the metrics' export interval
//! and the spans' export delay, and (for `otlp_from_env`) which signals are
//! exported. The endpoints,
//! `..._INSECURE` and the TLS files are read by
//! [`transport`](super::transport), the way the SDK reads them; the SDK
//! still reads the headers, `OTEL_RESOURCE_ATTRIBUTES`, the other
//! `OTEL_BSP_*` and `OTEL_TRACES_SAMPLER`.
//!
//! A value that is set but not valid is an error at `build()` naming the
//! variable: the pipeline would otherwise export with a setting nobody
//! chose, and a wrong protocol fails every export with nothing but the
//! SDK's warnings to say why.

use std::time::Duration;

use super::TelemetryError;
use super::otlp::Protocol;

/// `OTEL_SDK_DISABLED`: the SDK's off switch for every signal.
pub(super) const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// The protocol of both signals, unless a signal's own variable says otherwise.
pub(super) const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const METRICS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
/// Milliseconds, as the specification has it.
pub(super) const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
pub(super) const MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// Milliseconds between two exports of the metrics.
pub(super) const METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// Milliseconds between two exports of the spans.
pub(super) const SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
pub(super) const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
pub(super) const METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
const ENDPOINTS: [&str; 3] =
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"];

/// Spans that may wait for export when `OTEL_BSP_MAX_QUEUE_SIZE` is not set:
/// the SDK's default, a few batches' worth.
pub(super) const DEFAULT_MAX_QUEUED_SPANS: usize = 2048;
/// The largest queue `OTEL_BSP_MAX_QUEUE_SIZE` may ask for: the SDK's
/// channel takes room for all of it up front.
pub(super) const MAX_MAX_QUEUED_SPANS: usize = 1 << 20;

/// Whether `OTEL_SDK_DISABLED` is `true` (in any case; any other value is false, as the specification reads booleans).
pub(super) fn sdk_disabled(env: &impl Fn(&str) -> Option<String>) -> bool {
    env(SDK_DISABLED).is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// Whether any OTLP endpoint variable is set to something.
pub(super) fn endpoint_configured(env: &impl Fn(&str) -> Option<String>) -> bool {
    ENDPOINTS.iter().any(|var| env(var).is_some_and(|value| !value.trim().is_empty()))
}

/// The protocol the environment asks for: each signal's variable, else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, else gRPC (this pipeline's default, as
/// the builder's; the specification recommends `http/protobuf` for SDKs).
/// The pipeline exports both signals with one protocol, so signals that
/// end up asking for two are an error, naming the signal's variable that
/// made them differ. A signal that is not exported (`exported`: traces,
/// metrics) has its variable left unread.
pub(super) fn protocol(
    env: &impl Fn(&str) -> Option<String>,
    (traces_exported, metrics_exported): (bool, bool),
) -> Result<Protocol, TelemetryError> {
    let general = protocol_of(env, PROTOCOL)?;
    let traces = if traces_exported { protocol_of(env, TRACES_PROTOCOL)? } else { None };
    let metrics = if metrics_exported { protocol_of(env, METRICS_PROTOCOL)? } else { None };
    let of_traces = traces.or(general).unwrap_or_default();
    let of_metrics = metrics.or(general).unwrap_or_default();
    match (traces_exported, metrics_exported) {
        (true, false) => return Ok(of_traces),
        (false, true) => return Ok(of_metrics),
        _ => {}
    }
    if of_traces != of_metrics {
        let var = if metrics.is_some() { METRICS_PROTOCOL } else { TRACES_PROTOCOL };
        return Err(TelemetryError::InvalidEnvironment {
            var,
            value: env(var).unwrap_or_default(),
            expected: "the other signal's protocol: snapview exports traces and metrics with one protocol",
        });
    }
    Ok(of_traces)
}

fn protocol_of(env: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<Option<Protocol>, TelemetryError> {
    let Some(value) = env(var) else { return Ok(None) };
    match value.trim() {
        "" => Ok(None),
        "grpc" => Ok(Some(Protocol::Grpc)),
        "http/protobuf" => Ok(Some(Protocol::HttpProtobuf)),
        _ => Err(TelemetryError::InvalidEnvironment { var, value, expected: "grpc or http/protobuf" }),
    }
}

/// Which signals the environment exports, traces and metrics: each on
/// unless its `OTEL_{TRACES,METRICS}_EXPORTER` says `none`. `otlp`, the
/// default, is the only exporter this pipeline has.
pub(super) fn signals(env: &impl Fn(&str) -> Option<String>) -> Result<(bool, bool), TelemetryError> {
    let exported = |var: &'static str| match env(var) {
        None => Ok(true),
        Some(value) => match value.trim() {
            "" | "otlp" => Ok(true),
            "none" => Ok(false),
            _ => Err(TelemetryError::InvalidEnvironment { var, value, expected: "otlp or none" }),
        },
    };
    Ok((exported(TRACES_EXPORTER)?, exported(METRICS_EXPORTER)?))
}

/// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds; `None` if not set.
pub(super) fn timeout(env: &impl Fn(&str) -> Option<String>) -> Result<Option<Duration>, TelemetryError> {
    millis(env, TIMEOUT, "milliseconds, e.g. 2000")
}

/// `OTEL_METRIC_EXPORT_INTERVAL`, in milliseconds; `None` if not set.
pub(super) fn metric_export_interval(
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Duration>, TelemetryError> {
    millis(env, METRIC_EXPORT_INTERVAL, "milliseconds, e.g. 60000")
}

/// `OTEL_BSP_SCHEDULE_DELAY`, in milliseconds; `None` if not set.
pub(super) fn schedule_delay(env: &impl Fn(&str) -> Option<String>) -> Result<Option<Duration>, TelemetryError> {
    millis(env, SCHEDULE_DELAY, "milliseconds, e.g. 5000")
}

/// A whole number of milliseconds in `var`; `None` if not set or empty.
fn millis(
    env: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    expected: &'static str,
) -> Result<Option<Duration>, TelemetryError> {
    let Some(value) = env(var).filter(|value| !value.trim().is_empty()) else { return Ok(None) };
    match value.trim().parse::<u64>() {
        Ok(millis) => Ok(Some(Duration::from_millis(millis))),
        Err(_) => Err(TelemetryError::InvalidEnvironment { var, value, expected }),
    }
}

/// The span queue's bound: `OTEL_BSP_MAX_QUEUE_SIZE`, else [`DEFAULT_MAX_QUEUED_SPANS`].
pub(super) fn max_queued_spans(env: &impl Fn(&str) -> Option<String>) -> Result<usize, TelemetryError> {
    let Some(value) = env(MAX_QUEUE_SIZE).filter(|value| !value.trim().is_empty()) else {
        return Ok(DEFAULT_MAX_QUEUED_SPANS);
    };
    match value.trim().parse::<usize>() {
        Ok(size) if (1..=MAX_MAX_QUEUED_SPANS).contains(&size) => Ok(size),
        _ => Err(TelemetryError::InvalidEnvironment {
            var: MAX_QUEUE_SIZE,
            value,
            expected: "a number of spans from 1 to 1048576",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both signals exported.
    const BOTH: (bool, bool) = (true, true);

    fn env_of<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(var, _)| *var == name).map(|(_, value)| (*value).to_owned())
    }

    fn invalid_var(error: TelemetryError) -> &'static str {
        match error {
            TelemetryError::InvalidEnvironment { var, .. } => var,
            other => panic!("not an environment error: {other}"),
        }
    }

    #[test]
    fn only_true_disables_the_sdk() {
        assert!(sdk_disabled(&env_of(&[(SDK_DISABLED, "true")])));
        assert!(sdk_disabled(&env_of(&[(SDK_DISABLED, " TRUE ")])));
        for value in ["false", "1", "yes", ""] {
            assert!(!sdk_disabled(&env_of(&[(SDK_DISABLED, value)])), "{value:?}");
        }
        assert!(!sdk_disabled(&env_of(&[])));
    }

    #[test]
    fn an_empty_endpoint_variable_configures_nothing() {
        assert!(!endpoint_configured(&env_of(&[])));
        assert!(!endpoint_configured(&env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(endpoint_configured(&env_of(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317")])));
        assert!(endpoint_configured(&env_of(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:4318")])));
    }

    #[test]
    fn the_protocol_comes_from_the_signals_then_the_general_variable() {
        assert_eq!(protocol(&env_of(&[]), BOTH).unwrap(), Protocol::Grpc);
        assert_eq!(protocol(&env_of(&[(PROTOCOL, "http/protobuf")]), BOTH).unwrap(), Protocol::HttpProtobuf);
        assert_eq!(protocol(&env_of(&[(PROTOCOL, "")]), BOTH).unwrap(), Protocol::Grpc);
        let both = [(PROTOCOL, "grpc"), (TRACES_PROTOCOL, "http/protobuf"), (METRICS_PROTOCOL, "http/protobuf")];
        assert_eq!(protocol(&env_of(&both), BOTH).unwrap(), Protocol::HttpProtobuf);
        let same = [(TRACES_PROTOCOL, "http/protobuf"), (METRICS_PROTOCOL, "http/protobuf")];
        assert_eq!(protocol(&env_of(&same), BOTH).unwrap(), Protocol::HttpProtobuf);
    }

    #[test]
    fn a_protocol_not_spoken_or_two_protocols_are_errors() {
        assert_eq!(invalid_var(protocol(&env_of(&[(PROTOCOL, "http/json")]), BOTH).unwrap_err()), PROTOCOL);
        assert_eq!(invalid_var(protocol(&env_of(&[(TRACES_PROTOCOL, "udp")]), BOTH).unwrap_err()), TRACES_PROTOCOL);
        let split = [(PROTOCOL, "grpc"), (METRICS_PROTOCOL, "http/protobuf")];
        assert_eq!(invalid_var(protocol(&env_of(&split), BOTH).unwrap_err()), METRICS_PROTOCOL);
        let split = [(PROTOCOL, "grpc"), (TRACES_PROTOCOL, "http/protobuf")];
        assert_eq!(
            invalid_var(protocol(&env_of(&split), BOTH).unwrap_err()),
            TRACES_PROTOCOL,
            "the variable that is set"
        );
        // Alone, a signal's variable leaves the other signal on the default.
        let alone = [(METRICS_PROTOCOL, "http/protobuf")];
        assert_eq!(invalid_var(protocol(&env_of(&alone), BOTH).unwrap_err()), METRICS_PROTOCOL);
    }

    /// A signal that is not exported has its variable left unread: it can
    /// neither disagree with the other's nor be invalid.
    #[test]
    fn only_the_exported_signals_protocols_count() {
        let split = [(PROTOCOL, "grpc"), (METRICS_PROTOCOL, "http/protobuf")];
        assert_eq!(protocol(&env_of(&split), (true, false)).unwrap(), Protocol::Grpc);
        assert_eq!(protocol(&env_of(&split), (false, true)).unwrap(), Protocol::HttpProtobuf);
        assert_eq!(protocol(&env_of(&[(TRACES_PROTOCOL, "udp")]), (false, true)).unwrap(), Protocol::Grpc);
    }

    #[test]
    fn a_signal_is_exported_unless_its_exporter_is_none() {
        assert_eq!(signals(&env_of(&[])).unwrap(), (true, true));
        assert_eq!(signals(&env_of(&[(TRACES_EXPORTER, "otlp"), (METRICS_EXPORTER, "none")])).unwrap(), (true, false));
        assert_eq!(signals(&env_of(&[(TRACES_EXPORTER, " none ")])).unwrap(), (false, true));
        assert_eq!(invalid_var(signals(&env_of(&[(TRACES_EXPORTER, "zipkin")])).unwrap_err()), TRACES_EXPORTER);
        assert_eq!(invalid_var(signals(&env_of(&[(METRICS_EXPORTER, "prometheus")])).unwrap_err()), METRICS_EXPORTER);
    }

    #[test]
    fn the_timeout_is_milliseconds() {
        assert_eq!(timeout(&env_of(&[])).unwrap(), None);
        assert_eq!(timeout(&env_of(&[(TIMEOUT, "1500")])).unwrap(), Some(Duration::from_millis(1500)));
        for value in ["1.5", "2s", "-1"] {
            assert_eq!(invalid_var(timeout(&env_of(&[(TIMEOUT, value)])).unwrap_err()), TIMEOUT, "{value:?}");
        }
    }

    #[test]
    fn the_queue_size_is_bounded() {
        assert_eq!(max_queued_spans(&env_of(&[])).unwrap(), DEFAULT_MAX_QUEUED_SPANS);
        assert_eq!(max_queued_spans(&env_of(&[(MAX_QUEUE_SIZE, "16")])).unwrap(), 16);
        assert_eq!(max_queued_spans(&env_of(&[(MAX_QUEUE_SIZE, "1048576")])).unwrap(), MAX_MAX_QUEUED_SPANS);
        for value in ["0", "1048577", "many"] {
            assert_eq!(invalid_var(max_queued_spans(&env_of(&[(MAX_QUEUE_SIZE, value)])).unwrap_err()), MAX_QUEUE_SIZE);
        }
    }
}
