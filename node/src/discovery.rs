//! Discovery without a hub (issue 15, item 3): an optional address lookup through a pkarr
//! relay, iroh's own publisher and resolver. A node that has it on publishes its addresses,
//! signed with the instance key, to the relay (`PUT /<z-base-32 key>`, again whenever they
//! change and every [`REPUBLISH_INTERVAL`]), and resolves peers registered without an address
//! by their key there (`GET /<z-base-32 key>`; the packet's signature is checked against the
//! key asked for, so the relay cannot forge an answer). Off by default: `--discovery
//! pkarr=URL` on `wb node run`, `wb sync now` and `wb doctor`, or `discovery` in wb.toml.
//!
//! One-shot endpoints (`wb sync now`, `wb doctor`'s probes) only resolve: they share the
//! instance key with the running node, and publishing their short-lived address would replace
//! the node's at the relay.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use iroh::address_lookup::{AddrFilter, PkarrPublisher, PkarrResolver};
use iroh::endpoint::Builder;
use url::Url;

/// How often a node publishes its addresses again when they did not change (iroh's default:
/// 5 minutes; a relay may forget packets it has not seen for a while).
pub const REPUBLISH_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// How an endpoint finds a peer by its key when `wb_peers.txt` gives no address, besides hubs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Discovery {
    /// No such lookup (the default): peers are dialled at their registry addresses, or found
    /// through hubs.
    #[default]
    Off,
    /// Publish our addresses to the pkarr relay at this URL, and look peers up there.
    Pkarr(Url),
}

/// A `--discovery` value that is neither `off` nor `pkarr=URL` with a usable URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not a discovery setting: {reason}; expected `off` or `pkarr=URL`, the URL of \
     a pkarr relay (http:// or https://, e.g. pkarr=https://dns.iroh.link/pkarr)"
)]
pub struct BadDiscovery {
    pub value: String,
    pub reason: String,
}

impl FromStr for Discovery {
    type Err = BadDiscovery;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| BadDiscovery {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        if s == "off" {
            return Ok(Discovery::Off);
        }
        let Some(rest) = s.strip_prefix("pkarr=") else {
            let reason = match s.split_once('=') {
                Some((kind, _)) => format!("unknown kind of discovery {kind:?}"),
                None => "no kind of discovery given".to_string(),
            };
            return Err(bad(&reason));
        };
        if rest.is_empty() {
            return Err(bad("the relay's URL is missing"));
        }
        let mut url = Url::parse(rest).map_err(|e| bad(&format!("bad URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(&format!(
                "the URL's scheme is {:?}, not http or https",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("the URL names no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("the URL must not have a query or a fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("the URL must not carry a user name or password"));
        }
        // iroh appends `/<key>` to the URL's path: `…/pkarr/` must not become `…/pkarr//<key>`.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
        }
        Ok(Discovery::Pkarr(url))
    }
}

impl fmt::Display for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Discovery::Off => write!(f, "off"),
            Discovery::Pkarr(url) => write!(f, "pkarr={url}"),
        }
    }
}

impl Discovery {
    pub fn is_on(&self) -> bool {
        !matches!(self, Discovery::Off)
    }

    /// Adds the lookup services to an endpoint's builder: the resolver, and with `publish` the
    /// publisher (all the endpoint's addresses: direct ones too, which is what a wb node without
    /// a hub is reached at; iroh's default would publish relay URLs only).
    pub(crate) fn install(&self, builder: Builder, publish: bool) -> Builder {
        let Discovery::Pkarr(url) = self else {
            return builder;
        };
        let builder = builder.address_lookup(PkarrResolver::builder(url.clone()));
        if !publish {
            return builder;
        }
        builder.address_lookup(
            PkarrPublisher::builder(url.clone())
                .addr_filter(AddrFilter::unfiltered())
                .republish_interval(REPUBLISH_INTERVAL),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_off_and_pkarr_urls() {
        assert_eq!("off".parse::<Discovery>(), Ok(Discovery::Off));
        let d: Discovery = "pkarr=https://dns.iroh.link/pkarr/".parse().expect("valid");
        assert_eq!(d.to_string(), "pkarr=https://dns.iroh.link/pkarr");
        let Discovery::Pkarr(mut url) = d else {
            panic!("not pkarr: {d:?}");
        };
        // What iroh's client does with it.
        url.path_segments_mut().expect("a base").push("abc");
        assert_eq!(url.as_str(), "https://dns.iroh.link/pkarr/abc");
        let d: Discovery = "pkarr=http://127.0.0.1:8080".parse().expect("valid");
        let Discovery::Pkarr(mut url) = d else {
            panic!("not pkarr: {d:?}");
        };
        url.path_segments_mut().expect("a base").push("abc");
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/abc");
        assert_eq!(Discovery::default(), Discovery::Off);
        assert!(!Discovery::Off.is_on());
    }

    #[test]
    fn refuses_bad_values_saying_why() {
        for (value, why) in [
            ("", "no kind of discovery"),
            ("on", "no kind of discovery"),
            ("dht=x", "unknown kind of discovery \"dht\""),
            ("pkarr=", "URL is missing"),
            ("pkarr=not a url", "bad URL"),
            ("pkarr=ftp://x/pkarr", "scheme is \"ftp\""),
            ("pkarr=https://x/pkarr?a=b", "query or a fragment"),
            ("pkarr=https://u:p@x/pkarr", "user name or password"),
        ] {
            let e = value.parse::<Discovery>().expect_err(value);
            let text = e.to_string();
            assert!(text.contains(why), "{value:?}: {text}");
            assert!(text.contains("expected `off` or `pkarr=URL`"), "{text}");
        }
    }
}
