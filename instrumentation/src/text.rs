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
/// U+FFFF); and `\` itself as `\\`, so that no escaped name reads as
/// another that was written that way. Borrowed when there is nothing to
/// escape, as for nearly every name.
pub fn printable(name: &str) -> Cow<'_, str> {
    escaped(name, |_, c| c == '\\' || unprintable(c))
}

/// The separator of a folded stack's frames, and what stands for it inside one.
const FRAME_SEPARATOR: char = ';';
const SEPARATOR_STAND_IN: char = ':';

/// `name` as one frame of a folded stack (`frame;frame count`): [`printable`],
/// with `;`, the frame separator, written as `:` (Rust symbols have it:
/// `<[T; N]>::map`), and whitespace at either end escaped (inferno trims
/// each line, so a root frame starting with a space, a thread named
/// `" worker"`, made the whole flamegraph fail as unsorted input), and the
/// `#` of a frame starting `"# "` (inferno skips a line starting so as a
/// comment: a root span named `# admin` vanished from the flamegraph).
pub fn folded_frame(name: &str) -> Cow<'_, str> {
    let last = name.len().saturating_sub(1);
    let at_an_end = |at: usize, c: char| at == 0 || at + c.len_utf8() > last;
    let comment_like = name.starts_with("# ");
    escaped(name, |at, c| {
        c == FRAME_SEPARATOR
            || c == '\\'
            || unprintable(c)
            || (c.is_whitespace() && at_an_end(at, c))
            || (at == 0 && comment_like)
    })
}

/// `name` with the characters `needs` picks (by byte offset and character)
/// escaped: `\` as `\\`, `;` as `:`, the rest as `\u{..}`.
fn escaped(name: &str, needs: impl Fn(usize, char) -> bool) -> Cow<'_, str> {
    if !name.char_indices().any(|(at, c)| needs(at, c)) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for (at, c) in name.char_indices() {
        match c {
            '\\' if needs(at, c) => out.push_str("\\\\"),
            FRAME_SEPARATOR if needs(at, c) => out.push(SEPARATOR_STAND_IN),
            c if needs(at, c) => out.extend(c.escape_unicode()),
            c => out.push(c),
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

    /// A name written with a backslash never reads as another's escape.
    #[test]
    fn escaped_names_stay_apart() {
        assert_eq!(printable("a\\u{a}b"), "a\\\\u{a}b");
        assert_ne!(printable("a\nb"), printable("a\\u{a}b"));
        assert_eq!(printable("trailing\\"), "trailing\\\\");
        assert_ne!(folded_frame("a\nb"), folded_frame("a:b"));
    }

    #[test]
    fn a_frame_holds_no_separator_no_line_break_and_no_space_at_its_ends() {
        assert_eq!(folded_frame("<[T; N]>::map"), "<[T: N]>::map");
        assert_eq!(folded_frame("x;y\nz\r"), "x:y\\u{a}z\\u{d}");
        assert_eq!(folded_frame("ab;cd\u{1b}"), "ab:cd\\u{1b}");
        assert_eq!(folded_frame(" worker "), "\\u{20}worker\\u{20}");
        assert_eq!(folded_frame("\u{a0}x"), "\\u{a0}x");
        assert_eq!(folded_frame("a b"), "a b");
        assert_eq!(folded_frame(" "), "\\u{20}");
        assert_eq!(folded_frame("# admin"), "\\u{23} admin");
        assert_eq!(folded_frame("#admin"), "#admin");
    }
}
