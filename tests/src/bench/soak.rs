//! `bench soak --minutes N` (issue 12, item 6): three `wb node run` and one `wb hub run`
//! processes under continuous churn for N minutes; every `--sample-s` seconds (10) each
//! process's resident memory (`VmRSS`), open file descriptors (`/proc/PID/fd`), threads and
//! tokio tasks (`wb_runtime_tasks` from its `--metrics` endpoint) are sampled. Printed: the
//! series, and per process and series the least-squares slope per hour over all samples and
//! over the second half (after warm-up), and whether the second half is flat.
//!
//! Churn, seeded (`--seed`): `wb record put` (new content, a random scope), scope changes and
//! `wb record rm` on a bounded set of ids per node (`--keys`), so the data stays the same size
//! and growth means a leak, not data; and now and then `wb sync now PEER` or `wb sync now
//! --hub`. All go through each node's control socket, as an operator's commands would. The
//! nodes also sync by themselves (continuous sync, `--sync-interval`) with each other directly
//! (two trust each other, the third is trusted by nobody) and with the hub (public records).
//!
//! Flat: over the second half of the run (after warm-up), the fitted change (slope × the
//! half's length) is within the series' noise (twice the standard deviation of the residuals
//! of the fit) or a small absolute allowance (RSS 2 MB, 1 descriptor, 1 thread, 3 tasks),
//! whichever is larger. So the resolution is the allowance per half run: a 10-minute soak
//! tells a leak of more than 2 MB per 5 minutes (24 MB/h) from a flat line. A series that is
//! not flat is reported, not an error (this is a benchmark).

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use store::{Home, Peer};

use super::{MB, Result, print_result, work_dir};
use wb_tests::partition::Rng;

/// How long a process may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one churn command (`record put`, `sync now`…) may take before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a scrape of `/metrics` may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of a `/metrics` answer read at most.
const SCRAPE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Failed churn commands kept for the report.
const FAILURES_KEPT: usize = 5;

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long to churn, in minutes (fractions allowed).
    #[arg(long, default_value_t = 10.0, value_name = "N")]
    pub minutes: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10, value_name = "S")]
    pub sample_s: u64,
    /// Churn commands per second, over all nodes.
    #[arg(long, default_value_t = 4.0, value_name = "R")]
    pub ops_per_s: f64,
    /// Record ids each node edits (the data set stays this size).
    #[arg(long, default_value_t = 25, value_name = "K")]
    pub keys: u64,
    /// The seed of the churn.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The nodes' `--sync-interval`, in seconds.
    #[arg(long, default_value_t = 15, value_name = "S")]
    pub sync_interval: u64,
    /// The `wb` binary to run (default: build it with the harness, same profile).
    #[arg(long, value_name = "PATH")]
    pub wb: Option<PathBuf>,
    /// Keep the working directory (homes and logs) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Where to create the working directory (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// One running `wb node run` or `wb hub run`.
#[derive(Debug)]
struct Proc {
    name: String,
    home: PathBuf,
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        super::stop_child(&mut self.child, Duration::from_secs(30));
    }
}

/// One sample of one process.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rss_bytes: u64,
    fds: u64,
    threads: u64,
    /// `None` when the scrape failed.
    tasks: Option<u64>,
    records: Option<u64>,
}

type Series = (&'static str, fn(&Sample) -> Option<f64>, f64);

/// The series a soak watches: name, how to read it from a sample, the absolute allowance for
/// its change over the second half.
const SERIES: &[Series] = &[
    ("rss_mb", |s| Some(s.rss_bytes as f64 / MB), 2.0),
    ("fds", |s| Some(s.fds as f64), 1.0),
    ("threads", |s| Some(s.threads as f64), 1.0),
    ("tasks", |s| s.tasks.map(|t| t as f64), 3.0),
];

pub fn run(args: &SoakArgs, json_out: bool) -> Result<()> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(args.minutes) || args.sample_s == 0 || !positive(args.ops_per_s) || args.keys == 0
    {
        return Err("--minutes, --sample-s, --ops-per-s and --keys must be above 0".into());
    }
    let duration = Duration::try_from_secs_f64(args.minutes * 60.0)
        .map_err(|e| format!("--minutes {}: {e}", args.minutes))?;
    let op_gap = Duration::try_from_secs_f64(1.0 / args.ops_per_s)
        .map_err(|e| format!("--ops-per-s {}: {e}", args.ops_per_s))?;
    let tmp = work_dir("wb-bench-soak-", args.dir.as_deref())?;
    let root = tmp.path();
    let clock = Instant::now();
    let progress = |what: &str| eprintln!("[{:7.1} s] {what}", clock.elapsed().as_secs_f64());
    progress(&format!("working directory {}", root.display()));
    let wb: OsString = match &args.wb {
        Some(path) => path.clone().into_os_string(),
        None => {
            progress("building wb…");
            wb_tests::harness::wb_bin().as_os_str().to_os_string()
        }
    };
    let procs = start_all(&wb, root, args.sync_interval)?;
    progress(&format!(
        "hub and 3 nodes running (pids {}); churning for {} min, sampling every {} s",
        procs
            .iter()
            .map(|p| format!("{} {}", p.name, p.child.id()))
            .collect::<Vec<_>>()
            .join(", "),
        args.minutes,
        args.sample_s
    ));

    let mut rng = Rng::new(args.seed);
    let mut churn = Churn::new(args.keys);
    let period = Duration::from_secs(args.sample_s);
    let started = Instant::now();
    let mut times: Vec<f64> = Vec::new();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); procs.len()];
    let mut next_sample = started;
    loop {
        let now = Instant::now();
        if now >= next_sample {
            times.push(now.duration_since(started).as_secs_f64());
            for (p, series) in procs.iter().zip(samples.iter_mut()) {
                series.push(sample(p)?);
            }
            progress(&format!(
                "sample {}: {}",
                times.len(),
                procs
                    .iter()
                    .zip(&samples)
                    .filter_map(|(p, s)| s.last().map(|s| format!(
                        "{} {:.1} MB {} fds {} thr {} tasks",
                        p.name,
                        s.rss_bytes as f64 / MB,
                        s.fds,
                        s.threads,
                        s.tasks.map_or("?".into(), |t| t.to_string())
                    )))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
            if now.duration_since(started) >= duration {
                break;
            }
            next_sample += period;
        }
        churn.step(&wb, &procs[1..], &mut rng)?;
        std::thread::sleep(op_gap);
    }
    let doc = report(args, &procs, &times, &samples, &churn);
    drop(procs);
    print_result(&doc, json_out, table)?;
    if args.keep {
        eprintln!("kept {}", tmp.keep().display());
    }
    Ok(())
}

/// Starts the hub, then the three nodes knowing the hub and each other.
fn start_all(wb: &OsStr, root: &Path, sync_interval: u64) -> Result<Vec<Proc>> {
    let hub = start(
        wb,
        "hub",
        &root.join("hub"),
        &["hub", "run", "--open", "--listen", "127.0.0.1:0"],
    )?;
    let hub_key = Home::new(&hub.home).load_key()?.public();
    let mut procs = vec![hub];
    let interval = sync_interval.to_string();
    for i in 0..3 {
        let name = format!("n{i}");
        let home = root.join(&name);
        let out = Command::new(wb)
            .arg("--home")
            .arg(&home)
            .args(["init", "--name", &name])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(format!("wb init {name}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        store::add_peer(
            &Home::new(&home),
            peer("hub", hub_key, procs[0].addr, true, false),
        )?;
        procs.push(start(
            wb,
            &name,
            &home,
            &[
                "node",
                "run",
                "--listen",
                "127.0.0.1:0",
                "--sync-interval",
                &interval,
            ],
        )?);
    }
    // n0 and n1 trust each other; n2 is a peer of both, trusted by neither. The registries are
    // read again by the running nodes.
    for a in 1..4 {
        for b in 1..4 {
            if a == b {
                continue;
            }
            let trusted = a != 3 && b != 3;
            let key = Home::new(&procs[b].home).load_key()?.public();
            let p = peer(&procs[b].name, key, procs[b].addr, false, trusted);
            store::add_peer(&Home::new(&procs[a].home), p)?;
        }
    }
    Ok(procs)
}

fn peer(
    name: &str,
    public_key: protocol::PublicKey,
    addr: SocketAddr,
    hub: bool,
    trusted: bool,
) -> Peer {
    Peer {
        name: name.into(),
        public_key,
        addrs: vec![addr.to_string()],
        hub,
        trusted,
        revoked: false,
        follow_revocations: false,
        notes: String::new(),
    }
}

/// Starts `wb --home HOME --json ARGS… --metrics 127.0.0.1:0` (stderr to `HOME.log`) and reads
/// its ready line.
fn start(wb: &OsStr, name: &str, home: &Path, args: &[&str]) -> Result<Proc> {
    let log = std::fs::File::create(home.with_extension("log"))?;
    let mut child = Command::new(wb)
        .arg("--home")
        .arg(home)
        .arg("--json")
        .args(args)
        .args(["--metrics", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .env_remove("WB_SYNC_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()?;
    let stdout = child.stdout.take().ok_or("stdout is not piped")?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads the ready line, then drains stdout until the process exits.
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines.map_while(std::result::Result::ok) {}
    });
    let line = match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Some(Ok(line))) => line,
        other => {
            super::stop_child(&mut child, Duration::from_secs(30));
            return Err(format!("{name} printed no ready line: {other:?}").into());
        }
    };
    let ready: Value = serde_json::from_str(&line)
        .map_err(|e| format!("{name}'s ready line is not JSON ({e}): {line}"))?;
    let addr_of = |v: &Value| v.as_str().and_then(|s| s.parse::<SocketAddr>().ok());
    let addr = ready["addrs"]
        .as_array()
        .and_then(|a| a.iter().find_map(addr_of))
        .ok_or_else(|| format!("no address in {name}'s ready line: {line}"))?;
    let metrics = addr_of(&ready["metrics"])
        .ok_or_else(|| format!("no metrics address in {name}'s ready line: {line}"))?;
    Ok(Proc {
        name: name.into(),
        home: home.to_path_buf(),
        child,
        addr,
        metrics,
    })
}

/// Reads one process's figures from `/proc` and its metrics endpoint.
fn sample(p: &Proc) -> Result<Sample> {
    let pid = p.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("{} (pid {pid}) is gone? /proc/{pid}/status: {e}", p.name))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let metrics = scrape(p.metrics).ok();
    let gauge = |series: &str| {
        metrics.as_deref().and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v as u64)
        })
    };
    Ok(Sample {
        rss_bytes: field("VmRSS:")? * 1024,
        fds,
        threads: field("Threads:")?,
        tasks: gauge("wb_runtime_tasks"),
        records: gauge("wb_store_records"),
    })
}

/// `GET /metrics` over plain HTTP/1.1, under [`SCRAPE_TIMEOUT`], at most [`SCRAPE_BYTES_MAX`].
fn scrape(addr: SocketAddr) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.take(SCRAPE_BYTES_MAX).read_to_string(&mut text)?;
    Ok(text)
}

/// The churn: what each node holds of its own ids, and what the commands did.
#[derive(Debug)]
struct Churn {
    keys: u64,
    /// Per node (0..3), per id: the live record's scope and bio, `None` when deleted.
    live: Vec<std::collections::BTreeMap<u64, (&'static str, String)>>,
    counts: std::collections::BTreeMap<&'static str, u64>,
    failed: u64,
    failures: Vec<String>,
}

impl Churn {
    fn new(keys: u64) -> Self {
        Self {
            keys,
            live: vec![Default::default(); 3],
            counts: Default::default(),
            failed: 0,
            failures: Vec::new(),
        }
    }

    /// One random command on one random node.
    fn step(&mut self, wb: &OsStr, nodes: &[Proc], rng: &mut Rng) -> Result<()> {
        const SCOPES: [&str; 3] = ["private", "trusted", "public"];
        let i = rng.index(nodes.len());
        let node = &nodes[i];
        let k = rng.below(self.keys);
        let id = format!("k{k}");
        let roll = rng.below(100);
        let current = self.live[i].get(&k).cloned();
        let (kind, args): (&'static str, Vec<String>) = match (roll, current) {
            (0..8, _) => {
                let target = match rng.below(3) {
                    0 => "--hub".to_string(),
                    _ => nodes[(i + 1 + rng.index(nodes.len() - 1)) % nodes.len()]
                        .name
                        .clone(),
                };
                (
                    "sync now",
                    vec![
                        "sync".into(),
                        "now".into(),
                        target,
                        "--timeout".into(),
                        "10".into(),
                    ],
                )
            }
            (8..20, Some(_)) => {
                self.live[i].remove(&k);
                ("rm", vec!["record".into(), "rm".into(), "user".into(), id])
            }
            (20..45, Some((scope, bio))) => {
                let others: Vec<&'static str> =
                    SCOPES.iter().copied().filter(|s| *s != scope).collect();
                let new = others[rng.index(others.len())];
                self.live[i].insert(k, (new, bio.clone()));
                ("rescope", put_args(&id, new, &bio))
            }
            _ => {
                let scope = SCOPES[rng.index(SCOPES.len())];
                let bio = format!("bio {}", rng.below(1_000_000_000));
                self.live[i].insert(k, (scope, bio.clone()));
                ("put", put_args(&id, scope, &bio))
            }
        };
        *self.counts.entry(kind).or_default() += 1;
        if let Err(e) = run_command(wb, &node.home, &args) {
            self.failed += 1;
            if self.failures.len() < FAILURES_KEPT {
                self.failures.push(format!("{} {kind}: {e}", node.name));
            }
        }
        Ok(())
    }
}

fn put_args(id: &str, scope: &str, bio: &str) -> Vec<String> {
    [
        "record",
        "put",
        "user",
        id,
        "--scope",
        scope,
        "--field",
        &format!("Username={id}"),
        "--field",
        &format!("Bio={bio}"),
    ]
    .map(String::from)
    .to_vec()
}

/// Runs `wb --home HOME ARGS…` under [`COMMAND_TIMEOUT`]; its stderr when it fails.
fn run_command(wb: &OsStr, home: &Path, args: &[String]) -> Result<()> {
    let mut child = Command::new(wb)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("WB_SYNC_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(stderr) = child.stderr.take() {
                let _ = stderr.take(4096).read_to_string(&mut err);
            }
            return Err(format!("{status}: {}", err.trim()).into());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer within {COMMAND_TIMEOUT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Least-squares slope of `ys` over `xs` (seconds), per hour; `None` under two points.
fn slope_per_hour(xs: &[f64], ys: &[f64]) -> Option<f64> {
    fit(xs, ys).map(|(slope, _)| slope * 3600.0)
}

/// Least-squares fit of `ys` over `xs`: slope per second and the standard deviation of the
/// residuals; `None` under two points.
fn fit(xs: &[f64], ys: &[f64]) -> Option<(f64, f64)> {
    let n = xs.len().min(ys.len());
    if n < 2 {
        return None;
    }
    let (xs, ys) = (&xs[..n], &ys[..n]);
    let mx = xs.iter().sum::<f64>() / n as f64;
    let my = ys.iter().sum::<f64>() / n as f64;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = sxy / sxx;
    let residuals: f64 = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (y - (my + slope * (x - mx))).powi(2))
        .sum();
    Some((slope, (residuals / n as f64).sqrt()))
}

fn report(
    args: &SoakArgs,
    procs: &[Proc],
    times: &[f64],
    samples: &[Vec<Sample>],
    churn: &Churn,
) -> Value {
    let half = times.len() / 2;
    let mut processes = Vec::new();
    let mut all_flat = true;
    for (p, series) in procs.iter().zip(samples) {
        let mut figures = serde_json::Map::new();
        for (name, read, allowance) in SERIES {
            let points: Vec<(f64, f64)> = times
                .iter()
                .zip(series)
                .filter_map(|(t, s)| read(s).map(|v| (*t, v)))
                .collect();
            let (xs, ys): (Vec<f64>, Vec<f64>) = points.iter().copied().unzip();
            let second: Vec<(f64, f64)> = points
                .iter()
                .copied()
                .filter(|(t, _)| times.get(half).is_some_and(|h| t >= h))
                .collect();
            let (xs2, ys2): (Vec<f64>, Vec<f64>) = second.iter().copied().unzip();
            let mean = ys2.iter().sum::<f64>() / (ys2.len().max(1)) as f64;
            let all = slope_per_hour(&xs, &ys);
            let late = slope_per_hour(&xs2, &ys2);
            let window = match (xs2.first(), xs2.last()) {
                (Some(a), Some(b)) => b - a,
                _ => 0.0,
            };
            let (change, noise) =
                fit(&xs2, &ys2).map_or((None, 0.0), |(slope, sd)| (Some(slope * window), 2.0 * sd));
            let flat = change.is_some_and(|c| c.abs() <= noise.max(*allowance));
            all_flat &= flat;
            figures.insert(
                (*name).into(),
                json!({
                    "series": ys,
                    "slope_per_hour": all,
                    "second_half_slope_per_hour": late,
                    "second_half_mean": mean,
                    "second_half_change": change,
                    "second_half_noise": noise,
                    "flat": flat,
                }),
            );
        }
        let records: Vec<Option<u64>> = series.iter().map(|s| s.records).collect();
        figures.insert("store_records".into(), json!(records));
        processes.push(json!({"name": p.name, "pid": p.child.id(), "figures": figures}));
    }
    json!({
        "benchmark": "soak",
        "minutes": args.minutes,
        "sample_s": args.sample_s,
        "seed": args.seed,
        "ops_per_s": args.ops_per_s,
        "keys_per_node": args.keys,
        "sample_times_s": times,
        "processes": processes,
        "churn": {
            "commands": churn.counts,
            "failed": churn.failed,
            "first_failures": churn.failures,
        },
        "flat": all_flat,
    })
}

fn table(doc: &Value) -> String {
    let mut out = String::new();
    let times: Vec<f64> = doc["sample_times_s"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    out.push_str(&format!(
        "soak: {} min, a sample every {} s, churn {}/s on {} ids per node (seed {})\n",
        doc["minutes"], doc["sample_s"], doc["ops_per_s"], doc["keys_per_node"], doc["seed"]
    ));
    out.push_str(&format!(
        "churn commands: {} ({} failed{})\n",
        doc["churn"]["commands"],
        doc["churn"]["failed"],
        match doc["churn"]["first_failures"].as_array() {
            Some(f) if !f.is_empty() => format!(
                ": {}",
                f.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            _ => String::new(),
        }
    ));
    let empty = Vec::new();
    for p in doc["processes"].as_array().unwrap_or(&empty) {
        out.push_str(&format!(
            "\n{} (pid {})\n",
            p["name"].as_str().unwrap_or("?"),
            p["pid"]
        ));
        let fig = &p["figures"];
        out.push_str("     t s |  RSS MB | fds | threads | tasks | records\n");
        let col = |name: &str, i: usize| fig[name]["series"].get(i).and_then(Value::as_f64);
        for (i, t) in times.iter().enumerate() {
            out.push_str(&format!(
                "{t:8.0} | {:7.1} | {:3.0} | {:7.0} | {:>5} | {:>7}\n",
                col("rss_mb", i).unwrap_or(f64::NAN),
                col("fds", i).unwrap_or(f64::NAN),
                col("threads", i).unwrap_or(f64::NAN),
                col("tasks", i).map_or("?".into(), |v| format!("{v:.0}")),
                fig["store_records"]
                    .get(i)
                    .and_then(Value::as_u64)
                    .map_or("?".into(), |v| v.to_string()),
            ));
        }
        for (name, _, _) in SERIES {
            let f = &fig[*name];
            let num = |v: &Value| v.as_f64().map_or("n/a".into(), |x| format!("{x:+.2}"));
            out.push_str(&format!(
                "  {name:8} slope/h all {:>9}, second half {:>9} (mean {:.1}; change over it \
                 {}, noise {:.2}): {}\n",
                num(&f["slope_per_hour"]),
                num(&f["second_half_slope_per_hour"]),
                f["second_half_mean"].as_f64().unwrap_or(f64::NAN),
                num(&f["second_half_change"]),
                f["second_half_noise"].as_f64().unwrap_or(f64::NAN),
                if f["flat"] == Value::Bool(true) {
                    "flat"
                } else {
                    "NOT FLAT"
                }
            ));
        }
    }
    out.push_str(&format!(
        "\nverdict: {}\n",
        if doc["flat"] == Value::Bool(true) {
            "every series flat in the second half"
        } else {
            "some series NOT flat (see above)"
        }
    ));
    out
}
