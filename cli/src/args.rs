//! Command-line arguments (§12). Only this crate parses arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
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
    /// Show this instance's identity: endpoint id, key id, public key, name.
    Id,
    /// Create, read, list and delete records.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Change who may receive a record (the privacy toggle).
    #[command(subcommand)]
    Scope(ScopeCommand),
    /// Sync with other instances (this issue: key management).
    #[command(subcommand)]
    Sync(SyncCommand),
}

#[derive(Debug, Subcommand)]
pub enum RecordCommand {
    /// Create or replace a local record: its fields and body become exactly what is given.
    ///
    /// A new record is private unless --scope says otherwise; an existing record keeps its
    /// scope. A new version is made only if something changed. Required fields per entity:
    /// user: Username; request: Title, Status (draft|pending|open|completed);
    /// comment: Request, User-ID; invite: Created-By, Max-Uses, Use-Count, Auto-Approve;
    /// vouch: Voucher, Subject.
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

#[derive(Debug, Args)]
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

#[derive(Debug, Subcommand)]
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

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Create the instance key if missing (the WhiteBalloon app's name for this step).
    ///
    /// With --force, replace an existing key after confirmation: local records are re-signed
    /// under the new key and withdrawn under the old one, and every peer must re-add this
    /// instance. The old secret key is kept as keys/id_ed25519.replaced-<key id>.
    Keygen {
        /// Replace an existing key.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}
