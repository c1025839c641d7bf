//! Text that arrives from peers (an `Error` message, a close reason) and is stored or printed:
//! bounded and made safe for a terminal.

/// Longest peer-supplied text kept, in characters (a peer's `Error` message).
pub const PEER_TEXT_MAX_CHARS: usize = 300;
/// Longest error kept in a peer's state or shown by `sync status` (ours, quoting a peer).
pub const STORED_ERROR_MAX_CHARS: usize = 1_000;

/// [`bounded_text`] at [`PEER_TEXT_MAX_CHARS`].
pub fn peer_text(text: &str) -> String {
    bounded_text(text, PEER_TEXT_MAX_CHARS)
}

/// `text` with control characters (terminal escape sequences among them) written as `\u{..}`
/// escapes, cut to `max_chars` characters with a note of how much was left out. Applying it
/// again to text it did not cut, with the same or a larger bound, changes nothing (text it cut
/// grew by the note, so a second pass at the same bound cuts again: harmless, but not a
/// no-op).
pub fn bounded_text(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (shown, (i, c)) in text.char_indices().enumerate() {
        if shown >= max_chars {
            let rest = text.len() - i;
            out.push_str(&format!("… ({rest} more bytes)"));
            return out;
        }
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_and_cuts_long_text() {
        assert_eq!(peer_text("plain: ok"), "plain: ok");
        assert_eq!(peer_text("\u{1b}]0;pwned\u{7}"), "\\u{1b}]0;pwned\\u{7}");
        let long = format!("\u{1b}[2J{}", "A".repeat(8_000_000));
        let shown = peer_text(&long);
        assert!(shown.len() < 400, "{}", shown.len());
        assert!(!shown.contains('\u{1b}'));
        assert!(shown.ends_with("more bytes)"), "{shown}");
        let quoted = format!("peer x refused the session: {shown}");
        assert_eq!(bounded_text(&quoted, STORED_ERROR_MAX_CHARS), quoted);
    }
}
