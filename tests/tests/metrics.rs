//! `--metrics HOST:PORT` (issue 13 item 4): a running node or hub serves wb's series and iroh's
//! endpoint counters as Prometheus text, scraped here with a plain HTTP GET; the endpoint
//! bounds what a client may send; `--log-format json` writes one JSON object per log line.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use wb_tests::harness::{NodeProcess, TestHome, link, put_user};

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` and returns the status code and the body.
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream =
        TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(SCRAPE_TIMEOUT))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(SCRAPE_TIMEOUT))
        .expect("set a write timeout");
    // The server may answer (and close) before a large request is written in full.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `GET /metrics`, parsed: each sample line's series (name and labels, as written) → value.
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, body) = http(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "GET /metrics answered {status}: {body}");
    assert!(
        body.ends_with("# EOF\n"),
        "no OpenMetrics end marker:\n{body}"
    );
    let mut out = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        out.insert(series.to_string(), value);
    }
    out
}

fn value(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    *metrics
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in:\n{metrics:#?}"))
}

/// Starts `ARGS… --metrics 127.0.0.1:0` and returns the process and the metrics address its
/// ready line gives.
fn start_with_metrics(home: &TestHome, args: &[&str]) -> (NodeProcess, SocketAddr) {
    let mut args = args.to_vec();
    args.extend(["--metrics", "127.0.0.1:0"]);
    let (process, ready) = home.start_ready(&args);
    let addr = ready["metrics"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in the ready line: {ready}"));
    (process, addr)
}

#[test]
fn a_node_serves_its_sessions_records_peers_and_iroh_counters() {
    let (a, b) = (TestHome::initialized(), TestHome::initialized());
    link(&a, "a", &b, "b", false);
    put_user(&a, "rosa", "public");
    put_user(&a, "juan", "public");
    let (node, metrics) = start_with_metrics(
        &b,
        &[
            "--log-format",
            "json",
            "node",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--no-auto-sync",
        ],
    );
    a.set_peer_addr("b", node.addr());
    a.sync_now("b", &[]);
    // b logged the two records it took; a's next pull asks from before them, so it has not
    // confirmed them yet: two behind.
    a.sync_now("b", &["--pull-only"]);
    let m = scrape(metrics);
    assert_eq!(value(&m, r#"wb_peer_records_behind{peer="a"}"#), 2.0);
    // The pull after that starts from the cursor that covers them: none behind.
    a.sync_now("b", &["--pull-only"]);

    let m = scrape(metrics);
    assert_eq!(
        value(&m, r#"wb_sessions_total{side="accepted",result="ok"}"#),
        3.0
    );
    assert_eq!(value(&m, r#"wb_records_received_total{result="new"}"#), 2.0);
    assert_eq!(
        value(&m, r#"wb_records_received_total{result="stale"}"#),
        0.0
    );
    for reason in ["signature", "future", "invalid", "revoked"] {
        let series = format!(r#"wb_records_rejected_total{{reason="{reason}"}}"#);
        assert_eq!(value(&m, &series), 0.0);
    }
    assert_eq!(value(&m, "wb_conflicts_total"), 0.0);
    assert!(m.contains_key("wb_records_sent_total"));
    assert_eq!(value(&m, "wb_store_records"), 2.0);
    assert!(value(&m, "wb_store_bytes") > 0.0);
    // The node's own tasks at least: the listener, the control socket, this scrape's server.
    assert!(value(&m, "wb_runtime_tasks") > 0.0);
    let since = value(&m, r#"wb_peer_seconds_since_sync{peer="a"}"#);
    assert!((0.0..600.0).contains(&since), "seconds since sync: {since}");
    assert_eq!(value(&m, r#"wb_peer_records_behind{peer="a"}"#), 0.0);
    assert_eq!(value(&m, r#"wb_peer_failing{peer="a"}"#), 0.0);
    // iroh's own counters, through the same registry: the sessions came in over IPv4.
    assert!(value(&m, "iroh_socket_recv_data_ipv4_total") > 0.0);
    assert!(m.keys().any(|k| k.starts_with("iroh_net_report_")));
    // Nothing under wb's names that is not a wb series.
    assert!(!m.contains_key("wb_hub_directory_entries"));

    // A change b has and a has not confirmed: one record behind.
    b.ok([
        "record",
        "put",
        "user",
        "ines",
        "--scope",
        "public",
        "--field",
        "Username=ines",
    ]);
    let m = scrape(metrics);
    assert_eq!(value(&m, r#"wb_peer_records_behind{peer="a"}"#), 1.0);
    assert_eq!(value(&m, "wb_store_records"), 3.0);

    // The logs are JSON lines for log shippers.
    let log = node.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the node logged nothing");
    for line in &lines {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "{line}"
        );
    }
    assert!(log.contains("serving metrics at http://"), "{log}");
}

#[test]
fn the_metrics_endpoint_answers_only_metrics_and_bounds_requests() {
    let home = TestHome::initialized();
    let (_node, metrics) = start_with_metrics(
        &home,
        &["node", "run", "--listen", "127.0.0.1:0", "--no-auto-sync"],
    );
    let (status, _) = http(metrics, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 404);
    let (status, _) = http(
        metrics,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 405);
    // A request head larger than the bound is refused, not buffered.
    let mut big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 256 * 1024));
    big.extend(b"\r\n\r\n");
    let (status, _) = http(metrics, &big);
    assert_ne!(status, 200, "an oversized request was served");
    // The node still serves scrapes afterwards.
    assert!(scrape(metrics).contains_key("wb_store_records"));
}

#[test]
fn a_hub_serves_its_directory_and_holdings() {
    let (hub_home, instance) = (TestHome::new(), TestHome::initialized());
    let (hub, metrics) = start_with_metrics(
        &hub_home,
        &["hub", "run", "--listen", "127.0.0.1:0", "--open"],
    );
    instance.add_hub("hub", &hub_home, &hub);
    put_user(&instance, "rosa", "public");
    instance.ok(["sync", "now", "--hub"]);
    let m = scrape(metrics);
    assert_eq!(value(&m, "wb_hub_origins"), 1.0);
    assert_eq!(value(&m, "wb_store_records"), 1.0);
    assert!(m.contains_key("wb_hub_directory_entries"));
    assert_eq!(
        value(&m, r#"wb_sessions_total{side="accepted",result="ok"}"#),
        1.0
    );
    assert_eq!(value(&m, r#"wb_records_received_total{result="new"}"#), 1.0);
    assert!(m.keys().any(|k| k.starts_with("iroh_socket_")));
}
