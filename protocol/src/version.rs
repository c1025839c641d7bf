//! Record versions: a hybrid logical clock, wall-clock milliseconds plus a counter (§5).

use std::fmt;
use std::str::FromStr;

use crate::ProtocolError;

/// Receivers reject versions dated further than this into their future (clock-skew guard).
pub const MAX_FUTURE_SKEW_MS: u64 = 10 * 60 * 1000;

/// A record version. Ordered by milliseconds, then counter.
///
/// Text form: `<milliseconds>-<counter>`, e.g. `1763768651123-0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    pub ms: u64,
    pub counter: u32,
}

impl Version {
    pub const ZERO: Version = Version { ms: 0, counter: 0 };

    pub fn new(ms: u64, counter: u32) -> Self {
        Self { ms, counter }
    }

    /// The next version of the clock whose last issued value is `last`, given a wall-clock
    /// reading `now_ms` that may be behind `last` (clock stepped back). Always `> last`.
    pub fn next_after(last: Version, now_ms: u64) -> Version {
        if now_ms > last.ms {
            Version {
                ms: now_ms,
                counter: 0,
            }
        } else if let Some(counter) = last.counter.checked_add(1) {
            Version {
                ms: last.ms,
                counter,
            }
        } else {
            Version {
                ms: last.ms.saturating_add(1),
                counter: 0,
            }
        }
    }

    /// True when this version is dated more than [`MAX_FUTURE_SKEW_MS`] after `now_ms`.
    pub fn is_future(&self, now_ms: u64) -> bool {
        self.ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.counter)
    }
}

impl FromStr for Version {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ProtocolError::BadVersion(s.to_string());
        let (ms, counter) = s.trim().split_once('-').ok_or_else(bad)?;
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(counter) {
            return Err(bad());
        }
        Ok(Version {
            ms: ms.parse().map_err(|_| bad())?,
            counter: counter.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The clock strictly increases whatever the wall clock does, including jumps back.
        #[test]
        fn strictly_increases_under_any_clock(start in any::<u64>(), readings in proptest::collection::vec(any::<u64>(), 1..200)) {
            let mut last = Version::new(start >> 1, 0);
            for now in readings {
                let next = Version::next_after(last, now >> 1);
                prop_assert!(next > last, "{next} not after {last}");
                last = next;
            }
        }

        #[test]
        fn text_round_trip(ms in any::<u64>(), counter in any::<u32>()) {
            let v = Version::new(ms, counter);
            prop_assert_eq!(v.to_string().parse::<Version>(), Ok(v));
        }
    }

    #[test]
    fn counter_overflow_moves_to_next_millisecond() {
        let v = Version::new(5, u32::MAX);
        assert_eq!(Version::next_after(v, 0), Version::new(6, 0));
    }

    #[test]
    fn rejects_bad_text() {
        for s in ["", "12", "a-1", "1-", "-1", "1-2-3", "1 - 2"] {
            assert!(s.parse::<Version>().is_err(), "{s}");
        }
    }
}
