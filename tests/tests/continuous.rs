//! Continuous sync in a running node (DESIGN.md §10, issue 4 item 6): after a local change a
//! node offers it to its peers by itself, records travel on through intermediate nodes,
//! unreachable or refusing peers are retried with growing delays, and an idle network does
//! not keep syncing in a loop.
//!
//! Nodes run in-process (a change is `update_local` on the node's store plus
//! `NodeHandle::local_changed`, what the control socket does for `wb record put`); one test
//! runs the real `wb node run`. Nothing asserts speed: tests poll with generous deadlines, and
//! bounds on session counts are far below what a feedback loop would produce.

use std::net::SocketAddr;
use std::time::Duration;

use node::continuous::{ContinuousConfig, PeerSyncStatus};
use protocol::{Entity, PublicKey, RecordKey, Scope};
use tokio::time::Instant;
use wb_tests::harness::{InProcess, TestHome, link, put_user, record_ids};

/// How long a test waits for something that should happen within a second or two.
const DEADLINE: Duration = Duration::from_secs(20);

/// What these tests do with an in-process instance ([`InProcess`]).
trait Node {
    /// Registers `other` as peer `name`, dialable at its address (or at `addr`).
    fn know(&self, name: &str, other: &InProcess, addr: Option<SocketAddr>);
    async fn start_continuous(&mut self, config: ContinuousConfig);
    /// Writes a public user record and tells the node, as the control socket does.
    fn put_public_user(&self, id: &str);
    /// Does this node hold `origin`'s user record `id`?
    fn has_user(&self, origin: &PublicKey, id: &str) -> bool;
    /// Continuous sync's view of the peer with this key.
    fn status(&self, peer: &PublicKey) -> Option<PeerSyncStatus>;
    fn sessions_with(&self, peer: &PublicKey) -> u64;
    async fn stop(self);
}

impl Node for InProcess {
    fn know(&self, name: &str, other: &InProcess, addr: Option<SocketAddr>) {
        self.add_peer(
            name,
            other.public(),
            &[addr.unwrap_or_else(|| other.addr())],
            false,
        );
    }

    async fn start_continuous(&mut self, config: ContinuousConfig) {
        self.running().start_continuous(config).await;
    }

    fn put_public_user(&self, id: &str) {
        wb_tests::harness::store_put_user(&self.store, &self.key, id, Scope::Public);
        self.handle().local_changed();
    }

    fn has_user(&self, origin: &PublicKey, id: &str) -> bool {
        self.store
            .get(&RecordKey {
                origin: *origin,
                entity: Entity::User,
                id: id.to_string(),
            })
            .expect("read the store")
            .is_some()
    }

    fn status(&self, peer: &PublicKey) -> Option<PeerSyncStatus> {
        self.handle()
            .continuous_status()
            .into_iter()
            .find(|s| s.public_key == *peer)
    }

    fn sessions_with(&self, peer: &PublicKey) -> u64 {
        self.status(peer).map_or(0, |s| s.sessions)
    }

    async fn stop(mut self) {
        self.shutdown().await;
    }
}

/// Quick retries and registry re-reads; the interval is long, so every session in a test
/// comes from start-up, a change or a retry, not from the clock (unless a test sets it).
fn quick() -> ContinuousConfig {
    ContinuousConfig {
        interval: Duration::from_secs(600),
        debounce: Duration::from_millis(50),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(1600),
        max_sessions: 4,
        rescan: Duration::from_millis(100),
    }
}

/// Polls `cond` every 20 ms until it holds or `DEADLINE` passes; whether it held.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `node`'s worker for `peer` finished a successful session and is idle (its next
/// session is the periodic one, far away).
async fn settled(node: &InProcess, peer: &PublicKey) {
    let ok = eventually(|| {
        node.status(peer).is_some_and(|s| {
            s.sessions > 0
                && s.consecutive_failures == 0
                && s.next_sync
                    .is_some_and(|t| t > Instant::now() + Duration::from_secs(60))
        })
    })
    .await;
    assert!(
        ok,
        "the first session with the peer did not finish: {:?}",
        node.status(peer)
    );
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_change_reaches_a_connected_peer_without_sync_now() {
    let mut a = InProcess::start("a").await;
    let mut b = InProcess::start("b").await;
    a.know("b", &b, None);
    b.know("a", &a, None);
    a.start_continuous(quick()).await;
    b.start_continuous(quick()).await;
    settled(&a, &b.public()).await;
    settled(&b, &a.public()).await;

    a.put_public_user("from-a");
    assert!(
        eventually(|| b.has_user(&a.public(), "from-a")).await,
        "A's change did not reach B"
    );
    b.put_public_user("from-b");
    assert!(
        eventually(|| a.has_user(&b.public(), "from-b")).await,
        "B's change did not reach A"
    );
    // A burst of changes is one more round, not one per change.
    let before = a.sessions_with(&b.public());
    for i in 0..20 {
        a.put_public_user(&format!("burst-{i}"));
    }
    assert!(
        eventually(|| (0..20).all(|i| b.has_user(&a.public(), &format!("burst-{i}")))).await,
        "the burst did not reach B"
    );
    let burst_sessions = a.sessions_with(&b.public()) - before;
    assert!(
        (1..=3).contains(&burst_sessions),
        "20 changes in a burst made {burst_sessions} sessions"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_travel_along_a_line_of_three_nodes() {
    let mut a = InProcess::start("a").await;
    let mut b = InProcess::start("b").await;
    let mut c = InProcess::start("c").await;
    // A – B – C: A and C do not know each other.
    a.know("b", &b, None);
    b.know("a", &a, None);
    b.know("c", &c, None);
    c.know("b", &b, None);
    for n in [&mut a, &mut b, &mut c] {
        n.start_continuous(quick()).await;
    }
    settled(&a, &b.public()).await;
    settled(&b, &a.public()).await;
    settled(&b, &c.public()).await;
    settled(&c, &b.public()).await;

    a.put_public_user("a-to-c");
    assert!(
        eventually(|| c.has_user(&a.public(), "a-to-c")).await,
        "A's change did not reach C through B"
    );
    c.put_public_user("c-to-a");
    assert!(
        eventually(|| a.has_user(&c.public(), "c-to-a")).await,
        "C's change did not reach A through B"
    );
    // The relayed copy keeps its origin's signature.
    let relayed = c
        .store
        .get(&RecordKey {
            origin: a.public(),
            entity: Entity::User,
            id: "a-to-c".into(),
        })
        .expect("read")
        .expect("present");
    assert!(relayed.verify().is_ok(), "the relayed record verifies");
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_peer_is_retried_with_growing_delays_until_it_accepts() {
    let mut a = InProcess::start("a").await;
    let b = InProcess::start("b").await;
    // A knows B; B does not know A yet, so it refuses A's sessions.
    a.know("b", &b, None);
    a.put_public_user("waiting");
    a.start_continuous(quick()).await;
    let kb = b.public();

    // Watch the retry delays chosen after each failure in a row.
    let mut delays: Vec<(u32, Duration)> = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while delays.len() < 5 {
        assert!(
            Instant::now() < deadline,
            "only {} retries: {delays:?}",
            delays.len()
        );
        if let Some(s) = a.status(&kb) {
            if let Some(d) = s.retry_delay {
                if delays
                    .last()
                    .is_none_or(|(n, _)| *n != s.consecutive_failures)
                {
                    delays.push((s.consecutive_failures, d));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (n, d) in &delays {
        let base = (100u64 << (n - 1).min(4)).min(1600) as f64 / 1000.0;
        let d = d.as_secs_f64();
        assert!(
            d >= base * 0.8 - 1e-6 && d <= base * 1.2 + 1e-6,
            "retry {n}: {d} s is not 100 ms doubling (capped at 1.6 s) ±20 %: {delays:?}"
        );
    }
    for pair in delays.windows(2) {
        if pair[0].1 < Duration::from_millis(1200) {
            assert!(pair[1].1 > pair[0].1, "delays grow: {delays:?}");
        }
    }
    // The failure is in the peer's state, as for `wb sync now`.
    let state = a.store.peer_state(&kb).expect("peer state");
    let error = state.last_error.expect("an error is recorded");
    assert!(error.contains("refused"), "the error says why: {error}");

    // B learns about A (no address: B does not dial A): the next retry gets through.
    b.add_peer("a", a.public(), &[], false);
    assert!(
        eventually(|| b.has_user(&a.public(), "waiting")).await,
        "A did not sync once B accepted it"
    );
    assert!(
        eventually(|| a
            .status(&kb)
            .is_some_and(|s| s.consecutive_failures == 0 && s.retry_delay.is_none()))
        .await,
        "a success resets the backoff: {:?}",
        a.status(&kb)
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_is_synced_once_it_starts() {
    // A port where nothing listens: bound, then released.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind a UDP socket")
        .local_addr()
        .expect("its address")
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut a = InProcess::start("a").await;
    // B's key, known before B runs: start B on the port right away to learn it, stop it.
    let mut b = InProcess::start_on("b", addr).await;
    b.shutdown().await;
    a.add_peer("b", b.public(), &[addr], false);
    a.put_public_user("queued");
    a.start_continuous(quick()).await;
    // The first attempt times out (nothing answers), then retries follow.
    assert!(
        eventually(|| a.status(&b.public()).is_some_and(|s| s.failures >= 1)).await,
        "no failed attempt recorded: {:?}",
        a.status(&b.public())
    );
    let error = a
        .status(&b.public())
        .and_then(|s| s.last_error)
        .unwrap_or_default();
    assert!(error.contains("unreachable"), "{error}");

    // B comes up where A expects it, knowing A.
    b.add_peer("a", a.public(), &[], false);
    b.run(addr).await;
    assert!(
        eventually(|| b.has_user(&a.public(), "queued")).await,
        "A did not sync with B once B started: {:?}",
        a.status(&b.public())
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pair_does_not_sync_in_a_loop() {
    let mut a = InProcess::start("a").await;
    let mut b = InProcess::start("b").await;
    a.know("b", &b, None);
    b.know("a", &a, None);
    a.put_public_user("a-1");
    b.put_public_user("b-1");
    let interval = Duration::from_millis(500);
    let config = ContinuousConfig {
        interval,
        ..quick()
    };
    a.start_continuous(config.clone()).await;
    b.start_continuous(config).await;
    assert!(
        eventually(|| b.has_user(&a.public(), "a-1") && a.has_user(&b.public(), "b-1")).await,
        "the start-up sessions did not exchange the records"
    );
    let (ka, kb) = (a.public(), b.public());
    let (a0, b0) = (a.sessions_with(&kb), b.sessions_with(&ka));
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    // At most one session per interval (−10 % jitter) and one in flight, per side; a loop
    // would make hundreds.
    let bound = (elapsed.as_secs_f64() / (interval.as_secs_f64() * 0.9)).ceil() as u64 + 1;
    let (da, db) = (a.sessions_with(&kb) - a0, b.sessions_with(&ka) - b0);
    assert!(
        da <= bound && db <= bound,
        "in {elapsed:?} with a {interval:?} interval: A made {da} sessions, B {db} (bound {bound})"
    );
    assert!(da >= 1 && db >= 1, "the interval keeps syncing: {da}, {db}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_makes_a_bounded_number_of_sessions() {
    let mut a = InProcess::start("a").await;
    let mut b = InProcess::start("b").await;
    let mut c = InProcess::start("c").await;
    // A triangle: every change can come back by two paths.
    for (x, nx) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        for (y, ny) in [(&a, "a"), (&b, "b"), (&c, "c")] {
            if nx != ny {
                x.know(ny, y, None);
            }
        }
    }
    for n in [&mut a, &mut b, &mut c] {
        n.start_continuous(quick()).await;
    }
    let nodes = [&a, &b, &c];
    for x in nodes {
        for y in nodes {
            if x.public() != y.public() {
                settled(x, &y.public()).await;
            }
        }
    }
    let total = |nodes: &[&InProcess]| -> u64 {
        nodes
            .iter()
            .flat_map(|n| n.handle().continuous_status())
            .map(|s| s.sessions)
            .sum()
    };
    let before = total(&nodes);
    a.put_public_user("once");
    assert!(
        eventually(|| b.has_user(&a.public(), "once") && c.has_user(&a.public(), "once")).await,
        "the change did not spread"
    );
    // Let any echo die down, then count. A offers to B and C (2); B and C each got it and
    // may offer it to the other (2); nothing more should follow.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let made = total(&nodes) - before;
    assert!(
        (2..=6).contains(&made),
        "one change made {made} sessions in a triangle"
    );
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_removed_peers_are_no_longer_dialled() {
    let mut a = InProcess::start("a").await;
    let b = InProcess::start("b").await;
    let c = InProcess::start("c").await;
    a.know("b", &b, None);
    a.know("c", &c, None);
    b.know("a", &a, None);
    c.know("a", &a, None);
    a.start_continuous(quick()).await;
    settled(&a, &b.public()).await;
    settled(&a, &c.public()).await;
    store::update_peer(&a.home, "b", |p| p.revoked = true).expect("revoke b");
    store::remove_peer(&a.home, "c").expect("remove c");
    assert!(
        eventually(|| a.handle().continuous_status().is_empty()).await,
        "workers still running: {:?}",
        a.handle().continuous_status()
    );
    a.put_public_user("secret-from-now-on");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.has_user(&a.public(), "secret-from-now-on"));
    assert!(!c.has_user(&a.public(), "secret-from-now-on"));
    for n in [a, b, c] {
        n.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------------------------

/// A log without its ANSI colour codes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters… final letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn wb_node_run_syncs_with_its_peers_by_itself() {
    let (a, b) = (TestHome::initialized(), TestHome::initialized());
    put_user(&a, "a-pub", "public");
    link(&a, "a", &b, "b", false);
    let node_b = b.start_node();
    a.set_peer_addr("b", node_b.addr());
    // A's node dials B at start and offers its record; no `sync now`.
    let node_a = a.start_node_with("127.0.0.1:0", &["--sync-interval", "3600"]);
    let deadline = std::time::Instant::now() + DEADLINE;
    while !plain(&node_a.log()).contains("sent=1") {
        assert!(
            std::time::Instant::now() < deadline,
            "A's node did not sync with B by itself; its log:\n{}",
            node_a.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = node_a.stop();
    assert!(status.success());
    let (status, _) = node_b.stop();
    assert!(status.success());
    let list = b.json(["record", "list", "--origin", &a.public_key().to_hex()]);
    assert_eq!(record_ids(&list), ["a-pub"], "B holds A's public record");
}

#[test]
fn node_run_help_documents_the_sync_knobs() {
    let t = TestHome::new();
    let help = t.ok(["node", "run", "--help"]);
    for needle in ["--sync-interval", "--no-auto-sync", "retried", "revoked"] {
        assert!(help.contains(needle), "--help mentions {needle}:\n{help}");
    }
    assert!(!help.contains("test-cut"), "test hooks stay hidden");
    let refused = t.run(["node", "run", "--sync-interval", "0"]);
    assert!(!refused.status.success(), "an interval of 0 is refused");
}
