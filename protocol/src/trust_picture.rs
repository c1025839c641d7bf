//! A picture of trust (`wb trust graph`): the invite/vouch graph as Graphviz DOT or as a Mermaid
//! flowchart. Users are nodes grouped by the instance they belong to; edges are labelled
//! `invite` or `vouch`. Labels come from peers (usernames), so every label is escaped for the
//! format it lands in and stripped of control characters: a username cannot end a string, open
//! a new statement or inject markup.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::PublicKey;
use crate::trust::{TrustGraph, UserRef};

/// The text format of the picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Graphviz DOT (`dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart (renders in Markdown viewers that support Mermaid).
    Mermaid,
}

/// How users and instances are named in the picture (the caller knows peer names).
pub trait Names {
    fn user(&self, user: &UserRef) -> String;
    fn instance(&self, key: &PublicKey) -> String;
}

/// Every user the graph knows or a link names, by instance, each with a short node id.
fn nodes(graph: &TrustGraph) -> BTreeMap<PublicKey, Vec<UserRef>> {
    let mut by_instance: BTreeMap<PublicKey, Vec<UserRef>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut add = |u: &UserRef| {
        if seen.insert(u.clone()) {
            by_instance.entry(u.origin).or_default().push(u.clone());
        }
    };
    for (u, _) in graph.users() {
        add(u);
    }
    // Users a link names whose record is not held here (an inviter on another instance).
    for link in graph.links() {
        add(&link.from);
        add(&link.to);
    }
    for users in by_instance.values_mut() {
        users.sort();
    }
    by_instance
}

/// Renders `graph` in `format`.
pub fn render(graph: &TrustGraph, format: Format, names: &dyn Names) -> String {
    let by_instance = nodes(graph);
    let mut ids: BTreeMap<&UserRef, String> = BTreeMap::new();
    for (n, u) in by_instance.values().flatten().enumerate() {
        ids.insert(u, format!("u{n}"));
    }
    let id = |u: &UserRef| ids.get(u).cloned().unwrap_or_default();
    let mut out = String::new();
    match format {
        Format::Dot => {
            out.push_str("digraph trust {\n  rankdir=LR;\n  node [shape=box];\n");
            for (i, (instance, users)) in by_instance.iter().enumerate() {
                let _ = writeln!(out, "  subgraph cluster_{i} {{");
                let _ = writeln!(out, "    label=\"{}\";", dot(&names.instance(instance)));
                for u in users {
                    let _ = writeln!(out, "    {} [label=\"{}\"];", id(u), dot(&names.user(u)));
                }
                out.push_str("  }\n");
            }
            for link in graph.links() {
                let _ = writeln!(
                    out,
                    "  {} -> {} [label=\"{}\"];",
                    id(&link.from),
                    id(&link.to),
                    link.kind.as_str()
                );
            }
            out.push_str("}\n");
        }
        Format::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, (instance, users)) in by_instance.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  subgraph i{i} [\"{}\"]",
                    mermaid(&names.instance(instance))
                );
                for u in users {
                    let _ = writeln!(out, "    {}[\"{}\"]", id(u), mermaid(&names.user(u)));
                }
                out.push_str("  end\n");
            }
            for link in graph.links() {
                let _ = writeln!(
                    out,
                    "  {} -->|{}| {}",
                    id(&link.from),
                    link.kind.as_str(),
                    id(&link.to)
                );
            }
        }
    }
    out
}

/// Control characters become spaces: a label is one line.
fn one_line(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars().map(|c| if c.is_control() { ' ' } else { c })
}

/// Text inside a DOT double-quoted string.
fn dot(text: &str) -> String {
    let mut out = String::new();
    for c in one_line(text) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Text inside a Mermaid `["…"]` label: quotes and markup as entity codes.
fn mermaid(text: &str) -> String {
    let mut out = String::new();
    for c in one_line(text) {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '`' => out.push_str("#96;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::LinkKind;
    use crate::{Entity, Record, Scope, SecretKey, Version};

    struct Plain;

    impl Names for Plain {
        fn user(&self, user: &UserRef) -> String {
            user.id.clone()
        }
        fn instance(&self, key: &PublicKey) -> String {
            key.key_id()
        }
    }

    fn user(key: &SecretKey, id: &str, invited_by: Option<&str>) -> Record {
        let mut fields = vec![("Username".to_string(), id.to_string())];
        if let Some(by) = invited_by {
            fields.push(("Invited-By".into(), by.into()));
        }
        Record {
            origin: key.public(),
            entity: Entity::User,
            id: id.into(),
            version: Version::new(1, 0),
            scope: Scope::Public,
            deleted: false,
            fields,
            body: String::new(),
            signature: None,
        }
    }

    #[test]
    fn hostile_labels_stay_inside_their_strings() {
        let evil = "a\"];\n  x -> y [label=\"pwn\\";
        assert_eq!(dot(evil), "a\\\"];   x -> y [label=\\\"pwn\\\\");
        let evil = "a\"] --> b[\"<img src=x>#";
        assert_eq!(
            mermaid(evil),
            "a#quot;] --#gt; b[#quot;#lt;img src=x#gt;#35;"
        );
    }

    #[test]
    fn both_formats_name_every_user_and_link() {
        let a = SecretKey::from_bytes(&[1; 32]);
        let records = [user(&a, "root", None), user(&a, "kid", Some("root"))];
        let graph = TrustGraph::from_records(records.iter());
        assert_eq!(graph.links().len(), 1);
        assert_eq!(graph.links()[0].kind, LinkKind::Invite);
        let dot_text = render(&graph, Format::Dot, &Plain);
        assert!(
            dot_text.contains("u0 [label=\"kid\"]") && dot_text.contains("u1 [label=\"root\"]")
        );
        assert!(
            dot_text.contains("u1 -> u0 [label=\"invite\"];"),
            "{dot_text}"
        );
        let mermaid_text = render(&graph, Format::Mermaid, &Plain);
        assert!(mermaid_text.contains("u1 -->|invite| u0"), "{mermaid_text}");
    }
}
