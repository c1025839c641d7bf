//! Bundle file names of records (§8): `users/user_<id>.sync.txt` and so on, with the id made
//! safe for every file system in a way that keeps distinct ids distinct.

use sha2::{Digest, Sha256};

use crate::Entity;

/// Longest encoded id kept whole in a file name; longer ones are cut and suffixed with a hash.
const MAX_ID_IN_NAME: usize = 120;
/// Longest encoded entity name (unknown entities) kept whole in a file name.
const MAX_ENTITY_IN_NAME: usize = 50;
/// Longest encoded origin key id kept whole in a file name (key ids are 16 hex digits).
const MAX_ORIGIN_IN_NAME: usize = 40;
/// Hex digits of SHA-256 that stand for the cut part of a long id (128 bits).
const HASH_SUFFIX_HEX: usize = 32;

/// The bundle-relative path of a record's file: `users/user_<id>.sync.txt`,
/// `requests/request_<id>.sync.txt`, `comments/comment_<id>.sync.txt`,
/// `invites/invite_<id>.sync.txt`, `vouches/vouch_<id>.sync.txt`, and for entities this version
/// does not know `other/<entity>_<id>.sync.txt`. With `origin_key_id` (exports holding several
/// origins) the name becomes `user_<id>@<key id>.sync.txt`.
///
/// Ids made only of `a-z`, `0-9`, `-`, `_` and `.` (the app's integer ids and hex tokens) are
/// used as they are. Any other byte, including upper-case letters, `/`, `%`, `@`, `~`, control
/// characters and non-ASCII, is written as `%xx` (lower-case hex), so names never differ only by
/// case (case-insensitive file systems), never hold a path separator, and map back to exactly
/// one id. An encoded id longer than 120 bytes keeps its first 87 bytes followed by `~` and 32
/// hex digits of the id's SHA-256, so every name stays under 255 bytes.
pub fn safe_file_name(entity: &Entity, id: &str, origin_key_id: Option<&str>) -> String {
    let (dir, stem) = match entity {
        Entity::User => ("users", "user".to_string()),
        Entity::Request => ("requests", "request".to_string()),
        Entity::Comment => ("comments", "comment".to_string()),
        Entity::Invite => ("invites", "invite".to_string()),
        Entity::Vouch => ("vouches", "vouch".to_string()),
        Entity::Other(name) => ("other", encode_component(name, MAX_ENTITY_IN_NAME, true)),
    };
    let mut path = format!(
        "{dir}/{stem}_{}",
        encode_component(id, MAX_ID_IN_NAME, false)
    );
    if let Some(key_id) = origin_key_id {
        path.push('@');
        path.push_str(&encode_component(key_id, MAX_ORIGIN_IN_NAME, false));
    }
    path.push_str(".sync.txt");
    path
}

fn encode_component(text: &str, max: usize, is_entity: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, b) in text.bytes().enumerate() {
        let keep = b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'-'
            // The entity part ends at the first `_`, and must not start a hidden file.
            || (b == b'_' && !is_entity)
            || (b == b'.' && !(is_entity && i == 0));
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    if out.len() > max {
        // `~` never appears in an encoded text, so cut names cannot equal whole ones. The
        // encoded text is ASCII: any cut is a char boundary.
        let digest = Sha256::digest(text.as_bytes());
        out.truncate(max.saturating_sub(1 + HASH_SUFFIX_HEX));
        out.push('~');
        out.push_str(&hex::encode(&digest[..HASH_SUFFIX_HEX / 2]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn app_ids_are_kept() {
        assert_eq!(
            safe_file_name(&Entity::User, "1", None),
            "users/user_1.sync.txt"
        );
        assert_eq!(
            safe_file_name(&Entity::Invite, "f00d42", None),
            "invites/invite_f00d42.sync.txt"
        );
        assert_eq!(
            safe_file_name(&Entity::Vouch, "7", Some("1c2233b4c96971e2")),
            "vouches/vouch_7@1c2233b4c96971e2.sync.txt"
        );
        assert_eq!(
            safe_file_name(&Entity::Other("poll_x".into()), "a_b", None),
            "other/poll%5fx_a_b.sync.txt"
        );
        assert_eq!(
            safe_file_name(&Entity::Other(".hidden".into()), "1", None),
            "other/%2ehidden_1.sync.txt"
        );
    }

    #[test]
    fn unsafe_ids_are_encoded() {
        assert_eq!(
            safe_file_name(&Entity::Comment, "../../etc/passwd", None),
            "comments/comment_..%2f..%2fetc%2fpasswd.sync.txt"
        );
        assert_eq!(
            safe_file_name(&Entity::User, "Ab", None),
            "users/user_%41b.sync.txt"
        );
        assert_eq!(
            safe_file_name(&Entity::User, "é\n", None),
            "users/user_%c3%a9%0a.sync.txt"
        );
        let long = safe_file_name(&Entity::Request, &"x".repeat(500), Some("k"));
        assert!(long.len() < 200, "{long}");
        assert!(long.contains('~'));
    }

    fn name_part(path: &str) -> &str {
        path.rsplit('/').next().unwrap_or(path)
    }

    proptest! {
        /// Distinct (entity, id, origin) give names distinct even ignoring case, each one safe
        /// path component under its directory.
        #[test]
        fn injective_and_safe(
            a in ("[a-zA-Z_.]{1,6}", ".{0,40}", proptest::option::of("[0-9a-fA-F@~_]{0,20}")),
            b in ("[a-zA-Z_.]{1,6}", ".{0,40}", proptest::option::of("[0-9a-fA-F@~_]{0,20}")),
        ) {
            let name = |(e, id, o): &(String, String, Option<String>)| {
                safe_file_name(&Entity::from_name(e), id, o.as_deref())
            };
            let (na, nb) = (name(&a), name(&b));
            let ea = (Entity::from_name(&a.0), &a.1, &a.2);
            let eb = (Entity::from_name(&b.0), &b.1, &b.2);
            if ea != eb {
                prop_assert_ne!(na.to_lowercase(), nb.to_lowercase());
            }
            for n in [&na, &nb] {
                prop_assert_eq!(n.matches('/').count(), 1);
                prop_assert!(n.is_ascii());
                prop_assert!(!n.bytes().any(|b| b.is_ascii_control() || b == b'\\' || b == b':'));
                let file = name_part(n);
                prop_assert!(file.len() <= 255);
                prop_assert!(!file.starts_with('.'));
                prop_assert!(crate::bundle::validate_bundle_path(n).is_ok(), "{}", n);
            }
        }
    }
}
