//! One spelling for each path (RFC 3986 §6.2.2), so that a route matches a
//! request however the client wrote the path: percent-escapes with upper-case
//! hex digits, unreserved characters (`A-Z a-z 0-9 - . _ ~`) never escaped,
//! characters a path cannot carry raw (raw UTF-8, spaces) escaped, and dot
//! segments (`.`, `..`) resolved. Requests and route prefixes both go through
//! [`normalize`]; curl, browsers and the `url` crate already send this form
//! (less the escapes' case), so for them it changes nothing and allocates
//! nothing.

use std::borrow::Cow;

/// `path` (absolute: it starts with `/`) in its normal form.
pub fn normalize(path: &str) -> Cow<'_, str> {
    if is_normal(path) {
        return Cow::Borrowed(path);
    }
    Cow::Owned(remove_dot_segments(&normalize_escapes(path)))
}

/// Whether `path` has a `.` or `..` segment, its dots escaped or not
/// (`/%2E%2E/` is `/../`), which [`normalize`] resolves.
pub fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|segment| matches!(segment.replace("%2E", ".").replace("%2e", ".").as_str(), "." | ".."))
}

/// Whether `path` has no escape, no character to escape and no dot segment:
/// the common case, checked without allocating.
fn is_normal(path: &str) -> bool {
    path.bytes().all(|b| b != b'%' && is_raw_path_byte(b)) && !path.split('/').any(|s| s == "." || s == "..")
}

/// Whether a path may carry byte `b` as it is: RFC 3986 `pchar` less `%`
/// (which only starts an escape), and `/`.
fn is_raw_path_byte(b: u8) -> bool {
    is_unreserved(b) || b"!$&'()*+,;=:@/".contains(&b)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// Escapes decoded where they stand for unreserved characters, the others
/// written with upper-case hex, raw bytes a path cannot carry escaped, and a
/// `%` that starts no escape escaped itself (`%25`).
fn normalize_escapes(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escaped = (b == b'%').then(|| escaped_byte(&bytes[i + 1..])).flatten();
        match escaped {
            Some(decoded) if is_unreserved(decoded) => out.push(char::from(decoded)),
            Some(decoded) => push_escape(&mut out, decoded),
            None if b != b'%' && is_raw_path_byte(b) => out.push(char::from(b)),
            None => push_escape(&mut out, b),
        }
        i += if escaped.is_some() { 3 } else { 1 };
    }
    out
}

/// The byte the two hex digits at the start of `rest` stand for, if they are two.
fn escaped_byte(rest: &[u8]) -> Option<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    match rest {
        [high, low, ..] => Some((hex(*high)? * 16 + hex(*low)?) as u8),
        _ => None,
    }
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend(['%', char::from(HEX[usize::from(b >> 4)]), char::from(HEX[usize::from(b & 15)])]);
}

/// RFC 3986 §5.2.4 for an absolute path: `.` segments dropped, `..` ones
/// dropping the segment before them (never above the root); a path that ends
/// in a dot segment ends with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut ends_in_dot = false;
    for segment in path.split('/').skip(1) {
        ends_in_dot = segment == "." || segment == "..";
        match segment {
            "." => {}
            ".." => drop(kept.pop()),
            segment => kept.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if ends_in_dot || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_already_normal_is_borrowed() {
        for path in ["/", "/api/users/42", "/v1/items;matrix=1/~user@host:80", "/a.b/c..d/..e"] {
            assert!(matches!(normalize(path), Cow::Borrowed(p) if p == path), "{path}");
        }
    }

    #[test]
    fn escapes_take_one_spelling() {
        assert_eq!(normalize("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(normalize("/%61pi/%7Euser"), "/api/~user");
        assert_eq!(normalize("/a%2Fb"), "/a%2Fb", "an escaped '/' is data, not a separator");
        assert_eq!(normalize("/100%"), "/100%25");
        assert_eq!(normalize("/%zz"), "/%25zz");
    }

    #[test]
    fn raw_characters_a_path_cannot_carry_are_escaped() {
        assert_eq!(normalize("/café"), "/caf%C3%A9");
        assert_eq!(normalize("/my docs"), "/my%20docs");
    }

    #[test]
    fn dot_segments_are_found_escaped_or_not() {
        for path in ["/a/./b", "/..", "/a/%2E%2e", "/%2E/b"] {
            assert!(has_dot_segments(path), "{path}");
        }
        for path in ["/a.b", "/..a", "/a/%2E%2E%2E", "/"] {
            assert!(!has_dot_segments(path), "{path}");
        }
    }

    #[test]
    fn dot_segments_are_resolved_within_the_root() {
        assert_eq!(normalize("/static/../api/users/1"), "/api/users/1");
        assert_eq!(normalize("/a/./b/"), "/a/b/");
        assert_eq!(normalize("/a/b/.."), "/a/");
        assert_eq!(normalize("/../../etc"), "/etc");
        assert_eq!(normalize("/.."), "/");
        assert_eq!(normalize("/%2E%2E/api"), "/api", "escaped dots are dots");
    }
}
