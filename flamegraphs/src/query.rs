//! The query parameters, parsed by hand so that a 400 names the parameter.

use std::ops::RangeInclusive;
use std::time::Duration;

/// Default profiling window, as in Go's `net/http/pprof`.
pub(crate) const DEFAULT_SECONDS: u64 = 30;
/// Accepted profiling windows: long enough to mean something, short enough
/// not to tie a connection up for ever.
pub(crate) const SECONDS: RangeInclusive<u64> = 1..=300;
/// Default sampling frequency: 99 Hz, off the beat of periodic work.
pub(crate) const DEFAULT_FREQUENCY: u64 = 99;
/// Accepted frequencies; above 1 kHz the signal handler dominates.
pub(crate) const FREQUENCY: RangeInclusive<u64> = 1..=1000;

/// The parameters inferno's flamegraph script writes into the page's own
/// address as it is zoomed (`x`, `y`) and searched (`s`): reloading such a
/// page sends them back, and must not get a 400.
pub(crate) const FLAMEGRAPH_STATE: [&str; 3] = ["x", "y", "s"];

/// A raw query string (`a=1&b=2`), decoded.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        let pairs = form_urlencoded::parse(raw.unwrap_or("").as_bytes());
        Query(pairs.map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// An error naming the first parameter that is not one of `known`.
    /// Go's `net/http/pprof` ignores such a parameter, but a misspelt one
    /// (`?second=5`, `?Seconds=5`) would then run a 30 s profile at the
    /// default and hold the profiler meanwhile: the typo is better told.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.0.iter().find(|(name, _)| !known.contains(&name.as_str())) {
            None => Ok(()),
            Some((name, _)) => {
                let takes = known.iter().filter(|name| !FLAMEGRAPH_STATE.contains(name)).copied().collect::<Vec<_>>();
                let takes = if takes.is_empty() { "none".to_owned() } else { takes.join(", ") };
                Err(format!("unknown parameter {}; this endpoint takes {takes}", quoted(name)))
            }
        }
    }

    /// The value of `name`, if given. Given twice with different values, it
    /// is an error, not the first value as Go's `FormValue` takes it:
    /// `?seconds=5&seconds=300` is a mistake somewhere, and either reading
    /// of it surprises someone. The same value repeated is that value (a
    /// scraper that appends its parameters to ones it was configured with).
    fn get(&self, name: &str) -> Result<Option<&str>, String> {
        let mut values = self.0.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let first = values.next();
        match values.find(|value| Some(*value) != first) {
            None => Ok(first),
            Some(_) => Err(format!("{name} given twice with different values; give it once")),
        }
    }

    /// `seconds` as a window, default [`DEFAULT_SECONDS`].
    pub(crate) fn seconds(&self) -> Result<Duration, String> {
        self.number("seconds", DEFAULT_SECONDS, SECONDS).map(Duration::from_secs)
    }

    /// `frequency` in Hz, default [`DEFAULT_FREQUENCY`].
    pub(crate) fn frequency(&self) -> Result<i32, String> {
        let hz = self.number("frequency", DEFAULT_FREQUENCY, FREQUENCY)?;
        Ok(i32::try_from(hz).expect("FREQUENCY fits in i32"))
    }

    fn number(&self, name: &str, default: u64, range: RangeInclusive<u64>) -> Result<u64, String> {
        let Some(raw) = self.get(name)? else { return Ok(default) };
        // Digits only: `u64::from_str` also takes a leading `+`, which no
        // one types into a query on purpose (unencoded it reads as a space).
        let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
        match raw.parse::<u64>() {
            Ok(n) if digits && range.contains(&n) => Ok(n),
            _ => Err(format!(
                "{name} must be a whole number in {}..={}, got {}{}",
                range.start(),
                range.end(),
                quoted(raw),
                if raw.starts_with([' ', '+']) {
                    " (a '+' in a query string reads as a space; leave it out)"
                } else {
                    ""
                }
            )),
        }
    }

    /// `format`, one of `choices` (the first is the default).
    pub(crate) fn format(&self, choices: &[&'static str]) -> Result<&'static str, String> {
        let Some(raw) = self.get("format")? else { return Ok(choices[0]) };
        choices
            .iter()
            .find(|choice| **choice == raw)
            .copied()
            .ok_or_else(|| format!("format must be one of {}, got {}", choices.join(", "), quoted(raw)))
    }
}

/// `raw` quoted and escaped for an error message, cut short: the message
/// echoes the client's input and need not echo a megabyte of it.
pub(crate) fn quoted(raw: &str) -> String {
    const MAX: usize = 40;
    match raw.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &raw[..cut]),
        None => format!("{raw:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(raw: &str) -> Result<Duration, String> {
        Query::parse(Some(raw)).seconds()
    }

    #[test]
    fn defaults_apply_when_absent() {
        let query = Query::parse(None);
        assert_eq!(query.seconds(), Ok(Duration::from_secs(30)));
        assert_eq!(query.frequency(), Ok(99));
        assert_eq!(query.format(&["svg", "folded"]), Ok("svg"));
    }

    #[test]
    fn values_are_decoded_and_bounded() {
        assert_eq!(seconds("seconds=%32"), Ok(Duration::from_secs(2)));
        assert_eq!(seconds("seconds=300"), Ok(Duration::from_secs(300)));
        for bad in ["seconds=0", "seconds=-1", "seconds=abc", "seconds=301", "seconds=", "seconds=1.5"] {
            let message = seconds(bad).unwrap_err();
            assert!(message.starts_with("seconds must be a whole number in 1..=300, got \""), "{message}");
        }
        assert!(Query::parse(Some("frequency=1001")).frequency().unwrap_err().starts_with("frequency "));
    }

    #[test]
    fn only_digits_make_a_number() {
        assert_eq!(seconds("seconds=005"), Ok(Duration::from_secs(5)));
        for signed in ["seconds=%2B5", "seconds=+5"] {
            let message = seconds(signed).unwrap_err();
            assert!(message.ends_with("(a '+' in a query string reads as a space; leave it out)"), "{message}");
        }
        assert_eq!(
            seconds("seconds=%2B5").unwrap_err().split(" (").next(),
            Some("seconds must be a whole number in 1..=300, got \"+5\"")
        );
        assert!(seconds("seconds=%205").unwrap_err().contains("got \" 5\""));
    }

    #[test]
    fn an_unknown_parameter_is_named() {
        let known = ["seconds", "frequency", "x", "y", "s"];
        assert_eq!(Query::parse(Some("seconds=1&frequency=5&x=3&s=get")).only(&known), Ok(()));
        assert_eq!(
            Query::parse(Some("seconds=1&Seconds=5")).only(&known),
            Err("unknown parameter \"Seconds\"; this endpoint takes seconds, frequency".to_owned())
        );
        assert!(Query::parse(Some("second")).only(&known).unwrap_err().starts_with("unknown parameter \"second\";"));
        assert_eq!(
            Query::parse(Some("format=json")).only(&[]).unwrap_err(),
            "unknown parameter \"format\"; this endpoint takes none"
        );
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        for twice in ["seconds=5&seconds=300", "seconds=5&seconds", "seconds=5&seconds=5&seconds=6"] {
            let refused = Err("seconds given twice with different values; give it once".to_owned());
            assert_eq!(seconds(twice), refused, "{twice}");
        }
        assert_eq!(seconds("seconds=5&seconds=5"), Ok(Duration::from_secs(5)), "the same value repeated is that value");
        let query = Query::parse(Some("format=svg&format=folded&seconds=2"));
        assert!(query.format(&["svg", "folded"]).unwrap_err().starts_with("format given twice"));
        assert_eq!(query.seconds(), Ok(Duration::from_secs(2)), "the other parameters still read");
    }

    #[test]
    fn echoed_input_is_cut_short() {
        let message = seconds(&format!("seconds={}", "9".repeat(1000))).unwrap_err();
        assert!(message.len() < 120 && message.ends_with("..."), "{message}");
    }
}
