//! Command-line arguments (§12). Only this crate parses arguments.
//!
//! The command tree is also the form of a call on the control socket (`control`): a client
//! parses its arguments here and sends the parsed [`Command`] (serde), so the node never parses
//! what a client sent. Paths in it are made absolute by the client ([`Command::paths_mut`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(
    name = "wb",
    version,
    about = "wb — the peer-to-peer sync node for self-hosted WhiteBalloon instances",
    long_about = "wb keeps an instance's shareable records (public profiles, help requests, \
comments, invites, vouches) in a local store, each with a privacy scope (private, trusted, \
public), signed with the instance's Ed25519 key.\n\nStart with `wb init`, then add records \
with `wb record put`. Records are private until you widen them with `wb scope set`.",
    after_help = "The home directory holds the instance key (keys/), the store (store.redb) and \
the peer list. It is --home, else $WB_SYNC_HOME, else .sync in the working directory."
)]
pub struct Cli {
    /// The instance's home directory.
    #[arg(
        long,
        global = true,
        env = "WB_SYNC_HOME",
        default_value = ".sync",
        value_name = "DIR"
    )]
    pub home: PathBuf,

    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Log lines as text, or as one JSON object per line (for log shippers); RUST_LOG filters
    /// [default: text; wb.toml: log.format; env: WB_LOG_FORMAT].
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum Command {
    /// Create the home: instance key and store (keeps an existing identity).
    ///
    /// Running it again keeps the existing key and says so. A home that already holds a key
    /// pair made by the WhiteBalloon app (keys/id_ed25519 and keys/id_ed25519.pub) is adopted.
    Init {
        /// A human name for this instance, shown to operators of other instances.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show this instance's identity: endpoint id, key id, public key, name, ticket.
    ///
    /// The ticket is one string carrying the endpoint id and the addresses the node can be
    /// reached at: another instance adds this one with `wb sync peers add NAME --ticket T`.
    /// The addresses are the running node's; with no node running, those it listened on when it
    /// last ran; before any node ran, none (the ticket then carries only the endpoint id).
    Id,
    /// Create, read, list and delete records.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Change who may receive a record (the privacy toggle).
    #[command(subcommand)]
    Scope(ScopeCommand),
    /// Run the sync node in the foreground (Ctrl-C or SIGTERM stops it cleanly).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Sync with other instances: bundles, peers, keys, status.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// The cross-instance trust graph: how users connect through invites and vouches.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Run a hub and manage who may use it (discovery, store-and-forward, packet relay).
    #[command(subcommand)]
    Hub(HubCommand),
    /// The bridge to the WhiteBalloon app running beside this instance in the same home.
    ///
    /// The app's public data leaves through wb (`app import` adopts the app's snapshot as this
    /// instance's signed records); what peers send reaches the app through `app export`, written
    /// so the app's own importer applies it without touching the app's own rows.
    #[command(subcommand)]
    App(AppCommand),
    /// Check this home, its peers and hubs, and say how to fix what is wrong.
    ///
    /// Checks: the key files match and the secret is 0600; the store opens and its format is
    /// current; each peer and hub answers within --timeout (a Hello and a Bye: nothing is
    /// synced) and its clock is within a minute of this one; the app's folders are readable
    /// and the last snapshot is adopted; the listen port can be bound; the control socket is
    /// yours. Changes nothing. Exit status 1 when any check finds a problem.
    Doctor(DoctorArgs),
    /// Write a consistent copy of the store to FILE, also while the node runs.
    ///
    /// The copy is made inside one read transaction (the node keeps syncing meanwhile), to a
    /// temporary file renamed to FILE (mode 0600). FILE may replace an earlier backup, never
    /// another file or a link. The instance key is not in it: keep keys/ safe separately.
    Backup { file: PathBuf },
    /// Put a backup back in place of the store (stop the node first).
    ///
    /// The restored store gets a new epoch, so peers pull everything from the start instead
    /// of skipping changes, and it pulls everything from them, getting back what this instance
    /// made or received since the backup. The replaced store is kept beside it. Asks first
    /// unless --yes.
    Restore {
        file: PathBuf,
        /// Replace the store without asking.
        #[arg(long)]
        yes: bool,
    },
    /// The settings file <home>/wb.toml (`wb init` writes one with the defaults).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `wb completions bash > /etc/bash_completion.d/wb`.
    #[serde(skip)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print wb's manual page (roff), or write one page per command into a folder.
    ///
    /// `wb man | man -l -` reads it; `wb man --dir /usr/local/share/man/man1` installs
    /// wb.1, wb-node-run.1 and the others.
    Man {
        /// Write wb.1 and a page for every subcommand into this folder instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum ConfigCommand {
    /// Print the effective value of each setting of `node run`, `hub run` and the app bridge,
    /// and where it came from: a flag, a WB_* variable, wb.toml (with its line) or the default.
    ///
    /// Takes the flags of `node run` and `hub run`, to show what a node started with them
    /// would use. Hubs are not a setting: they are the peers marked `Hub: yes` in
    /// wb_peers.txt (`wb sync peers add NAME --key KEY --hub`), listed here too. A file with
    /// an unknown key or a bad value is refused with its line and column.
    Show {
        #[command(flatten)]
        common: CommonFlags,
        #[command(flatten)]
        sync: NodeFlags,
        #[command(flatten)]
        relay: RelayFlags,
        #[command(flatten)]
        app: AppBridgeArgs,
    },
}

#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct DoctorArgs {
    /// The address `wb node run` listens on (checked to be bindable) [default: the `listen`
    /// of wb.toml, WB_LISTEN, else 0.0.0.0:4433].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// How long each peer and hub has to answer.
    #[arg(long, default_value_t = 5, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
    /// The app's export folder (default: the one adopted last, else data/public_sync if present).
    #[arg(long, value_name = "DIR")]
    pub app_snapshot: Option<PathBuf>,
    /// The app's inbox folder (default: the one written last, else data/wb_inbox if present).
    #[arg(long, value_name = "DIR")]
    pub app_inbox: Option<PathBuf>,
    /// Look up peers registered without an address at a pkarr relay (pkarr=URL), or not
    /// (off); with pkarr, also check that this instance's addresses are there [default: the
    /// running node's, else off; wb.toml: discovery; env: WB_DISCOVERY].
    #[arg(long, value_name = "off|pkarr=URL")]
    pub discovery: Option<String>,
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum AppCommand {
    /// Adopt the app's snapshot (its `sync export`) as this instance's own signed records.
    ///
    /// The snapshot must be signed by this instance's key (the app and wb share one home).
    /// Each row the app wrote becomes a local record, signed and versioned by wb (a new version
    /// only when the content changed); comments inside request bodies become comment records;
    /// rows adopted earlier and missing now are deleted, so peers withdraw them. Rows that `wb
    /// app export` handed the app are recognised and never adopted; records made with `wb
    /// record put` are never touched. Contact-* fields are dropped unless --allow-contact.
    /// Adopting the same snapshot again changes nothing.
    Import {
        /// The app's export folder.
        #[arg(default_value = store::app::DEFAULT_SNAPSHOT_DIR)]
        dir: PathBuf,
        /// Keep Contact-* fields (e-mail addresses) in the adopted records.
        #[arg(long)]
        allow_contact: bool,
        /// Report what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write what the app may import: other instances' users and requests with their comments.
    ///
    /// Foreign rows get ids that never collide with the app's own (negative, kept in the store,
    /// the same at every export), usernames `name@<peer>`, `Instance:` naming the origin; no
    /// invites, vouches, contact data or tombstones. A row handed earlier and since withdrawn is
    /// written emptied and private. Signed by this instance; import it with the app's own
    /// `sync import`.
    Export {
        /// The folder to write (owned by wb; the app only reads it).
        #[arg(default_value = store::app::DEFAULT_INBOX_DIR)]
        dir: PathBuf,
    },
    /// The last snapshot adopted, the last inbox written, what waits, the last import command.
    Status,
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum NodeCommand {
    /// Accept sync connections from known peers (ALPN wb-sync/1 over QUIC).
    ///
    /// Prints one line when ready, with the endpoint id and the bound address(es). Connections
    /// from keys not in wb_peers.txt, or revoked, are refused with a protocol error code,
    /// unless --open, where unknown peers may pull public records (only). Without hubs, no
    /// relay servers and no address lookup are used: peers dial the addresses they were given.
    /// With hubs in wb_peers.txt (`peers add … --hub`), the node announces its addresses to
    /// them, finds peers registered without an address through them, and uses their relays.
    /// --log-level (or RUST_LOG) controls logging.
    ///
    /// Every setting may also be given in <home>/wb.toml or a WB_* variable: a flag wins over
    /// the environment, the environment over the file, the file over the default (`wb config
    /// show` prints each and where it came from; `wb init` writes the file). A file with an
    /// unknown key or a bad value is refused, with its line and column, before anything starts.
    ///
    /// The node keeps its peers up to date by itself: it syncs (both ways) with every peer
    /// that is not revoked and has an address (or, with hubs, any peer) when it starts,
    /// shortly after each change to its records, and every --sync-interval seconds. Records it receives are passed on to
    /// its other peers. An unreachable peer is retried after 1 s, then 2 s, 4 s… up to 5
    /// minutes (with jitter). wb_peers.txt is read again every few seconds, so peers added,
    /// changed or revoked while the node runs take effect without a restart.
    Run {
        #[command(flatten)]
        common: CommonFlags,
        #[command(flatten)]
        sync: NodeFlags,
        /// Test hook: drop each connection after serving this many batches.
        #[arg(long, hide = true)]
        test_cut_after_batches: Option<u64>,
        #[command(flatten)]
        app: AppBridgeArgs,
    },
}

/// The flags `node run` and `hub run` share. Each setting may also come from a `WB_*`
/// variable or `<home>/wb.toml` (flag > environment > file > default; `wb config show`).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct CommonFlags {
    /// Address to listen on, QUIC [default: 0.0.0.0:4433; wb.toml: listen; env: WB_LISTEN].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Open mode: a node lets unknown peers pull public records, a hub admits any instance
    /// that is not revoked; --open=false overrides wb.toml [wb.toml: open; env: WB_OPEN].
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub open: Option<bool>,
    /// What to log, in RUST_LOG syntax [default: node=info; wb.toml: log.level; env:
    /// WB_LOG_LEVEL, else RUST_LOG].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics, wb's and iroh's series
    /// [wb.toml: metrics; env: WB_METRICS].
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
}

/// `wb node run`'s sync settings (also in wb.toml's [node] and WB_NODE_* variables).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct NodeFlags {
    /// Sync with each peer at least every SECS seconds, changes or not [default: 30;
    /// wb.toml: node.sync_interval; env: WB_NODE_SYNC_INTERVAL].
    #[arg(
        long,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub sync_interval: Option<u64>,
    /// Do not dial peers by itself: only serve peers that connect (and `wb sync now`)
    /// [wb.toml: node.auto_sync = false; env: WB_NODE_AUTO_SYNC=false].
    #[arg(long, conflicts_with = "auto_sync")]
    pub no_auto_sync: bool,
    /// Dial peers by itself, whatever wb.toml or WB_NODE_AUTO_SYNC say (the default).
    #[arg(long)]
    pub auto_sync: bool,
    /// Find peers by key without a hub: pkarr=URL publishes this node's signed addresses to
    /// the pkarr relay at URL and looks up peers registered without an address there; off:
    /// only wb_peers.txt's addresses and hubs [default: off; wb.toml: discovery; env:
    /// WB_DISCOVERY].
    #[arg(long, value_name = "off|pkarr=URL")]
    pub discovery: Option<String>,
    /// Give up on a session when a peer takes longer than SECS to send or read one
    /// message (each session also ends after 10 minutes; the next one carries on)
    /// [default: 30; wb.toml: node.timeout; env: WB_NODE_TIMEOUT].
    #[arg(
        long,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub timeout: Option<u64>,
}

/// `wb hub run`'s relay settings (also in wb.toml's [hub] and WB_HUB_* variables).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct RelayFlags {
    /// Also run a relay server on this address (plain HTTP; put a TLS proxy in front for
    /// real deployments and give its URL with --relay-url) [wb.toml: hub.relay_listen; env:
    /// WB_HUB_RELAY_LISTEN].
    #[arg(long, value_name = "HOST:PORT")]
    pub relay_listen: Option<String>,
    /// The URL instances reach the relay at (default: http://<relay-listen>/; needs
    /// --relay-listen) [wb.toml: hub.relay_url; env: WB_HUB_RELAY_URL].
    #[arg(long, value_name = "URL")]
    pub relay_url: Option<String>,
}

/// `wb node run`'s bridge to the app beside it (§14); also wb.toml's [app] and WB_APP_*
/// variables. Relative paths are relative to the node's working directory.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct AppBridgeArgs {
    /// The app's export folder: each new snapshot there (a changed bundle.sig) is adopted
    /// [wb.toml: app.snapshot; env: WB_APP_SNAPSHOT].
    #[arg(long, value_name = "DIR")]
    pub app_snapshot: Option<PathBuf>,
    /// Where to write the app's inbox after received changes (debounced) [wb.toml:
    /// app.inbox; env: WB_APP_INBOX].
    #[arg(long, value_name = "DIR")]
    pub app_inbox: Option<PathBuf>,
    /// A shell command that imports the inbox into the app, run after each new inbox
    /// (e.g. "./wb sync import data/wb_inbox"); its exit status and last lines show in
    /// `wb app status`. Needs an inbox [wb.toml: app.import_cmd; env: WB_APP_IMPORT_CMD].
    #[arg(long, value_name = "CMD")]
    pub app_import_cmd: Option<String>,
    /// How often to look for a new snapshot and for received changes [default: 3; wb.toml:
    /// app.poll; env: WB_APP_POLL].
    #[arg(
        long,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub app_poll: Option<u64>,
    /// Keep Contact-* fields when adopting snapshots [wb.toml: app.allow_contact; env:
    /// WB_APP_ALLOW_CONTACT].
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub app_allow_contact: Option<bool>,
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum HubCommand {
    /// Run this home as a hub, in the foreground (Ctrl-C or SIGTERM stops it cleanly).
    ///
    /// A hub is a wb node with the hub role, in its own home with its own identity (created if
    /// the home is new). It stores and forwards the public records of the instances it admits,
    /// over wb-sync/1 with its own sequence numbers; it never takes trusted or private records.
    /// It keeps a directory of the instances' signed address announcements (ALPN wb-hub/1), so
    /// instances find each other by key. With --relay-listen it also runs an iroh relay server,
    /// which instances configured with this hub use to reach each other when they cannot
    /// directly. It admits the instances of its allowlist (`wb hub allow`), or any instance
    /// with --open; revoked keys are always refused. Prints one line when ready. Settings may
    /// also come from <home>/wb.toml or WB_* variables, as for `wb node run`.
    Run {
        #[command(flatten)]
        common: CommonFlags,
        #[command(flatten)]
        relay: RelayFlags,
        /// Apply the revocations this instance announces (`wb sync peers revoke --announce`):
        /// the keys it revokes are refused and their records no longer stored or forwarded.
        /// Its public key (base64, hex or iroh form); repeatable. Allowlist entries marked
        /// `Follow-Revocations: yes` in the hub's wb_peers.txt are followed too.
        #[arg(long = "follow-revocations", value_name = "KEY")]
        follow_revocations: Vec<String>,
    },
    /// Admit an instance (by its public key: base64, hex or iroh form).
    ///
    /// Adds it to the hub's allowlist (wb_peers.txt of the hub's home), or lifts its
    /// revocation. Applies to the next connection, also while the hub runs.
    Allow {
        /// The instance's public key.
        key: String,
        /// A name for it (default: its key id).
        #[arg(long)]
        name: Option<String>,
    },
    /// Refuse an instance from now on: it can neither push, pull, announce nor use the relay,
    /// and no record of its origin is taken any more.
    Revoke {
        /// The instance's public key, or its name on the allowlist.
        key: String,
    },
    /// List the allowlist: name, key id, revoked.
    List,
    /// Show registered instances: last announcement, records held, bytes, last sync.
    Status,
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum RecordCommand {
    /// Create or replace a local record: its fields and body become exactly what is given.
    ///
    /// A new record is private (a vouch: public) unless --scope says otherwise; an existing
    /// record keeps its scope. A new version is made only if something changed. Required fields per entity:
    /// user: Username; request: Title, Status (draft|pending|open|completed);
    /// comment: Request, User-ID; invite: Created-By, Max-Uses, Use-Count, Auto-Approve;
    /// vouch: Voucher, Subject (at most one live vouch per voucher and subject; Created-At is
    /// added when missing). A user's optional Invited-By names its inviter (a user reference).
    Put {
        /// user, request, comment, invite or vouch.
        entity: String,
        /// The record's id at this instance.
        id: String,
        /// private (default for new records), trusted or public.
        #[arg(long)]
        scope: Option<String>,
        /// A field, NAME=VALUE; repeat for several. Order is kept.
        #[arg(long = "field", value_name = "NAME=VALUE")]
        fields: Vec<String>,
        /// The body text (a request's description, a comment's text, …).
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        /// Read the body from a file.
        #[arg(long, value_name = "PATH")]
        body_file: Option<PathBuf>,
        /// Do not warn when a trusted/public record holds what looks like contact data.
        #[arg(long)]
        allow_contact: bool,
    },
    /// Show one record.
    Get {
        entity: String,
        id: String,
        /// The origin instance (public key, hex endpoint id or key id); default: this instance.
        #[arg(long, value_name = "KEY")]
        origin: Option<String>,
    },
    /// List records, ordered by origin, entity and id.
    List(ListArgs),
    /// Delete a local record. Peers that had it delete their copy at their next sync.
    Rm { entity: String, id: String },
}

#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct ListArgs {
    /// Only this entity.
    #[arg(long)]
    pub entity: Option<String>,
    /// Only records from this origin: a key, a key id, or `local`.
    #[arg(long, value_name = "KEY|local")]
    pub origin: Option<String>,
    /// Only records with this scope.
    #[arg(long)]
    pub scope: Option<String>,
    /// Include deleted records (tombstones).
    #[arg(long)]
    pub deleted: bool,
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum ScopeCommand {
    /// Set a local record's scope: private, trusted or public.
    ///
    /// Widening to trusted/public warns when a field looks like contact data (an e-mail
    /// address, a phone number); --allow-contact silences the warning.
    Set {
        entity: String,
        id: String,
        scope: String,
        #[arg(long)]
        allow_contact: bool,
    },
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum SyncCommand {
    /// Write an air-gapped bundle: public records as `.sync.txt` files with a signed manifest.
    ///
    /// Never writes private records or draft requests. With --for, also the trusted records,
    /// for that one trusted peer. The output is deterministic (only `Signed-At` in bundle.sig
    /// changes when nothing else did), so it can be committed to git; files of a previous
    /// export that are no longer part of it are removed, and nothing else in DIR is touched.
    /// A DIR holding bundle files wb did not write (the app's export, another signer's bundle,
    /// unlisted files) is refused: nothing is written, nothing deleted.
    Export {
        /// Where to write the bundle (data/public_sync is the WhiteBalloon app's own export
        /// folder; wb's is data/wb_export).
        #[arg(default_value = "data/wb_export")]
        dir: PathBuf,
        /// Also include trusted records, for this trusted peer (by name).
        #[arg(long = "for", value_name = "PEER")]
        for_peer: Option<String>,
    },
    /// Verify and import a bundle; all or nothing.
    ///
    /// Checks, in order: the signature over the manifest (and --expect-key), every file's
    /// checksum, that no path leaves DIR and no unlisted record file is present, the schema
    /// version, and each record's own signature. Any failure rejects the whole bundle, names the
    /// file and reason, and changes nothing. Bundles written by the WhiteBalloon app (records
    /// without signatures) are attributed to the bundle's signer.
    Import {
        dir: PathBuf,
        /// Refuse the bundle unless this key signed it (base64, hex or key id forms).
        #[arg(long, value_name = "KEY")]
        expect_key: Option<String>,
        /// Report what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Bootstrap a new instance from a bundle: init the home, import, register the signer.
    ///
    /// The bundle's signer becomes a known (not trusted) peer in wb_peers.txt.
    Init {
        /// The bundle directory.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// A name for this instance (as `wb init --name`).
        #[arg(long)]
        name: Option<String>,
        /// The peer name to register the bundle's signer under (default: its key id).
        #[arg(long, value_name = "NAME")]
        peer_name: Option<String>,
    },
    /// One sync session with a running peer node: pull its changes, then push ours.
    ///
    /// Prints received / sent / conflicts / stale / rejected counts. Fails with a clear message
    /// if the peer is unreachable, refuses us, or speaks another protocol version.
    Now {
        /// The peer's name in wb_peers.txt.
        #[arg(required_unless_present = "hub", conflicts_with = "hub")]
        peer: Option<String>,
        /// Sync with every hub of wb_peers.txt (store-and-forward of public records).
        #[arg(long)]
        hub: bool,
        /// Only pull the peer's changes.
        #[arg(long, conflicts_with = "push_only")]
        pull_only: bool,
        /// Only push our changes.
        #[arg(long)]
        push_only: bool,
        /// Give up when the peer takes longer than SECS to send or read one message.
        #[arg(
            long,
            default_value_t = 30,
            value_name = "SECS",
            value_parser = clap::value_parser!(u64).range(1..=3600)
        )]
        timeout: u64,
        /// Look up a peer registered without an address at a pkarr relay (pkarr=URL), or not
        /// (off); the running node's own setting when one runs [default: off; wb.toml:
        /// discovery; env: WB_DISCOVERY].
        #[arg(long, value_name = "off|pkarr=URL", conflicts_with = "hub")]
        discovery: Option<String>,
    },
    /// Pull a peer's changes (the WhiteBalloon app's name for `sync now --pull-only`).
    Pull { peer: String },
    /// Push our changes to a peer (the app's name for `sync now --push-only`).
    Push { peer: String },
    /// Show records by scope, conflicts, known peers and the last imported bundles.
    Status,
    /// Show the conflict log: versions that arrived with the same version and other content.
    Conflicts,
    /// Manage known peers (wb_peers.txt).
    #[command(subcommand)]
    Peers(PeersCommand),
    /// Vouch for root users (users nobody invited), here or on other instances: interactive.
    ///
    /// Asks for the operator's username (or --voucher), which must be a local user record, then
    /// lists the root users this instance knows (local and received) that no user of this
    /// instance vouched for yet, and asks y/n for each. Every yes becomes a signed vouch record
    /// (public unless --scope), which travels in exports and over sync. For scripts:
    /// --subject REF (repeatable) and --yes. Without a terminal, it needs --voucher and --yes.
    /// Withdraw a vouch with `wb record rm vouch ID`.
    Vouch(VouchArgs),
    /// Create the instance key if missing (the WhiteBalloon app's name for this step).
    ///
    /// With --force, replace an existing key after confirmation: local records are re-signed
    /// under the new key and withdrawn under the old one, and the old key signs a succession
    /// naming the new one (the new key countersigns). Peers that know the old key move their
    /// entry to the new key when the succession reaches them (sync, a hub or a bundle; the
    /// node also shows it when it dials), with the same name and trust: nobody re-adds this
    /// instance. The old secret key is kept as keys/id_ed25519.replaced-<key id>.
    Keygen {
        /// Replace an existing key.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Test hook: exit at once, as a crash would, after this step of the replacement
        /// (`staged`: the new key is journalled; `store`: the store is re-signed).
        #[arg(long, hide = true, value_name = "STEP", value_parser = ["staged", "store"])]
        test_crash_after: Option<String>,
    },
    /// Forget records that came from other instances (local records are never pruned).
    ///
    /// --peer NAME forgets everything that originated at that peer: its records (tombstones
    /// included), their conflict-log entries, our cursor into its change log and its sync state
    /// (last sync, errors, counters). Its entry in wb_peers.txt stays, so the next sync with it
    /// pulls its records again from the start; remove or revoke the peer to stop that.
    /// --older-than DAYS drops the records of other origins whose version is older than DAYS
    /// days. Nothing is sent to anyone: peers keep their copies, and a record comes back if a
    /// peer sends it again (a newer version, or a pull from the start). Asks for confirmation
    /// unless --yes.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["peer", "older_than"])))]
    Prune {
        /// A peer's name (or the key / key id of any other origin).
        #[arg(long, value_name = "NAME")]
        peer: Option<String>,
        /// Records of other origins not updated for this many days (a positive whole number).
        #[arg(long, value_name = "DAYS", allow_hyphen_values = true)]
        older_than: Option<String>,
        /// Show what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct VouchArgs {
    /// The operator's username (or user id) at this instance; asked for when missing.
    #[arg(long, value_name = "USERNAME")]
    pub voucher: Option<String>,
    /// Vouch for this user instead of choosing among root users; repeatable. REF is
    /// ORIGIN/ID or ID (a user of this instance, or a username known at one instance only);
    /// ORIGIN is a key (base64, hex), a key id, a peer name or `local`; ID may be a username.
    #[arg(long = "subject", value_name = "REF")]
    pub subjects: Vec<String>,
    /// Answer yes for every user, without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// A note kept with each vouch (its body).
    #[arg(long)]
    pub note: Option<String>,
    /// The vouches' scope: public (default), trusted or private.
    #[arg(long)]
    pub scope: Option<String>,
    /// Print the users that would be offered and change nothing (for control-socket clients,
    /// which ask on their own terminal and then send --subject … --yes).
    #[arg(long, hide = true)]
    pub list_candidates: bool,
    /// The operator's answers, one `y` or `n` per offered user in order (for control-socket
    /// clients, which ask on their own terminal); needs --voucher.
    #[arg(long, hide = true, value_name = "YN", requires = "voucher")]
    pub answers: Option<String>,
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum TrustCommand {
    /// Show how a user connects to this instance's users: the shortest chain of invites and
    /// vouches, each step with the instance that signed it, or "no path".
    ///
    /// USER_REF is ORIGIN/ID or ID; ORIGIN is a key (base64, hex), a key id, a peer name or
    /// `local`; ID may also be a username. Chains follow invites (inviter → invited) and
    /// vouches (voucher → subject).
    Path {
        /// The user to reach.
        #[arg(value_name = "USER_REF")]
        user: String,
        /// Start from this user instead of this instance's users.
        #[arg(long, value_name = "USER_REF")]
        from: Option<String>,
    },
    /// List root users (users nobody invited) and who vouched for each.
    Roots,
    /// Print the invite/vouch graph: users as nodes grouped by instance, edges labelled
    /// `invite` or `vouch`. DOT for Graphviz (`wb trust graph | dot -Tsvg > trust.svg`) or a
    /// Mermaid flowchart for Markdown viewers. With --json: nodes and edges as data.
    Graph {
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
}

/// `wb trust graph --format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum, Serialize, Deserialize)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum PeersCommand {
    /// Add a peer by its ticket, or by its public key (base64, hex endpoint id or iroh base32).
    ///
    /// The peer is known but not trusted unless --trusted is given: it may sync public records
    /// only. A name or key that is already registered is refused, as is this instance's own key.
    Add {
        /// A short name: letters, digits, '.', '_', '-'.
        name: String,
        /// The peer's public key: base64 (as in its keys/id_ed25519.pub), 64 hex digits (its
        /// endpoint id) or iroh's base32 form.
        #[arg(long, value_name = "KEY", required_unless_present = "ticket")]
        key: Option<String>,
        /// An address to reach it at, HOST:PORT (port 1-65535); repeatable.
        #[arg(long = "addr", value_name = "HOST:PORT")]
        addrs: Vec<String>,
        /// The peer's ticket, as its `wb id` prints it: its key and addresses in one string
        /// (instead of --key and --addr).
        #[arg(long, value_name = "TICKET", conflicts_with_all = ["key", "addrs"])]
        ticket: Option<String>,
        /// Trust it with `trusted` records (as `wb sync peers trust`).
        #[arg(long)]
        trusted: bool,
        /// It is a hub.
        #[arg(long)]
        hub: bool,
        /// A one-line note for operators (no line breaks).
        #[arg(long)]
        notes: Option<String>,
    },
    /// List known peers, sorted by name: key id, flags (trusted, hub, revoked), addresses, notes.
    List,
    /// Forget a peer.
    ///
    /// A removed peer is unknown again: its connections are refused, except that a node in open
    /// mode lets unknown peers pull public records. To shut a peer out for good, revoke it.
    Remove {
        /// The peer's name, as `wb sync peers list` shows it.
        name: String,
    },
    /// Mark a peer trusted: it may receive `trusted` records.
    ///
    /// With --follow-revocations (or --no-follow-revocations) only that setting changes, not
    /// trust: the revocations the peer announces (`wb sync peers revoke --announce` on its side)
    /// are then applied here automatically (or no longer), from the next session on.
    Trust {
        /// The peer's name, as `wb sync peers list` shows it.
        name: String,
        /// Apply the revocations this peer announces (Follow-Revocations: yes).
        #[arg(long, conflicts_with = "no_follow_revocations")]
        follow_revocations: bool,
        /// Stop applying the revocations this peer announces.
        #[arg(long)]
        no_follow_revocations: bool,
    },
    /// Take trust away from a peer: it keeps syncing public records only.
    ///
    /// At the next sync with it (either direction), it receives signed withdrawals of the
    /// trusted records of this instance it was sent, and deletes its copies. For that, our
    /// trusted records get a new version once (trusted peers receive them again).
    Untrust {
        /// The peer's name, as `wb sync peers list` shows it.
        name: String,
    },
    /// Revoke a peer: its connections are refused and it receives nothing.
    ///
    /// Revoking also clears its trust (Trusted: no), and a revoked peer cannot be trusted
    /// again. Its entry stays in wb_peers.txt so that its key stays refused, even in open
    /// mode. To start over with it, remove it and add it again. A revoked peer cannot be told
    /// to delete the trusted records it already has: untrust it and sync once before revoking.
    ///
    /// With --announce, this instance also publishes the revocation: a public record signed by
    /// it (revoked key, reason, time) that travels through peers, hubs and bundles. Peers that
    /// follow this instance's revocations apply it; others see it as advice in `wb sync status`.
    Revoke {
        /// The peer's name, as `wb sync peers list` shows it.
        name: String,
        /// Publish the revocation to peers, hubs and bundles.
        #[arg(long)]
        announce: bool,
        /// Why (one line), published with --announce.
        #[arg(long, value_name = "TEXT", requires = "announce")]
        reason: Option<String>,
    },
    /// Lift a revocation made here: the peer is no longer revoked (it stays untrusted).
    ///
    /// With --announce, a revocation this instance published is withdrawn (a newer signed
    /// version, a tombstone), so peers that applied it lift it too. A key revoked here only by
    /// another instance's announcement stays revoked while that revocation holds.
    Unrevoke {
        /// The peer's name, as `wb sync peers list` shows it.
        name: String,
        /// Also withdraw the revocation this instance published.
        #[arg(long)]
        announce: bool,
    },
}

impl Command {
    /// The command's path arguments, which are relative to the working directory of the process
    /// that parsed them: a control-socket client makes them absolute before sending the command.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            Command::Record(RecordCommand::Put {
                body_file: Some(p), ..
            }) => vec![p],
            Command::Sync(SyncCommand::Export { dir, .. } | SyncCommand::Import { dir, .. }) => {
                vec![dir]
            }
            Command::Sync(SyncCommand::Init { from, .. }) => vec![from],
            Command::Backup { file } | Command::Restore { file, .. } => vec![file],
            Command::App(AppCommand::Import { dir, .. } | AppCommand::Export { dir }) => vec![dir],
            Command::Doctor(args) => args
                .app_snapshot
                .iter_mut()
                .chain(args.app_inbox.iter_mut())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Marks the command confirmed (its `--yes`), after the operator answered yes to its
    /// question. False: the command asks nothing.
    pub fn confirm(&mut self) -> bool {
        match self {
            Command::Restore { yes, .. }
            | Command::Sync(SyncCommand::Keygen { yes, .. } | SyncCommand::Prune { yes, .. }) => {
                *yes = true;
                true
            }
            _ => false,
        }
    }
}
