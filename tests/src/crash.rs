//! The crash matrix (issue 12, item 4): the real `wb` binary killed with SIGKILL at seeded
//! random points during each path that writes, then checked.
//!
//! One case is a [`CrashPath`] and a seed. The seed picks the data set (how many records,
//! which are private or tombstones, which side is killed) and the kill delay: a fraction of the
//! measured duration of an unkilled run of the same path ([`calibrate`], once per path and
//! process), so kills land anywhere from process start to the last write. After the kill:
//!
//! - **opens**: `wb record list` works on every home involved, and the store opens through the
//!   `store` API with a consistent change log;
//! - **lost**: every write acknowledged before the kill (the home's records before the operation,
//!   and `wb record put`s that returned) is still there, at its version or a later one;
//! - **duplicated**: the change log holds one live entry per record key, as many as records,
//!   none beyond the last sequence issued; one-transaction operations (import, prune, adoption)
//!   left all or nothing;
//! - **converged**: the same operation, run again, completes, and the two instances' state
//!   digests agree on every origin involved ([`converged`]; the public records per origin are
//!   compared as well, to say what differs).
//!
//! `cargo run --release -p wb-tests --bin crash -- --seeds 50` runs the long mode; the
//! integration tests (`tests/tests/crash.rs`) run a few seeds per path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use protocol::{PublicKey, Record, Scope, Version};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::harness::{Run, TestHome, bulk_users, copy_tree, link};

/// The longest any one `wb` run of a case may take before the case fails.
const RUN_DEADLINE: Duration = Duration::from_secs(300);
/// How long a continuous-sync case waits for the two nodes to converge.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(180);

/// A path that writes, killed in the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrashPath {
    /// `wb sync now A --pull-only` on B, A's node serving: the puller is killed.
    Pull,
    /// `wb sync now B --push-only` on A into B's node: B's node is killed (and the push).
    Push,
    /// `wb node run` on A and B, peers of each other, with `wb record put`s through the control
    /// socket: one node is killed.
    Continuous,
    /// `wb hub run` and two instances: the hub is killed while A pushes, or C while it pulls.
    Hub,
    /// `wb sync import` of A's bundle on B: B's import is killed.
    Import,
    /// `wb sync export` on A (a first export, or over its previous one): the export is killed.
    Export,
    /// `wb app import` of the app's snapshot (the app model, seeded rows): the adoption is killed.
    Adopt,
    /// `wb sync prune --peer A --yes` on B: the prune is killed.
    Prune,
    /// `wb sync keygen --force --yes` on A, whose records B holds: the replacement is killed.
    Keygen,
}

impl CrashPath {
    pub const ALL: [CrashPath; 9] = [
        CrashPath::Pull,
        CrashPath::Push,
        CrashPath::Continuous,
        CrashPath::Hub,
        CrashPath::Import,
        CrashPath::Export,
        CrashPath::Adopt,
        CrashPath::Prune,
        CrashPath::Keygen,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CrashPath::Pull => "pull",
            CrashPath::Push => "push",
            CrashPath::Continuous => "continuous",
            CrashPath::Hub => "hub",
            CrashPath::Import => "import",
            CrashPath::Export => "export",
            CrashPath::Adopt => "adopt",
            CrashPath::Prune => "prune",
            CrashPath::Keygen => "keygen",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A small seeded generator (SplitMix64): the same seed gives the same case everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` if the range is empty).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        let span = hi.saturating_sub(lo).max(1) as u64;
        lo + usize::try_from(self.next_u64() % span).unwrap_or(0)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

// ---------------------------------------------------------------------------------------------
// What a store holds, and the oracle.
// ---------------------------------------------------------------------------------------------

/// A record's key: origin, entity name, id.
pub type Key = (PublicKey, String, String);

/// One record as the oracle sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub version: Version,
    /// The record's content hash (its signing bytes: origin and version included).
    pub hash: [u8; 32],
    pub scope: Scope,
    pub deleted: bool,
    /// A hash of what the record says without origin and version (scope, deletion, fields,
    /// body): equal for the same content signed by another key or at another time.
    pub content: [u8; 32],
}

impl Held {
    fn of(r: &Record) -> Self {
        let mut h = Sha256::new();
        h.update(r.scope.as_str().as_bytes());
        h.update([u8::from(r.deleted)]);
        for (name, value) in &r.fields {
            for part in [name, value] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
        }
        h.update(r.body.as_bytes());
        Self {
            version: r.version,
            hash: r.content_hash(),
            scope: r.scope,
            deleted: r.deleted,
            content: h.finalize().into(),
        }
    }
}

/// What one home's store holds, read after every process on it stopped.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The store's key.
    pub key: PublicKey,
    /// Its key and its former keys: the origins of its own records.
    pub own: BTreeSet<PublicKey>,
    pub records: BTreeMap<Key, Held>,
    /// The public withdrawals of its own records narrowed since (what peers hold instead).
    pub withdrawals: BTreeMap<Key, Held>,
    /// Change-log problems: keys logged twice, log entries ≠ records, sequences beyond the last.
    pub duplicated: Vec<String>,
    /// The store's state digests (`Store::digests`): the convergence verdict.
    pub digests: store::StoreDigests,
}

impl Snapshot {
    /// The records of `origin`.
    pub fn of_origin(&self, origin: &PublicKey) -> impl Iterator<Item = (&Key, &Held)> {
        self.records.iter().filter(move |(k, _)| k.0 == *origin)
    }

    /// The public records of `origin` (tombstones included): what any peer may hold of them.
    /// A record of ours narrowed since counts as its public withdrawal.
    pub fn public_of(&self, origin: &PublicKey) -> BTreeMap<(String, String), (Version, [u8; 32])> {
        self.of_origin(origin)
            .filter_map(|(k, h)| {
                if h.scope == Scope::Public {
                    Some((k, h))
                } else {
                    self.withdrawals.get_key_value(k)
                }
            })
            .map(|(k, h)| ((k.1.clone(), k.2.clone()), (h.version, h.hash)))
            .collect()
    }

    /// Every origin with a record here.
    pub fn origins(&self) -> BTreeSet<PublicKey> {
        self.records.keys().map(|k| k.0).collect()
    }
}

/// Opens a stopped home the way a command after the kill would: first `wb --json record list
/// --deleted` (through the binary), then the store through its API, reading every record and
/// the change log. An error says the store does not open or cannot be read.
pub fn inspect(t: &TestHome) -> Result<Snapshot, String> {
    let run: Run = t
        .command(["--json", "record", "list", "--deleted"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run wb record list: {e}"))?
        .into();
    if !run.status.success() || run.stderr.contains("panicked") {
        return Err(format!(
            "wb record list failed on {}:\n{run}",
            t.home().display()
        ));
    }
    let listed: Value = serde_json::from_str(&run.stdout)
        .map_err(|e| format!("wb record list printed no JSON ({e})"))?;
    let listed = listed.as_array().map_or(0, Vec::len);

    let home = store::Home::new(t.home());
    let (key, store) = home
        .open()
        .map_err(|e| format!("the store does not open: {e}"))?;
    let all = store
        .list(&store::ListFilter {
            include_deleted: true,
            ..Default::default()
        })
        .map_err(|e| format!("list the store: {e}"))?;
    let mut own: BTreeSet<PublicKey> = store
        .former_keys()
        .map_err(|e| format!("read the former keys: {e}"))?
        .into_iter()
        .collect();
    own.insert(key.public());
    let mut records = BTreeMap::new();
    let mut withdrawals = BTreeMap::new();
    let mut duplicated = Vec::new();
    for r in &all {
        let k = (r.origin, r.entity.to_string(), r.id.clone());
        if r.scope != Scope::Public && own.contains(&r.origin) {
            let key = protocol::RecordKey {
                origin: r.origin,
                entity: r.entity.clone(),
                id: r.id.clone(),
            };
            if let Some(w) = store
                .withdrawal(&key)
                .map_err(|e| format!("read a withdrawal: {e}"))?
                .filter(|w| w.scope == Scope::Public)
            {
                withdrawals.insert(k.clone(), Held::of(&w));
            }
        }
        if records.insert(k.clone(), Held::of(r)).is_some() {
            duplicated.push(format!("record {k:?} listed twice"));
        }
    }
    if listed != all.len() {
        duplicated.push(format!(
            "wb record list shows {listed} records, the store holds {}",
            all.len()
        ));
    }
    let count = store.record_count().map_err(|e| format!("count: {e}"))?;
    if count != all.len() as u64 {
        duplicated.push(format!("record count {count} ≠ {} listed", all.len()));
    }
    let last = store.last_seq().map_err(|e| format!("last seq: {e}"))?;
    let log = store
        .changes_since(0, usize::MAX)
        .map_err(|e| format!("read the change log: {e}"))?;
    let mut logged = BTreeSet::new();
    let mut previous = 0;
    for c in &log {
        let k = (
            c.record.origin,
            c.record.entity.to_string(),
            c.record.id.clone(),
        );
        if !logged.insert(k.clone()) {
            duplicated.push(format!("{k:?} has two live log entries"));
        }
        if c.seq > last || c.seq <= previous {
            duplicated.push(format!(
                "log sequence {c_seq} out of order (last {last})",
                c_seq = c.seq
            ));
        }
        previous = c.seq;
    }
    if log.len() != all.len() {
        duplicated.push(format!(
            "{} live log entries for {} records",
            log.len(),
            all.len()
        ));
    }
    let digests = store
        .digests()
        .map_err(|e| format!("read the state digests: {e}"))?;
    Ok(Snapshot {
        key: key.public(),
        own,
        records,
        withdrawals,
        duplicated,
        digests,
    })
}

/// Whether two stores converged on the records of `origins`. The verdict is the state digests
/// (issue 12): the comparison each would make after exchanging digests with the other
/// (`store::digest::between`; the matrix's instances trust nobody), restricted to `origins`,
/// finds no difference. Checked besides, to say what differs when the digests do: per origin,
/// the same public records (key, version, content hash); and neither holds a non-public
/// record of an origin that is not its own. `Ok` or what differs.
pub fn converged(a: &Snapshot, b: &Snapshot, origins: &BTreeSet<PublicKey>) -> Result<(), String> {
    let mut problems = Vec::new();
    let compared = store::digest::between(&a.digests, &a.key, false, &b.digests, &b.key, false);
    let named: BTreeSet<String> = origins.iter().map(PublicKey::to_base64).collect();
    let differing: Vec<_> = compared
        .differences
        .iter()
        .filter(|d| named.contains(&d.origin))
        .collect();
    if !differing.is_empty() {
        problems.push(format!(
            "state digests differ: {}",
            differing
                .iter()
                .map(|d| format!(
                    "{} {} {}: offered {}, held {}",
                    d.origin, d.class, d.direction, d.offered, d.held
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    for origin in origins {
        let (pa, pb) = (a.public_of(origin), b.public_of(origin));
        if pa != pb {
            let only_a = pa.iter().filter(|(k, v)| pb.get(*k) != Some(*v)).count();
            let only_b = pb.iter().filter(|(k, v)| pa.get(*k) != Some(*v)).count();
            let example = pa
                .iter()
                .find(|(k, v)| pb.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k:?} {} here, {:?} there", v.0, pb.get(k).map(|w| w.0)))
                .unwrap_or_default();
            problems.push(format!(
                "origin {}: {} public records on one side, {} on the other; {only_a} and \
                 {only_b} differ (e.g. {example})",
                origin.key_id(),
                pa.len(),
                pb.len()
            ));
        }
    }
    for s in [a, b] {
        if let Some((k, h)) = s
            .records
            .iter()
            .find(|(k, h)| !s.own.contains(&k.0) && h.scope != Scope::Public)
        {
            problems.push(format!(
                "a {} record of another origin is held: {k:?}",
                h.scope
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The records of `kept` (those `want` selects) that `after` no longer holds at their version
/// or a later one.
pub fn lost(kept: &Snapshot, after: &Snapshot, want: impl Fn(&Key, &Held) -> bool) -> Vec<Key> {
    kept.records
        .iter()
        .filter(|(k, h)| want(k, h))
        .filter(|(k, h)| {
            after
                .records
                .get(*k)
                .is_none_or(|now| now.version < h.version)
        })
        .map(|(k, _)| k.clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Outcomes and the table.
// ---------------------------------------------------------------------------------------------

/// What one case found.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub path: CrashPath,
    pub seed: u64,
    /// The kill delay (`None`: the calibration run, never killed).
    pub delay: Option<Duration>,
    /// Whether the kill came while the operation ran (`false`: it had finished).
    pub killed_mid_run: bool,
    /// How long the operation ran (until it finished or was killed).
    pub ran: Duration,
    pub opens: bool,
    pub lost: usize,
    pub duplicated: usize,
    pub converged: bool,
    /// Everything that went wrong, or a harness failure.
    pub errors: Vec<String>,
}

impl Outcome {
    fn new(path: CrashPath, seed: u64, delay: Option<Duration>) -> Self {
        Self {
            path,
            seed,
            delay,
            killed_mid_run: false,
            ran: Duration::ZERO,
            opens: false,
            lost: 0,
            duplicated: 0,
            converged: false,
            errors: Vec::new(),
        }
    }

    pub fn ok(&self) -> bool {
        self.opens
            && self.lost == 0
            && self.duplicated == 0
            && self.converged
            && self.errors.is_empty()
    }

    /// Inspects a home after the kill; counts what its log says is duplicated and what of
    /// `kept` (selected by `want`) is lost. `Err` if the store does not open.
    fn after_kill(
        &mut self,
        what: &str,
        t: &TestHome,
        kept: &Snapshot,
        want: impl Fn(&Key, &Held) -> bool,
    ) -> Result<Snapshot, String> {
        let s = inspect(t).map_err(|e| format!("{what} after the kill: {e}"))?;
        self.note_duplicates(what, &s);
        let gone = lost(kept, &s, want);
        if !gone.is_empty() {
            self.lost += gone.len();
            self.errors.push(format!(
                "{what}: {} acknowledged records lost, e.g. {:?}",
                gone.len(),
                gone[0]
            ));
        }
        Ok(s)
    }

    fn note_duplicates(&mut self, what: &str, s: &Snapshot) {
        if !s.duplicated.is_empty() {
            self.duplicated += s.duplicated.len();
            self.errors.push(format!(
                "{what}: {}",
                s.duplicated[..s.duplicated.len().min(3)].join("; ")
            ));
        }
    }

    /// The final check: inspects the stopped homes and compares them.
    fn converge(&mut self, pairs: &[(&str, &Snapshot, &Snapshot, BTreeSet<PublicKey>)]) {
        self.converged = true;
        for (what, a, b, origins) in pairs {
            if let Err(e) = converged(a, b, origins) {
                self.converged = false;
                self.errors.push(format!("{what} did not converge: {e}"));
            }
        }
    }
}

/// The matrix's table: one row per path with its seeds and outcomes.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut rows: BTreeMap<CrashPath, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        rows.entry(o.path).or_default().push(o);
    }
    let mut out = format!(
        "{:<11} {:>5} {:>11} {:>9} {:>5} {:>10} {:>9} {:>6}  {}\n",
        "path",
        "seeds",
        "killed mid",
        "opens",
        "lost",
        "duplicated",
        "converged",
        "failed",
        "ran (median / max ms)"
    );
    for (path, list) in rows {
        let n = list.len();
        let mut ran: Vec<u128> = list.iter().map(|o| o.ran.as_millis()).collect();
        ran.sort_unstable();
        out.push_str(&format!(
            "{:<11} {:>5} {:>11} {:>9} {:>5} {:>10} {:>9} {:>6}  {} / {}\n",
            path.name(),
            n,
            list.iter().filter(|o| o.killed_mid_run).count(),
            format!("{}/{n}", list.iter().filter(|o| o.opens).count()),
            list.iter().map(|o| o.lost).sum::<usize>(),
            list.iter().map(|o| o.duplicated).sum::<usize>(),
            format!("{}/{n}", list.iter().filter(|o| o.converged).count()),
            list.iter().filter(|o| !o.ok()).count(),
            ran.get(n / 2).copied().unwrap_or(0),
            ran.last().copied().unwrap_or(0),
        ));
    }
    out
}

/// One line about a case: seed, delay, where the kill came, and what went wrong.
pub fn describe(o: &Outcome) -> String {
    format!(
        "{} seed {}: kill after {} ms ({}), ran {} ms: {}",
        o.path.name(),
        o.seed,
        o.delay
            .map_or_else(|| "-".into(), |d| d.as_millis().to_string()),
        if o.killed_mid_run {
            "mid-run"
        } else {
            "after it finished"
        },
        o.ran.as_millis(),
        if o.ok() {
            "ok".to_string()
        } else {
            o.errors.join(" | ")
        }
    )
}

// ---------------------------------------------------------------------------------------------
// Running cases.
// ---------------------------------------------------------------------------------------------

/// The duration of an unkilled run of each path, measured once per process.
fn references() -> &'static Mutex<HashMap<CrashPath, Duration>> {
    static R: OnceLock<Mutex<HashMap<CrashPath, Duration>>> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

/// The seed of the calibration run of every path.
pub const CALIBRATION_SEED: u64 = 0;

/// Runs `path` once without a kill (seed [`CALIBRATION_SEED`]), checks it like any case and
/// keeps its duration as the path's reference. Returns that run's outcome.
pub fn calibrate(path: CrashPath) -> Outcome {
    let o = run_case(path, CALIBRATION_SEED, None);
    if let Ok(mut r) = references().lock() {
        r.insert(path, o.ran.max(Duration::from_millis(1)));
    }
    o
}

/// The kill delay of `seed` on `path`: a seeded fraction (5 %–100 %) of the path's reference
/// duration, calibrating first if needed.
pub fn kill_delay(path: CrashPath, seed: u64) -> Duration {
    let known = references().lock().ok().and_then(|r| r.get(&path).copied());
    let reference = known.unwrap_or_else(|| calibrate(path).ran.max(Duration::from_millis(1)));
    // Its own stream, so the delay does not depend on how much of the data set was drawn.
    let mut rng = Rng::new(seed ^ 0x5EED_DE1A_u64);
    reference.mul_f64(0.05 + 0.95 * rng.unit())
}

/// Runs one case: `path` with `seed`'s data set, killed after `delay` (`None`: not killed).
/// A harness failure is reported in the outcome, never a panic.
pub fn run_case(path: CrashPath, seed: u64, delay: Option<Duration>) -> Outcome {
    let outcome = Arc::new(Mutex::new(Outcome::new(path, seed, delay)));
    let shared = outcome.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut o = Outcome::new(path, seed, delay);
        let mut rng = Rng::new(seed);
        let r = match path {
            CrashPath::Pull => pull(&mut o, &mut rng),
            CrashPath::Push => push(&mut o, &mut rng),
            CrashPath::Continuous => continuous(&mut o, &mut rng),
            CrashPath::Hub => hub(&mut o, &mut rng),
            CrashPath::Import => import(&mut o, &mut rng),
            CrashPath::Export => export(&mut o, &mut rng),
            CrashPath::Adopt => adopt(&mut o, &mut rng),
            CrashPath::Prune => prune(&mut o, &mut rng),
            CrashPath::Keygen => keygen(&mut o, &mut rng),
        };
        if let Err(e) = r {
            o.errors.push(e);
        }
        if let Ok(mut slot) = shared.lock() {
            *slot = o;
        }
    }));
    let mut o = outcome
        .lock()
        .map(|o| o.clone())
        .unwrap_or_else(|_| Outcome::new(path, seed, delay));
    if let Err(panic) = result {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "a panic".into());
        o.errors.push(format!("harness: {msg}"));
    }
    o
}

/// Runs `seeds` of `path`, each killed after [`kill_delay`].
pub fn run_seeds(path: CrashPath, seeds: impl IntoIterator<Item = u64>) -> Vec<Outcome> {
    seeds
        .into_iter()
        .map(|seed| run_case(path, seed, Some(kill_delay(path, seed))))
        .collect()
}

/// How a killed (or finished) `wb` run ended.
struct Stopped {
    /// The run, if it finished before the kill.
    finished: Option<Run>,
    elapsed: Duration,
}

/// Runs `cmd` (stdout and stderr to files in `dir`) and SIGKILLs it after `kill_after`, calling
/// `before_kill` first (to kill another process at the same moment); without a delay, waits
/// for it to finish. A run longer than [`RUN_DEADLINE`] is killed and reported.
fn run_until(
    dir: &Path,
    mut cmd: Command,
    kill_after: Option<Duration>,
    before_kill: impl FnOnce(),
) -> Result<Stopped, String> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let (out_path, err_path) = (
        dir.join(format!("run-{n}.out")),
        dir.join(format!("run-{n}.err")),
    );
    let out = std::fs::File::create(&out_path)
        .map_err(|e| format!("create {}: {e}", out_path.display()))?;
    let err = std::fs::File::create(&err_path)
        .map_err(|e| format!("create {}: {e}", err_path.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("spawn wb: {e}"))?;
    let mut before_kill = Some(before_kill);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait for wb: {e}"))? {
            let elapsed = start.elapsed();
            if let Some(f) = before_kill.take()
                && kill_after.is_some()
            {
                // The other process is killed at the chosen moment all the same.
                if let Some(delay) = kill_after {
                    std::thread::sleep(delay.saturating_sub(elapsed));
                }
                f();
            }
            let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
            let run = Run {
                status,
                stdout: read(&out_path),
                stderr: read(&err_path),
            };
            return Ok(Stopped {
                finished: Some(run),
                elapsed,
            });
        }
        let elapsed = start.elapsed();
        let timed_out = elapsed > RUN_DEADLINE;
        if kill_after.is_some_and(|d| elapsed >= d) || timed_out {
            if let Some(f) = before_kill.take() {
                f();
            }
            let _ = child.kill();
            let _ = child.wait();
            if timed_out {
                return Err(format!("wb ran longer than {RUN_DEADLINE:?}: {cmd:?}"));
            }
            return Ok(Stopped {
                finished: None,
                elapsed,
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Outcome {
    /// Notes how the killed run ended: a finished run must have succeeded.
    fn ran(&mut self, stopped: &Stopped) -> Result<(), String> {
        self.ran = stopped.elapsed;
        self.killed_mid_run = self.delay.is_some() && stopped.finished.is_none();
        match &stopped.finished {
            Some(run) if !run.status.success() => {
                Err(format!("the operation failed unkilled:\n{run}"))
            }
            _ => Ok(()),
        }
    }
}

/// Runs `wb ARGS…` on `t` to completion, failing the case with what it printed if it fails.
fn must(t: &TestHome, args: &[&str]) -> Result<Run, String> {
    let run: Run = t
        .command(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run wb {args:?}: {e}"))?
        .into();
    if run.status.success() && !run.stderr.contains("panicked") {
        Ok(run)
    } else {
        Err(format!("wb {args:?} failed:\n{run}"))
    }
}

/// A seeded mix for `n` bulk user records: mostly public, some private, some public tombstones.
fn mix(rng: &mut Rng, n: usize) -> Vec<(Scope, bool)> {
    (0..n)
        .map(|_| match rng.range(0, 20) {
            0..=2 => (Scope::Private, false),
            3 => (Scope::Public, true),
            _ => (Scope::Public, false),
        })
        .collect()
}

/// A home with a seeded number (`lo..hi`) of seeded bulk records.
fn home_with(rng: &mut Rng, lo: usize, hi: usize) -> TestHome {
    let t = TestHome::initialized();
    let n = rng.range(lo, hi);
    let kinds = mix(rng, n);
    bulk_users(&t, n, |i| kinds[i]);
    t
}

fn one(key: PublicKey) -> BTreeSet<PublicKey> {
    BTreeSet::from([key])
}

/// Everything a snapshot holds.
fn all(_: &Key, _: &Held) -> bool {
    true
}

// ---------------------------------------------------------------------------------------------
// The paths.
// ---------------------------------------------------------------------------------------------

fn pull(o: &mut Outcome, rng: &mut Rng) -> Result<(), String> {
    let a = home_with(rng, 2_000, 6_000);
    let b = home_with(rng, 0, 300);
    link(&a, "a", &b, "b", false);
    let node_a = a.start_node();
    b.set_peer_addr("a", node_a.addr());
    let before = inspect(&b)?;
    let stopped = run_until(
        b.dir(),
        b.command(["--json", "sync", "now", "a", "--pull-only"]),
        o.delay,
        || {},
    )?;
    o.ran(&stopped)?;
    o.after_kill("B", &b, &before, all)?;
    o.opens = true;
    must(&b, &["--json", "sync", "now", "a", "--pull-only"])?;
    node_a.stop();
    let (sa, sb) = (inspect(&a)?, inspect(&b)?);
    o.note_duplicates("A", &sa);
    o.note_duplicates("B", &sb);
    o.converge(&[("A and B", &sa, &sb, one(sa.key))]);
    Ok(())
}

fn push(o: &mut Outcome, rng: &mut Rng) -> Result<(), String> {
    let a = home_with(rng, 2_000, 6_000);
    let b = home_with(rng, 0, 300);
    link(&a, "a", &b, "b", false);
    let (before_a, before_b) = (inspect(&a)?, inspect(&b)?);
    let node_b = b.start_node();
    let addr = node_b.addr();
    a.set_peer_addr("b", addr);
    // The receiving node is the writer: it is killed, and the push with it (it would only
    // notice at its idle timeout).
    let node_b = Mutex::new(Some(node_b));
    let stopped = run_until(
        a.dir(),
        a.command(["--json", "sync", "now", "b", "--push-only"]),
        o.delay,
        || {
            if let Some(n) = node_b.lock().ok().and_then(|mut n| n.take()) {
                n.kill();
            }
        },
    )?;
    o.ran(&stopped)?;
    let node_b = node_b.lock().ok().and_then(|mut n| n.take());
    if let Some(n) = node_b {
        n.stop();
    }
    o.after_kill("B", &b, &before_b, all)?;
    o.after_kill("A", &a, &before_a, all)?;
    o.opens = true;
    let node_b = b.start_node_with(&addr.to_string(), &[]);
    must(&a, &["--json", "sync", "now", "b", "--push-only"])?;
    node_b.stop();
    let (sa, sb) = (inspect(&a)?, inspect(&b)?);
    o.note_duplicates("A", &sa);
    o.note_duplicates("B", &sb);
    o.converge(&[("A and B", &sa, &sb, one(sa.key))]);
    Ok(())
}

/// The (origin, entity, id, version) of every public record a running node's home lists.
fn public_versions(t: &TestHome) -> Option<BTreeSet<(String, String, String, String)>> {
    let run: Run = t
        .command(["--json", "record", "list", "--deleted", "--scope", "public"])
        .stdin(Stdio::null())
        .output()
        .ok()?
        .into();
    if !run.status.success() {
        return None;
    }
    let list: Value = serde_json::from_str(&run.stdout).ok()?;
    Some(
        list.as_array()?
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (s("origin"), s("entity"), s("id"), s("version"))
            })
            .collect(),
    )
}

fn continuous(o: &mut Outcome, rng: &mut Rng) -> Result<(), String> {
    let a = home_with(rng, 1_000, 4_000);
    let b = home_with(rng, 500, 2_000);
    let kill_a = rng.coin();
    let puts = rng.range(5, 40);
    let (ka, kb) = (a.public_key(), b.public_key());
    link(&a, "a", &b, "b", false);
    let (before_a, before_b) = (inspect(&a)?, inspect(&b)?);
    let node_a = a.start_node();
    let addr_a = node_a.addr();
    b.set_peer_addr("a", addr_a);
    let start = Instant::now();
    let node_b = b.start_node();
    let addr_b = node_b.addr();
    a.set_peer_addr("b", addr_b);

    // Local writes through the running nodes (the control socket), alternating homes, while
    // they sync; each put that returned is acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(bool, String)>>> = Arc::default();
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let homes = [a.home().to_path_buf(), b.home().to_path_buf()];
        let dir = a.dir().to_path_buf();
        let bin = crate::harness::wb_bin().to_path_buf();
        std::thread::spawn(move || {
            let mut i = 0usize;
            while i < puts && !stop.load(Ordering::Relaxed) {
                let on_a = i % 2 == 0;
                let id = format!("put{i:04}");
                let ok = Command::new(&bin)
                    .current_dir(&dir)
                    .env_remove("WB_SYNC_HOME")
                    .arg("--home")
                    .arg(&homes[usize::from(!on_a)])
                    .args(["record", "put", "user", &id, "--scope", "public"])
                    .args(["--field", &format!("Username={id}")])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok && let Ok(mut acked) = acked.lock() {
                    acked.push((on_a, id));
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let wait_converged = |deadline: Duration| -> Option<Duration> {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if let (Some(x), Some(y)) = (public_versions(&a), public_versions(&b))
                && x == y
                && !x.is_empty()
            {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    };
    let (node_a, node_b) = match o.delay {
        None => {
            // The calibration run: how long the puts and the two nodes take to converge.
            let _ = writer.join();
            let took = wait_converged(CONVERGE_DEADLINE);
            o.ran = took.unwrap_or(CONVERGE_DEADLINE);
            (Some(node_a), Some(node_b))
        }
        Some(delay) => {
            std::thread::sleep(delay.saturating_sub(start.elapsed()));
            o.ran = start.elapsed();
            o.killed_mid_run = true;
            let survivors = if kill_a {
                node_a.kill();
                (None, Some(node_b))
            } else {
                node_b.kill();
                (Some(node_a), None)
            };
            stop.store(true, Ordering::Relaxed);
            let _ = writer.join();
            survivors
        }
    };
    let acked = acked.lock().map(|v| v.clone()).unwrap_or_default();
    let (node_a, node_b) = if o.delay.is_some() {
        let (victim, before, addr) = if kill_a {
            (&a, &before_a, addr_a)
        } else {
            (&b, &before_b, addr_b)
        };
        let s = o.after_kill(if kill_a { "A" } else { "B" }, victim, before, all)?;
        o.opens = true;
        let origin = if kill_a { ka } else { kb };
        check_acked(o, &s, &acked, kill_a, origin, "the killed node");
        let restarted = victim.start_node_with(&addr.to_string(), &[]);
        let (na, nb) = if kill_a {
            (Some(restarted), node_b)
        } else {
            (node_a, Some(restarted))
        };
        if wait_converged(CONVERGE_DEADLINE).is_none() {
            o.errors.push(format!(
                "the nodes did not converge within {CONVERGE_DEADLINE:?} of the restart"
            ));
        }
        (na, nb)
    } else {
        o.opens = true;
        (node_a, node_b)
    };
    for n in [node_a, node_b].into_iter().flatten() {
        n.stop();
    }
    let (sa, sb) = (inspect(&a)?, inspect(&b)?);
    o.note_duplicates("A", &sa);
    o.note_duplicates("B", &sb);
    // Every acknowledged put is on both sides.
    for (s, what) in [(&sa, "A"), (&sb, "B")] {
        check_acked(o, s, &acked, true, ka, what);
        check_acked(o, s, &acked, false, kb, what);
    }
    let origins = BTreeSet::from([sa.key, sb.key]);
    o.converge(&[("A and B", &sa, &sb, origins)]);
    Ok(())
}

/// Counts the acknowledged puts (made on A if `on_a`, else on B, whose key is `origin`) that
/// `s` lacks.
fn check_acked(
    o: &mut Outcome,
    s: &Snapshot,
    acked: &[(bool, String)],
    on_a: bool,
    origin: PublicKey,
    what: &str,
) {
    let missing: Vec<&String> = acked
        .iter()
        .filter(|(a, _)| *a == on_a)
        .map(|(_, id)| id)
        .filter(|id| {
            !s.records
                .contains_key(&(origin, "user".into(), (*id).clone()))
        })
        .collect();
    if !missing.is_empty() {
        o.lost += missing.len();
        o.errors.push(format!(
            "{what}: {} acknowledged puts missing, e.g. {}",
            missing.len(),
            missing[0]
        ));
    }
}

fn hub(o: &mut Outcome, rng: &mut Rng) -> Result<(), String> {
    let hub_home = TestHome::new();
    let a = home_with(rng, 1_500, 5_000);
    let c = home_with(rng, 0, 300);
    let kill_hub = rng.coin();
    let (ka, kc) = (a.public_key(), c.public_key());
    for (name, t) in [("a", &a), ("c", &c)] {
        must(
            &hub_home,
            &["hub", "allow", &t.public_key().to_base64(), "--name", name],
        )?;
    }
    let (hub_node, _) = hub_home.start_ready(&["hub", "run", "--listen", "127.0.0.1:0"]);
    let addr = hub_node.addr().to_string();
    a.add_hub("hub", &hub_home, &hub_node);
    c.add_hub("hub", &hub_home, &hub_node);
    let (before_a, before_c) = (inspect(&a)?, inspect(&c)?);
    let sync_hub = ["--json", "sync", "now", "hub"];
    let hub_node = if kill_hub {
        // A stores its records on the hub: the hub, the writer, is killed (and A's sync, which
        // would only notice at its idle timeout).
        let slot = Mutex::new(Some(hub_node));
        let stopped = run_until(a.dir(), a.command(sync_hub), o.delay, || {
            if let Some(n) = slot.lock().ok().and_then(|mut n| n.take()) {
                n.kill();
            }
        })?;
        o.ran(&stopped)?;
        let left = slot.lock().ok().and_then(|mut n| n.take());
        if let Some(n) = left {
            n.stop();
        }
        let s = inspect(&hub_home).map_err(|e| format!("the hub after the kill: {e}"))?;
        o.note_duplicates("the hub", &s);
        o.after_kill("A", &a, &before_a, all)?;
        hub_home.start_ready(&["hub", "run", "--listen", &addr]).0
    } else {
        // A's records reach the hub; C's sync, taking them, is killed.
        must(&a, &sync_hub)?;
        let stopped = run_until(c.dir(), c.command(sync_hub), o.delay, || {})?;
        o.ran(&stopped)?;
        o.after_kill("C", &c, &before_c, all)?;
        hub_node
    };
    o.opens = true;
    for t in [&a, &c, &a] {
        must(t, &sync_hub)?;
    }
    // The state digests A and C compared with the hub at the end of their last sync.
    for (what, t) in [("A", &a), ("C", &c)] {
        let status: Value = serde_json::from_str(&must(t, &["--json", "sync", "status"])?.stdout)
            .map_err(|e| format!("wb sync status printed no JSON ({e})"))?;
        let digests = status["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "hub")
            .map(|p| p["digests"].clone())
            .unwrap_or_default();
        if digests["state"] != "in_sync" {
            o.errors
                .push(format!("{what} is not in sync with the hub: {digests}"));
        }
    }
    hub_node.stop();
    let (sa, sc, sh) = (inspect(&a)?, inspect(&c)?, inspect(&hub_home)?);
    for (what, s) in [("A", &sa), ("C", &sc), ("the hub", &sh)] {
        o.note_duplicates(what, s);
    }
    let origins = BTreeSet::from([ka, kc]);
    o.converge(&[
        ("A and C", &sa, &sc, origins.clone()),
        ("A and the hub", &sa, &sh, origins),
    ]);
    Ok(())
}

fn import(o: &mut Outcome, rng: &mut Rng) -> Result<(), String> {
    let a = home_with(rng, 2_000, 6_000);
    let b = home_with(rng, 0, 300);
    let ka = a.public_key();
    let dir = a.dir().join("bundle").display().to_string();
    must(&a, &["sync", "export", &dir])?;
    let before = inspect(&b)?;
    let stopped = run_until(
        b.dir(),
        b.command(["--json", "sync", "import", &dir]),
        o.delay,
        || {},
    )?;
    o.ran(&stopped)?;
    let s = o.after_kill("B", &b, &before, all)?;
    o.opens = true;
    let sa = inspect(&a)?;
    // One transaction: all of the bundle or nothing.
    let (held, whole) = (s.public_of(&ka).len(), sa.public_of(&ka).len());
    if held != 0 && held != whole {
        o.errors.push(format!(
            "the killed import left {held} of the bundle's {whole} records"
        ));
    }
    must(&b, &["--json", "sync", "import", &dir])?;
    let sb = inspect(&b)?;
    o.note_duplicates("A", &sa);
    o.note_duplicates("B", &sb);
    o.converge(&[("A and B", &sa, &sb, one(ka))]);
    Ok(())
}

fn export(o: &mut Outcome, rng: &mut Rng) -> Result<(), String> {
    let a = home_with(rng, 2_000, 6_000);
    // Ids beyond the data set make new records.
    let n = 6_000;
    let b = TestHome::initialized();
    let ka = a.public_key();
    let dir = a.dir().join("bundle").display().to_string();
    // What A held when it wrote the folder's previous bundle, if it did: a kill before the
    // export touches the folder leaves that bundle whole, and B may import it.
    let mut earlier = None;
    if rng.coin() {
        // Over a previous export, after changes: the export replaces and deletes files.
        must(&a, &["sync", "export", &dir])?;
        earlier = Some(inspect(&a)?);
        let (key, store) = store::Home::new(a.home())
            .open()
            .map_err(|e| format!("open A: {e}"))?;
        for _ in 0..rng.range(10, 300) {
            let id = format!("u{:05}", rng.range(0, n + 100));
            let scope = if rng.range(0, 10) == 0 {
                Scope::Private
            } else {
                Scope::Public
            };
            crate::harness::store_put_user(&store, &key, &id, scope);
        }
    }
    let before = inspect(&a)?;
    let stopped = run_until(
        a.dir(),
        a.command(["--json", "sync", "export", &dir]),
        o.delay,
        || {},
    )?;
    o.ran(&stopped)?;
    o.after_kill("A", &a, &before, all)?;
    o.opens = true;
    if stopped.finished.is_none() {
        // What the killed export left is a whole bundle or refused, leaving B as it was.
        let before_b = inspect(&b)?;
        let run = b.run(["--json", "sync", "import", &dir]);
        let after_b = inspect(&b)?;
        if !run.status.success() && after_b.records != before_b.records {
            o.errors
                .push("a refused import of the killed export's folder changed B".into());
        }
        let held =
            |s: &Snapshot, k: &Key, h: &Held| s.records.get(k).is_some_and(|x| x.hash == h.hash);
        if run.status.success()
            && after_b.of_origin(&ka).any(|(k, h)| {
                !held(&before, k, h) && !earlier.as_ref().is_some_and(|e| held(e, k, h))
            })
        {
            o.errors.push(
                "B imported records from the killed export's folder that A never held".into(),
            );
        }
    }
    must(&a, &["--json", "sync", "export", &dir])?;
    must(&b, &["--json", "sync", "import", &dir])?;
    let (sa, sb) = (inspect(&a)?, inspect(&b)?);
    o.note_duplicates("A", &sa);
    o.note_duplicates("B", &sb);
    o.converge(&[("A and B", &sa, &sb, one(ka))]);
    Ok(())
}

/// The content of a home's own records, by key.
fn own_content(s: &Snapshot) -> BTreeMap<Key, [u8; 32]> {
    s.records
        .iter()
        .filter(|(k, _)| s.own.contains(&k.0))
        .map(|(k, h)| (k.clone(), h.content))
        .collect()
}

fn adopt(o: &mut Outcome, rng: &mut Rng) -> Result<(), String> {
    let a = TestHome::new();
    must(&a, &["init", "--name", "alpha"])?;
    let app = App::seeded(&a, "https://alpha.example");
    let (users, requests) = (rng.range(200, 1_200), rng.range(100, 800));
    let private_every = rng.range(2, 6);
    app.exec(
        &format!(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {users}) \
             INSERT INTO users (id, username, is_admin, contact_email, created_at, sync_scope) \
             SELECT 100 + i, 'user' || i, 0, NULL, '2025-11-03T14:05:09', CASE WHEN i % \
             {private_every} = 0 THEN 'private' ELSE 'public' END FROM c"
        ),
        &[],
    );
    app.exec(
        &format!(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < \
             {requests}) INSERT INTO help_requests (id, title, description, status, \
             created_by_user_id, created_at, updated_at, sync_scope) SELECT 100 + i, \
             'Request ' || i, 'Needs ' || i, 'open', 101 + (i % {users}), \
             '2025-11-04T10:00:00', '2025-11-04T10:00:00', CASE WHEN i % {private_every} = 1 \
             THEN 'private' ELSE 'public' END FROM c"
        ),
        &[],
    );
    if rng.coin() {
        // An earlier snapshot adopted first; then edits and deletions in the app, so the
        // killed adoption updates and deletes too.
        app.export();
        must(&a, &["--json", "app", "import"])?;
        let every = rng.range(2, 5);
        app.exec(
            &format!(
                "UPDATE help_requests SET title = title || ' (edited)' WHERE id % {every} = 0"
            ),
            &[],
        );
        app.exec(
            "DELETE FROM help_requests WHERE id > 100 AND id % 7 = 0",
            &[],
        );
    }
    app.export();
    // The twin: the same home, app and snapshot, adopted without a kill.
    let twin = TestHome::new();
    copy_tree(a.dir(), twin.dir());
    must(&twin, &["--json", "app", "import"])?;
    let want = own_content(&inspect(&twin)?);
    let before = inspect(&a)?;
    let stopped = run_until(
        a.dir(),
        a.command(["--json", "app", "import"]),
        o.delay,
        || {},
    )?;
    o.ran(&stopped)?;
    let s = o.after_kill("A", &a, &before, all)?;
    o.opens = true;
    // One transaction: the snapshot is adopted whole or not at all.
    let now = own_content(&s);
    if now != own_content(&before) && now != want {
        o.errors
            .push("the killed adoption left part of the snapshot adopted".into());
    }
    must(&a, &["--json", "app", "import"])?;
    let sa = inspect(&a)?;
    o.note_duplicates("A", &sa);
    o.converged = own_content(&sa) == want;
    if !o.converged {
        o.errors
            .push("A's records after the re-run differ from the unkilled adoption's".into());
    }
    Ok(())
}

fn prune(o: &mut Outcome, rng: &mut Rng) -> Result<(), String> {
    let a = home_with(rng, 2_000, 6_000);
    let b = home_with(rng, 0, 300);
    let ka = a.public_key();
    link(&a, "a", &b, "b", false);
    let node_a = a.start_node();
    b.set_peer_addr("a", node_a.addr());
    must(&b, &["--json", "sync", "now", "a", "--pull-only"])?;
    let before = inspect(&b)?;
    let stopped = run_until(
        b.dir(),
        b.command(["--json", "sync", "prune", "--peer", "a", "--yes"]),
        o.delay,
        || {},
    )?;
    o.ran(&stopped)?;
    let s = o.after_kill("B", &b, &before, |k, _| k.0 != ka)?;
    o.opens = true;
    // One transaction: all of A's records or none.
    let (held, whole) = (s.of_origin(&ka).count(), before.of_origin(&ka).count());
    if held != 0 && held != whole {
        o.errors.push(format!(
            "the killed prune left {held} of A's {whole} records"
        ));
    }
    must(&b, &["--json", "sync", "prune", "--peer", "a", "--yes"])?;
    if inspect(&b)?.of_origin(&ka).next().is_some() {
        o.errors.push("the re-run prune left records of A".into());
    }
    must(&b, &["--json", "sync", "now", "a", "--pull-only"])?;
    node_a.stop();
    let (sa, sb) = (inspect(&a)?, inspect(&b)?);
    o.note_duplicates("A", &sa);
    o.note_duplicates("B", &sb);
    o.converge(&[("A and B", &sa, &sb, one(ka))]);
    Ok(())
}

fn keygen(o: &mut Outcome, rng: &mut Rng) -> Result<(), String> {
    let a = home_with(rng, 1_000, 4_000);
    let b = home_with(rng, 0, 300);
    link(&a, "a", &b, "b", false);
    let node_a = a.start_node();
    let addr = node_a.addr().to_string();
    b.set_peer_addr("a", node_a.addr());
    must(&b, &["--json", "sync", "now", "a", "--pull-only"])?;
    node_a.stop();
    let before = inspect(&a)?;
    let old = before.key;
    let keygen = ["--json", "sync", "keygen", "--force", "--yes"];
    let stopped = run_until(a.dir(), a.command(keygen), o.delay, || {})?;
    o.ran(&stopped)?;
    // The next command settles an interrupted replacement: the key files name the store's key.
    let id: Value = serde_json::from_str(&must(&a, &["--json", "id"])?.stdout)
        .map_err(|e| format!("wb id printed no JSON: {e}"))?;
    let s = o.after_kill("A", &a, &before, all)?;
    o.opens = true;
    let on_disk = std::fs::read_to_string(a.path("keys/id_ed25519.pub")).unwrap_or_default();
    if id["public_key"].as_str() != Some(on_disk.trim_end())
        || a.public_key() != s.key
        || a.path("keys/id_ed25519.next").exists()
    {
        o.errors.push(format!(
            "the key files and the store disagree after the kill: wb id {}, file {on_disk:?}",
            id["public_key"]
        ));
    }
    // Every live record of the old key is live, with the same content, under the store's key.
    let moved: Vec<&Key> = before
        .of_origin(&old)
        .filter(|(_, h)| !h.deleted)
        .filter(|(k, h)| {
            s.records
                .get(&(s.key, k.1.clone(), k.2.clone()))
                .is_none_or(|now| now.deleted || now.content != h.content)
        })
        .map(|(k, _)| k)
        .collect();
    if !moved.is_empty() {
        o.lost += moved.len();
        o.errors.push(format!(
            "{} live records are not live under the store's key, e.g. {:?}",
            moved.len(),
            moved[0]
        ));
    }
    must(&a, &keygen)?;
    let node_a = a.start_node_with(&addr, &[]);
    must(
        &b,
        &[
            "sync",
            "peers",
            "add",
            "a2",
            "--key",
            &a.public_key().to_hex(),
            "--addr",
            &addr,
        ],
    )?;
    must(&b, &["--json", "sync", "now", "a2", "--pull-only"])?;
    node_a.stop();
    let (sa, sb) = (inspect(&a)?, inspect(&b)?);
    o.note_duplicates("A", &sa);
    o.note_duplicates("B", &sb);
    let origins = sa.own.clone();
    o.converge(&[("A and B", &sa, &sb, origins)]);
    Ok(())
}
