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

/// A raw query string (`a=1&b=2`), decoded.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        let pairs = form_urlencoded::parse(raw.unwrap_or("").as_bytes());
        Query(pairs.map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// An error naming the first parameter that is not one of `known` but
    /// looks like a misspelling of one (`second`, `Seconds`, `freq`,
    /// `fromat`): Go's `net/http/pprof` ignores it, so `?second=5` would run
    /// a 30 s profile at the default, holding the profiler meanwhile. Other
    /// names are ignored, as Go's handlers ignore them (a cache-buster, the
    /// `x`, `y` and `s` the flamegraph's script writes into its address).
    pub(crate) fn misspelt(&self, known: &[&str]) -> Result<(), String> {
        let misspelt = self
            .0
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| !known.contains(name))
            .find_map(|name| known.iter().find(|known| looks_like(name, known)).map(|meant| (name, meant)));
        match misspelt {
            None => Ok(()),
            Some((name, meant)) => Err(format!(
                "unknown parameter {} (did you mean {meant}?); this endpoint takes {}",
                quoted(name),
                known.join(", ")
            )),
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

/// Whether `name` is close enough to `known` to be a misspelling of it:
/// the same in another case, its first three letters or more (with a
/// plural `s` or not: `sec`, `secs`, `freqs`), it with more after it, or at
/// most two letters off.
fn looks_like(name: &str, known: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let start = |piece: &str| piece.len() >= 3 && known.starts_with(piece);
    start(&name)
        || name.strip_suffix('s').is_some_and(start)
        || name.starts_with(known)
        || at_most_two_edits(&name, known)
}

/// Whether at most two insertions, deletions or substitutions of bytes
/// turn `a` into `b` (Levenshtein), computed only for names of similar length.
fn at_most_two_edits(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 2 {
        return false;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.iter().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, &y) in b.iter().enumerate() {
            row[j + 1] = (previous[j] + usize::from(x != y)).min(previous[j + 1] + 1).min(row[j] + 1);
        }
        previous = row;
    }
    previous[b.len()] <= 2
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
    fn a_misspelt_parameter_is_named_and_others_ignored() {
        let known = ["seconds", "frequency"];
        let misspelt = |raw: &str| Query::parse(Some(raw)).misspelt(&known);
        assert_eq!(
            misspelt("seconds=1&Seconds=5"),
            Err("unknown parameter \"Seconds\" (did you mean seconds?); this endpoint takes seconds, frequency"
                .to_owned())
        );
        for typo in
            ["second=5", "sec=5", "secs=5", "secnods=5", "seconds_=5", "freq=5", "freqs=5", "frequncy=5", "FREQUENCY=5"]
        {
            assert!(misspelt(typo).is_err_and(|e| e.starts_with("unknown parameter")), "{typo}");
        }
        for other in ["x=3&y=118&s=get", "_=1733", "debug=1", "format=svg", "gc=1", "s=seconds"] {
            assert_eq!(misspelt(other), Ok(()), "{other}");
        }
        assert_eq!(Query::parse(Some(&format!("{}=1", "s".repeat(50_000)))).misspelt(&known), Ok(()));
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
