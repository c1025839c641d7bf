//! Issue 11, item 13: revocation means what operators think. On nodes, no record of a revoked
//! origin is taken, whoever passes it on (a peer pushing or pulled, a hub, a bundle); on hubs,
//! a closed hub stores only its allowed origins, an open hub takes few new origins per
//! connection, directory entries expire, and revoking (or no longer allowing) a key cuts its
//! live connections and relay sessions. Nothing sleeps a fixed time: tests wait for a condition
//! with a deadline.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use node::directory::request;
use node::hub::{HubConfig, NEW_ORIGINS_PER_CONNECTION_MAX, RunningHub};
use node::node::Direction;
use protocol::hub::{Announcement, HUB_ALPN, HubRequest, HubResponse};
use protocol::wire::{Message, Role, SYNC_ALPN, code};
use protocol::{Entity, PublicKey, Record, Scope, SecretKey, Version};
use store::{ApplyOptions, ListFilter, Store};
use wb_tests::harness::{InProcess, TestHome, id_set, put_user, raw_connect, raw_push, runtime};

/// How long a test waits for a condition before failing.
const WAIT: Duration = Duration::from_secs(30);

/// A public user record signed by `key`.
fn signed_user(key: &SecretKey, id: &str) -> Record {
    let mut r = Record {
        origin: key.public(),
        entity: Entity::User,
        id: id.to_string(),
        version: Version::new(store::time::now_ms(), 0),
        scope: Scope::Public,
        deleted: false,
        fields: vec![("Username".into(), id.to_string())],
        body: String::new(),
        signature: None,
    };
    r.sign(key).expect("sign");
    r
}

/// Stores `records` as received from elsewhere (a relay holds other origins' records).
fn hold(store: &Store, records: &[Record]) {
    let report = store
        .apply_batch(records, &ApplyOptions::new("test", store::time::now_ms()))
        .expect("apply");
    assert_eq!(report.new, records.len() as u64, "{report:?}");
}

/// The ids of the records of `origin` in `store`.
fn ids_of(store: &Store, origin: &PublicKey) -> BTreeSet<String> {
    store
        .list(&ListFilter {
            origin: Some(*origin),
            include_deleted: true,
            ..ListFilter::default()
        })
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// A revoked entry for `key` in the registry of `home`.
fn revoke_in(home: &store::Home, name: &str, key: PublicKey) {
    store::add_peer(home, store::Peer::revoked_key(name.to_string(), key))
        .expect("add a revoked peer");
}

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

/// A revokes X. B relays X's public records (and Y's): neither B pushing to A's node (the
/// accept side) nor A pulling from B (the dialling side, as it pulls from a hub) brings X's
/// records into A; Y's arrive, X's are counted as rejected.
#[test]
fn a_node_takes_no_record_of_a_revoked_origin_from_a_relay() {
    runtime().block_on(async {
        let (x, y) = (
            SecretKey::from_bytes(&[31; 32]),
            SecretKey::from_bytes(&[32; 32]),
        );
        let a = InProcess::start("a").await;
        let b = InProcess::start("b").await;
        a.add_peer("b", b.public(), &[b.addr()], false);
        b.add_peer("a", a.public(), &[a.addr()], false);
        revoke_in(&a.home, "x", x.public());
        hold(&b.store, &[signed_user(&x, "x-1"), signed_user(&y, "y-1")]);

        // B pushes: A's node pulls from B with A's registry.
        let peers = store::load_peers(&b.home).expect("B's registry");
        let to_a = store::find_peer(&peers, "a").expect("a");
        b.handle()
            .sync_with(to_a, Direction::PushOnly)
            .await
            .expect("B pushes to A");
        assert_eq!(ids_of(&a.store, &y.public()), id_set(&["y-1"]));
        assert_eq!(ids_of(&a.store, &x.public()), id_set(&[]), "pushed by B");

        // A pulls (a new record of each): the dialling side drops X's too.
        hold(&b.store, &[signed_user(&x, "x-2"), signed_user(&y, "y-2")]);
        let peers = store::load_peers(&a.home).expect("A's registry");
        let to_b = store::find_peer(&peers, "b").expect("b");
        let report = a
            .handle()
            .sync_with(to_b, Direction::PullOnly)
            .await
            .expect("A pulls from B");
        assert_eq!(report.pulled.new, 1, "{report:?}");
        assert_eq!(report.pulled.rejected, 1, "{report:?}");
        assert_eq!(ids_of(&a.store, &y.public()), id_set(&["y-1", "y-2"]));
        assert_eq!(ids_of(&a.store, &x.public()), id_set(&[]), "pulled from B");
        let counters = a.store.counters().expect("counters");
        assert_eq!(
            counters.get(store::counter::REJECTED_REVOKED).copied(),
            Some(2),
            "{counters:?}"
        );
    });
}

/// A revokes X. A bundle B exported, relaying X's public record, is imported without it (the
/// report counts it); a bundle X signed is refused whole, and nothing is imported.
#[test]
fn a_bundle_import_skips_revoked_origins_and_refuses_a_revoked_signer() {
    let (a, b, x) = (
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    put_user(&x, "x-pub", "public");
    let from_x = x.dir().join("from-x");
    x.ok(["sync", "export", s(&from_x)]);
    b.json(["sync", "import", s(&from_x)]);
    put_user(&b, "b-pub", "public");
    let from_b = b.dir().join("from-b");
    b.ok(["sync", "export", s(&from_b)]);

    a.add_peer("x", &x, None, false);
    a.ok(["sync", "peers", "revoke", "x"]);
    let dry = a.json(["sync", "import", s(&from_b), "--dry-run"]);
    assert_eq!(dry["revoked_origin"], 1, "{dry}");
    let report = a.json(["sync", "import", s(&from_b)]);
    assert_eq!(report["new"], 1, "{report}");
    assert_eq!(report["revoked_origin"], 1, "{report}");
    assert_eq!(report["rejected"], 1, "{report}");
    let text = a.ok(["sync", "import", s(&from_b)]);
    assert!(text.contains("already imported"), "{text}");
    let (_, store) = store::Home::new(a.home())
        .open_read_only()
        .expect("open A's store");
    assert_eq!(ids_of(&store, &b.public_key()), id_set(&["b-pub"]));
    assert_eq!(ids_of(&store, &x.public_key()), id_set(&[]));
    drop(store);

    let err = a.fail(["sync", "import", s(&from_x)]);
    assert!(err.contains("revokes"), "{err}");
    let (_, store) = store::Home::new(a.home())
        .open_read_only()
        .expect("open A's store");
    assert_eq!(ids_of(&store, &x.public_key()), id_set(&[]));
}

// ---------------------------------------------------------------------------------------------
// Hubs
// ---------------------------------------------------------------------------------------------

/// A hub running in the test process, on a home in a temporary directory.
struct InHub {
    _dir: tempfile::TempDir,
    home: store::Home,
    store: Arc<Store>,
    hub: RunningHub,
}

impl InHub {
    async fn start(open: bool, relay: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wb-hub-")
            .tempdir()
            .expect("temp dir");
        let home = store::Home::new(dir.path().join("home"));
        let (_, key, store) = home.init(Some("hub")).expect("init the hub's home");
        Self::start_on(dir, home, key, store, open, relay).await
    }

    async fn start_on(
        dir: tempfile::TempDir,
        home: store::Home,
        key: SecretKey,
        store: Store,
        open: bool,
        relay: bool,
    ) -> Self {
        let store = Arc::new(store);
        let config = HubConfig {
            home: home.clone(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            open,
            relay_listen: relay.then(|| "127.0.0.1:0".parse().expect("addr")),
            relay_url: None,
            follow_revocations: Vec::new(),
        };
        let hub = node::hub::start(config, key, store.clone())
            .await
            .expect("start the hub");
        Self {
            _dir: dir,
            home,
            store,
            hub,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.hub.addrs()[0]
    }

    /// Puts `key` on the allowlist as NAME (what `wb hub allow` does).
    fn allow(&self, name: &str, key: PublicKey) {
        store::add_peer(
            &self.home,
            store::Peer {
                name: name.to_string(),
                public_key: key,
                addrs: Vec::new(),
                hub: false,
                trusted: false,
                revoked: false,
                follow_revocations: false,
                notes: String::new(),
            },
        )
        .expect("allow");
    }

    /// Marks NAME revoked (what `wb hub revoke` does).
    fn revoke(&self, name: &str) {
        store::update_peer(&self.home, name, |p| p.revoked = true).expect("revoke");
    }

    fn origins(&self) -> BTreeSet<PublicKey> {
        self.store
            .holdings()
            .expect("holdings")
            .into_keys()
            .collect()
    }
}

/// An allowed instance pushes its own records and relays records of origins the closed hub
/// does not allow (throwaway keys): the hub stores its own only.
#[test]
fn a_closed_hub_stores_only_allowed_origins() {
    runtime().block_on(async {
        let hub = InHub::start(false, false).await;
        let (b, c) = (
            SecretKey::from_bytes(&[41; 32]),
            SecretKey::from_bytes(&[42; 32]),
        );
        hub.allow("b", b.public());
        hub.allow("c", c.public());
        let mut records = vec![signed_user(&b, "b-1"), signed_user(&c, "c-1")];
        for seed in 0..5u8 {
            records.push(signed_user(
                &SecretKey::from_bytes(&[100 + seed; 32]),
                "throwaway",
            ));
        }
        raw_push(&b, &hub.hub.id(), hub.addr(), &records).await;
        assert_eq!(
            hub.origins(),
            BTreeSet::from([b.public(), c.public()]),
            "allowed origins only (C's relayed by B)"
        );
        // Revoked, an allowed origin is no longer taken either.
        hub.revoke("c");
        raw_push(&b, &hub.hub.id(), hub.addr(), &[signed_user(&c, "c-2")]).await;
        assert_eq!(ids_of(&hub.store, &c.public()), id_set(&["c-1"]));
        hub.hub.shutdown().await.expect("shut down");
    });
}

/// One key pushes records of many origins the open hub has never seen: it takes
/// NEW_ORIGINS_PER_CONNECTION_MAX of them per connection, keeps the instance's cursor before
/// the rest, and takes the rest on the next connection.
#[test]
fn an_open_hub_takes_a_bounded_number_of_new_origins_per_connection() {
    runtime().block_on(async {
        let hub = InHub::start(true, false).await;
        let pusher = SecretKey::from_bytes(&[43; 32]);
        let total = NEW_ORIGINS_PER_CONNECTION_MAX + 36;
        let records: Vec<Record> = (0..total)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                signed_user(&SecretKey::from_bytes(&seed), "throwaway")
            })
            .collect();
        raw_push(&pusher, &hub.hub.id(), hub.addr(), &records).await;
        assert_eq!(hub.origins().len(), NEW_ORIGINS_PER_CONNECTION_MAX);
        let cursor = hub.store.cursor(&pusher.public()).expect("cursor");
        assert_eq!(
            cursor.map(|c| c.seq),
            Some(0),
            "the cursor stays before the refused records"
        );
        raw_push(&pusher, &hub.hub.id(), hub.addr(), &records).await;
        assert_eq!(
            hub.origins().len(),
            total,
            "the rest on the next connection"
        );
        let cursor = hub.store.cursor(&pusher.public()).expect("cursor");
        assert_eq!(cursor.map(|c| c.seq), Some(total as u64));
        hub.hub.shutdown().await.expect("shut down");
    });
}

/// An instance that stopped announcing itself: its entry (accepted long ago) is not given out,
/// and the hub drops it; a fresh entry is still found.
#[test]
fn directory_entries_expire() {
    runtime().block_on(async {
        let dir = tempfile::Builder::new()
            .prefix("wb-hub-")
            .tempdir()
            .expect("temp dir");
        let home = store::Home::new(dir.path().join("home"));
        let (_, key, store) = home.init(Some("hub")).expect("init the hub's home");
        let (gone, here) = (
            SecretKey::from_bytes(&[51; 32]),
            SecretKey::from_bytes(&[52; 32]),
        );
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let now = store::time::now_ms();
        let then = now - protocol::hub::DIRECTORY_ENTRY_TTL_MS - 60_000;
        for (k, at) in [(&gone, then), (&here, now)] {
            let a = Announcement::sign(k, at, &[addr], None);
            assert!(store.accept_announcement(&a, at).expect("store").is_ok());
        }
        let hub = InHub::start_on(dir, home, key, store, true, false).await;
        let asker = SecretKey::from_bytes(&[53; 32]);
        let (endpoint, conn) = raw_connect(&asker, &hub.hub.id(), hub.addr(), HUB_ALPN).await;
        let lookup = |k: &SecretKey| HubRequest::Lookup {
            key: *k.public().as_bytes(),
        };
        let found = request(&conn, "hub", &lookup(&here)).await.expect("ask");
        assert!(matches!(found, HubResponse::Found(_)), "{found:?}");
        let found = request(&conn, "hub", &lookup(&gone)).await.expect("ask");
        assert!(matches!(found, HubResponse::NotFound), "{found:?}");
        let deadline = Instant::now() + WAIT;
        while hub
            .store
            .directory_entry(&gone.public())
            .expect("read")
            .is_some()
        {
            assert!(
                Instant::now() < deadline,
                "the expired entry was never dropped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            hub.store
                .directory_entry(&here.public())
                .expect("read")
                .is_some()
        );
        conn.close(0u32.into(), b"bye");
        endpoint.close().await;
        hub.hub.shutdown().await.expect("shut down");
    });
}

/// Waits until `conn` is closed and returns the application close code, failing after
/// [`WAIT`].
async fn closed_with(conn: &iroh::endpoint::Connection) -> u32 {
    match tokio::time::timeout(WAIT, conn.closed()).await {
        Ok(iroh::endpoint::ConnectionError::ApplicationClosed(close)) => {
            u32::try_from(close.error_code.into_inner()).expect("a wb close code")
        }
        Ok(other) => panic!("closed otherwise: {other}"),
        Err(_) => panic!("the hub kept the connection open for {WAIT:?}"),
    }
}

/// Live connections of keys the hub no longer admits are cut: an idle `wb-sync/1` session and
/// a `wb-hub/1` connection of a key revoked with the hub running, a session of a key taken off
/// the allowlist, and a node's relay connection once its key is revoked.
#[test]
fn revoking_an_instance_cuts_its_live_connections_and_relay_sessions() {
    runtime().block_on(async {
        let hub = InHub::start(false, true).await;
        let (k, l) = (
            SecretKey::from_bytes(&[61; 32]),
            SecretKey::from_bytes(&[62; 32]),
        );
        hub.allow("k", k.public());
        hub.allow("l", l.public());
        let mut n = InProcess::start("n").await;
        hub.allow("n", n.public());
        n.shutdown().await;
        store::add_peer(
            &n.home,
            store::Peer {
                name: "hub".into(),
                public_key: hub.hub.id(),
                addrs: vec![hub.addr().to_string()],
                hub: true,
                trusted: false,
                revoked: false,
                follow_revocations: false,
                notes: String::new(),
            },
        )
        .expect("add the hub");
        // Restarted on a new port: only the node dials here, so nothing needs the old one.
        n.run("127.0.0.1:0".parse().expect("addr")).await;

        // K: an idle sync session and a directory connection; L: an idle sync session.
        let idle_session = |key: SecretKey| {
            let (to, addr) = (hub.hub.id(), hub.addr());
            async move {
                let (endpoint, conn) = raw_connect(&key, &to, addr, SYNC_ALPN).await;
                let (send, recv) = conn.open_bi().await.expect("open a stream");
                let mut ch = node::session::Channel::new("raw".into(), send, recv);
                ch.send(&Message::hello([9; 16], Role::Node))
                    .await
                    .expect("send Hello");
                node::session::expect_hello(&mut ch)
                    .await
                    .expect("the hub says Hello");
                (endpoint, conn, ch)
            }
        };
        let (ek, sync_k, _ch_k) = idle_session(k.clone()).await;
        let (el, sync_l, _ch_l) = idle_session(l.clone()).await;
        let (ed, dir_k) = raw_connect(&k, &hub.hub.id(), hub.addr(), HUB_ALPN).await;
        let info = request(&dir_k, "hub", &HubRequest::Info)
            .await
            .expect("ask");
        assert!(matches!(info, HubResponse::Info { .. }), "{info:?}");
        let deadline = Instant::now() + WAIT;
        while !hub.hub.relay_clients().contains(&n.public()) {
            assert!(
                Instant::now() < deadline,
                "the node never used the hub's relay"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        hub.revoke("k");
        hub.revoke("n");
        store::remove_peer(&hub.home, "l").expect("take L off the allowlist");
        assert_eq!(closed_with(&sync_k).await, code::REVOKED);
        assert_eq!(closed_with(&dir_k).await, code::REVOKED);
        assert_eq!(closed_with(&sync_l).await, code::UNKNOWN_PEER);
        let deadline = Instant::now() + WAIT;
        while hub.hub.relay_clients().contains(&n.public()) {
            assert!(
                Instant::now() < deadline,
                "the relay kept serving a revoked key"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for e in [ek, el, ed] {
            e.close().await;
        }
        n.shutdown().await;
        hub.hub.shutdown().await.expect("shut down");
    });
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
