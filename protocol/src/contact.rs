//! Contact-data detection for the §4 warning when a record is widened to trusted/public.

use crate::Record;

/// Names of the fields (or `body`) whose value looks like an e-mail address or phone number,
/// or that are `Contact-*` fields with a value.
pub fn contact_fields(record: &Record) -> Vec<String> {
    let mut found: Vec<String> = record
        .fields
        .iter()
        .filter(|(name, value)| {
            let named_contact =
                name.to_ascii_lowercase().starts_with("contact") && !value.trim().is_empty();
            named_contact || looks_like_contact(value)
        })
        .map(|(name, _)| name.clone())
        .collect();
    if looks_like_contact(&record.body) {
        found.push("body".to_string());
    }
    found
}

/// Names of the `Contact-*` fields (any case) that hold a value: contact data by name, which
/// leaves the instance only when the operator allows it (§4, `--allow-contact`).
pub fn named_contact_fields(record: &Record) -> Vec<String> {
    record
        .fields
        .iter()
        .filter(|(name, value)| {
            name.to_ascii_lowercase().starts_with("contact-") && !value.trim().is_empty()
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// True if the text contains something shaped like an e-mail address or a phone number.
pub fn looks_like_contact(text: &str) -> bool {
    text.split_whitespace().any(looks_like_email) || has_phone_number(text)
}

fn looks_like_email(token: &str) -> bool {
    let token = token.trim_matches(|c: char| "<>()[],;\"'".contains(c));
    let Some((local, domain)) = token.split_once('@') else {
        return false;
    };
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    !local.is_empty()
        && !host.is_empty()
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
        && !domain.contains('@')
}

/// A run of digits and separators (space, dash, dot, parentheses, optional leading `+`) with 7
/// to 15 digits that is written like a phone number: it starts with `+` or `0`, or has
/// separators, e.g. `+1 (555) 010-9999` or `0612345678`. ISO dates are not phone numbers.
fn has_phone_number(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_digit() || " -.()+".contains(c)))
        .map(str::trim)
        .any(|run| {
            let digits = run.chars().filter(char::is_ascii_digit).count();
            let phone_shaped = run.starts_with('+')
                || run.starts_with('0')
                || run.starts_with('(')
                || run.chars().any(|c| " -.()".contains(c));
            (7..=15).contains(&digits) && phone_shaped && !is_iso_date(run)
        })
}

fn is_iso_date(run: &str) -> bool {
    let b = run.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_emails_and_phones() {
        for s in [
            "mail me at rosa@example.org",
            "+1 (555) 010-9999",
            "0612345678",
            "<a.b@c.de>",
        ] {
            assert!(looks_like_contact(s), "{s}");
        }
        for s in [
            "",
            "Groceries for the week",
            "26 inch wheel",
            "2025-11-03T14:05:09Z",
            "user@localhost",
            "1 2 3",
            "2025-11-03",
            "ids 1234567 and 7654321",
        ] {
            assert!(!looks_like_contact(s), "{s}");
        }
    }
}
