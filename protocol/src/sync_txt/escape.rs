//! Text helpers shared by the codec: Python's notion of whitespace and lines (the app's reader
//! is Python), and the percent-escaping of header values and names.

use std::borrow::Cow;

/// Header names this codec gives a meaning beyond the reserved metadata headers. A record field
/// with one of these names is written under an escaped name so it cannot be mistaken for them.
pub(crate) const CODEC_HEADER_NAMES: [&str; 3] = ["Instance", "Escaped", "Description-Lines"];

/// Python's `str.isspace`, which `str.strip()` uses: Rust's whitespace plus U+001C..U+001F.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Python's `str.rstrip()`.
pub(crate) fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// Line separators of Python's `str.splitlines()` (besides `\r\n`, which counts as one).
fn is_py_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{0b}'
            | '\u{0c}'
            | '\u{1c}'
            | '\u{1d}'
            | '\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Python's `str.splitlines()`: each line with the byte offset where it starts.
pub(crate) fn py_splitlines(s: &str) -> Vec<(usize, &str)> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_py_line_break(c) {
            lines.push((start, &s[start..i]));
            let mut next = i + c.len_utf8();
            if c == '\r'
                && let Some(&(_, '\n')) = chars.peek()
            {
                chars.next();
                next += 1;
            }
            start = next;
        }
    }
    if start < s.len() {
        lines.push((start, &s[start..]));
    }
    lines
}

/// What Python's text-mode reading does to line ends (universal newlines): `\r\n` and `\r`
/// become `\n`.
pub(crate) fn universal_newlines(s: &str) -> Cow<'_, str> {
    if s.contains('\r') {
        Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Characters that make a value unfit for a header line or for line-oriented tools: control
/// characters other than tab, and the Unicode line and paragraph separators.
pub(crate) fn is_line_breaking(c: char) -> bool {
    (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}'
}

/// True when a value cannot be written as-is: a reader that strips header values (ours and the
/// app's) would not read it back unchanged, or it would break the line.
pub(crate) fn value_needs_escape(value: &str) -> bool {
    value.chars().any(is_line_breaking) || py_strip(value).len() != value.len()
}

fn push_percent(out: &mut String, c: char, upper: bool) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        out.push('%');
        if upper {
            out.push_str(&format!("{b:02X}"));
        } else {
            out.push_str(&format!("{b:02x}"));
        }
    }
}

/// The escaped form of a value: `%`, line-breaking characters and whitespace at either end are
/// written as `%XX` per UTF-8 byte; everything else is kept.
pub(crate) fn escape_value(value: &str) -> String {
    let lead = value.len() - value.trim_start_matches(is_py_space).len();
    let trail = value.trim_end_matches(is_py_space).len();
    let mut out = String::with_capacity(value.len() + 8);
    for (i, c) in value.char_indices() {
        if c == '%' || is_line_breaking(c) || i < lead || i >= trail {
            push_percent(&mut out, c, true);
        } else {
            out.push(c);
        }
    }
    out
}

/// Decodes `%XX` sequences (either case of hex digit); the result must be UTF-8.
pub(crate) fn percent_decode(text: &str) -> Result<String, &'static str> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or("`%` not followed by two hex digits")?;
            let hi = hex_val(hex[0]).ok_or("`%` not followed by two hex digits")?;
            let lo = hex_val(hex[1]).ok_or("`%` not followed by two hex digits")?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "escaped bytes are not UTF-8")
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The name a field is written under: as-is, unless it is one of [`CODEC_HEADER_NAMES`] or
/// starts with `%`; then its first character is percent-encoded (`Instance` -> `%49nstance`)
/// and any other `%` too, so every header name starting with `%` is an escaped name.
pub(crate) fn escape_name(name: &str) -> Cow<'_, str> {
    if !name.starts_with('%') && !CODEC_HEADER_NAMES.contains(&name) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 6);
    let mut chars = name.chars();
    if let Some(first) = chars.next() {
        push_percent(&mut out, first, true);
    }
    for c in chars {
        if c == '%' {
            push_percent(&mut out, c, true);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The field name a header name stands for (inverse of [`escape_name`]).
pub(crate) fn unescape_name(name: &str) -> Result<Cow<'_, str>, &'static str> {
    if name.starts_with('%') {
        percent_decode(name).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(name))
    }
}

/// The `Escaped` header's value: header names separated by `, `, with `%` and `,` in a name
/// written as `%25` and `%2C`.
pub(crate) fn encode_name_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for c in name.chars() {
            if c == '%' || c == ',' {
                push_percent(&mut out, c, true);
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// Parses an `Escaped` header's value (inverse of [`encode_name_list`]).
pub(crate) fn decode_name_list(value: &str) -> Result<Vec<String>, &'static str> {
    if py_strip(value).is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|item| {
            let item = py_strip(item);
            if item.is_empty() {
                return Err("empty name in the list");
            }
            percent_decode(item)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_escape_only_where_needed() {
        for plain in ["", "x", "a: b", "100%", "tab\tinside", "café", "%41"] {
            assert!(!value_needs_escape(plain), "{plain:?}");
        }
        for odd in [
            " x", "x ", "a\nb", "\r", "\u{2028}", "\u{1c}x", "\u{a0}", "\0",
        ] {
            assert!(value_needs_escape(odd), "{odd:?}");
            let escaped = escape_value(odd);
            assert!(!value_needs_escape(&escaped), "{odd:?} -> {escaped:?}");
            assert_eq!(percent_decode(&escaped).as_deref(), Ok(odd));
        }
        assert_eq!(escape_value(" a b\n"), "%20a b%0A");
        assert_eq!(escape_value("50% \t"), "50%25%20%09");
    }

    #[test]
    fn names_escape_injectively() {
        assert_eq!(escape_name("Title"), "Title");
        assert_eq!(escape_name("Instance"), "%49nstance");
        assert_eq!(escape_name("%49nstance"), "%2549nstance");
        assert_eq!(escape_name("%a%b"), "%25a%25b");
        for name in [
            "Instance",
            "Escaped",
            "Description-Lines",
            "%",
            "%x%",
            "Title",
        ] {
            assert_eq!(unescape_name(&escape_name(name)).as_deref(), Ok(name));
        }
        let list = encode_name_list(["A,B", "%C", "D E"]);
        assert_eq!(list, "A%2CB, %25C, D E");
        assert_eq!(
            decode_name_list(&list),
            Ok(vec!["A,B".to_string(), "%C".into(), "D E".into()])
        );
        assert!(decode_name_list("%zz").is_err());
        assert!(decode_name_list("a,,b").is_err());
    }

    #[test]
    fn splitlines_matches_python() {
        let lines: Vec<&str> = py_splitlines("a\r\nb\rc\u{2028}d\n\ne")
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(lines, ["a", "b", "c", "d", "", "e"]);
        assert!(py_splitlines("").is_empty());
        assert_eq!(py_splitlines("x\n").len(), 1);
    }
}
