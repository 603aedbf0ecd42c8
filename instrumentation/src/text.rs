//! Names (of maps, spans, threads, symbols) made safe for the text formats
//! they are written into: a table's row, a folded stack's frame, the SVG a
//! flamegraph is drawn as.
//!
//! A name is whatever its program chose, so it may hold a line break (a
//! forged table row), a `;` (a folded stack's frame separator) or another
//! control character (XML 1.0 forbids most of them, so one ANSI colour code
//! in a map's name made the whole view-cost SVG unreadable to a browser).

use std::borrow::Cow;

/// `name` with every character that is not printable written as Rust writes
/// it in a string literal's escape (`\u{1b}`): the control characters, line
/// breaks included, and the two noncharacters XML 1.0 forbids (U+FFFE,
/// U+FFFF). Borrowed when there is none, as for nearly every name.
pub fn printable(name: &str) -> Cow<'_, str> {
    if !name.chars().any(unprintable) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if unprintable(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `name` as one frame of a folded stack (`frame;frame count`): `;` and line
/// breaks become `:`, as the frame separator and the stack's end, and any
/// other character that is not [`printable`] is escaped.
pub fn folded_frame(name: &str) -> Cow<'_, str> {
    let separated = |c: char| c == ';' || c == '\n' || c == '\r';
    if !name.chars().any(|c| separated(c) || unprintable(c)) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if separated(c) {
            out.push(':');
        } else if unprintable(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn unprintable(c: char) -> bool {
    c.is_control() || c == '\u{fffe}' || c == '\u{ffff}'
}

#[cfg(test)]
mod tests {
    use super::{folded_frame, printable};

    #[test]
    fn ordinary_names_are_borrowed_unchanged() {
        for name in ["routes", "<[T; N]>::map", "café", "GET /api/{*path}", ""] {
            assert_eq!(printable(name), name);
            assert!(matches!(printable(name), std::borrow::Cow::Borrowed(_)));
        }
        assert!(matches!(folded_frame("routes{map=a b}"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn control_characters_and_xml_noncharacters_are_escaped() {
        assert_eq!(printable("a\nb"), "a\\u{a}b");
        assert_eq!(printable("\u{1b}[31mred\u{c}"), "\\u{1b}[31mred\\u{c}");
        assert_eq!(printable("x\u{fffe}\u{ffff}\u{7f}\u{85}"), "x\\u{fffe}\\u{ffff}\\u{7f}\\u{85}");
        assert_eq!(printable("tab\there"), "tab\\u{9}here");
    }

    #[test]
    fn a_frame_holds_no_separator_and_no_line_break() {
        assert_eq!(folded_frame("<[T; N]>::map"), "<[T: N]>::map");
        assert_eq!(folded_frame("x;y\nz\r"), "x:y:z:");
        assert_eq!(folded_frame("ab;cd\u{1b}"), "ab:cd\\u{1b}");
    }
}
