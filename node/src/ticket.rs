//! Tickets (§9): one copy-pasteable string carrying an endpoint id and the addresses it can be
//! reached at, so that `wb sync peers add NAME --ticket T` is a single paste.
//!
//! The format is iroh's own endpoint ticket (crate `iroh-tickets`, `EndpointTicket`): the text
//! `endpoint` followed by lowercase base32 (RFC 4648, no padding) of a postcard-encoded, versioned
//! `EndpointAddr` (the 32-byte endpoint id, then the set of transport addresses). Other iroh
//! tools read and write the same strings. wb puts only IP addresses in its tickets (it uses no
//! relay); relay or custom addresses in a ticket made elsewhere are counted and ignored.

use std::net::{IpAddr, SocketAddr};

use iroh::{Endpoint, EndpointAddr, TransportAddr};
use iroh_tickets::Ticket;
use iroh_tickets::endpoint::EndpointTicket;
use protocol::PublicKey;

use crate::NodeError;
use crate::identity::endpoint_id;

/// Longest ticket text accepted: far above any real ticket (a few hundred addresses), checked
/// before decoding so garbage input cannot make us allocate much.
pub const MAX_TICKET_LEN: usize = 16 * 1024;

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is empty")]
    Empty,
    #[error("the ticket is {0} characters long; tickets are at most {MAX_TICKET_LEN}")]
    TooLong(usize),
    #[error("not a ticket: expected text starting with `endpoint` (as `wb id` prints it)")]
    Prefix,
    #[error("not a valid ticket: {0}")]
    Invalid(String),
    #[error("the ticket's endpoint id is not a valid public key: {0}")]
    BadKey(String),
}

/// What a ticket carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketInfo {
    /// The endpoint id, which is the instance's public key.
    pub key: PublicKey,
    /// Its IP addresses, in the ticket's (sorted) order.
    pub addrs: Vec<SocketAddr>,
    /// Relay or other non-IP addresses the ticket carried, which wb does not use.
    pub ignored: usize,
}

/// The ticket text for `key` reachable at `addrs` (none: the ticket carries only the id).
pub fn encode(key: &PublicKey, addrs: &[SocketAddr]) -> Result<String, NodeError> {
    let mut addr = EndpointAddr::new(endpoint_id(key)?);
    for a in addrs {
        addr = addr.with_ip_addr(*a);
    }
    Ok(EndpointTicket::new(addr).encode_string())
}

/// Reads a ticket; surrounding white space is ignored. Never panics, whatever the input.
pub fn decode(text: &str) -> Result<TicketInfo, TicketError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(TicketError::Empty);
    }
    if text.len() > MAX_TICKET_LEN {
        return Err(TicketError::TooLong(text.len()));
    }
    let lower = text.to_ascii_lowercase();
    if !lower.starts_with(EndpointTicket::KIND) {
        return Err(TicketError::Prefix);
    }
    let ticket =
        EndpointTicket::decode_string(&lower).map_err(|e| TicketError::Invalid(e.to_string()))?;
    let addr = ticket.endpoint_addr();
    let key = PublicKey::from_bytes(*addr.id.as_bytes())
        .map_err(|e| TicketError::BadKey(e.to_string()))?;
    let mut addrs = Vec::new();
    let mut ignored = 0;
    for a in &addr.addrs {
        match a {
            TransportAddr::Ip(ip) => addrs.push(*ip),
            _ => ignored += 1,
        }
    }
    Ok(TicketInfo {
        key,
        addrs,
        ignored,
    })
}

/// The addresses to advertise for an endpoint bound to `bound`: a socket bound to a specific
/// address as it is; one bound to the unspecified address (`0.0.0.0`, `[::]`) as the machine's
/// interface addresses on its port, as the endpoint found them, then loopback. IPv6 addresses
/// that need a scope (link-local) are left out: they mean nothing on another machine.
pub fn advertised_addrs(endpoint: &Endpoint, bound: &[SocketAddr]) -> Vec<SocketAddr> {
    let found: Vec<SocketAddr> = endpoint.addr().ip_addrs().copied().collect();
    let mut out: Vec<SocketAddr> = Vec::new();
    let push = |a: SocketAddr, out: &mut Vec<SocketAddr>| {
        let scoped = match a {
            SocketAddr::V6(v6) => v6.scope_id() != 0 || v6.ip().is_unicast_link_local(),
            SocketAddr::V4(_) => false,
        };
        if !scoped && !a.ip().is_unspecified() && !out.contains(&a) {
            out.push(a);
        }
    };
    for b in bound {
        if b.ip().is_unspecified() {
            for f in &found {
                if f.port() == b.port() && f.is_ipv4() == b.is_ipv4() {
                    push(*f, &mut out);
                }
            }
            let loopback: IpAddr = if b.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            push(SocketAddr::new(loopback, b.port()), &mut out);
        } else {
            push(*b, &mut out);
        }
    }
    out
}

/// Like [`advertised_addrs`], but for a socket bound to the unspecified address first waits
/// (at most `within`) until the endpoint has found the machine's interface addresses, which it
/// does shortly after binding.
pub async fn settled_addrs(
    endpoint: &Endpoint,
    bound: &[SocketAddr],
    within: std::time::Duration,
) -> Vec<SocketAddr> {
    use iroh::Watcher;
    let wildcard: Vec<u16> = bound
        .iter()
        .filter(|b| b.ip().is_unspecified())
        .map(SocketAddr::port)
        .collect();
    if !wildcard.is_empty() {
        let mut watcher = endpoint.watch_addr();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let found = watcher.get();
            if found.ip_addrs().any(|a| wildcard.contains(&a.port())) {
                break;
            }
            match tokio::time::timeout_at(deadline, watcher.updated()).await {
                Ok(Ok(_)) => {}
                _ => break,
            }
        }
    }
    advertised_addrs(endpoint, bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> PublicKey {
        protocol::SecretKey::from_bytes(&[seed; 32]).public()
    }

    #[test]
    fn a_ticket_round_trips_and_ignores_case_and_spaces() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:4433".parse().expect("addr"),
            "[::1]:9".parse().expect("addr"),
        ];
        let t = encode(&key(1), &addrs).expect("encode");
        assert!(t.starts_with("endpoint"), "{t}");
        let back = decode(&format!("  {}\n", t.to_uppercase())).expect("decode");
        assert_eq!(back.key, key(1));
        let mut want = addrs.clone();
        want.sort();
        let mut got = back.addrs.clone();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(back.ignored, 0);
        let bare = decode(&encode(&key(2), &[]).expect("encode")).expect("decode");
        assert_eq!((bare.key, bare.addrs.len()), (key(2), 0));
    }

    #[test]
    fn bad_tickets_are_refused_clearly() {
        assert_eq!(decode("  "), Err(TicketError::Empty));
        assert_eq!(decode("hello"), Err(TicketError::Prefix));
        assert!(matches!(
            decode("endpoint!!!"),
            Err(TicketError::Invalid(_))
        ));
        assert!(matches!(
            decode("endpointaaaa"),
            Err(TicketError::Invalid(_))
        ));
        let long = format!("endpoint{}", "a".repeat(MAX_TICKET_LEN));
        assert!(matches!(decode(&long), Err(TicketError::TooLong(_))));
        // A valid ticket with one character changed or cut short is refused, not misread.
        let t = encode(&key(3), &["10.0.0.1:1".parse().expect("addr")]).expect("encode");
        assert!(decode(&t[..t.len() - 3]).is_err());
    }

    proptest! {
        #[test]
        fn tickets_round_trip(
            seed in any::<[u8; 32]>(),
            v4 in prop::collection::vec((any::<[u8; 4]>(), 1u16..), 0..6),
            v6 in prop::collection::vec((any::<[u8; 16]>(), 1u16..), 0..3),
        ) {
            let k = protocol::SecretKey::from_bytes(&seed).public();
            let mut addrs: Vec<SocketAddr> = v4
                .iter()
                .map(|(ip, port)| SocketAddr::from((*ip, *port)))
                .chain(v6.iter().map(|(ip, port)| SocketAddr::from((*ip, *port))))
                .collect();
            let back = decode(&encode(&k, &addrs).expect("encode")).expect("decode");
            addrs.sort();
            addrs.dedup();
            let mut got = back.addrs;
            got.sort();
            prop_assert_eq!(back.key, k);
            prop_assert_eq!(got, addrs);
        }

        #[test]
        fn garbage_never_panics(text in ".{0,300}", bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&text);
            let mut b32 = String::from("endpoint");
            data_encoding::BASE32_NOPAD.encode_append(&bytes, &mut b32);
            let _ = decode(&b32);
        }
    }
}
