//! The peer registry text format, `wb_peers.txt` (§9): blocks of `Name: value` lines
//! separated by blank lines, one block per peer, sorted by name, in a fixed field order.
//!
//! ```text
//! Peer-ID: 1c2233b4c96971e2
//! Name: riverside
//! Public-Key: 9jrsNPA1fHvtHAn7BvEPOsIQVmcIWSfhcgIaDMc+ooQ=
//! Addr: 192.0.2.7:4433
//! Hub: no
//! Trusted: yes
//! Revoked: no
//! Follow-Revocations: yes
//! Notes: met at the October meetup
//! ```
//!
//! `Peer-ID` is the key id of `Public-Key` (checked). `Addr` may repeat or be absent. Lines
//! starting with `#` are comments; they are not kept when the CLI rewrites the file.
//! `Follow-Revocations` (the revocations this peer announces apply here, [`crate::revocation`])
//! is written only when `yes`, so registries that never use it keep their bytes; a file
//! without it reads as `no`.

use std::collections::{BTreeMap, HashSet};

use crate::PublicKey;

/// One known peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub public_key: PublicKey,
    /// `host:port` addresses, in the order given.
    pub addrs: Vec<String>,
    pub hub: bool,
    pub trusted: bool,
    pub revoked: bool,
    /// Revocations this peer announces are applied here automatically (`Follow-Revocations`).
    pub follow_revocations: bool,
    pub notes: String,
}

impl Peer {
    /// An entry that only refuses `key`: revoked, no address, no trust, no notes.
    pub fn revoked_key(name: String, key: PublicKey) -> Self {
        Self {
            name,
            public_key: key,
            addrs: Vec::new(),
            hub: false,
            trusted: false,
            revoked: true,
            follow_revocations: false,
            notes: String::new(),
        }
    }
}

/// Why `wb_peers.txt` could not be read; names the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct PeersError {
    pub line: usize,
    pub reason: String,
}

/// The keys a registry marks revoked. No record of theirs is taken, whoever passes it on: a
/// node's sync and bundle imports, and a hub's intake, drop them (ARCHITECTURE.md, Revocation).
pub fn revoked_keys(peers: &[Peer]) -> HashSet<PublicKey> {
    peers
        .iter()
        .filter(|p| p.revoked)
        .map(|p| p.public_key)
        .collect()
}

/// A peer name: letters, digits, `.`, `_`, `-`; 1 to 64 characters.
pub fn valid_peer_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A `host:port` address: a non-empty host without spaces and a port number.
pub fn valid_addr(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

/// Parses the registry; errors name the line.
pub fn parse_peers(text: &str) -> Result<Vec<Peer>, PeersError> {
    let mut peers: Vec<Peer> = Vec::new();
    // Names and keys seen so far: one pass, however long the registry (it is read per change
    // and, on a hub, per connection).
    let mut names = std::collections::HashSet::new();
    let mut keys = std::collections::HashSet::new();
    let mut block: Vec<(usize, String, String)> = Vec::new();
    let lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    for (n, line) in lines.chain([(text.lines().count() + 1, "")]) {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !block.is_empty() {
                let peer = peer_from_block(&block)?;
                if !names.insert(peer.name.clone()) {
                    return Err(PeersError {
                        line: block[0].0,
                        reason: format!("peer name {:?} is used twice", peer.name),
                    });
                }
                if !keys.insert(peer.public_key) {
                    return Err(PeersError {
                        line: block[0].0,
                        reason: format!("public key of {:?} is listed twice", peer.name),
                    });
                }
                peers.push(peer);
                block.clear();
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(PeersError {
                line: n,
                reason: format!("expected `Name: value`, found {line:?}"),
            });
        };
        block.push((n, name.trim().to_string(), value.trim().to_string()));
    }
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(peers)
}

fn yes_no(line: usize, field: &str, value: &str) -> Result<bool, PeersError> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" | "" => Ok(false),
        _ => Err(PeersError {
            line,
            reason: format!("{field} must be yes or no, found {value:?}"),
        }),
    }
}

fn peer_from_block(block: &[(usize, String, String)]) -> Result<Peer, PeersError> {
    let first = block[0].0;
    let mut single: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    let mut addrs = Vec::new();
    for (n, name, value) in block {
        let known = [
            "Peer-ID",
            "Name",
            "Public-Key",
            "Addr",
            "Hub",
            "Trusted",
            "Revoked",
            "Follow-Revocations",
            "Notes",
        ];
        let Some(field) = known.iter().find(|k| **k == name) else {
            return Err(PeersError {
                line: *n,
                reason: format!(
                    "unknown field {name:?} (expected one of {})",
                    known.join(", ")
                ),
            });
        };
        if *field == "Addr" {
            if !valid_addr(value) {
                return Err(PeersError {
                    line: *n,
                    reason: format!("Addr must be host:port, found {value:?}"),
                });
            }
            addrs.push(value.clone());
        } else if single.insert(field, (*n, value)).is_some() {
            return Err(PeersError {
                line: *n,
                reason: format!("{field} given twice in one peer block"),
            });
        }
    }
    let (name_line, name) = *single.get("Name").ok_or(PeersError {
        line: first,
        reason: "peer block without a Name".into(),
    })?;
    if !valid_peer_name(name) {
        return Err(PeersError {
            line: name_line,
            reason: format!("peer name {name:?} must be 1-64 letters, digits, '.', '_' or '-'"),
        });
    }
    let (key_line, key_text) = *single.get("Public-Key").ok_or(PeersError {
        line: first,
        reason: format!("peer {name:?} has no Public-Key"),
    })?;
    let public_key = PublicKey::parse(key_text).map_err(|e| PeersError {
        line: key_line,
        reason: e.to_string(),
    })?;
    if let Some((line, id)) = single.get("Peer-ID")
        && *id != public_key.key_id()
    {
        return Err(PeersError {
            line: *line,
            reason: format!(
                "Peer-ID {id} does not match Public-Key (its key id is {})",
                public_key.key_id()
            ),
        });
    }
    let flag = |field: &str| match single.get(field) {
        Some((line, v)) => yes_no(*line, field, v),
        None => Ok(false),
    };
    Ok(Peer {
        name: name.to_string(),
        public_key,
        addrs,
        hub: flag("Hub")?,
        trusted: flag("Trusted")?,
        revoked: flag("Revoked")?,
        follow_revocations: flag("Follow-Revocations")?,
        notes: single
            .get("Notes")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default(),
    })
}

/// Writes the registry deterministically: peers sorted by name, fields in a fixed order.
pub fn write_peers(peers: &[Peer]) -> String {
    let mut sorted: Vec<&Peer> = peers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let yn = |b: bool| if b { "yes" } else { "no" };
    let mut out = String::new();
    for (i, p) in sorted.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("Peer-ID: {}\n", p.public_key.key_id()));
        out.push_str(&format!("Name: {}\n", p.name));
        out.push_str(&format!("Public-Key: {}\n", p.public_key.to_base64()));
        for a in &p.addrs {
            out.push_str(&format!("Addr: {a}\n"));
        }
        out.push_str(&format!("Hub: {}\n", yn(p.hub)));
        out.push_str(&format!("Trusted: {}\n", yn(p.trusted)));
        out.push_str(&format!("Revoked: {}\n", yn(p.revoked)));
        if p.follow_revocations {
            out.push_str("Follow-Revocations: yes\n");
        }
        // Notes are one line: the CLI refuses newlines, and a hand edit cannot add one.
        out.push_str(&format!("Notes: {}\n", p.notes.replace(['\n', '\r'], " ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use proptest::prelude::*;

    fn peer(seed: u8, name: &str) -> Peer {
        Peer {
            name: name.into(),
            public_key: SecretKey::from_bytes(&[seed; 32]).public(),
            addrs: vec!["127.0.0.1:4433".into(), "example.org:1".into()],
            hub: seed % 2 == 0,
            trusted: seed % 3 == 0,
            revoked: false,
            follow_revocations: seed % 4 == 0,
            notes: "a note: with colon".into(),
        }
    }

    #[test]
    fn round_trip_sorted_and_stable() {
        let peers = vec![peer(2, "zeta"), peer(3, "alpha")];
        let text = write_peers(&peers);
        let back = parse_peers(&text).expect("parses");
        assert_eq!(
            back.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["alpha", "zeta"]
        );
        assert_eq!(write_peers(&back), text);
        assert!(text.starts_with("Peer-ID: "));
    }

    #[test]
    fn hand_edit_errors_name_the_line() {
        let text = write_peers(&[peer(2, "a"), peer(3, "b")]);
        let cases = [
            (
                text.replace("Trusted: yes", "Trusted: maybe"),
                "Trusted must be yes or no",
            ),
            (
                text.replacen("Hub: yes", "Hub yes", 1),
                "expected `Name: value`",
            ),
            (text.replacen("Name: b", "Name: a", 1), "used twice"),
            (
                text.replacen("Addr: example.org:1", "Addr: example.org", 1),
                "host:port",
            ),
            (
                text.replacen("Notes:", "Colour: red\nNotes:", 1),
                "unknown field",
            ),
            (text.replacen("Name: a\n", "", 1), "without a Name"),
        ];
        for (broken, expected) in cases {
            let err = parse_peers(&broken).expect_err(expected);
            assert!(err.to_string().contains(expected), "{err} / {expected}");
            assert!(err.line > 0);
        }
        let bad_id = text.replacen(&peer(2, "a").public_key.key_id(), "0000000000000000", 1);
        let err = parse_peers(&bad_id).expect_err("bad id");
        assert_eq!(err.line, 1, "{err}");
    }

    #[test]
    fn follow_revocations_line() {
        let mut p = peer(3, "a");
        p.follow_revocations = false;
        let old = write_peers(std::slice::from_ref(&p));
        assert!(
            !old.contains("Follow-Revocations"),
            "written only when yes: {old}"
        );
        assert!(!parse_peers(&old).expect("old file")[0].follow_revocations);
        p.follow_revocations = true;
        let text = write_peers(std::slice::from_ref(&p));
        assert!(
            text.contains("Revoked: no\nFollow-Revocations: yes\nNotes:"),
            "{text}"
        );
        let back = parse_peers(&text).expect("parses");
        assert!(back[0].follow_revocations);
        assert_eq!(write_peers(&back), text);
        let no = text.replace("Follow-Revocations: yes", "Follow-Revocations: no");
        assert!(!parse_peers(&no).expect("no")[0].follow_revocations);
        let bad = text.replace("Follow-Revocations: yes", "Follow-Revocations: sometimes");
        let err = parse_peers(&bad).expect_err("bad value");
        assert_eq!(
            err.line,
            text.lines()
                .position(|l| l.starts_with("Follow"))
                .expect("the test text has the line")
                + 1
        );
        assert!(
            err.to_string()
                .contains("Follow-Revocations must be yes or no"),
            "{err}"
        );
        let twice = text.replace(
            "Follow-Revocations: yes",
            "Follow-Revocations: yes\nFollow-Revocations: no",
        );
        let err = parse_peers(&twice).expect_err("twice");
        assert!(err.to_string().contains("given twice"), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "(Name|Addr|Hub|Peer-ID|Public-Key|#|:| |\n|[a-z0-9=+/]){0,200}") {
            let _ = parse_peers(&text);
        }
    }
}
