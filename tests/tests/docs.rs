//! The operator's guide (issue 13, item 8) stays true: every error the library crates can
//! return is listed in docs/OPERATOR.md's troubleshooting section.

use std::path::Path;

/// The text of each `#[error("…")]` in a source file (adjacent literals and `\` continuations
/// joined).
fn error_messages(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("#[error(") {
        rest = &rest[at + "#[error(".len()..];
        let end = rest.find(")]").unwrap_or(rest.len());
        let attr = &rest[..end];
        let mut text = String::new();
        let mut chars = attr.chars().peekable();
        let mut inside = false;
        while let Some(c) = chars.next() {
            match (inside, c) {
                (false, '"') => inside = true,
                (false, _) => {}
                (true, '"') => inside = false,
                (true, '\\') => match chars.next() {
                    // A line continuation: the newline and the next line's indentation go.
                    Some('\n') => {
                        while chars.peek().is_some_and(|c| c.is_whitespace()) {
                            chars.next();
                        }
                    }
                    Some(other) => text.push(other),
                    None => {}
                },
                (true, c) => text.push(c),
            }
        }
        if !text.is_empty() {
            out.push(text);
        }
    }
    out
}

/// The longest run of literal text between `{…}` placeholders, trimmed of punctuation at its
/// ends: what an operator sees of the message whatever the values.
fn literal_part(message: &str) -> String {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    for c in message.chars() {
        match c {
            '{' => {
                depth += 1;
                parts.push(std::mem::take(&mut current));
            }
            '}' if depth > 0 => depth -= 1,
            c if depth == 0 => current.push(c),
            _ => {}
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| {
            p.trim_matches(|c: char| !c.is_alphanumeric() && c != '`' && c != '\'')
                .to_string()
        })
        .max_by_key(String::len)
        .unwrap_or_default()
}

#[test]
fn the_operator_guide_lists_every_library_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/OPERATOR.md")).expect("docs/OPERATOR.md");
    let (_, troubleshooting) = guide
        .split_once("## 10. Troubleshooting")
        .expect("a troubleshooting section");
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in [
        "node/src/error.rs",
        "store/src/error.rs",
        "protocol/src/error.rs",
    ] {
        let source = std::fs::read_to_string(root.join(file)).expect("an error module");
        for message in error_messages(&source) {
            let literal = literal_part(&message);
            // "{0}" and the like pass another error's text on; very short words say nothing.
            if literal.len() < 10 {
                continue;
            }
            checked += 1;
            if !troubleshooting.contains(&literal) {
                missing.push(format!("{file}: {literal:?} (from {message:?})"));
            }
        }
    }
    assert!(
        checked > 40,
        "only {checked} messages found: is the extraction broken?"
    );
    assert!(
        missing.is_empty(),
        "docs/OPERATOR.md does not list:\n{}",
        missing.join("\n")
    );
}
