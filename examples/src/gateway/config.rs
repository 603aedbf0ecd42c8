//! The routes file: parsing and validation.
//!
//! ```toml
//! [[route]]
//! prefix = "/api"
//! upstream = "http://10.0.0.1:8080"
//! ```
//!
//! A list of tables rather than one `prefix = upstream` table, so that a route
//! can grow fields (timeouts, weights) without changing the format.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A validated routing table: prefix → upstream URL.
///
/// A `BTreeMap` so that errors, logs and the publish batch come in a stable order.
pub type RouteTable = BTreeMap<String, String>;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    #[serde(default)]
    route: Vec<RouteEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    prefix: String,
    upstream: String,
}

/// Why a routes file was rejected. Its `Display` names the file and the
/// problem (with line and column for syntax errors), for the log.
#[derive(Debug)]
pub struct ConfigError {
    /// The file that was read.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the routes file at `path`.
///
/// # Errors
///
/// The file cannot be read, is not valid TOML, or breaks a rule of [`parse`].
pub fn load(path: &Path) -> Result<RouteTable, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigError { path: path.to_owned(), message: format!("cannot read: {err}") })?;
    parse(&text).map_err(|message| ConfigError { path: path.to_owned(), message })
}

/// Parses and validates the text of a routes file.
///
/// Rules: every `prefix` starts with `/` and has no trailing `/` (except `/`
/// itself, the catch-all), prefixes are unique, every `upstream` is an
/// `http://` or `https://` URL.
///
/// # Errors
///
/// A message naming the offending route, for the log.
pub fn parse(text: &str) -> Result<RouteTable, String> {
    let file: RoutesFile = toml::from_str(text).map_err(|err| err.to_string().trim_end().to_owned())?;
    let mut table = RouteTable::new();
    for (i, RouteEntry { prefix, upstream }) in file.route.into_iter().enumerate() {
        let n = i + 1;
        if !prefix.starts_with('/') {
            return Err(format!("route #{n}: prefix {prefix:?} must start with '/'"));
        }
        if prefix.len() > 1 && prefix.ends_with('/') {
            return Err(format!("route #{n}: prefix {prefix:?} must not end with '/'"));
        }
        if !(upstream.starts_with("http://") || upstream.starts_with("https://")) {
            return Err(format!("route #{n} ({prefix}): upstream {upstream:?} must be an http:// or https:// URL"));
        }
        if table.insert(prefix.clone(), upstream).is_some() {
            return Err(format!("route #{n}: prefix {prefix:?} appears twice"));
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_parses() {
        let table = load(&crate::gateway::default_routes_path()).unwrap();
        assert_eq!(table.get("/api").map(String::as_str), Some("http://10.0.0.1:8080"));
        assert!(table.len() >= 4);
    }

    #[test]
    fn an_empty_file_is_an_empty_table() {
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        let syntax = parse("[[route]\nprefix = 1").unwrap_err();
        assert!(syntax.contains("line 1"), "{syntax}");
        let no_slash = parse("[[route]]\nprefix = \"api\"\nupstream = \"http://a\"").unwrap_err();
        assert!(no_slash.contains("must start with '/'"), "{no_slash}");
        let twice =
            "[[route]]\nprefix = \"/a\"\nupstream = \"http://a\"\n[[route]]\nprefix = \"/a\"\nupstream = \"http://b\"";
        assert!(parse(twice).unwrap_err().contains("twice"));
        let scheme = parse("[[route]]\nprefix = \"/a\"\nupstream = \"ftp://a\"").unwrap_err();
        assert!(scheme.contains("http://"), "{scheme}");
        let unknown = parse("[[route]]\nprefix = \"/a\"\nupstream = \"http://a\"\nweight = 3").unwrap_err();
        assert!(unknown.contains("weight"), "{unknown}");
    }
}
