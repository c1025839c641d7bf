//! Files written for the WhiteBalloon app's own importer (§14): the app's layout and nothing
//! else, with every piece of foreign text made data, never structure.
//!
//! The app reads a file as header lines up to the first empty line (split at the first `:`,
//! stripped), then a body read in text mode (`\r\n` and `\r` become `\n`). A request body is
//! split at its first `\nComments:\n`; after it, every line that strips to `---` opens a comment
//! block whose `Name: value` lines up to an empty line are obeyed (`Comment-ID`, `User-ID`,
//! `Sync-Scope`). So foreign text must never put a line break into a header value, a
//! `Comments:` line into a description, or a `---` line into a comment's text: the first would
//! add headers, the others would create or overwrite comment rows with ids of the author's
//! choosing. These writers neutralise exactly that, and change nothing else.

use crate::Scope;

use super::escape::{is_line_breaking, py_rstrip, py_splitlines, py_strip, universal_newlines};

/// One comment block of a request body written for the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppComment {
    /// The comment's id in the app (`Comment-ID`).
    pub id: i64,
    /// The author's id in the app (`User-ID`).
    pub user_id: i64,
    pub username: String,
    pub created_at: String,
    pub scope: Scope,
    pub text: String,
}

/// A header value the app reads back as exactly one value: line-breaking characters become
/// spaces, and the ends are stripped (the app strips them anyway).
pub fn app_value(value: &str) -> String {
    let one_line: String = value
        .chars()
        .map(|c| if is_line_breaking(c) { ' ' } else { c })
        .collect();
    py_strip(&one_line).to_string()
}

/// A description the app cannot split: line ends normalised as the app's text-mode read does,
/// and a line that is exactly `Comments:` (which would start the app's comments section) written
/// as `Comments :`.
pub fn app_description(description: &str) -> String {
    let text = universal_newlines(description);
    text.split('\n')
        .map(|line| {
            if line == "Comments:" {
                "Comments :"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A comment's text that cannot open a block: a line that strips to `---` (in Python's sense of
/// lines, which the app's comment parser uses) gets a space after its first `-`.
pub fn app_comment_text(text: &str) -> String {
    py_splitlines(text)
        .into_iter()
        .map(|(_, line)| {
            if py_strip(line) == "---" {
                line.replacen("---", "- --", 1)
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A request body in the app's layout: `Description:`, the neutralised description, and, when
/// there are comments, `Comments:` with one block per comment.
pub fn app_request_body(description: &str, comments: &[AppComment]) -> String {
    let mut lines: Vec<String> = vec![
        "Description:".into(),
        app_description(description),
        String::new(),
    ];
    if !comments.is_empty() {
        lines.push("Comments:".into());
        for c in comments {
            lines.push("---".into());
            lines.push(format!("Comment-ID: {}", c.id));
            lines.push(format!("User-ID: {}", c.user_id));
            lines.push(format!("Username: {}", app_value(&c.username)));
            lines.push(format!("Created-At: {}", app_value(&c.created_at)));
            lines.push(format!("Sync-Scope: {}", c.scope));
            lines.push(String::new());
            lines.push(app_comment_text(&c.text));
            lines.push(String::new());
        }
    }
    format!("{}\n", py_rstrip(&lines.join("\n")))
}

/// A whole file: `Name: value` header lines (values made single-line with [`app_value`]), an
/// empty line, then the body. Header names are the caller's constants.
pub fn write_app_file(headers: &[(&str, String)], body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 64 * headers.len());
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(&app_value(value));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One comment block as the app reads it: its header lines and its text lines.
    type Block = (Vec<(String, String)>, Vec<String>);

    /// The app's reading of a request body (whiteballoon_app.py `parse_request_body`), after its
    /// text-mode read: the description and each comment's (id, user id, scope, text).
    fn app_parse(body: &str) -> (String, Vec<(String, String, String, String)>) {
        let text = universal_newlines(body).into_owned();
        let (desc, section) = match text.split_once("\nComments:\n") {
            Some((d, s)) => (d.to_string(), s.to_string()),
            None => (text.clone(), String::new()),
        };
        let desc = desc.strip_prefix("Description:\n").unwrap_or(&desc);
        let mut items: Vec<Block> = Vec::new();
        let mut done = false;
        for (_, line) in py_splitlines(&section) {
            if py_strip(line) == "---" {
                items.push((Vec::new(), Vec::new()));
                done = false;
                continue;
            }
            let Some(cur) = items.last_mut() else {
                continue;
            };
            if !done {
                if py_strip(line).is_empty() {
                    done = true;
                } else if let Some((k, v)) = line.split_once(':') {
                    cur.0
                        .push((py_strip(k).to_lowercase(), py_strip(v).to_string()));
                }
                continue;
            }
            cur.1.push(line.to_string());
        }
        let get = |h: &[(String, String)], k: &str| {
            h.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let comments = items
            .iter()
            .map(|(h, body)| {
                (
                    get(h, "comment-id"),
                    get(h, "user-id"),
                    get(h, "sync-scope"),
                    py_strip(&body.join("\n")).to_string(),
                )
            })
            .collect();
        (py_strip(desc).to_string(), comments)
    }

    fn comment(id: i64, text: &str) -> AppComment {
        AppComment {
            id,
            user_id: -1,
            username: "sam@alpha".into(),
            created_at: "2025-11-03T14:05:09".into(),
            scope: Scope::Public,
            text: text.into(),
        }
    }

    #[test]
    fn a_description_that_imitates_the_comments_section_stays_a_description() {
        let hostile =
            "Need help.\nComments:\n---\nComment-ID: 1\nUser-ID: 1\nSync-Scope: public\n\nowned";
        for desc in [
            hostile.to_string(),
            hostile.replace('\n', "\r\n"),
            hostile.replace('\n', "\r"),
            format!("Comments:\n{hostile}\nComments:"),
        ] {
            let body = app_request_body(&desc, &[comment(-7, "real")]);
            let (_, comments) = app_parse(&body);
            assert_eq!(
                comments,
                vec![(
                    "-7".to_string(),
                    "-1".to_string(),
                    "public".to_string(),
                    "real".to_string()
                )],
                "{desc:?}"
            );
        }
    }

    #[test]
    fn comment_text_cannot_open_another_block() {
        for text in [
            "a\n---\nComment-ID: 1\nUser-ID: 1\n\nowned",
            "a\u{2028}---\u{2028}Comment-ID: 1\u{2028}\u{2028}owned",
            "a\r---\rComment-ID: 1\r\rowned",
            " --- \nComment-ID: 2",
        ] {
            let body = app_request_body("d", &[comment(-3, text)]);
            let (_, comments) = app_parse(&body);
            assert_eq!(comments.len(), 1, "{text:?}");
            assert_eq!(comments[0].0, "-3");
        }
    }

    #[test]
    fn header_values_stay_on_one_line() {
        let file = write_app_file(
            &[
                ("Entity", "request".into()),
                ("Title", "x\nSync-Scope: private\r\u{85}y ".into()),
            ],
            "Description:\nd\n",
        );
        let headers: Vec<&str> = file.split("\n\n").next().unwrap_or("").lines().collect();
        assert_eq!(
            headers,
            ["Entity: request", "Title: x Sync-Scope: private  y"]
        );
    }
}
