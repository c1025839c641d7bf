//! A deterministic, realistic data set for benchmarks: public records of every entity, signed
//! by one instance, with field and body sizes chosen so an exported `.sync.txt` file is about
//! 500 bytes on average (a request's file also carries its comments, as the app writes them).

use protocol::{Entity, ProtocolError, Record, Scope, SecretKey, Version};

/// Out of every [`MIX_PERIOD`] records, how many are of each entity (15% users, 25% requests,
/// 35% comments, 10% invites, 15% vouches: about 1.4 comments per request).
const MIX: [(Entity, usize); 5] = [
    (Entity::User, 3),
    (Entity::Request, 5),
    (Entity::Comment, 7),
    (Entity::Invite, 2),
    (Entity::Vouch, 3),
];
const MIX_PERIOD: usize = 20;

const WORDS: &[&str] = &[
    "groceries",
    "market",
    "bike",
    "tyre",
    "ride",
    "station",
    "soup",
    "neighbour",
    "garden",
    "ladder",
    "help",
    "Saturday",
    "morning",
    "evening",
    "can",
    "bring",
    "two",
    "bags",
    "from",
    "the",
    "a",
    "on",
    "for",
    "with",
    "and",
    "my",
    "our",
    "street",
    "Elm",
    "near",
    "library",
    "school",
    "pick",
    "up",
    "drop",
    "off",
    "borrow",
    "drill",
    "moving",
    "boxes",
    "week",
    "thanks",
    "again",
    "happy",
    "to",
    "lend",
    "hand",
    "kids",
    "after",
    "class",
    "dog",
    "walk",
    "plants",
    "water",
    "while",
    "away",
    "paint",
    "fence",
    "repair",
    "sink",
    "tap",
    "leaking",
    "kitchen",
    "chairs",
    "table",
    "community",
    "hall",
    "Friday",
    "pay",
    "back",
    "coffee",
    "tea",
    "cake",
];
const FIRST_NAMES: &[&str] = &[
    "Rosa", "Tomás", "Amira", "Jonas", "Mei", "Kwame", "Ingrid", "Luca", "Priya", "Olek", "Sofia",
    "Hiro", "Fatou", "Emil", "Zoë", "Rafael",
];
const LAST_NAMES: &[&str] = &[
    "Alvarez",
    "Novak",
    "Haddad",
    "Berg",
    "Chen",
    "Mensah",
    "Larsen",
    "Rossi",
    "Iyer",
    "Kowalski",
    "Müller",
    "Tanaka",
    "Diop",
    "Sørensen",
    "O'Brien",
    "Costa",
];

/// splitmix64: small, fast, and the same sequence on every machine for a given seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (`lo <= hi`).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        let span = (hi - lo + 1) as u64;
        lo + (self.next_u64() % span) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.range(0, items.len() - 1)]
    }

    /// Words until the text is at least `len` bytes, as sentences.
    pub fn text(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len + 16);
        let mut sentence_start = true;
        while out.len() < len {
            if !out.is_empty() {
                out.push(' ');
            }
            let word = self.pick(WORDS);
            if sentence_start {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    out.extend(first.to_uppercase());
                    out.push_str(chars.as_str());
                }
            } else {
                out.push_str(word);
            }
            sentence_start = self.range(0, 7) == 0;
            if sentence_start {
                out.push('.');
            }
        }
        if !out.ends_with('.') {
            out.push('.');
        }
        out
    }
}

/// How many records of each entity a data set of `n` records holds, in [`MIX`] order.
pub fn counts(n: usize) -> Vec<(Entity, usize)> {
    MIX.iter()
        .enumerate()
        .map(|(slot, (entity, _))| {
            let count = (0..n).filter(|&i| entity_slot(i) == slot).count();
            (entity.clone(), count)
        })
        .collect()
}

/// Index into [`MIX`] of the `i`-th record: entities interleave, so any prefix is mixed too.
fn entity_slot(i: usize) -> usize {
    let mut pos = i % MIX_PERIOD;
    for (slot, (_, share)) in MIX.iter().enumerate() {
        if pos < *share {
            return slot;
        }
        pos -= share;
    }
    unreachable!("MIX shares add up to MIX_PERIOD")
}

/// `n` public records signed by `key`, versions `base_ms + i` (all distinct, none in the future
/// when `base_ms + n` is not). References (authors, commenters, vouches) point at records of
/// the same set.
pub fn generate(
    key: &SecretKey,
    n: usize,
    seed: u64,
    base_ms: u64,
) -> Result<Vec<Record>, ProtocolError> {
    let origin = key.public();
    let origin_hex = origin.to_hex();
    let totals = counts(n);
    let users = totals[0].1.max(1);
    let requests = totals[1].1.max(1);
    let mut next_id = [0usize; MIX.len()];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let slot = entity_slot(i);
        next_id[slot] += 1;
        let id = next_id[slot];
        let ms = base_ms + i as u64;
        let when = protocol::time::format_timestamp(ms);
        let user_ref = |rng: &mut Rng| rng.range(1, users).to_string();
        let (entity, fields, body): (Entity, Vec<(&str, String)>, String) = match MIX[slot].0 {
            Entity::User => {
                let first = rng.pick(FIRST_NAMES);
                let last = rng.pick(LAST_NAMES);
                let bio_len = rng.range(60, 160);
                (
                    Entity::User,
                    vec![
                        ("Username", format!("{}{id}", first.to_lowercase())),
                        ("Display-Name", format!("{first} {last}")),
                        ("Bio", rng.text(bio_len)),
                    ],
                    String::new(),
                )
            }
            Entity::Request => {
                let status = match rng.range(0, 9) {
                    0..=5 => "open",
                    6 | 7 => "pending",
                    _ => "completed",
                };
                let title_len = rng.range(18, 48);
                let mut fields = vec![
                    (
                        "Title",
                        rng.text(title_len).trim_end_matches('.').to_string(),
                    ),
                    ("Status", status.to_string()),
                    ("Created-By", user_ref(&mut rng)),
                    ("Created-At", when.clone()),
                ];
                if status == "completed" {
                    fields.push(("Completed-At", when.clone()));
                }
                let desc_len = rng.range(10, 50);
                (Entity::Request, fields, rng.text(desc_len))
            }
            Entity::Comment => {
                let user = user_ref(&mut rng);
                let text_len = rng.range(20, 90);
                (
                    Entity::Comment,
                    vec![
                        ("Request", rng.range(1, requests).to_string()),
                        ("User-ID", user.clone()),
                        ("Username", format!("user{user}")),
                        ("Created-At", when.clone()),
                    ],
                    rng.text(text_len),
                )
            }
            Entity::Invite => {
                let max_uses = rng.range(1, 5);
                let gratitude_len = rng.range(15, 60);
                let support_len = rng.range(15, 60);
                let body = format!(
                    "Gratitude:\n{}\n\nSupport:\n{}",
                    rng.text(gratitude_len),
                    rng.text(support_len)
                );
                (
                    Entity::Invite,
                    vec![
                        ("Created-By", user_ref(&mut rng)),
                        ("Max-Uses", max_uses.to_string()),
                        ("Use-Count", rng.range(0, max_uses).to_string()),
                        (
                            "Auto-Approve",
                            if rng.range(0, 1) == 0 {
                                "True"
                            } else {
                                "False"
                            }
                            .to_string(),
                        ),
                        ("Suggested-Username", format!("{}{id}", rng.pick(WORDS))),
                        ("Expires-At", when.clone()),
                    ],
                    body,
                )
            }
            _ => {
                let note_len = rng.range(0, 30);
                (
                    Entity::Vouch,
                    vec![
                        ("Voucher", format!("{origin_hex}/{}", user_ref(&mut rng))),
                        ("Subject", format!("{origin_hex}/{}", user_ref(&mut rng))),
                        ("Created-At", when.clone()),
                    ],
                    if note_len < 10 {
                        String::new()
                    } else {
                        rng.text(note_len)
                    },
                )
            }
        };
        let mut record = Record {
            origin,
            entity,
            id: id.to_string(),
            version: Version::new(ms, 0),
            scope: Scope::Public,
            deleted: false,
            fields: fields
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
            body,
            signature: None,
        };
        record.sign(key)?;
        out.push(record);
    }
    Ok(out)
}
