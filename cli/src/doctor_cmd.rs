//! `wb doctor`: checks a home and its peers and says how to fix what is wrong. It reads and
//! dials only: the key files are read without settling an interrupted key replacement, the
//! store is opened read-only (or, with a node running, the node's own handle is used: the
//! command runs inside the node, like any other), and peers are probed with a `Hello` and a
//! `Bye` (`node::probe`). Exit status 1 when any check finds a problem.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use node::discovery::Discovery;
use protocol::SecretKey;
use protocol::wire::Role;
use serde_json::{Value, json};
use store::{Home, Peer, Store, StoreError};

use crate::args::DoctorArgs;
use crate::render::Output;

/// A clock further off than this from a peer's is a problem (peers refuse versions dated more
/// than 10 minutes ahead; well before that, "last sync" ages and logs stop making sense).
const CLOCK_OFFSET_MAX_MS: u64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Ok,
    Problem,
    /// Not applicable here (no hubs, no app folder, a peer that does not send its clock).
    Skipped,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Problem => "problem",
            Status::Skipped => "skipped",
        }
    }
}

/// One finding: what was checked (and of which peer), what was found, how to fix it.
#[derive(Debug)]
struct Check {
    check: &'static str,
    subject: Option<String>,
    status: Status,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            subject: None,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn skipped(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status: Status::Skipped,
            ..Self::ok(check, detail)
        }
    }

    fn problem(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status: Status::Problem,
            fix: Some(fix.into()),
            ..Self::ok(check, detail)
        }
    }

    fn about(mut self, subject: &str) -> Self {
        self.subject = Some(subject.to_string());
        self
    }
}

/// What the checks share: the key and store when they could be read.
struct Context {
    key: Option<SecretKey>,
    /// `None` when it cannot be opened (reported by the store check).
    store: Option<Arc<Store>>,
    /// Set when this runs inside the home's running node (a control-socket client's command).
    node: Option<node::node::NodeHandle>,
}

pub fn doctor(home: &Home, args: &DoctorArgs) -> Result<Output> {
    let node = crate::running::get();
    // How peers without an address are looked up: the flag, else the running node's, else the
    // settings (WB_DISCOVERY, wb.toml). A bad flag is an error before anything is checked.
    let discovery = match (&args.discovery, &node) {
        (Some(flag), _) => flag
            .parse::<Discovery>()
            .map_err(|e| anyhow::anyhow!("--discovery {flag:?}: {e}"))?,
        (None, Some(node)) => node.discovery().clone(),
        (None, None) => crate::config::discovery(home, None).unwrap_or_default(),
    };
    let mut checks = Vec::new();
    let key = check_keys(home, node.as_ref(), &mut checks);
    let store = check_store(home, key.as_ref(), node.as_ref(), &mut checks);
    let cx = Context { key, store, node };
    check_peers(home, &cx, args, &discovery, &mut checks);
    check_discovery(&cx, args, &discovery, &mut checks);
    check_app(&cx, args, &mut checks);
    // The address `wb node run` would use: the flag, else the settings (WB_LISTEN, wb.toml).
    let listen = match &args.listen {
        Some(listen) => listen.clone(),
        None => crate::config::resolve(home, &crate::config::Flags::default())
            .map(|s| s.listen.value.to_string())
            .unwrap_or_else(|_| "0.0.0.0:4433".to_string()),
    };
    check_listen(&cx, &listen, &mut checks);
    check_control_socket(home, &cx, &mut checks);
    Ok(report(home, &checks))
}

fn report(home: &Home, checks: &[Check]) -> Output {
    let problems = checks
        .iter()
        .filter(|c| c.status == Status::Problem)
        .count();
    let mut text = String::new();
    for c in checks {
        let what = match &c.subject {
            Some(s) => format!("{} {s}", c.check),
            None => c.check.to_string(),
        };
        text.push_str(&format!("{:<8} {what}: {}\n", c.status.word(), c.detail));
        if let Some(fix) = &c.fix {
            text.push_str(&format!("         fix: {fix}\n"));
        }
    }
    text.push_str(&match problems {
        0 => format!("{} is healthy", home.root().display()),
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    });
    let json: Vec<Value> = checks
        .iter()
        .map(|c| {
            json!({
                "check": c.check,
                "subject": c.subject,
                "status": c.status.word(),
                "detail": c.detail,
                "fix": c.fix,
            })
        })
        .collect();
    let mut out = Output::new(
        text,
        json!({"healthy": problems == 0, "problems": problems, "checks": json}),
    );
    out.failed = problems > 0;
    out
}

// ---------------------------------------------------------------------------------------------
// Keys and store
// ---------------------------------------------------------------------------------------------

fn check_keys(
    home: &Home,
    node: Option<&node::node::NodeHandle>,
    checks: &mut Vec<Check>,
) -> Option<SecretKey> {
    const CHECK: &str = "keys";
    let secret = home.secret_key_path();
    if std::fs::symlink_metadata(home.staged_secret_key_path()).is_ok() {
        checks.push(Check::problem(
            CHECK,
            format!(
                "an interrupted key replacement is pending ({})",
                home.staged_secret_key_path().display()
            ),
            "run `wb id`: the next command that opens the home completes or undoes it",
        ));
    }
    let key = match home.read_key() {
        Ok(key) => key,
        Err(e) => {
            let fix = match &e {
                StoreError::NotInitialized(_) => "run `wb init` (or point --home at the home)",
                StoreError::MismatchedKeys { .. } => {
                    "restore both key files from your backup; a .pub file that does not belong \
                     to the secret cannot be trusted"
                }
                StoreError::HalfKeyPair(_) => "restore the missing key file from your backup",
                _ => "restore keys/ from your backup",
            };
            checks.push(Check::problem(CHECK, e.to_string(), fix));
            return node.map(|n| n.key().clone());
        }
    };
    let mut fine = true;
    match std::fs::metadata(&secret) {
        Ok(meta) => {
            let mode = meta.mode() & 0o777;
            if mode & 0o077 != 0 {
                fine = false;
                checks.push(Check::problem(
                    CHECK,
                    format!(
                        "{} has mode {mode:04o}: other users can read the instance's secret key",
                        secret.display()
                    ),
                    format!("chmod 600 {}", secret.display()),
                ));
            }
            let own = nix::unistd::getuid().as_raw();
            if meta.uid() != own {
                fine = false;
                checks.push(Check::problem(
                    CHECK,
                    format!(
                        "{} belongs to uid {}, not to the user running wb (uid {own})",
                        secret.display(),
                        meta.uid()
                    ),
                    format!("chown {own} {}", secret.display()),
                ));
            }
        }
        Err(e) => {
            fine = false;
            checks.push(Check::problem(
                CHECK,
                format!("{}: {e}", secret.display()),
                "restore keys/ from your backup",
            ));
        }
    }
    if fine {
        checks.push(Check::ok(
            CHECK,
            format!(
                "{} (mode 0600) matches {} (key id {})",
                secret.display(),
                home.public_key_path().display(),
                key.public().key_id()
            ),
        ));
    }
    Some(key)
}

fn check_store(
    home: &Home,
    key: Option<&SecretKey>,
    node: Option<&node::node::NodeHandle>,
    checks: &mut Vec<Check>,
) -> Option<Arc<Store>> {
    const CHECK: &str = "store";
    let store = match node {
        Some(n) => n.store().clone(),
        None => match Store::open_read_only(&home.store_path()) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                let fix = match &e {
                    StoreError::NotInitialized(_) => "run `wb init`".to_string(),
                    StoreError::InUse(_) => "another process holds the store: if it is a wb \
                        node, run `wb doctor` again while it answers on its control socket; \
                        else stop that process"
                        .to_string(),
                    StoreError::Corrupt { what, .. } if what.contains("format") => {
                        "upgrade wb to a version that reads this store format".to_string()
                    }
                    _ => "if wb was killed, start `wb node run` once (it repairs the store on \
                          opening); if the file is damaged, restore the store from a backup"
                        .to_string(),
                };
                checks.push(Check::problem(CHECK, e.to_string(), fix));
                return None;
            }
        },
    };
    let records = store.record_count();
    let owner = store.instance_key();
    match (records, owner, key) {
        (Ok(records), Ok(owner), Some(key)) if owner.is_none_or(|o| o == key.public()) => {
            checks.push(Check::ok(
                CHECK,
                format!(
                    "{} opens, its format is current; {records} records{}",
                    home.store_path().display(),
                    if node.is_some() {
                        " (held by the running node)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        (Ok(_), Ok(owner), Some(key)) => checks.push(Check::problem(
            CHECK,
            format!(
                "the store belongs to key id {} but keys/ holds key id {}",
                owner.map_or_else(String::new, |o| o.key_id()),
                key.public().key_id()
            ),
            "restore the key files that belong to this store from your backup",
        )),
        (Err(e), _, _) | (_, Err(e), _) => checks.push(Check::problem(
            CHECK,
            e.to_string(),
            "restore the store from a backup",
        )),
        (Ok(records), Ok(_), None) => checks.push(Check::ok(
            CHECK,
            format!(
                "{} opens, its format is current; {records} records (its key was not checked: \
                 the key files are not readable)",
                home.store_path().display()
            ),
        )),
    }
    Some(store)
}

// ---------------------------------------------------------------------------------------------
// Peers, hubs, clocks
// ---------------------------------------------------------------------------------------------

fn check_peers(
    home: &Home,
    cx: &Context,
    args: &DoctorArgs,
    discovery: &Discovery,
    checks: &mut Vec<Check>,
) {
    let registry = match store::load_peers(home) {
        Ok(r) => r,
        Err(e) => {
            checks.push(Check::problem(
                "peers",
                e.to_string(),
                "fix the line it names in wb_peers.txt (or restore the file)",
            ));
            return;
        }
    };
    let Some(key) = cx.key.clone() else {
        checks.push(Check::skipped("peers", "not checked: no readable key"));
        return;
    };
    let live: Vec<Peer> = registry.iter().filter(|p| !p.revoked).cloned().collect();
    if !live.iter().any(|p| !p.hub) {
        checks.push(Check::skipped("peers", "no peers in wb_peers.txt"));
    }
    if !live.iter().any(|p| p.hub) {
        checks.push(Check::skipped("hubs", "no hubs in wb_peers.txt"));
    }
    if live.is_empty() {
        return;
    }
    let epoch = cx.store.as_ref().map_or([0; 16], |s| s.epoch().0);
    let deadline = Duration::from_secs(args.timeout);
    let probes = async {
        let mut set = tokio::task::JoinSet::new();
        for (i, peer) in live.iter().enumerate() {
            let (key, peer, registry) = (key.clone(), peer.clone(), registry.clone());
            let discovery = discovery.clone();
            set.spawn(async move {
                let result =
                    node::probe::probe(&key, epoch, &peer, &registry, deadline, &discovery).await;
                (i, result)
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(r) = joined {
                out.push(r);
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out
    };
    let results = match (&cx.node, crate::running::runtime()) {
        (Some(_), Some(rt)) => rt.block_on(probes),
        _ => match crate::node_cmd::runtime() {
            Ok(rt) => rt.block_on(probes),
            Err(e) => {
                checks.push(Check::problem(
                    "peers",
                    e.to_string(),
                    "see the error; nothing was dialled",
                ));
                return;
            }
        },
    };
    let mut clocks = Vec::new();
    for (i, result) in results {
        let Some(peer) = live.get(i) else { continue };
        let check = if peer.hub { "hub" } else { "peer" };
        match result {
            Ok(p) => {
                let expected = if peer.hub { Role::Hub } else { Role::Node };
                if p.role == expected {
                    checks.push(
                        Check::ok(
                            check,
                            format!("reachable, answered in {} ms", p.round_trip_ms),
                        )
                        .about(&peer.name),
                    );
                } else {
                    checks.push(
                        Check::problem(
                            check,
                            format!(
                                "reachable, but it answers as a {} (wb_peers.txt says {})",
                                role_word(p.role),
                                role_word(expected)
                            ),
                            format!(
                                "fix its `Hub:` line: `wb sync peers remove {0}`, then add it \
                                 again{1}",
                                peer.name,
                                if p.role == Role::Hub {
                                    " with --hub"
                                } else {
                                    " without --hub"
                                }
                            ),
                        )
                        .about(&peer.name),
                    );
                }
                clocks.push(clock_check(&peer.name, &p));
            }
            Err(e) => checks.push(
                Check::problem(check, e.to_string(), unreachable_fix(&e, peer, home))
                    .about(&peer.name),
            ),
        }
    }
    checks.extend(clocks);
}

/// With discovery on: does the pkarr relay hold this instance's addresses (which the running
/// node publishes)? Not checked when discovery is off.
fn check_discovery(
    cx: &Context,
    args: &DoctorArgs,
    discovery: &Discovery,
    checks: &mut Vec<Check>,
) {
    const CHECK: &str = "discovery";
    if !discovery.is_on() {
        return;
    }
    let Some(key) = cx.key.clone() else {
        checks.push(Check::skipped(CHECK, "not checked: no readable key"));
        return;
    };
    let deadline = Duration::from_secs(args.timeout);
    let me = key.public();
    let lookup = node::probe::published(&key, discovery, &me, deadline);
    let result = match (&cx.node, crate::running::runtime()) {
        (Some(_), Some(rt)) => rt.block_on(lookup),
        _ => match crate::node_cmd::runtime() {
            Ok(rt) => rt.block_on(lookup),
            Err(e) => Err(node::NodeError::Internal(e.to_string())),
        },
    };
    checks.push(match (result, &cx.node) {
        (Ok(addrs), _) => Check::ok(
            CHECK,
            format!(
                "{discovery}: the relay has this instance's addresses: {}",
                if addrs.is_empty() {
                    "(none)".to_string()
                } else {
                    addrs.join(", ")
                }
            ),
        ),
        (Err(e), Some(_)) => Check::problem(
            CHECK,
            format!("{discovery}: this instance is not found there: {e}"),
            "peers cannot find this node by its key: check the node's log for `Failed to publish \
             to pkarr` (the relay may be down, or unreachable from here)",
        ),
        (Err(e), None) => Check::skipped(
            CHECK,
            format!(
                "{discovery}: this instance is not found there ({e}); the running node publishes \
                 its addresses, and none runs on this home"
            ),
        ),
    });
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Node => "node",
        Role::Hub => "hub",
    }
}

fn clock_check(name: &str, p: &node::probe::Probe) -> Check {
    const CHECK: &str = "clock";
    let Some(offset) = p.clock_offset_ms else {
        return Check::skipped(
            CHECK,
            "not measured: the peer runs a wb that does not send its clock",
        )
        .about(name);
    };
    let how = if offset >= 0 { "behind" } else { "ahead of" };
    let seconds = offset.unsigned_abs() as f64 / 1000.0;
    let detail = format!(
        "this clock is {seconds:.1} s {how} the peer's (±{:.1} s)",
        p.clock_uncertainty_ms as f64 / 1000.0
    );
    if offset.unsigned_abs().saturating_sub(p.clock_uncertainty_ms) > CLOCK_OFFSET_MAX_MS {
        Check::problem(
            CHECK,
            format!(
                "{detail}; more than {} s apart (records dated over 10 minutes ahead are refused)",
                CLOCK_OFFSET_MAX_MS / 1000
            ),
            "turn on time synchronisation on whichever machine is wrong \
             (`timedatectl set-ntp true`, or chrony/ntpd)",
        )
        .about(name)
    } else {
        Check::ok(CHECK, detail).about(name)
    }
}

fn unreachable_fix(e: &node::NodeError, peer: &Peer, home: &Home) -> String {
    use node::NodeError as E;
    use protocol::wire::code;
    let home = home.root().display();
    match e {
        E::NoAddress { .. } => format!(
            "give it an address: `wb sync peers remove {0}` and add it again with its ticket \
             (`wb sync peers add {0} --ticket T`, T from `wb id` on its home), or add a hub that \
             knows it",
            peer.name
        ),
        E::Resolve { .. } => {
            format!("check the host name in its `Addr:` line in {home}/wb_peers.txt (and DNS)")
        }
        E::Refused { code, .. } if *code == code::UNKNOWN_PEER => {
            "it does not know this instance: its operator runs `wb sync peers add NAME --ticket \
             T` (or `wb hub allow KEY` on a hub) with T from `wb id` here"
                .to_string()
        }
        E::Refused { code, .. } if *code == code::REVOKED => {
            "it revoked this instance: only its operator can lift that".to_string()
        }
        E::VersionMismatch { .. } => {
            "run the same major version of wb on both instances (upgrade the older one)".into()
        }
        E::Timeout { .. } => "it answered too slowly: check its load and the network, or \
                               raise `wb doctor --timeout`"
            .to_string(),
        _ => format!(
            "check that its node runs (`wb node run` there), that its address {} is current, and \
             that UDP to that port is not blocked by a firewall",
            if peer.addrs.is_empty() {
                "(found through a hub or the pkarr relay)".to_string()
            } else {
                peer.addrs.join(", ")
            }
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The app's folders
// ---------------------------------------------------------------------------------------------

fn check_app(cx: &Context, args: &DoctorArgs, checks: &mut Vec<Check>) {
    let status = cx.store.as_ref().and_then(|s| s.app_status().ok());
    let last_snapshot = status.as_ref().and_then(|s| s.snapshot.clone());
    let snapshot_dir = args
        .app_snapshot
        .clone()
        .or_else(|| last_snapshot.as_ref().map(|s| PathBuf::from(&s.dir)))
        .or_else(|| existing(store::app::DEFAULT_SNAPSHOT_DIR));
    match snapshot_dir {
        None => checks.push(Check::skipped(
            "app snapshot",
            format!(
                "no snapshot folder: none given (--app-snapshot), none adopted before, no {} here",
                store::app::DEFAULT_SNAPSHOT_DIR
            ),
        )),
        Some(dir) => checks.push(check_snapshot(&dir, cx, last_snapshot.as_ref())),
    }
    let inbox_dir = args
        .app_inbox
        .clone()
        .or_else(|| {
            status
                .as_ref()
                .and_then(|s| s.inbox.as_ref())
                .map(|i| PathBuf::from(&i.dir))
        })
        .or_else(|| existing(store::app::DEFAULT_INBOX_DIR));
    match inbox_dir {
        None => checks.push(Check::skipped(
            "app inbox",
            "no inbox folder: none given (--app-inbox), none written before",
        )),
        Some(dir) => checks.push(match std::fs::read_dir(&dir) {
            Ok(_) => Check::ok("app inbox", format!("{} is readable", dir.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check::ok(
                "app inbox",
                format!("{} does not exist yet (wb creates it)", dir.display()),
            ),
            Err(e) => Check::problem(
                "app inbox",
                format!("cannot read {}: {e}", dir.display()),
                format!(
                    "let the user running wb read and write it (ls -ld {})",
                    dir.display()
                ),
            ),
        }),
    }
}

fn existing(dir: &str) -> Option<PathBuf> {
    Path::new(dir).exists().then(|| PathBuf::from(dir))
}

fn check_snapshot(dir: &Path, cx: &Context, last: Option<&store::app::SnapshotState>) -> Check {
    const CHECK: &str = "app snapshot";
    if let Err(e) = std::fs::read_dir(dir) {
        return Check::problem(
            CHECK,
            format!("cannot read {}: {e}", dir.display()),
            format!(
                "check the path (--app-snapshot) and that the user running wb may read it (ls -ld {})",
                dir.display()
            ),
        );
    }
    let sig_path = dir.join(protocol::bundle::SIGNATURE_FILE);
    let signature = match std::fs::read(&sig_path)
        .map_err(|e| e.to_string())
        .and_then(|b| protocol::bundle::BundleSignature::parse(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            return Check::problem(
                CHECK,
                format!("{}: {e}", sig_path.display()),
                "let the app export its snapshot there (`./wb sync export` in the app's folder)",
            );
        }
    };
    let digest: String = signature
        .manifest_digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let fix = format!(
        "run `wb app import {0}` (or `wb node run --app-snapshot {0}`, which adopts each new \
         snapshot)",
        dir.display()
    );
    if cx.store.is_none() {
        return Check::skipped(
            CHECK,
            format!(
                "{} is readable; adoption not checked (the store could not be opened)",
                dir.display()
            ),
        );
    }
    match last {
        Some(s) if s.manifest_digest == digest => Check::ok(
            CHECK,
            format!(
                "{} is readable; its snapshot (signed {}) is adopted",
                dir.display(),
                signature.signed_at
            ),
        ),
        Some(s) => Check::problem(
            CHECK,
            format!(
                "{} holds a snapshot signed {} that is not adopted (last adopted: signed {})",
                dir.display(),
                signature.signed_at,
                s.signed_at
            ),
            fix,
        ),
        None => Check::problem(
            CHECK,
            format!(
                "{} holds a snapshot (signed {}), and no snapshot was ever adopted",
                dir.display(),
                signature.signed_at
            ),
            fix,
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The listen port and the control socket
// ---------------------------------------------------------------------------------------------

fn check_listen(cx: &Context, listen: &str, checks: &mut Vec<Check>) {
    const CHECK: &str = "listen";
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(_) => {
            checks.push(Check::problem(
                CHECK,
                format!("{listen:?} is not HOST:PORT"),
                "give --listen as HOST:PORT, e.g. 0.0.0.0:4433",
            ));
            return;
        }
    };
    if let Some(node) = &cx.node {
        let addrs: Vec<String> = node.addrs().iter().map(ToString::to_string).collect();
        checks.push(Check::ok(
            CHECK,
            format!("the running node listens on {}", addrs.join(", ")),
        ));
        return;
    }
    // QUIC is UDP: bind the port as the node would, and let it go at once.
    match std::net::UdpSocket::bind(addr) {
        Ok(_) => checks.push(Check::ok(
            CHECK,
            format!("UDP {addr} is free for `wb node run`"),
        )),
        Err(e) => checks.push(Check::problem(
            CHECK,
            format!("cannot bind UDP {addr}: {e}"),
            if e.kind() == std::io::ErrorKind::AddrInUse {
                format!(
                    "another program uses UDP port {}: stop it, or run the node with \
                     --listen HOST:OTHER_PORT (and give peers the new address)",
                    addr.port()
                )
            } else {
                "choose an address of this machine (--listen 0.0.0.0:PORT), and a port above \
                 1023 unless wb may bind low ports"
                    .to_string()
            },
        )),
    }
}

fn check_control_socket(home: &Home, cx: &Context, checks: &mut Vec<Check>) {
    const CHECK: &str = "control socket";
    let path = crate::control::socket_path(home);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(_) => {
            checks.push(Check::ok(
                CHECK,
                format!("none at {} (no node runs on this home)", path.display()),
            ));
            return;
        }
    };
    let own = nix::unistd::getuid().as_raw();
    let remove = format!(
        "if no node runs on this home, remove it: rm {}",
        path.display()
    );
    if !meta.file_type().is_socket() {
        checks.push(Check::problem(
            CHECK,
            format!("{} is not a socket", path.display()),
            remove,
        ));
    } else if meta.uid() != own {
        checks.push(Check::problem(
            CHECK,
            format!(
                "{} belongs to uid {}, not to you (uid {own}): wb sends it nothing",
                path.display(),
                meta.uid()
            ),
            format!(
                "run wb as the node's user (uid {}), or {remove}",
                meta.uid()
            ),
        ));
    } else if meta.mode() & 0o077 != 0 {
        checks.push(Check::problem(
            CHECK,
            format!(
                "{} has mode {:04o}: other users may connect to it",
                path.display(),
                meta.mode() & 0o777
            ),
            format!("chmod 600 {} (and restart the node)", path.display()),
        ));
    } else if cx.node.is_some() {
        checks.push(Check::ok(
            CHECK,
            format!(
                "{} is yours (mode 0600) and the node answers on it",
                path.display()
            ),
        ));
    } else {
        checks.push(Check::ok(
            CHECK,
            format!(
                "{} is yours, left by a node that stopped uncleanly (the next `wb node run` \
                 replaces it)",
                path.display()
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(offset: Option<i64>, uncertainty: u64) -> node::probe::Probe {
        node::probe::Probe {
            role: Role::Node,
            round_trip_ms: 2 * uncertainty,
            clock_offset_ms: offset,
            clock_uncertainty_ms: uncertainty,
        }
    }

    #[test]
    fn a_clock_more_than_a_minute_off_is_a_problem_with_a_fix() {
        let far = clock_check("b", &probe(Some(-125_000), 10));
        assert_eq!(far.status, Status::Problem);
        assert!(far.detail.contains("125.0 s ahead of"), "{}", far.detail);
        assert!(far.fix.is_some_and(|f| f.contains("set-ntp")));
        assert_eq!(
            clock_check("b", &probe(Some(59_000), 10)).status,
            Status::Ok
        );
        // Within the measurement's uncertainty of the bound: not called wrong.
        assert_eq!(
            clock_check("b", &probe(Some(61_000), 2_000)).status,
            Status::Ok
        );
        assert_eq!(clock_check("b", &probe(None, 10)).status, Status::Skipped);
    }
}
