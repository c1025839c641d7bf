//! `bench bundles`: `wb sync export` and `wb sync import` of N records (the real binary, as a
//! user runs it), each against a baseline measured in the same run on the same files, so the
//! ratios mean something on a noisy machine:
//! - export baseline: the same files written with plain `std::fs::write` (no store, no signing);
//! - import baseline: the same record files read, hashed with SHA-256 and checked with one
//!   Ed25519 verification each, on all cores (no parsing, no store).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use nix::sys::resource::{UsageWho, getrusage};
use protocol::SecretKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{ApplyOptions, Home};

use super::measure::{self, Measured};
use super::{MB, Result, dataset, print_result, work_dir};

/// Targets from issue 3 for this 2-core machine.
const EXPORT_RECORDS_PER_S_MIN: f64 = 20_000.0;
const IMPORT_RECORDS_PER_S_MIN: f64 = 10_000.0;
const PEAK_RSS_BYTES_MAX: u64 = 200_000_000;
/// Records per `apply_batch` transaction while populating the exporting store.
const POPULATE_BATCH_LEN: usize = 5_000;
/// The manifest: listed by nothing, so not a record file.
const MANIFEST_FILE: &str = "manifest.sync.txt";

#[derive(Debug, clap::Args)]
pub struct BundlesArgs {
    /// Records in the data set (mixed entities, about 500 bytes per file).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub records: usize,
    /// Measure every phase this many times (fresh directory and home each time) and report
    /// the median.
    #[arg(long, default_value_t = 3, value_name = "R")]
    pub runs: usize,
    /// Seed of the generated data set.
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
    /// Keep the working directory (home `a`, each run's bundle, baseline copy and importing
    /// home) for profiling `wb` by hand; its path is printed.
    #[arg(long)]
    pub keep: bool,
    /// Where to create the working directory (default: the system's temporary directory).
    /// The file system matters: creating 100,000 files is most of an export's time.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// One phase of one run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    /// CPU time in user space and in the kernel (creating files is mostly kernel time).
    user: Duration,
    sys: Duration,
    /// Only for `wb` runs: the baselines run inside this process.
    peak_rss_bytes: Option<u64>,
}

impl From<&Measured> for Sample {
    fn from(m: &Measured) -> Self {
        Self {
            wall: m.wall,
            user: m.user,
            sys: m.sys,
            peak_rss_bytes: Some(m.peak_rss_bytes),
        }
    }
}

/// Samples of every phase over all runs.
#[derive(Debug, Default)]
struct Samples {
    export: Vec<Sample>,
    export_baseline: Vec<Sample>,
    import: Vec<Sample>,
    import_baseline: Vec<Sample>,
}

/// What the data set turned into on disk.
#[derive(Debug, Default, Clone)]
struct BundleShape {
    /// Record files per entity, as `wb sync export --json` counted them.
    records: BTreeMap<String, u64>,
    record_files: u64,
    record_bytes: u64,
    /// Record files and their bytes per bundle directory (`users`, `requests`, …).
    per_dir: BTreeMap<String, (u64, u64)>,
    /// Every file of the bundle (records, manifest, signature, key).
    files: u64,
    bytes: u64,
}

pub fn run(args: &BundlesArgs, json_out: bool) -> Result<()> {
    if args.records == 0 || args.runs == 0 {
        return Err("--records and --runs must be at least 1".into());
    }
    let n = args.records;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let tmp = work_dir("wb-bench-", args.dir.as_deref())?;
    let root = tmp.path();
    let clock = Instant::now();
    let progress = |what: &str| eprintln!("[{:6.1} s] {what}", clock.elapsed().as_secs_f64());

    progress(&format!("working directory {}", root.display()));
    progress("building wb…");
    let wb = wb_tests::harness::wb_bin().as_os_str();
    let home_a = root.join("a");
    run_wb(wb, &home_a, &["init", "--name", "bench-a"])?;

    progress(&format!(
        "populating a store with {n} signed public records…"
    ));
    let started = Instant::now();
    populate(&home_a, n, args.seed)?;
    let populate_time = started.elapsed();

    let mut samples = Samples::default();
    let mut shape = BundleShape::default();
    // Signatures over each record file for the import baseline, made once (the export is
    // deterministic, so every run's record files are the same bytes; a difference fails).
    let baseline_key = SecretKey::from_bytes(&[0x42; 32]);
    let mut signed_files: Vec<(String, [u8; 32], Signature)> = Vec::new();
    for run in 1..=args.runs {
        progress(&format!("run {run}/{}: export…", args.runs));
        let dir = root.join(format!("bundle-{run}"));
        let export = measure::run(
            wb,
            &[
                "--home".as_ref(),
                home_a.as_os_str(),
                "--json".as_ref(),
                "sync".as_ref(),
                "export".as_ref(),
                dir.as_os_str(),
            ],
        )?;
        samples.export.push(Sample::from(&export));
        let files = read_tree(&dir)?;
        shape = bundle_shape(&export.stdout, &files)?;
        let exported: u64 = shape.records.values().sum();
        if exported != n as u64 || shape.record_files != n as u64 {
            return Err(format!(
                "wb exported {exported} records in {} files, not {n}",
                shape.record_files
            )
            .into());
        }

        progress(&format!("run {run}/{}: export baseline…", args.runs));
        let baseline_dir = root.join(format!("baseline-{run}"));
        samples
            .export_baseline
            .push(baseline_export(&baseline_dir, &files)?);

        if signed_files.is_empty() {
            signed_files = files
                .iter()
                .filter(|(path, _)| is_record_file(path))
                .map(|(path, bytes)| {
                    let signature = Signature::from_bytes(&baseline_key.sign(bytes).0);
                    (path.clone(), Sha256::digest(bytes).into(), signature)
                })
                .collect();
        }
        drop(files);
        progress(&format!("run {run}/{}: import baseline…", args.runs));
        let verifying = VerifyingKey::from_bytes(baseline_key.public().as_bytes())?;
        samples
            .import_baseline
            .push(baseline_import(&dir, &signed_files, &verifying, cores)?);

        progress(&format!("run {run}/{}: import…", args.runs));
        let home_b = root.join(format!("b-{run}"));
        run_wb(wb, &home_b, &["init", "--name", "bench-b"])?;
        let import = measure::run(
            wb,
            &[
                "--home".as_ref(),
                home_b.as_os_str(),
                "--json".as_ref(),
                "sync".as_ref(),
                "import".as_ref(),
                dir.as_os_str(),
            ],
        )?;
        let report: Value = serde_json::from_str(&import.stdout)?;
        if report["new"].as_u64() != Some(n as u64) {
            return Err(format!("wb import did not add {n} new records: {report}").into());
        }
        samples.import.push(Sample::from(&import));
        // Each run cleans up after itself: deleting 600,000 small files at once took minutes
        // here, 100,000 about a second.
        if !args.keep {
            for d in [&baseline_dir, &dir, &home_b] {
                fs::remove_dir_all(d)?;
            }
        }
    }
    progress("done");

    let result = summarize(args, cores, root, populate_time, &shape, &samples);
    print_result(&result, json_out, table)?;
    if args.keep {
        eprintln!("kept {}", tmp.keep().display());
    } else {
        progress("removing the working directory…");
        drop(tmp);
    }
    Ok(())
}

/// `wb --home HOME ARGS…`, which must succeed; not measured.
fn run_wb(wb: &OsStr, home: &Path, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(wb)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("WB_SYNC_HOME")
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "wb {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// Writes `n` generated records into the home's store through the library, in batches.
fn populate(home: &Path, n: usize, seed: u64) -> Result<()> {
    let (key, store) = Home::new(home).open()?;
    let now = store::time::now_ms();
    // Versions one per millisecond, ending an hour ago: distinct, never future-dated.
    let base_ms = now.saturating_sub(n as u64 + 3_600_000);
    let records = dataset::generate(&key, n, seed, base_ms)?;
    let opts = ApplyOptions::new("bench", now);
    for batch in records.chunks(POPULATE_BATCH_LEN) {
        let report = store.apply_batch(batch, &opts)?;
        if report.new != batch.len() as u64 {
            return Err(format!("populating the store: {report:?}").into());
        }
    }
    Ok(())
}

/// Every file under `dir` with its bundle-relative path (`/`-separated), sorted.
fn read_tree(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type()?.is_dir() {
                stack.push((entry.path(), child));
            } else {
                out.push((child, fs::read(entry.path())?));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_record_file(path: &str) -> bool {
    path.ends_with(".sync.txt") && path != MANIFEST_FILE
}

fn bundle_shape(export_json: &str, files: &[(String, Vec<u8>)]) -> Result<BundleShape> {
    let report: Value = serde_json::from_str(export_json)?;
    let records = report["records"]
        .as_object()
        .ok_or("wb sync export --json printed no record counts")?
        .iter()
        .map(|(entity, count)| (entity.clone(), count.as_u64().unwrap_or(0)))
        .collect();
    let mut shape = BundleShape {
        records,
        ..Default::default()
    };
    for (path, bytes) in files {
        shape.files += 1;
        shape.bytes += bytes.len() as u64;
        if is_record_file(path) {
            shape.record_files += 1;
            shape.record_bytes += bytes.len() as u64;
            let dir = path.split('/').next().unwrap_or_default().to_string();
            let entry = shape.per_dir.entry(dir).or_default();
            entry.0 += 1;
            entry.1 += bytes.len() as u64;
        }
    }
    Ok(shape)
}

/// CPU time (user, system) this process has used so far, all threads.
pub(super) fn own_cpu() -> (Duration, Duration) {
    getrusage(UsageWho::RUSAGE_SELF).map_or((Duration::ZERO, Duration::ZERO), |u| {
        let d = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
        };
        (d(u.user_time()), d(u.system_time()))
    })
}

/// A baseline's sample, from its start time and CPU times.
fn own_sample(start: Instant, cpu0: (Duration, Duration)) -> Sample {
    let (user, sys) = own_cpu();
    Sample {
        wall: start.elapsed(),
        user: user.saturating_sub(cpu0.0),
        sys: sys.saturating_sub(cpu0.1),
        peak_rss_bytes: None,
    }
}

/// Writes the bundle's files into a new directory with plain `fs::write`, one thread.
fn baseline_export(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<Sample> {
    let (cpu0, start) = (own_cpu(), Instant::now());
    let parents: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|(path, _)| dir.join(path).parent().map(Path::to_path_buf))
        .collect();
    for parent in &parents {
        fs::create_dir_all(parent)?;
    }
    for (path, bytes) in files {
        fs::write(dir.join(path), bytes)?;
    }
    Ok(own_sample(start, cpu0))
}

/// Reads every record file, checks its SHA-256 and one Ed25519 signature, on `threads` threads.
fn baseline_import(
    dir: &Path,
    files: &[(String, [u8; 32], Signature)],
    key: &VerifyingKey,
    threads: usize,
) -> Result<Sample> {
    let (cpu0, start) = (own_cpu(), Instant::now());
    let chunk = files.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> Result<()> {
                    for (path, digest, signature) in part {
                        let bytes = fs::read(dir.join(path))?;
                        if <[u8; 32]>::from(Sha256::digest(&bytes)) != *digest {
                            return Err(format!("{path}: changed between runs").into());
                        }
                        key.verify_strict(&bytes, signature)
                            .map_err(|e| format!("{path}: {e}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| "a baseline thread panicked")?)
    })?;
    Ok(own_sample(start, cpu0))
}

pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.is_empty() {
        0.0
    } else if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// One phase's figures (medians over runs; peak memory is the largest seen).
fn phase(samples: &[Sample], records: usize, bytes: u64) -> Value {
    let wall_s = median(samples.iter().map(|s| s.wall.as_secs_f64()).collect());
    let user_s = median(samples.iter().map(|s| s.user.as_secs_f64()).collect());
    let sys_s = median(samples.iter().map(|s| s.sys.as_secs_f64()).collect());
    let cpu_per_wall = median(
        samples
            .iter()
            .map(|s| (s.user + s.sys).as_secs_f64() / s.wall.as_secs_f64())
            .collect(),
    );
    let peak = samples.iter().filter_map(|s| s.peak_rss_bytes).max();
    json!({
        "wall_s": round(wall_s, 3),
        "records_per_s": round(records as f64 / wall_s, 0),
        "mb_per_s": round(bytes as f64 / MB / wall_s, 1),
        "cpu_user_s": round(user_s, 3),
        "cpu_sys_s": round(sys_s, 3),
        "cpu_per_wall": round(cpu_per_wall, 2),
        "peak_rss_mb": peak.map(|p| round(p as f64 / MB, 1)),
        "runs_wall_s": samples.iter().map(|s| round(s.wall.as_secs_f64(), 3)).collect::<Vec<_>>(),
    })
}

pub(super) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Median over runs of (wb time / baseline time), run by run.
fn ratio(wb: &[Sample], baseline: &[Sample]) -> f64 {
    median(ratios(wb, baseline))
}

/// wb time / baseline time, run by run.
fn ratios(wb: &[Sample], baseline: &[Sample]) -> Vec<f64> {
    wb.iter()
        .zip(baseline)
        .map(|(w, b)| w.wall.as_secs_f64() / b.wall.as_secs_f64())
        .collect()
}

fn summarize(
    args: &BundlesArgs,
    cores: usize,
    work_dir: &Path,
    populate_time: Duration,
    shape: &BundleShape,
    s: &Samples,
) -> Value {
    let n = args.records;
    let export = phase(&s.export, n, shape.bytes);
    let import = phase(&s.import, n, shape.bytes);
    let peak = s
        .export
        .iter()
        .chain(&s.import)
        .filter_map(|x| x.peak_rss_bytes)
        .max()
        .unwrap_or(0);
    let peak_phase = if s.import.iter().filter_map(|x| x.peak_rss_bytes).max()
        >= s.export.iter().filter_map(|x| x.peak_rss_bytes).max()
    {
        "import"
    } else {
        "export"
    };
    let export_rate = export["records_per_s"].as_f64().unwrap_or(0.0);
    let import_rate = import["records_per_s"].as_f64().unwrap_or(0.0);
    json!({
        "benchmark": "bundles",
        "records": n,
        "cores": cores,
        "runs": args.runs,
        "seed": args.seed,
        "work_dir": work_dir.display().to_string(),
        "data_set": {
            "records": shape.records,
            "record_files": shape.record_files,
            "record_bytes": shape.record_bytes,
            "avg_record_file_bytes": round(shape.record_bytes as f64 / shape.record_files.max(1) as f64, 0),
            "avg_file_bytes_per_dir": shape.per_dir.iter().map(|(dir, (files, bytes))| {
                (dir.clone(), json!(round(*bytes as f64 / (*files).max(1) as f64, 0)))
            }).collect::<serde_json::Map<_, _>>(),
            "bundle_files": shape.files,
            "bundle_bytes": shape.bytes,
            "populate_s": round(populate_time.as_secs_f64(), 3),
        },
        "export": export,
        "export_baseline": phase(&s.export_baseline, n, shape.bytes),
        "export_ratio": round(ratio(&s.export, &s.export_baseline), 2),
        "export_ratio_runs": ratios(&s.export, &s.export_baseline).into_iter().map(|x| round(x, 2)).collect::<Vec<_>>(),
        "import": import,
        "import_baseline": phase(&s.import_baseline, n, shape.bytes),
        "import_ratio": round(ratio(&s.import, &s.import_baseline), 2),
        "import_ratio_runs": ratios(&s.import, &s.import_baseline).into_iter().map(|x| round(x, 2)).collect::<Vec<_>>(),
        "targets": [
            {
                "name": "export records/s",
                "min": EXPORT_RECORDS_PER_S_MIN,
                "value": export_rate,
                "pass": export_rate >= EXPORT_RECORDS_PER_S_MIN,
            },
            {
                "name": "import records/s",
                "min": IMPORT_RECORDS_PER_S_MIN,
                "value": import_rate,
                "pass": import_rate >= IMPORT_RECORDS_PER_S_MIN,
            },
            {
                "name": "peak memory MB",
                "max": PEAK_RSS_BYTES_MAX as f64 / MB,
                "value": round(peak as f64 / MB, 1),
                "phase": peak_phase,
                "pass": peak < PEAK_RSS_BYTES_MAX,
            },
        ],
    })
}

/// Thousands separators for a whole number.
pub(super) fn grouped(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn table(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let ds = &r["data_set"];
    let per_entity = ds["records"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(e, c)| format!("{c} {e}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let per_dir = ds["avg_file_bytes_per_dir"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(dir, avg)| format!("{dir} {}", f(avg)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut out = format!(
        "wb bundle benchmark: {} records, {} cores, {} run(s) (median), seed {}, in {}\n\
         data set: {per_entity}\n\
         bundle: {} files, {:.1} MB; record files {:.0} bytes on average ({})\n\
         (store populated through the library in {:.1} s, not measured)\n\n",
        r["records"],
        r["cores"],
        r["runs"],
        r["seed"],
        r["work_dir"].as_str().unwrap_or_default(),
        ds["bundle_files"],
        f(&ds["bundle_bytes"]) / MB,
        f(&ds["avg_record_file_bytes"]),
        per_dir,
        f(&ds["populate_s"]),
    );
    out.push_str(&format!(
        "{:<46} {:>9} {:>10} {:>7} {:>10} {:>8} {:>8} {:>8}\n",
        "phase", "time", "records/s", "MB/s", "peak RSS", "user", "sys", "CPU/wall"
    ));
    let rows = [
        ("export: wb sync export", "export"),
        ("  baseline: fs::write of the same files", "export_baseline"),
        ("import: wb sync import (verify + apply)", "import"),
        (
            "  baseline: read + sha256 + verify, all cores",
            "import_baseline",
        ),
    ];
    for (label, key) in rows {
        let p = &r[key];
        let rss = match p["peak_rss_mb"].as_f64() {
            Some(mb) => format!("{mb:.1} MB"),
            None => "-".to_string(),
        };
        out.push_str(&format!(
            "{label:<46} {:>7.2} s {:>10} {:>7.1} {rss:>10} {:>6.2} s {:>6.2} s {:>8.2}\n",
            f(&p["wall_s"]),
            grouped(f(&p["records_per_s"])),
            f(&p["mb_per_s"]),
            f(&p["cpu_user_s"]),
            f(&p["cpu_sys_s"]),
            f(&p["cpu_per_wall"]),
        ));
    }
    out.push_str(&format!(
        "\nratio to baseline (time, lower is better): export {:.2}x, import {:.2}x\n",
        f(&r["export_ratio"]),
        f(&r["import_ratio"]),
    ));
    if r["runs"].as_u64().unwrap_or(0) > 1 {
        out.push_str("\neach run (wall s; ratio = wb / baseline of the same run):\n");
        let each = |values: &Value, suffix: &str| {
            values
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| format!("{:>7.2}{suffix}", f(v)))
                .collect::<String>()
        };
        for (label, values, suffix) in [
            ("export", &r["export"]["runs_wall_s"], " "),
            ("  baseline", &r["export_baseline"]["runs_wall_s"], " "),
            ("  ratio", &r["export_ratio_runs"], "x"),
            ("import", &r["import"]["runs_wall_s"], " "),
            ("  baseline", &r["import_baseline"]["runs_wall_s"], " "),
            ("  ratio", &r["import_ratio_runs"], "x"),
        ] {
            out.push_str(&format!("  {label:<12}{}\n", each(values, suffix)));
        }
    }
    out.push_str("\ntargets (issue 3; informational, the benchmark never fails on a miss):\n");
    for t in r["targets"].as_array().into_iter().flatten() {
        let (label, target, value) = if t["max"].is_number() {
            (
                "peak memory".to_string(),
                format!("< {:.0} MB", f(&t["max"])),
                format!(
                    "{:.1} MB ({})",
                    f(&t["value"]),
                    t["phase"].as_str().unwrap_or("")
                ),
            )
        } else {
            (
                t["name"].as_str().unwrap_or_default().to_string(),
                format!(">= {}", grouped(f(&t["min"]))),
                format!("{} records/s", grouped(f(&t["value"]))),
            )
        };
        out.push_str(&format!(
            "  {label:<18} {target:<10} {value:>24}  {}\n",
            if t["pass"] == Value::Bool(true) {
                "PASS"
            } else {
                "MISS"
            },
        ));
    }
    out
}
