//! `bench hub`: fan-out through one hub (issue 5). For each N in `--instances` (default 5 and
//! 20), N instances each publish R public records (default 1,000); a `wb hub run --open` and
//! the real `wb sync now --hub` of every instance, all at once, in rounds (the first pushes and
//! pulls, the next ones pull) until every instance holds all N × R records. Reported: the time
//! until then (and per instance), the rounds it took, every sync's wall time and peak memory,
//! and the hub's peak memory (VmHWM of the hub process; also per instance) and CPU time. The
//! instances are real `wb` processes, all N at once (`--instances 100` runs 100).
//!
//! Baseline, measured in the same run: verifying and applying the same N × R records into one
//! fresh store in-process, on all cores: what each instance must at least do to hold
//! everything. N instances sharing the machine must do that N times, so the ratio reported is
//! time / (N × baseline): about 1 means the hub, the network and the concurrency add nothing to
//! the instances' own verification and writes.

use std::ffi::{OsStr, OsString};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{Entity, Record, Scope, SecretKey, Version};
use serde_json::{Value, json};
use store::{ApplyOptions, CheckedBatch, Home, Peer};

use super::bundles::round;
use super::measure::{self, Measured};
use super::{MB, Result, print_result, work_dir};

/// Rounds of `sync now --hub` at most before giving up (two are enough: push + pull, pull).
const ROUNDS_MAX: usize = 5;
/// Records per transaction while populating an instance.
const POPULATE_BATCH_LEN: usize = 1_000;

#[derive(Debug, clap::Args)]
pub struct HubArgs {
    /// Instance counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [5usize, 20], value_name = "N,…")]
    pub instances: Vec<usize>,
    /// `wb sync now --hub` processes run at once in each round (default: every instance at
    /// once). 100 instances each verifying 100,000 records on a 2-core machine starve each
    /// other of CPU; a bound measures the hub serving them all without that.
    #[arg(long, value_name = "K")]
    pub concurrency: Option<usize>,
    /// Public records each instance publishes.
    #[arg(long, default_value_t = 1_000, value_name = "R")]
    pub records: usize,
    /// The `wb` binary to measure (default: build it with the harness, same profile).
    #[arg(long, value_name = "PATH")]
    pub wb: Option<PathBuf>,
    /// Keep the working directory (hub and instance homes) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Where to create the working directory (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// One fan-out measurement.
#[derive(Debug)]
struct FanOut {
    instances: usize,
    /// Syncs run at once.
    concurrency: usize,
    records: usize,
    /// From the first sync started to the last instance holding everything.
    time: Duration,
    rounds: usize,
    /// Instances whose last state-digest comparison with the hub found no difference.
    in_sync: usize,
    /// Every `sync now --hub` run, all rounds.
    syncs: Vec<Measured>,
    hub_peak_rss_bytes: u64,
    /// CPU time (user + system) of the hub process from its start to every instance holding
    /// everything.
    hub_cpu: Duration,
    hub_records: u64,
    baseline: Duration,
}

pub fn run(args: &HubArgs, json_out: bool) -> Result<()> {
    if args.records == 0 || args.instances.is_empty() || args.instances.contains(&0) {
        return Err("--records and every --instances count must be at least 1".into());
    }
    if args.concurrency == Some(0) {
        return Err("--concurrency must be at least 1".into());
    }
    let tmp = work_dir("wb-bench-hub-", args.dir.as_deref())?;
    let root = tmp.path();
    let clock = Instant::now();
    let progress = |what: &str| eprintln!("[{:6.1} s] {what}", clock.elapsed().as_secs_f64());
    progress(&format!("working directory {}", root.display()));
    let wb: OsString = match &args.wb {
        Some(path) => path.clone().into_os_string(),
        None => {
            progress("building wb…");
            wb_tests::harness::wb_bin().as_os_str().to_os_string()
        }
    };
    let mut results = Vec::new();
    for &n in &args.instances {
        let dir = root.join(format!("n{n}"));
        progress(&format!(
            "{n} instances × {} records: populating…",
            args.records
        ));
        let concurrency = args.concurrency.unwrap_or(n).min(n);
        results.push(fan_out(&wb, &dir, n, args.records, concurrency, &progress)?);
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let doc = json!({
        "benchmark": "hub",
        "cores": cores,
        "records_per_instance": args.records,
        "runs": results.iter().map(figures).collect::<Vec<_>>(),
    });
    print_result(&doc, json_out, table)?;
    if args.keep {
        eprintln!("kept {}", tmp.keep().display());
    }
    Ok(())
}

fn fan_out(
    wb: &OsStr,
    dir: &Path,
    n: usize,
    records: usize,
    concurrency: usize,
    progress: &dyn Fn(&str),
) -> Result<FanOut> {
    std::fs::create_dir_all(dir)?;
    let hub_home = dir.join("hub");
    let (mut hub, hub_addr) = start_hub(wb, &hub_home)?;
    let result = (|| {
        let hub_key = Home::new(&hub_home).load_key()?.public();
        let mut homes = Vec::with_capacity(n);
        let mut all = Vec::with_capacity(n * records);
        for i in 0..n {
            let home = Home::new(dir.join(format!("i{i:02}")));
            let (_, key, store) = home.init(Some(&format!("bench-{i}")))?;
            let signed = populate(&key, &store, records)?;
            all.extend(signed);
            drop(store);
            store::add_peer(
                &home,
                Peer {
                    name: "hub".into(),
                    public_key: hub_key,
                    addrs: vec![hub_addr.clone()],
                    hub: true,
                    trusted: false,
                    revoked: false,
                    follow_revocations: false,
                    notes: String::new(),
                },
            )?;
            homes.push(home);
        }
        let want = (n * records) as u64;
        progress(&format!(
            "{n} instances: syncing through the hub, {concurrency} at once…"
        ));
        let started = Instant::now();
        let mut syncs = Vec::new();
        let mut rounds = 0;
        loop {
            rounds += 1;
            let pull_only = rounds > 1;
            syncs.extend(sync_round(wb, &homes, pull_only, concurrency)?);
            let holding = homes
                .iter()
                .map(|h| h.open_read_only().and_then(|(_, s)| s.log_len()))
                .collect::<std::result::Result<Vec<u64>, _>>()?;
            if holding.iter().all(|&c| c == want) {
                break;
            }
            if rounds == ROUNDS_MAX {
                return Err(format!(
                    "after {rounds} rounds the instances hold {holding:?} records, not {want}"
                )
                .into());
            }
        }
        let time = started.elapsed();
        // The oracle: each instance's last state-digest comparison with the hub, made at the
        // end of its last sync (the hub changes no more after the first round's pushes).
        let mut in_sync = 0;
        for home in &homes {
            let (_, store) = home.open_read_only()?;
            let outcome = store.peer_state(&hub_key)?.digests;
            if outcome.is_some_and(|o| o.differences_total == 0 && o.complete) {
                in_sync += 1;
            }
        }
        let hub_peak_rss_bytes = peak_rss(hub.id())?;
        let hub_cpu = cpu_time(hub.id())?;
        progress(&format!(
            "{n} instances: all hold {want} records after {:.2} s ({rounds} rounds), \
             {in_sync} in sync with the hub by their state digests; baseline…",
            time.as_secs_f64()
        ));
        let baseline = baseline(&dir.join("baseline"), all)?;
        Ok(FanOut {
            instances: n,
            concurrency,
            records,
            time,
            rounds,
            in_sync,
            syncs,
            hub_peak_rss_bytes,
            hub_cpu,
            hub_records: want,
            baseline,
        })
    })();
    super::stop_child(&mut hub, Duration::from_secs(10));
    result
}

/// `wb hub run --open` on 127.0.0.1; its address from the ready line.
fn start_hub(wb: &OsStr, home: &Path) -> Result<(Child, String)> {
    let mut child = Command::new(wb)
        .arg("--home")
        .arg(home)
        .args(["--json", "hub", "run", "--open", "--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .env_remove("WB_SYNC_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("the hub's stdout is not piped")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let ready: Value = serde_json::from_str(&line)
        .map_err(|e| format!("the hub printed no ready line ({e}): {line:?}"))?;
    let addr = ready["addrs"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or("no address in the hub's ready line")?
        .to_string();
    Ok((child, addr))
}

/// The peak resident set of a running process (Linux `VmHWM`), in bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmHWM in /proc/PID/status")?;
    Ok(kib * 1024)
}

/// Clock ticks per second of the CPU times in `/proc` (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) of a running process so far (Linux `/proc/PID/stat`).
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), in parentheses: state is the
    // 3rd field, utime the 14th and stime the 15th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("no command name in /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("no field {} in /proc/PID/stat", i + 3).into())
    };
    // Fields from the state on: utime is the 12th of them, stime the 13th.
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / USER_HZ))
}

/// Signs `n` public user records and applies them to `store`; returns them.
fn populate(key: &SecretKey, store: &store::Store, n: usize) -> Result<Vec<Record>> {
    let now = store::time::now_ms();
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(POPULATE_BATCH_LEN) {
        let batch: Vec<Record> = (start..n.min(start + POPULATE_BATCH_LEN))
            .map(|i| {
                let id = format!("u{i:06}");
                let mut r = Record {
                    origin: key.public(),
                    entity: Entity::User,
                    id: id.clone(),
                    version: Version::new(now, u32::try_from(i).unwrap_or(u32::MAX)),
                    scope: Scope::Public,
                    deleted: false,
                    fields: vec![
                        ("Username".into(), id),
                        ("Display-Name".into(), format!("Bench user {i}")),
                        (
                            "Bio".into(),
                            "Neighbour who helps with groceries and rides.".into(),
                        ),
                    ],
                    body: String::new(),
                    signature: None,
                };
                r.sign(key).map(|()| r)
            })
            .collect::<std::result::Result<_, _>>()?;
        store.apply_batch(&batch, &ApplyOptions::new("bench populate", now))?;
        out.extend(batch);
    }
    Ok(out)
}

/// Every instance's `wb sync now --hub`, `concurrency` at a time (a pool of that many threads
/// taking the next instance), each measured (wall, peak memory); in the instances' order.
fn sync_round(
    wb: &OsStr,
    homes: &[Home],
    pull_only: bool,
    concurrency: usize,
) -> Result<Vec<Measured>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<std::result::Result<Measured, String>>>> =
        std::sync::Mutex::new((0..homes.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..concurrency.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(home) = homes.get(i) else { break };
                    let root = home.root().as_os_str();
                    let mut args: Vec<&OsStr> = vec![
                        OsStr::new("--home"),
                        root,
                        OsStr::new("--json"),
                        OsStr::new("sync"),
                        OsStr::new("now"),
                        OsStr::new("--hub"),
                    ];
                    if pull_only {
                        args.push(OsStr::new("--pull-only"));
                    }
                    let m = measure::run(wb, &args).map_err(|e| e.to_string());
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(m);
                    }
                }
            });
        }
    });
    let all = results.into_inner().map_err(|_| "a sync thread panicked")?;
    let mut out = Vec::with_capacity(all.len());
    for m in all {
        out.push(m.ok_or("a sync thread panicked")??);
    }
    Ok(out)
}

/// Verify and apply every record into one fresh store, in batches of the wire's size.
fn baseline(dir: &Path, mut all: Vec<Record>) -> Result<Duration> {
    let home = Home::new(dir);
    let (_, _, store) = home.init(Some("baseline"))?;
    // Records arrive grouped by origin, as the hub serves them.
    all.sort_by_key(Record::key);
    let started = Instant::now();
    for chunk in all.chunks(protocol::wire::BATCH_RECORDS_MAX) {
        let opts = ApplyOptions::new("baseline", store::time::now_ms());
        let checked = CheckedBatch::check(chunk.to_vec(), &opts);
        let report = store.apply_checked(&checked, &opts)?;
        if report.new != chunk.len() as u64 {
            return Err(format!("baseline applied {} of {}", report.new, chunk.len()).into());
        }
    }
    Ok(started.elapsed())
}

fn figures(f: &FanOut) -> Value {
    let mut walls: Vec<f64> = f.syncs.iter().map(|m| m.wall.as_secs_f64()).collect();
    walls.sort_by(f64::total_cmp);
    let peak_sync = f.syncs.iter().map(|m| m.peak_rss_bytes).max().unwrap_or(0);
    let total = f.hub_records;
    let secs = f.time.as_secs_f64();
    json!({
        "instances": f.instances,
        "concurrency": f.concurrency,
        "records_per_instance": f.records,
        "records_total": total,
        "time_s": round(secs, 3),
        "rounds": f.rounds,
        "digests_in_sync": f.in_sync,
        "records_delivered_per_s": round(total as f64 * (f.instances as f64 - 1.0) / secs.max(1e-9), 3),
        "syncs": f.syncs.len(),
        "sync_wall_s_median": round(walls.get(walls.len() / 2).copied().unwrap_or(0.0), 3),
        "sync_wall_s_max": round(walls.last().copied().unwrap_or(0.0), 3),
        "sync_peak_rss_mb_max": round(peak_sync as f64 / MB, 3),
        "hub_peak_rss_mb": round(f.hub_peak_rss_bytes as f64 / MB, 3),
        "hub_peak_rss_mb_per_instance": round(f.hub_peak_rss_bytes as f64 / MB / f.instances as f64, 3),
        "hub_cpu_s": round(f.hub_cpu.as_secs_f64(), 3),
        "time_per_instance_s": round(secs / f.instances as f64, 3),
        "baseline_apply_all_s": round(f.baseline.as_secs_f64(), 3),
        "ratio_to_n_baselines": round(
            secs / (f.instances as f64 * f.baseline.as_secs_f64()).max(1e-9),
            3,
        ),
    })
}

fn table(doc: &Value) -> String {
    let mut out = format!(
        "hub fan-out: {} records per instance, {} cores\n",
        doc["records_per_instance"], doc["cores"]
    );
    out.push_str(
        "instances  at once   total   time s  s/inst  rounds  in sync  sync median/max s  sync peak MB  hub peak MB  MB/inst  hub CPU s  baseline s  ratio\n",
    );
    for r in doc["runs"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:>9}  {:>7}  {:>6}  {:>7.2}  {:>6.3}  {:>6}  {:>7}  {:>8.2} / {:<7.2}  {:>12.1}  {:>11.1}  {:>7.2}  {:>9.2}  {:>10.2}  {:>5.2}\n",
            r["instances"].as_u64().unwrap_or(0),
            r["concurrency"].as_u64().unwrap_or(0),
            r["records_total"].as_u64().unwrap_or(0),
            r["time_s"].as_f64().unwrap_or(0.0),
            r["time_per_instance_s"].as_f64().unwrap_or(0.0),
            r["rounds"].as_u64().unwrap_or(0),
            r["digests_in_sync"].as_u64().unwrap_or(0),
            r["sync_wall_s_median"].as_f64().unwrap_or(0.0),
            r["sync_wall_s_max"].as_f64().unwrap_or(0.0),
            r["sync_peak_rss_mb_max"].as_f64().unwrap_or(0.0),
            r["hub_peak_rss_mb"].as_f64().unwrap_or(0.0),
            r["hub_peak_rss_mb_per_instance"].as_f64().unwrap_or(0.0),
            r["hub_cpu_s"].as_f64().unwrap_or(0.0),
            r["baseline_apply_all_s"].as_f64().unwrap_or(0.0),
            r["ratio_to_n_baselines"].as_f64().unwrap_or(0.0),
        ));
    }
    out.push_str(
        "(at once: syncs run at the same time; in sync: instances whose state digests equal \
         the hub's after their last sync; time: from the first sync to every instance holding every record, s/inst: that per \
         instance; hub CPU: the hub process's user + system time until then; MB/inst: hub peak \
         / instances; baseline: verifying and applying all records into one store in-process; \
         ratio: time / (instances × baseline))\n",
    );
    out
}
