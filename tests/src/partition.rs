//! Partitions (issue 12, item 5): five in-process instances under random edits and random link
//! cuts, then healed; every instance must end up holding what it may see of every origin, the
//! same everywhere, and never anything it may not see.
//!
//! A run is driven by one seed ([`run`]): the trust between the instances, every edit (record
//! puts, scope changes between private / trusted / public, deletes), the conflicting versions of
//! an outside origin handed to different instances, which links are cut and which nodes are
//! stopped in each round, and how long each round lasts all come from it, so a failing seed
//! replays the same schedule (the network's timing is the machine's). Links are cut in the
//! registries (`wb_peers.txt`): a cut link has no address on either side, so continuous sync
//! stops its workers, aborting any session in flight, and nobody dials it; a stopped node is
//! shut down mid-whatever (its store stays open and takes local edits, as `wb record put`
//! does without a node) and restarted on the same address.
//!
//! The convergence oracle is [`check`], over [`holdings`] of each store: per origin and scope
//! class, the (key, version, content hash) held, each instance against the origin's own
//! records. Once it finds convergence, the state digests of every pair must agree too
//! (`Store::digests`, [`digest_differences`], compared as a session compares them): a run
//! converges only when both verdicts hold. (Before digests counted live records only, they
//! differed after rescopes although the records had converged: a record narrowed from public
//! to trusted reaches its origin's trusted peers as the trusted version and the others as the
//! public withdrawal, and the withdrawal counted in one public digest only.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use protocol::{Entity, PublicKey, Record, Scope, SecretKey, Version};

use crate::harness::InProcess;

/// A small deterministic generator (SplitMix64): the whole schedule of a run comes from it.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// An index into a slice of `len` elements.
    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The size of a run.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub instances: usize,
    /// Rounds of edits and cuts before the heal.
    pub rounds: usize,
    /// User ids per origin (`u0`…): few, so edits hit the same records again.
    pub keys: usize,
    /// Edits per round: 1 to this many.
    pub edits_max: u64,
    /// How long each round lets the network run: up to this many milliseconds (at least 50).
    pub round_ms_max: u64,
    /// How long the healed network may take to converge before the run fails.
    pub heal_deadline: Duration,
}

impl Plan {
    /// The CI run: a few seconds per seed.
    pub const SHORT: Plan = Plan {
        instances: 5,
        rounds: 6,
        keys: 6,
        edits_max: 8,
        round_ms_max: 400,
        heal_deadline: Duration::from_secs(60),
    };

    /// The long mode's run of one seed: more rounds and edits.
    pub const LONG: Plan = Plan {
        instances: 5,
        rounds: 16,
        keys: 8,
        edits_max: 12,
        round_ms_max: 600,
        heal_deadline: Duration::from_secs(90),
    };
}

/// What one run did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub seed: u64,
    pub edits: u64,
    /// Puts, scope changes and deletes among the edits.
    pub puts: u64,
    pub rescopes: u64,
    pub deletes: u64,
    /// Versions of the outside origin handed to one instance, and how many of them share their
    /// version with a different content handed to another (conflicts by construction).
    pub injected: u64,
    pub conflicting: u64,
    /// Links cut and node stops over all rounds.
    pub cuts: u64,
    pub stops: u64,
    /// Conflicts the stores logged (same version, different content), summed over instances.
    pub conflicts_logged: u64,
    /// From the heal to convergence.
    pub converge_ms: u128,
    /// Records held at the end, summed over instances (tombstones included).
    pub records: u64,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: converged in {} ms after {} edits ({} puts, {} rescopes, {} deletes), \
             {} outside versions ({} conflicting; {} conflicts logged), {} link cuts, \
             {} node stops, {} records held; state digests: every pair equal",
            self.seed,
            self.converge_ms,
            self.edits,
            self.puts,
            self.rescopes,
            self.deletes,
            self.injected,
            self.conflicting,
            self.conflicts_logged,
            self.cuts,
            self.stops,
            self.records,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle.
// ---------------------------------------------------------------------------------------------

/// How a held version counts for the oracle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Public,
    Trusted,
    Private,
}

impl From<Scope> for Class {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Public => Class::Public,
            Scope::Trusted => Class::Trusted,
            Scope::Private => Class::Private,
        }
    }
}

/// One held version: what the comparison looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub version: Version,
    pub hash: [u8; 32],
    /// A tombstone (deleted, without content).
    pub deleted: bool,
    pub class: Class,
}

/// (entity, id) of a record of a known origin.
pub type Key = (String, String);

/// What one store holds: per origin, per key, the version held.
pub type Holdings = BTreeMap<PublicKey, BTreeMap<Key, Held>>;

/// What `store` holds, by origin and key. The one place the oracle reads a store (switch to
/// `Store::digests` here once it exists).
pub fn holdings(store: &store::Store) -> Result<Holdings, String> {
    let records = store
        .list(&store::ListFilter {
            include_deleted: true,
            ..store::ListFilter::default()
        })
        .map_err(|e| format!("list the store {}: {e}", store.path().display()))?;
    let mut out = Holdings::new();
    for r in records {
        out.entry(r.origin).or_default().insert(
            (r.entity.to_string(), r.id.clone()),
            Held {
                version: r.version,
                hash: r.content_hash(),
                deleted: r.deleted,
                class: r.effective_scope().into(),
            },
        );
    }
    Ok(out)
}

/// One instance as the oracle sees it.
#[derive(Clone, Debug)]
pub struct Instance {
    pub name: String,
    pub key: PublicKey,
    /// The keys its registry marks trusted.
    pub trusts: BTreeSet<PublicKey>,
    pub holds: Holdings,
    /// Its state digests (`Store::digests`): what the verdict compares, pair by pair.
    pub digests: store::StoreDigests,
}

fn short(key: &PublicKey) -> String {
    key.key_id()
}

/// Privacy, which must hold at every moment, partitions or not: no instance holds another
/// origin's private record (even a tombstone), nor a live trusted record of an origin that does
/// not trust it. Returns what is wrong.
pub fn check_privacy(instances: &[Instance]) -> Vec<String> {
    let mut problems = Vec::new();
    for n in instances {
        for (origin, records) in &n.holds {
            if *origin == n.key {
                continue;
            }
            let trusted_by_origin = instances
                .iter()
                .find(|o| o.key == *origin)
                .is_some_and(|o| o.trusts.contains(&n.key));
            for ((entity, id), held) in records {
                let wrong = match held.class {
                    Class::Private => Some("a private record"),
                    Class::Trusted if !held.deleted && !trusted_by_origin => {
                        Some("a live trusted record of an origin that does not trust it")
                    }
                    _ => None,
                };
                if let Some(what) = wrong {
                    problems.push(format!(
                        "{} holds {what}: {entity} {id} of {} at {}",
                        n.name,
                        short(origin),
                        held.version
                    ));
                }
            }
        }
    }
    problems
}

/// May `n` see `held`, a version of `origin`'s record (`origin_trusts_n`: `origin`'s registry
/// marks `n` trusted)?
fn visible(held: &Held, origin_trusts_n: bool) -> bool {
    match held.class {
        Class::Public => true,
        Class::Trusted => origin_trusts_n,
        Class::Private => false,
    }
}

/// The state digests' verdict (issue 12): for every pair of instances, the differences the
/// two would find comparing their digests as a session does (`store::digest::between`, with
/// the trust each has in the other). Empty when every pair agrees.
pub fn digest_differences(instances: &[Instance]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, a) in instances.iter().enumerate() {
        for b in &instances[i + 1..] {
            let compared = store::digest::between(
                &a.digests,
                &a.key,
                a.trusts.contains(&b.key),
                &b.digests,
                &b.key,
                b.trusts.contains(&a.key),
            );
            if compared.differences_total > 0 {
                out.push(format!(
                    "{} and {}: {} digest rows differ, e.g. {:?}",
                    a.name,
                    b.name,
                    compared.differences_total,
                    compared.differences.first()
                ));
            }
        }
    }
    out
}

/// Convergence after the heal, plus [`check_privacy`]. For each origin, the truth is the
/// origin's own store (or, for an origin that runs no instance, `outside`: its latest version
/// per key, a tie going to the larger content hash). Each other instance must hold exactly the
/// versions it may see (public ones, trusted ones if the origin trusts it), and of the rest
/// nothing or a tombstone without content; nothing of keys the origin never wrote. Returns what
/// is wrong, empty when converged.
pub fn check(
    instances: &[Instance],
    outside: &BTreeMap<PublicKey, BTreeMap<Key, Held>>,
) -> Vec<String> {
    let mut problems = check_privacy(instances);
    let mut truths: Vec<(PublicKey, Option<&Instance>, BTreeMap<Key, Held>)> = Vec::new();
    for o in instances {
        truths.push((
            o.key,
            Some(o),
            o.holds.get(&o.key).cloned().unwrap_or_default(),
        ));
    }
    for (origin, records) in outside {
        truths.push((*origin, None, records.clone()));
    }
    for (origin, origin_instance, truth) in &truths {
        for n in instances.iter().filter(|n| n.key != *origin) {
            // An outside origin trusts nobody.
            let trusted = origin_instance.is_some_and(|o| o.trusts.contains(&n.key));
            let empty = BTreeMap::new();
            let held = n.holds.get(origin).unwrap_or(&empty);
            for (key, want) in truth {
                let got = held.get(key);
                if visible(want, trusted) {
                    if got.map(|g| (g.version, g.hash)) != Some((want.version, want.hash)) {
                        problems.push(format!(
                            "{} holds {} {} of {} at {}, the origin has {} ({:?}{})",
                            n.name,
                            key.0,
                            key.1,
                            short(origin),
                            got.map_or("nothing".to_string(), |g| format!(
                                "{} ({:?}{})",
                                g.version,
                                g.class,
                                if g.deleted { ", deleted" } else { "" }
                            )),
                            want.version,
                            want.class,
                            if want.deleted { ", deleted" } else { "" }
                        ));
                    }
                } else if let Some(g) = got.filter(|g| !g.deleted) {
                    problems.push(format!(
                        "{} holds a stale live copy of {} {} of {} at {} ({:?}); the origin's \
                         {} ({:?}) is not for it",
                        n.name,
                        key.0,
                        key.1,
                        short(origin),
                        g.version,
                        g.class,
                        want.version,
                        want.class
                    ));
                }
            }
            for key in held.keys().filter(|k| !truth.contains_key(*k)) {
                problems.push(format!(
                    "{} holds {} {} of {}, which the origin never wrote",
                    n.name,
                    key.0,
                    key.1,
                    short(origin)
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------------

/// Continuous sync as the runs use it: quick reactions and retries, a short interval so a
/// healed link is tried again soon even without a change.
fn continuous_config() -> node::continuous::ContinuousConfig {
    node::continuous::ContinuousConfig {
        interval: Duration::from_secs(2),
        debounce: Duration::from_millis(50),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(800),
        max_sessions: 4,
        rescan: Duration::from_millis(100),
    }
}

/// Sessions give up on a silent peer (a stopped node) after this long, not 30 s.
fn deadlines() -> node::session::Deadlines {
    node::session::Deadlines::per_message(Duration::from_secs(5))
}

struct Net {
    nodes: Vec<InProcess>,
    addrs: Vec<SocketAddr>,
    /// `trusts[i][j]`: instance i's registry marks j trusted.
    trusts: Vec<Vec<bool>>,
    /// Links up now, by (i, j) with i < j.
    up: BTreeSet<(usize, usize)>,
}

fn name(i: usize) -> String {
    format!("n{i}")
}

impl Net {
    async fn start(plan: &Plan, rng: &mut Rng) -> Self {
        let mut nodes = Vec::with_capacity(plan.instances);
        for i in 0..plan.instances {
            nodes.push(
                InProcess::start_with(&name(i), "127.0.0.1:0".parse().expect("addr"), deadlines())
                    .await,
            );
        }
        let addrs: Vec<SocketAddr> = nodes.iter().map(InProcess::addr).collect();
        let trusts: Vec<Vec<bool>> = (0..plan.instances)
            .map(|i| {
                (0..plan.instances)
                    .map(|j| i != j && rng.chance(50))
                    .collect()
            })
            .collect();
        let mut up = BTreeSet::new();
        for i in 0..plan.instances {
            for j in 0..plan.instances {
                if i != j {
                    nodes[i].add_peer(&name(j), nodes[j].public(), &[addrs[j]], trusts[i][j]);
                }
                if i < j {
                    up.insert((i, j));
                }
            }
        }
        for n in &mut nodes {
            n.running().start_continuous(continuous_config()).await;
        }
        Self {
            nodes,
            addrs,
            trusts,
            up,
        }
    }

    /// Brings the links in `up` up and cuts the others, in both registries of each link.
    fn set_links(&mut self, up: BTreeSet<(usize, usize)>) -> u64 {
        let mut cut = 0;
        let n = self.nodes.len();
        for i in 0..n {
            for j in (i + 1)..n {
                let want = up.contains(&(i, j));
                if want == self.up.contains(&(i, j)) {
                    continue;
                }
                if !want {
                    cut += 1;
                }
                for (a, b) in [(i, j), (j, i)] {
                    let addr = self.addrs[b];
                    store::update_peer(&self.nodes[a].home, &name(b), |p| {
                        p.addrs = if want { vec![addr.to_string()] } else { vec![] };
                    })
                    .unwrap_or_else(|e| panic!("edit the registry of {}: {e}", name(a)));
                }
            }
        }
        self.up = up;
        cut
    }

    async fn stop(&mut self, i: usize) {
        self.nodes[i].shutdown().await;
    }

    async fn restart(&mut self, i: usize) {
        let addr = self.addrs[i];
        let node = &mut self.nodes[i];
        node.run_with(addr, deadlines()).await;
        node.running().start_continuous(continuous_config()).await;
    }

    fn changed(&self, i: usize) {
        if let Some(node) = &self.nodes[i].node {
            node.handle().local_changed();
        }
    }

    fn instances(&self) -> Result<Vec<Instance>, String> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Ok(Instance {
                    name: name(i),
                    key: n.public(),
                    trusts: (0..self.nodes.len())
                        .filter(|&j| self.trusts[i][j])
                        .map(|j| self.nodes[j].public())
                        .collect(),
                    holds: holdings(&n.store)?,
                    digests: n
                        .store
                        .digests()
                        .map_err(|e| format!("read the state digests: {e}"))?,
                })
            })
            .collect()
    }
}

fn random_scope(rng: &mut Rng) -> Scope {
    match rng.below(4) {
        0 => Scope::Private,
        1 => Scope::Trusted,
        _ => Scope::Public,
    }
}

/// One local edit of instance `node` on user `id`: a put (new content, random scope), a scope
/// change of a live record, or a delete of a live record. Returns which it did, if any.
fn edit(node: &InProcess, id: &str, rng: &mut Rng) -> Option<&'static str> {
    let roll = rng.below(100);
    let scope = random_scope(rng);
    let bio = format!("bio {}", rng.below(1_000_000));
    let mut did = None;
    node.store
        .update_local::<store::StoreError>(
            &node.key,
            Entity::User,
            id,
            store::time::now_ms(),
            |current| {
                let live = current.filter(|r| !r.deleted);
                let fields =
                    |bio: String| vec![("Username".into(), id.to_string()), ("Bio".into(), bio)];
                let draft = match (roll, live) {
                    (0..45, _) | (_, None) => {
                        did = Some("put");
                        store::Draft {
                            scope,
                            deleted: false,
                            fields: fields(bio),
                            body: String::new(),
                        }
                    }
                    (45..75, Some(r)) => {
                        did = Some("rescope");
                        let mut d = store::Draft::from_record(r);
                        d.scope = if scope == r.scope {
                            match scope {
                                Scope::Private => Scope::Public,
                                Scope::Trusted => Scope::Private,
                                Scope::Public => Scope::Trusted,
                            }
                        } else {
                            scope
                        };
                        d
                    }
                    (_, Some(r)) => {
                        did = Some("delete");
                        store::Draft {
                            scope: r.scope,
                            deleted: true,
                            fields: vec![],
                            body: String::new(),
                        }
                    }
                };
                Ok(draft)
            },
        )
        .unwrap_or_else(|e| panic!("local edit of {id}: {e}"));
    did
}

/// An origin that runs no instance (an instance seen only through its relayed public records):
/// its versions are handed to single instances, some at a version another instance got with a
/// different content, as a restored instance re-signing could produce. Every instance must end
/// with the same winner.
struct Outside {
    key: SecretKey,
    /// Every version handed out, per id: (version, record).
    handed: BTreeMap<String, Vec<Record>>,
    counter: u32,
}

impl Outside {
    fn new(rng: &mut Rng) -> Self {
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        Self {
            key: SecretKey::from_bytes(&seed),
            handed: BTreeMap::new(),
            counter: 0,
        }
    }

    /// A new version of a random id, or (half the time, when there is one) a different content
    /// at a version already handed out. Returns the record and whether it conflicts.
    fn next(&mut self, keys: usize, rng: &mut Rng) -> (Record, bool) {
        let id = format!("x{}", rng.below(keys as u64));
        let earlier = self
            .handed
            .get(&id)
            .and_then(|v| v.last())
            .map(|r| r.version);
        let (version, conflicting) = match earlier {
            Some(v) if rng.chance(50) => (v, true),
            _ => {
                self.counter += 1;
                (Version::new(store::time::now_ms(), self.counter), false)
            }
        };
        let mut r = Record {
            origin: self.key.public(),
            entity: Entity::User,
            id: id.clone(),
            version,
            scope: Scope::Public,
            deleted: false,
            fields: vec![
                ("Username".into(), id.clone()),
                ("Bio".into(), format!("outside {}", rng.below(1_000_000))),
            ],
            body: String::new(),
            signature: None,
        };
        r.sign(&self.key).expect("sign an outside record");
        self.handed.entry(id).or_default().push(r.clone());
        (r, conflicting)
    }

    /// The winner per id: the latest version, a tie going to the larger content hash.
    fn truth(&self) -> BTreeMap<PublicKey, BTreeMap<Key, Held>> {
        let mut records = BTreeMap::new();
        for (id, versions) in &self.handed {
            if let Some(best) = versions
                .iter()
                .max_by_key(|r| (r.version, r.content_hash()))
            {
                records.insert(
                    (Entity::User.to_string(), id.clone()),
                    Held {
                        version: best.version,
                        hash: best.content_hash(),
                        deleted: false,
                        class: Class::Public,
                    },
                );
            }
        }
        let mut out = BTreeMap::new();
        if !records.is_empty() {
            out.insert(self.key.public(), records);
        }
        out
    }
}

/// One seeded run: start the instances, `plan.rounds` rounds of edits and cuts (privacy checked
/// after each), heal, wait for convergence. `Err` says what did not converge or leaked, with
/// the seed.
pub async fn run(seed: u64, plan: &Plan) -> Result<Outcome, String> {
    let mut rng = Rng::new(seed);
    let mut out = Outcome {
        seed,
        ..Outcome::default()
    };
    let mut net = Net::start(plan, &mut rng).await;
    let mut outside = Outside::new(&mut rng);
    let mut stopped: Option<usize> = None;
    let n = plan.instances;
    let fail = |what: String| format!("seed {seed}: {what}");

    for round in 0..plan.rounds {
        // Links: a random split into up to three groups, plus single links cut at random.
        let group_count = 1 + rng.below(3);
        let groups: Vec<u64> = (0..n).map(|_| rng.below(group_count)).collect();
        let mut up = BTreeSet::new();
        for i in 0..n {
            for j in (i + 1)..n {
                if groups[i] == groups[j] && !rng.chance(20) {
                    up.insert((i, j));
                }
            }
        }
        out.cuts += net.set_links(up);
        // Nodes: the stopped one comes back; another may stop.
        if let Some(i) = stopped.take() {
            net.restart(i).await;
        }
        if rng.chance(40) {
            let i = rng.index(n);
            net.stop(i).await;
            stopped = Some(i);
            out.stops += 1;
        }
        // Edits, on running and stopped instances alike.
        for _ in 0..=rng.below(plan.edits_max) {
            let i = rng.index(n);
            if rng.chance(12) {
                let (record, conflicting) = outside.next(plan.keys, &mut rng);
                let report = net.nodes[i]
                    .store
                    .apply_batch(
                        &[record],
                        &store::ApplyOptions::new("partition test", store::time::now_ms()),
                    )
                    .map_err(|e| fail(format!("hand an outside record to {}: {e}", name(i))))?;
                if report.rejected > 0 {
                    return Err(fail(format!(
                        "{} rejected an outside record: {report:?}",
                        name(i)
                    )));
                }
                out.injected += 1;
                out.conflicting += u64::from(conflicting);
            } else {
                let id = format!("u{}", rng.below(plan.keys as u64));
                match edit(&net.nodes[i], &id, &mut rng) {
                    Some("put") => out.puts += 1,
                    Some("rescope") => out.rescopes += 1,
                    Some(_) => out.deletes += 1,
                    None => {}
                }
            }
            out.edits += 1;
            net.changed(i);
        }
        tokio::time::sleep(Duration::from_millis(50 + rng.below(plan.round_ms_max))).await;
        let problems = check_privacy(&net.instances().map_err(fail)?);
        if !problems.is_empty() {
            return Err(fail(format!(
                "after round {round}: {}",
                problems.join("\n  ")
            )));
        }
    }

    // Heal: every node up, every link up, then wait for the oracle.
    if let Some(i) = stopped.take() {
        net.restart(i).await;
    }
    let all: BTreeSet<(usize, usize)> = (0..n)
        .flat_map(|i| ((i + 1)..n).map(move |j| (i, j)))
        .collect();
    net.set_links(all);
    for i in 0..n {
        net.changed(i);
    }
    let healed = std::time::Instant::now();
    let truth = outside.truth();
    let mut problems;
    loop {
        let instances = net.instances().map_err(fail)?;
        problems = check(&instances, &truth);
        if problems.is_empty() {
            // The records converged: the state digests of every pair must agree too.
            problems = digest_differences(&instances)
                .into_iter()
                .map(|d| format!("state digests: {d}"))
                .collect();
        }
        if problems.is_empty() {
            out.records = instances
                .iter()
                .map(|i| i.holds.values().map(|r| r.len() as u64).sum::<u64>())
                .sum();
            break;
        }
        if healed.elapsed() > plan.heal_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out.converge_ms = healed.elapsed().as_millis();
    for node in &net.nodes {
        out.conflicts_logged += node
            .store
            .conflicts()
            .map_err(|e| fail(format!("read the conflict log: {e}")))?
            .len() as u64;
    }
    for node in &mut net.nodes {
        node.shutdown().await;
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        let total = problems.len();
        problems.truncate(40);
        Err(fail(format!(
            "not converged {:?} after the heal ({total} problems):\n  {}",
            plan.heal_deadline,
            problems.join("\n  ")
        )))
    }
}

/// The seeds to run: `WB_TEST_PARTITION_SEEDS` (`7`, `1,5,9` or `100-199`) if set, else
/// `default`.
pub fn seeds_from_env(default: &[u64]) -> Result<Vec<u64>, String> {
    let Ok(text) = std::env::var("WB_TEST_PARTITION_SEEDS") else {
        return Ok(default.to_vec());
    };
    let bad =
        |part: &str| format!("WB_TEST_PARTITION_SEEDS: {part:?} is not a seed or a range A-B");
    let mut seeds = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u64 = a.trim().parse().map_err(|_| bad(part))?;
                let b: u64 = b.trim().parse().map_err(|_| bad(part))?;
                if b < a || b - a > 100_000 {
                    return Err(bad(part));
                }
                seeds.extend(a..=b);
            }
            None => seeds.push(part.parse().map_err(|_| bad(part))?),
        }
    }
    Ok(seeds)
}
