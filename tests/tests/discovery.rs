//! Discovery without a hub (issue 15, item 3): two instances that know only each other's key
//! find each other through a pkarr relay, with no `wb` hub. The relay is iroh's own
//! `iroh-dns-server` (the version of our iroh), run in the test process on 127.0.0.1:0: HTTP
//! only, no DHT, nothing leaves the machine. Nothing sleeps a fixed time: tests poll with a
//! deadline.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use iroh_dns_server::Server;
use iroh_dns_server::config::{Config, MetricsConfig, RateLimitConfig};
use serde_json::Value;
use wb_tests::harness::{TestHome, count, link, put_user, runtime};

/// How long a test waits for a condition (a packet reaching the relay, records reaching a
/// node) before failing.
const WAIT: Duration = Duration::from_secs(60);

/// A pkarr relay on loopback, in this process; stopped when dropped (with its runtime).
struct Relay {
    server: Option<Server>,
    runtime: tokio::runtime::Runtime,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Relay {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("a folder for the relay's store");
        let runtime = runtime();
        let mut config = Config::default();
        let local = Some(Ipv4Addr::LOCALHOST.into());
        config.dns.port = 0;
        config.dns.bind_addr = local;
        let mut http = config.http.take().expect("the default config has HTTP");
        http.port = 0;
        http.bind_addr = local;
        config.http = Some(http);
        config.https = None;
        config.metrics = Some(MetricsConfig::disabled());
        config.mainline = None;
        // Every node of a test publishes from 127.0.0.1.
        config.pkarr_put_rate_limit = RateLimitConfig::Disabled;
        config.data_dir = Some(dir.path().to_path_buf());
        let server = runtime
            .block_on(Server::bind(config))
            .expect("start the pkarr relay");
        let http = server.http_addr().expect("the relay listens on HTTP");
        Self {
            server: Some(server),
            runtime,
            http,
            _dir: dir,
        }
    }

    /// The `--discovery` value pointing at this relay.
    fn discovery(&self) -> String {
        format!("pkarr=http://{}/pkarr", self.http)
    }

    /// `GET /pkarr/<z-base-32 key>`: the HTTP status and the body (the signed packet).
    fn get(&self, instance: &TestHome) -> (u16, Vec<u8>) {
        let id = node::identity::endpoint_id(&instance.public_key()).expect("an endpoint id");
        let mut conn = TcpStream::connect(self.http).expect("connect to the relay");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        write!(
            conn,
            "GET /pkarr/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            id.to_z32(),
            self.http
        )
        .expect("send the request");
        let mut response = Vec::new();
        conn.read_to_end(&mut response).expect("read the answer");
        let head_end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP head");
        let head = String::from_utf8_lossy(&response[..head_end]).to_string();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        (status, response[head_end + 4..].to_vec())
    }

    /// Polls the relay until it holds `instance`'s packet; returns the direct addresses in it
    /// (checked against the instance's key, as a resolver does).
    fn wait_for_packet(&self, instance: &TestHome) -> Vec<SocketAddr> {
        let id = node::identity::endpoint_id(&instance.public_key()).expect("an endpoint id");
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.get(instance);
            if status == 200 {
                let packet = iroh_dns::pkarr::SignedPacket::from_relay_payload(&id, &body)
                    .expect("a packet signed by the instance's key");
                let info = iroh::endpoint_info::EndpointInfo::from_pkarr_signed_packet(&packet)
                    .expect("endpoint info in the packet");
                return info.ip_addrs().copied().collect();
            }
            assert!(
                Instant::now() < deadline,
                "the relay never got the packet of {} (last status {status})",
                instance.public_key().key_id()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}

/// One check of `wb --json doctor` on `t` (its `subject`, if given), which must be there.
fn doctor_check(t: &TestHome, check: &str, subject: Option<&str>) -> Value {
    let run = t.run([
        "--json",
        "doctor",
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "10",
    ]);
    let doctor: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("wb doctor --json printed no JSON ({e}):\n{run}"));
    doctor["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == check && subject.is_none_or(|s| c["subject"] == s))
        .cloned()
        .unwrap_or_else(|| panic!("no {check} check: {doctor:#}"))
}

/// The ids of the live records of `origin` in `t`.
fn live_ids(t: &TestHome, origin: &protocol::PublicKey) -> Vec<String> {
    t.json(["record", "list", "--origin", &origin.to_hex()])
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

/// A and B know only each other's key: no address in either wb_peers.txt, no hub. A's node
/// publishes its addresses to the relay; B finds it there by key, with `wb sync now
/// --discovery`, with wb.toml's `discovery`, with `wb doctor`, and from its own running node
/// (continuous sync dials A by key). Without discovery, B fails with a clear error. One-shot
/// syncs publish nothing (they would replace the node's addresses at the relay).
#[test]
fn two_instances_known_only_by_key_sync_through_a_pkarr_relay() {
    let relay = Relay::start();
    let discovery = relay.discovery();
    let (a, b) = (TestHome::initialized(), TestHome::initialized());
    link(&a, "a", &b, "b", false);
    put_user(&a, "a-pub", "public");
    put_user(&b, "b-pub", "public");
    let (ka, kb) = (a.public_key(), b.public_key());

    let node_a = a.start_node_with(
        "127.0.0.1:0",
        &["--discovery", &discovery, "--no-auto-sync"],
    );
    let published = relay.wait_for_packet(&a);
    assert!(
        published.contains(&node_a.addr()),
        "A published where it listens ({}): {published:?}",
        node_a.addr()
    );

    // Discovery off (the default): B has no way to find A, and says how to get one.
    let error = b.fail(["sync", "now", "a"]);
    assert!(
        error.contains("peer a has no address to dial") && error.contains("--discovery pkarr=URL"),
        "{error}"
    );

    // With the flag: B looks A up at the relay and syncs with A itself.
    let report = b.sync_now("a", &["--discovery", &discovery]);
    assert_eq!(count(&report, "new"), 1, "B pulled A's record: {report}");
    assert_eq!(count(&report, "sent"), 1, "B pushed its record: {report}");
    assert_eq!(live_ids(&b, &ka), ["a-pub"]);
    assert!(
        node_a.log().contains("session finished"),
        "A served B itself: {}",
        node_a.log()
    );
    assert_eq!(
        relay.get(&b).0,
        404,
        "a one-shot sync publishes nothing at the relay"
    );

    // With wb.toml: the same, no flag.
    std::fs::write(
        b.home().join("wb.toml"),
        format!("discovery = \"{discovery}\"\n"),
    )
    .expect("write wb.toml");
    let report = b.sync_now("a", &[]);
    assert_eq!(count(&report, "new"), 0, "nothing new since: {report}");
    let shown = b.json(["config", "show"]);
    assert_eq!(shown["settings"]["discovery"]["value"], discovery.as_str());
    assert_eq!(shown["settings"]["discovery"]["source"], "file");

    // `wb doctor` probes A the same way, and sees that B is not published (no node runs).
    let peer_check = doctor_check(&b, "peer", Some("a"));
    assert_eq!(peer_check["status"], "ok", "{peer_check:#}");
    let own = doctor_check(&b, "discovery", None);
    assert_eq!(own["status"], "skipped", "{own:#}");

    // B's node (discovery from wb.toml) publishes too, and its continuous sync dials A by key:
    // a record B writes now reaches A with no command on A's side.
    let node_b = b.start_node();
    relay.wait_for_packet(&b);
    let own = doctor_check(&b, "discovery", None);
    assert_eq!(own["status"], "ok", "{own:#}");
    assert!(
        own["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&node_b.addr().to_string())),
        "{own:#}"
    );
    put_user(&b, "b-later", "public");
    let deadline = Instant::now() + WAIT;
    loop {
        let ids = live_ids(&a, &kb);
        if ids.iter().any(|id| id == "b-later") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B's node never pushed b-later to A: {ids:?}\nB's log:\n{}",
            node_b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // While B's node runs, `sync now` goes through it: another discovery cannot apply.
    let error = b.fail(["sync", "now", "a", "--discovery", "off"]);
    assert!(
        error.contains("the node running on this home syncs with discovery pkarr="),
        "{error}"
    );

    node_b.stop();
    node_a.stop();
}

/// A key nobody published: the sync fails within its deadline, naming the peer.
#[test]
fn a_key_the_relay_does_not_know_fails_clearly() {
    let relay = Relay::start();
    let b = TestHome::initialized();
    let nobody = protocol::SecretKey::from_bytes(&[0x5b; 32]).public();
    b.ok(["sync", "peers", "add", "nobody", "--key", &nobody.to_hex()]);
    let started = Instant::now();
    let error = b.fail(["sync", "now", "nobody", "--discovery", &relay.discovery()]);
    assert!(error.contains("peer nobody is unreachable"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// A bad discovery value is refused with a clear error wherever it is given, before anything
/// starts or is dialled.
#[test]
fn a_bad_discovery_value_is_a_clear_error() {
    let t = TestHome::initialized();
    let other = TestHome::initialized();
    link(&t, "t", &other, "other", false);
    for bad in [
        "bogus",
        "pkarr=",
        "pkarr=ftp://relay.example/pkarr",
        "dht=x",
    ] {
        let error = t.fail(["node", "run", "--listen", "127.0.0.1:0", "--discovery", bad]);
        assert!(
            error.contains(&format!("--discovery {bad:?}"))
                && error.contains("expected `off` or `pkarr=URL`"),
            "{bad}: {error}"
        );
        let error = t.fail(["sync", "now", "other", "--discovery", bad]);
        assert!(
            error.contains("expected `off` or `pkarr=URL`"),
            "{bad}: {error}"
        );
        let error = t.fail(["doctor", "--discovery", bad]);
        assert!(
            error.contains("expected `off` or `pkarr=URL`"),
            "{bad}: {error}"
        );
    }
    // In a variable and in wb.toml: named with the variable, and the file's line and column.
    let run = t
        .command(["sync", "now", "other"])
        .env("WB_DISCOVERY", "pkarr=nope")
        .output()
        .expect("run wb");
    let run: wb_tests::harness::Run = run.into();
    wb_tests::harness::assert_one_line_error(&run);
    assert!(
        run.stderr.contains("WB_DISCOVERY=\"pkarr=nope\"") && run.stderr.contains("bad URL"),
        "{run}"
    );
    std::fs::write(
        t.home().join("wb.toml"),
        "open = false\ndiscovery = \"mdns\"\n",
    )
    .expect("write wb.toml");
    let error = t.fail(["node", "run", "--listen", "127.0.0.1:0"]);
    assert!(
        error.contains("wb.toml:2:13: bad value for `discovery`")
            && error.contains("no kind of discovery given"),
        "{error}"
    );
    let error = t.fail(["sync", "now", "other"]);
    assert!(error.contains("wb.toml:2:13"), "{error}");
}
