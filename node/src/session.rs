//! One sync session over one bidirectional QUIC stream (§10): framing, `Hello`, serving a
//! pull from our change log, and pulling a peer's changes into our store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use iroh::endpoint::{RecvStream, SendStream};
use protocol::wire::{
    BATCH_RECORDS_MAX, Cursor, MAX_FRAME_LEN, Message, PROTOCOL_MAJOR, Role, batches_of_sealed,
    capability, code,
};
use protocol::{Audience, PublicKey};
use store::{ApplyOptions, ApplyReport, CheckedBatch, PeerState, Receiving, Serving, Store};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::NodeError;

/// Log entries scanned at most per outgoing batch, so a long run of filtered (private) entries
/// cannot make one batch unbounded work.
pub const SCAN_MAX: usize = 20 * BATCH_RECORDS_MAX;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

/// Reads frames like [`codec`], but looks at a frame's length prefix and its first byte (the
/// message kind) before buffering the rest: a frame of a kind the session does not expect
/// now, or larger than its kind may be ([`Message::frame_limit`]), is refused after 5 bytes.
/// So a peer can make us buffer at most one frame of the kind we wait for.
#[derive(Debug, Default)]
struct FrameReader {
    /// Kinds taken next (an `Error` always is); empty: any kind.
    expect: Vec<&'static str>,
}

impl tokio_util::codec::Decoder for FrameReader {
    type Item = bytes::BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidData, msg);
        let Some(prefix) = src.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > MAX_FRAME_LEN {
            return Err(invalid(format!(
                "a frame of {len} bytes (limit {MAX_FRAME_LEN})"
            )));
        }
        if len > 0 {
            let Some(&first) = src.get(4) else {
                return Ok(None);
            };
            let kind = Message::peek_kind(&[first])
                .ok_or_else(|| invalid("not a wb-sync message".to_string()))?;
            if !(self.expect.is_empty() || kind == "Error" || self.expect.contains(&kind)) {
                return Err(invalid(format!(
                    "expected {}, got {kind}",
                    self.expect.join(" or ")
                )));
            }
            let limit = Message::frame_limit(kind);
            if len > limit {
                return Err(invalid(format!("a {kind} of {len} bytes (limit {limit})")));
            }
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(4 + len);
        let _ = frame.split_to(4);
        Ok(Some(frame))
    }
}

/// How long a session may wait on its peer (issue 11, item 1). QUIC keep-alives stop the idle
/// timeout from ever firing on a peer that is connected but silent, so every read, write and
/// `finish` has its own deadline, and the whole session one more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// One message: reading a whole frame, or writing one (the peer must read it).
    pub message: Duration,
    /// One whole session, from the stream opening to its end. A cut session loses nothing:
    /// each batch is applied with its cursor, and the next session carries on from there.
    pub session: Duration,
}

impl Deadlines {
    /// 30 s per message: a frame is at most 8 MiB, which a 3 Mbit/s link moves in 23 s.
    pub const MESSAGE: Duration = Duration::from_secs(30);
    /// 10 minutes per session: about ten million records at today's speeds.
    pub const SESSION: Duration = Duration::from_secs(600);

    /// Deadlines of `message` per message and at least that per session.
    pub fn per_message(message: Duration) -> Self {
        Self {
            message,
            session: Self::SESSION.max(message),
        }
    }
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            message: Self::MESSAGE,
            session: Self::SESSION,
        }
    }
}

/// A framed, message-typed view of one bidirectional stream, with [`Deadlines`].
pub struct Channel {
    peer: String,
    send: FramedWrite<SendStream, LengthDelimitedCodec>,
    recv: FramedRead<RecvStream, FrameReader>,
    deadlines: Deadlines,
    /// When the session must be over.
    ends: Instant,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({})", self.peer)
    }
}

impl Channel {
    /// A channel with the default [`Deadlines`].
    pub fn new(peer: String, send: SendStream, recv: RecvStream) -> Self {
        Self::with_deadlines(peer, send, recv, Deadlines::default())
    }

    /// A channel whose session starts now, under `deadlines`.
    pub fn with_deadlines(
        peer: String,
        send: SendStream,
        recv: RecvStream,
        deadlines: Deadlines,
    ) -> Self {
        Self {
            peer,
            send: FramedWrite::new(send, codec()),
            recv: FramedRead::new(recv, FrameReader::default()),
            deadlines,
            ends: Instant::now() + deadlines.session,
        }
    }

    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Names the peer anew in errors and logs (an unknown key that proved to be a known
    /// peer's successor).
    pub(crate) fn rename(&mut self, peer: String) {
        self.peer = peer;
    }

    fn protocol(&self, reason: impl Into<String>) -> NodeError {
        NodeError::Protocol {
            peer: self.peer.clone(),
            reason: reason.into(),
        }
    }

    fn lost(&self, reason: impl std::fmt::Display) -> NodeError {
        NodeError::Lost {
            peer: self.peer.clone(),
            reason: reason.to_string(),
        }
    }

    /// Sends one message and flushes it.
    pub async fn send(&mut self, message: &Message) -> Result<(), NodeError> {
        self.write(message, true).await
    }

    /// Queues one message without flushing (the queue is flushed when it grows past the
    /// codec's buffer, by the next `send`, or by `finish`): many small messages then share
    /// packets instead of taking one each.
    pub async fn feed(&mut self, message: &Message) -> Result<(), NodeError> {
        self.write(message, false).await
    }

    async fn write(&mut self, message: &Message, flush: bool) -> Result<(), NodeError> {
        let bytes = message
            .encode()
            .map_err(|e| NodeError::Internal(format!("encoding {}: {e}", message.kind())))?;
        let limit = self.limit();
        let frame = Bytes::from(bytes);
        let step = async {
            if flush {
                self.send.send(frame).await
            } else {
                self.send.feed(frame).await
            }
        };
        match tokio::time::timeout_at(limit.until, step).await {
            Ok(sent) => sent.map_err(|e| self.lost(e)),
            Err(_) => Err(self.timeout(&format!("sending {}", message.kind()), &limit)),
        }
    }

    /// When the step starting now must end: one message's deadline, or the session's if that
    /// comes first.
    fn limit(&self) -> Limit {
        let message_ends = Instant::now() + self.deadlines.message;
        if message_ends <= self.ends {
            Limit {
                until: message_ends,
                what: format!("{} s per message", self.deadlines.message.as_secs_f64()),
            }
        } else {
            Limit {
                until: self.ends,
                what: format!("{} s per session", self.deadlines.session.as_secs_f64()),
            }
        }
    }

    fn timeout(&self, step: &str, limit: &Limit) -> NodeError {
        NodeError::Timeout {
            peer: self.peer.clone(),
            step: step.to_string(),
            limit: limit.what.clone(),
        }
    }

    /// The next message; `None` when the peer finished its side of the stream. An oversized
    /// frame (length prefix over `MAX_FRAME_LEN`) is refused before anything is allocated.
    pub async fn recv(&mut self) -> Result<Option<Message>, NodeError> {
        self.recv_of(&[]).await
    }

    /// Like `recv`, but a message of a kind not in `kinds` (an `Error` is always taken) is
    /// refused from its first byte, before its body is decoded. Empty `kinds`: any kind.
    pub async fn recv_of(&mut self, kinds: &[&'static str]) -> Result<Option<Message>, NodeError> {
        let limit = self.limit();
        kinds.clone_into(&mut self.recv.decoder_mut().expect);
        let next = tokio::time::timeout_at(limit.until, self.recv.next()).await;
        let Ok(next) = next else {
            return Err(self.timeout("waiting for a message", &limit));
        };
        match next {
            None => Ok(None),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(self.protocol(format!("bad frame: {e}")))
            }
            Some(Err(e)) => Err(self.lost(e)),
            Some(Ok(frame)) => Message::decode(&frame)
                .map(Some)
                .map_err(|e| self.protocol(e.to_string())),
        }
    }

    /// Like `recv`, but the stream ending is an error, and so is an `Error` message.
    /// `what` is the kind expected: a frame of another kind is refused before it is decoded.
    pub async fn expect(&mut self, what: &'static str) -> Result<Message, NodeError> {
        match self.recv_of(&[what]).await? {
            None => Err(self.lost(format!("stream ended while waiting for {what}"))),
            Some(Message::Error { code, message }) => Err(NodeError::Refused {
                peer: self.peer.clone(),
                code,
                // The peer's own words: bounded and safe to print or store.
                reason: protocol::text::peer_text(&message),
            }),
            Some(m) => Ok(m),
        }
    }

    /// Tells the peer what went wrong, best effort.
    pub async fn send_error(&mut self, code: u32, message: impl Into<String>) {
        let _ = self
            .send(&Message::Error {
                code,
                message: message.into(),
            })
            .await;
    }

    /// Finishes our side of the stream (flushing what is queued, within the deadlines).
    pub async fn finish(&mut self) {
        let limit = self.limit();
        let _ = tokio::time::timeout_at(limit.until, SinkExt::<Bytes>::flush(&mut self.send)).await;
        let _ = self.send.get_mut().finish();
    }
}

/// The end of one step of a session, and which deadline sets it (for the error).
struct Limit {
    until: Instant,
    what: String,
}

/// Checks the peer's `Hello`: a message of that kind, our major version. Returns its epoch,
/// its role and whether it asks for its own records back ([`capability::OWN_RECORDS`]).
pub async fn expect_hello(ch: &mut Channel) -> Result<([u8; 16], Role, bool), NodeError> {
    let hello = expect_hello_at(ch).await?;
    Ok((hello.epoch, hello.role, hello.own))
}

/// What a peer's `Hello` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerHello {
    pub epoch: [u8; 16],
    pub role: Role,
    /// The peer's wall clock when it sent the `Hello`, if it told it.
    pub time_ms: Option<u64>,
    /// It asks for its own records back ([`capability::OWN_RECORDS`]).
    pub own: bool,
    /// It compares state digests at the end of a session ([`capability::DIGESTS`]).
    pub digests: bool,
    /// A hub that compares state digests over the origins it takes
    /// ([`capability::HUB_DIGESTS`]).
    pub hub_digests: bool,
    /// The successions it shows (`protocol::succession::CAPABILITY`), signatures verified: a
    /// key we do not know may be the successor of one we do.
    pub successions: Vec<(protocol::Record, protocol::succession::Succession)>,
}

/// [`expect_hello`], with the peer's clock.
pub async fn expect_hello_at(ch: &mut Channel) -> Result<PeerHello, NodeError> {
    match ch.expect("Hello").await? {
        Message::Hello {
            major,
            epoch,
            role,
            capabilities,
            ..
        } => {
            if major != PROTOCOL_MAJOR {
                ch.send_error(
                    code::VERSION_MISMATCH,
                    format!("this node speaks wb-sync major version {PROTOCOL_MAJOR}, not {major}"),
                )
                .await;
                return Err(NodeError::VersionMismatch {
                    peer: ch.peer().to_string(),
                    theirs: major,
                    ours: PROTOCOL_MAJOR,
                });
            }
            Ok(PeerHello {
                epoch,
                role,
                time_ms: protocol::wire::hello_time(&capabilities),
                own: capabilities.iter().any(|c| c == capability::OWN_RECORDS),
                digests: capabilities.iter().any(|c| c == capability::DIGESTS),
                hub_digests: role == Role::Hub
                    && capabilities.iter().any(|c| c == capability::HUB_DIGESTS),
                successions: protocol::succession::from_hello(&capabilities),
            })
        }
        other => Err(ch.protocol(format!("expected Hello, got {}", other.kind()))),
    }
}

/// Counts of one direction of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PullStats {
    pub received: u64,
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub stale: u64,
    pub conflicts: u64,
    pub rejected: u64,
}

impl PullStats {
    /// Adds another session direction's counts to these.
    pub fn add(&mut self, other: PullStats) {
        self.received += other.received;
        self.rejected += other.rejected;
        self.add_report(&ApplyReport {
            new: other.new,
            updated: other.updated,
            unchanged: other.unchanged,
            stale: other.stale,
            conflicts: other.conflicts,
            ..ApplyReport::default()
        });
    }

    /// Adds what the applier did (its `received` and `rejected` by the checks aside).
    fn add_applied(&mut self, applied: &PullStats) {
        self.new += applied.new;
        self.updated += applied.updated;
        self.unchanged += applied.unchanged;
        self.stale += applied.stale;
        self.conflicts += applied.conflicts;
        self.rejected += applied.rejected;
    }

    /// Adds what applying one batch did.
    fn add_report(&mut self, report: &ApplyReport) {
        self.new += report.new;
        self.updated += report.updated;
        self.unchanged += report.unchanged;
        self.stale += report.stale;
        self.conflicts += report.conflicts;
        self.rejected += report.rejected;
    }
}

/// Test hooks: misbehaviours a node can be told to show, so tests can exercise recovery.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// While serving a pull, drop the connection after this many batches.
    pub cut_after_batches: Option<u64>,
}

/// Serves a pull: our changes after `cursor` that `audience` may receive, in batches, each with
/// the cursor that covers it. Returns how many records were sent. With `remember`, the peer's
/// state keeps how far it confirmed our log (written only when that changed); without (a key
/// we do not know, pulling from an open node), nothing about the peer is written. With
/// `return_own` (the peer's `Hello` asked for [`capability::OWN_RECORDS`]), the peer's own
/// records are sent back to it too.
#[allow(clippy::too_many_arguments)]
pub async fn serve_pull(
    ch: &mut Channel,
    store: &Arc<Store>,
    me: PublicKey,
    peer: PublicKey,
    audience: Audience,
    cursor: Cursor,
    remember: bool,
    return_own: bool,
    faults: Faults,
) -> Result<u64, NodeError> {
    let epoch = store.epoch().0;
    let s = store.clone();
    let state = tokio::task::spawn_blocking(move || s.peer_state(&peer))
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
    // A cursor of another epoch (our store was recreated) means: from the start. So does a
    // peer that became trusted: records filtered out before are behind its cursor.
    let newly_trusted = audience.trusted && !state.served_trusted;
    let after = if cursor.epoch == epoch && !newly_trusted {
        cursor.seq
    } else {
        0
    };
    // The peer's cursor is how far it confirmed our log (shown by `sync status`).
    let ack = move |st: &mut PeerState| {
        if cursor.epoch == epoch {
            st.acked_seq = cursor.seq;
            st.acked_epoch = Some(epoch);
        }
    };
    let s = store.clone();
    let acked = cursor.epoch != epoch
        || (state.acked_seq == cursor.seq && state.acked_epoch == Some(epoch));
    let acking = if !remember || (acked && state.served_trusted == audience.trusted) {
        // Nothing to write: one tiny `Pull` costs no commit.
        None
    } else if state.served_trusted != audience.trusted {
        // Recorded before anything is sent: withdrawals depend on whom we served as trusted.
        tokio::task::spawn_blocking(move || {
            s.update_peer_state(&peer, |st| {
                ack(st);
                st.served_trusted = audience.trusted;
            })
        })
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
        None
    } else {
        // Bookkeeping only: written (one transaction, one sync to disk) while batches go out,
        // not before the first one.
        Some(tokio::task::spawn_blocking(move || {
            s.update_peer_state(&peer, ack)
        }))
    };
    let to = Receiver {
        key: peer,
        audience,
        return_own,
    };
    let served = serve_batches(ch, store, me, to, epoch, after, faults).await;
    if let Some(acking) = acking {
        let acked = acking
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))
            .and_then(|r| r.map_err(NodeError::from));
        let sent = served?;
        acked?;
        return Ok(sent);
    }
    served
}

/// Sends our changes after log sequence `after` in batches until the end of the log. The next
/// step is read from the store (on a blocking thread) while this one is sent, so at most two
/// steps are held.
#[allow(clippy::too_many_arguments)]
async fn serve_batches(
    ch: &mut Channel,
    store: &Arc<Store>,
    me: PublicKey,
    to: Receiver,
    epoch: [u8; 16],
    after: u64,
    faults: Faults,
) -> Result<u64, NodeError> {
    // What the steps learn about requests is passed from one to the next (`store::Serving`).
    let read = |after: u64, mut serving: Serving| {
        let s = store.clone();
        tokio::task::spawn_blocking(move || {
            next_batches(&s, &mut serving, &me, &to, epoch, after).map(|step| (step, serving))
        })
    };
    let mut sent = 0u64;
    let mut batches_sent = 0u64;
    let mut reading = Some(read(after, Serving::default()));
    while let Some(step) = reading.take() {
        let (step, serving) = step
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))??;
        if !step.done {
            reading = Some(read(step.last_seq, serving));
        }
        for message in &step.messages {
            ch.send(message).await?;
            batches_sent += 1;
            if faults.cut_after_batches == Some(batches_sent) {
                return Err(NodeError::Internal(
                    "test fault: connection cut mid-pull".into(),
                ));
            }
        }
        sent += step.records;
    }
    Ok(sent)
}

/// Whom a pull is served to.
#[derive(Clone, Copy, Debug)]
pub struct Receiver {
    pub key: PublicKey,
    pub audience: Audience,
    /// Its own records go back to it too ([`capability::OWN_RECORDS`]).
    pub return_own: bool,
}

/// One step of serving a pull: `Batch` messages (each with the cursor that covers it), the
/// records they hold, and where the scan of the change log stopped.
#[derive(Debug)]
pub struct ServeStep {
    pub messages: Vec<Message>,
    pub records: u64,
    pub last_seq: u64,
    pub done: bool,
}

/// Reads our changes after log sequence `after` that `audience` may receive and cuts them into
/// `Batch` messages: what [`serve_pull`] sends next (blocking: reads the store). `serving` is
/// what the previous steps of the same pull learned. Public so the sync benchmark measures its
/// stages on exactly the bytes a pull moves.
pub fn next_batches(
    store: &Store,
    serving: &mut Serving,
    me: &PublicKey,
    to: &Receiver,
    epoch: [u8; 16],
    after: u64,
) -> Result<ServeStep, NodeError> {
    let out = store.outgoing_serving(
        serving,
        me,
        Some(&to.key),
        to.return_own,
        to.audience,
        after,
        BATCH_RECORDS_MAX,
        SCAN_MAX,
    )?;
    let records = out.records.len() as u64;
    let sealed = batches_of_sealed(out.sealed);
    let parts = sealed.len().max(1);
    let mut sealed = sealed.into_iter();
    let mut messages = Vec::with_capacity(parts);
    for i in 0..parts {
        let last = i + 1 == parts;
        let records = sealed.next().unwrap_or_default();
        let next = Cursor {
            epoch,
            seq: if last { out.last_seq } else { after },
        };
        messages.push(Message::Batch {
            records,
            next,
            done: last && out.done,
        });
    }
    Ok(ServeStep {
        messages,
        records,
        last_seq: out.last_seq,
        done: out.done,
    })
}

/// Starts a pull from `peer`: sends the cursor we stored for it, or 0 when it has none or the
/// peer's store has another epoch (then everything is pulled again). Returns the cursor sent.
pub async fn request_pull(
    ch: &mut Channel,
    store: &Arc<Store>,
    peer: PublicKey,
    peer_epoch: [u8; 16],
) -> Result<Cursor, NodeError> {
    let s = store.clone();
    let stored = tokio::task::spawn_blocking(move || s.cursor(&peer))
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
    let cursor = match stored {
        Some(c) if c.epoch == peer_epoch => c,
        _ => Cursor {
            epoch: peer_epoch,
            seq: 0,
        },
    };
    ch.send(&Message::Pull { cursor }).await?;
    Ok(cursor)
}

/// Checked batches waiting for the applier at most, while the next ones are received and
/// checked: with the group being applied, what a pull holds is bounded by
/// `(CHECKED_QUEUE + BATCHES_PER_COMMIT_MAX + 2)` batches of at most `BATCH_RECORDS_MAX`
/// records. As many as a group, so the next group can be checked while one is written.
pub const CHECKED_QUEUE: usize = BATCHES_PER_COMMIT_MAX;
/// Checked batches applied in one transaction at most. Each commit rewrites every B-tree page
/// it touches and syncs to disk: applying a million records in commits of one 1,000-record
/// batch wrote 3.2 GB for 500 MB of records, in commits of 8 batches 2.3 GB, with less CPU
/// (9.8–11.9 s against 11.7–12.6 s); a `wb sync pull` of them synced to disk 147 times, not 812.
pub const BATCHES_PER_COMMIT_MAX: usize = 8;
/// The longest a checked batch waits for the next ones to share its commit: a slow pull still
/// writes (and moves its cursor) at least this often. The last batch of a pull never waits.
pub const COMMIT_WAIT: Duration = Duration::from_millis(500);

/// Pulls `peer`'s changes into our store: sends our cursor for it, verifies each batch (on all
/// cores), and applies the batches in order, each transaction with the cursor of its last
/// batch. Records of a `revoked` origin (our registry's) are rejected, whoever relays them.
pub async fn pull(
    ch: &mut Channel,
    store: &Arc<Store>,
    peer: PublicKey,
    peer_epoch: [u8; 16],
    revoked: Arc<HashSet<PublicKey>>,
    now_ms: impl Fn() -> u64,
) -> Result<PullStats, NodeError> {
    let start = request_pull(ch, store, peer, peer_epoch).await?;
    let s = store.clone();
    let own = tokio::task::spawn_blocking(move || s.instance_key())
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
    let mut stats = PullStats::default();
    let new_opts = || {
        let mut opts = ApplyOptions::new(format!("peer {}", peer.key_id()), now_ms());
        opts.revoked = revoked.clone();
        opts
    };
    let (queue, waiting) = tokio::sync::mpsc::channel(CHECKED_QUEUE);
    let s = store.clone();
    let runtime = tokio::runtime::Handle::current();
    let applier = tokio::task::spawn_blocking(move || apply_queued(&s, waiting, &runtime));
    let from = (peer, own);
    let result = pull_batches(ch, from, start, &new_opts, &mut stats, queue).await;
    // Whatever happened, what was checked is applied first (the queue closed with
    // `pull_batches`): each group is one transaction, and the caller may look at the store (or
    // pull again) as soon as this returns.
    let applied = applier
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))?;
    match (result, applied) {
        // The applier stopped on an error: that is why the queue closed.
        (Err(Stopped::Applier), Err(e)) => return Err(e.into()),
        (Err(Stopped::Applier), Ok(_)) => {
            return Err(NodeError::Internal("the applier stopped early".into()));
        }
        (Err(Stopped::Session(e)), _) => return Err(e),
        (Ok(()), applied) => stats.add_applied(&applied?),
    }
    Ok(stats)
}

/// A checked batch on its way to the applier, with the options (cursor included) it is
/// applied with.
type Checked = (CheckedBatch, ApplyOptions);

/// Why the pull loop stopped early.
enum Stopped {
    /// The session failed (the peer, the network, a record that does not decode).
    Session(NodeError),
    /// The applier is gone: it failed, and says why.
    Applier,
}

impl From<NodeError> for Stopped {
    fn from(e: NodeError) -> Self {
        Stopped::Session(e)
    }
}

/// Applies checked batches in order as they come, until the queue closes, in groups: a group
/// is written in one transaction, with its last batch's options (its cursor), once it holds
/// [`BATCHES_PER_COMMIT_MAX`] batches, once its first batch waited [`COMMIT_WAIT`], or when
/// the queue closes. Blocking, on one thread for the whole pull (`runtime` drives the waits):
/// committing each group on whichever blocking thread was free raised a 1M-record pull's peak
/// memory from 75 to 109 MB. Returns the counts of everything applied.
fn apply_queued(
    store: &Store,
    mut waiting: tokio::sync::mpsc::Receiver<Checked>,
    runtime: &tokio::runtime::Handle,
) -> Result<PullStats, store::StoreError> {
    let mut stats = PullStats::default();
    let mut group: Vec<Checked> = Vec::with_capacity(BATCHES_PER_COMMIT_MAX);
    // What the pull's transactions learn about requests, from one to the next (`Receiving`).
    let mut receiving = Receiving::default();
    let mut open = true;
    while open {
        let Some(first) = waiting.blocking_recv() else {
            break;
        };
        group.push(first);
        let until = Instant::now() + COMMIT_WAIT;
        while group.len() < BATCHES_PER_COMMIT_MAX {
            match runtime.block_on(tokio::time::timeout_at(until, waiting.recv())) {
                Ok(Some(next)) => group.push(next),
                Ok(None) => {
                    open = false;
                    break;
                }
                // Waited long enough: what is here is written now.
                Err(_) => break,
            }
        }
        if let Some((_, opts)) = group.last() {
            let batches: Vec<&CheckedBatch> = group.iter().map(|(b, _)| b).collect();
            stats.add_report(&store.apply_pulled(&batches, opts, &mut receiving)?);
        }
        group.clear();
    }
    Ok(stats)
}

/// The pull loop, pipelined: each batch is checked (on all cores) while the next one is
/// received, and handed to the applier as soon as it is checked ([`apply_queued`], on a
/// blocking thread), which writes the batches in order, in groups, while the next ones are
/// checked. The cursor only moves with applied batches.
///
/// A batch with a record rejected only for now (dated beyond the clock-skew guard) is applied,
/// but the stored cursor stays where it was before that batch, for the rest of this pull: the
/// next pull fetches the record again, and takes it once our clock has caught up, instead of
/// skipping it for good.
async fn pull_batches(
    ch: &mut Channel,
    (peer, own): (PublicKey, Option<PublicKey>),
    start: Cursor,
    new_opts: &impl Fn() -> ApplyOptions,
    stats: &mut PullStats,
    queue: tokio::sync::mpsc::Sender<Checked>,
) -> Result<(), Stopped> {
    // The cursor everything before is settled up to; held once a record must be fetched again.
    let mut settled = start;
    let mut held = false;
    let peer_name = ch.peer().to_string();
    let mut incoming = Some(expect_batch(ch).await?);
    while let Some((records, next, done)) = incoming.take() {
        stats.received += records.len() as u64;
        let mut opts = new_opts();
        opts.cursor = Some((peer, next));
        let checking = tokio::task::spawn_blocking(move || {
            check_batch(records, &peer, own.as_ref(), &opts)
                .map(|(checked, rejected)| (checked, opts, rejected))
        });
        // Checked, then handed to the applier as soon as it is: a peer that stalls before its
        // next batch does not hold this one back.
        let hand_over = async {
            let (checked, mut opts, rejected) = checking
                .await
                .map_err(|e| NodeError::Internal(e.to_string()))?
                .map_err(|reason| NodeError::Protocol {
                    peer: peer_name.clone(),
                    reason,
                })?;
            held |= checked.has_future_dated();
            if held {
                opts.cursor = Some((peer, settled));
            } else {
                settled = next;
            }
            stats.rejected += rejected;
            // An empty batch brings nothing to write but the cursor: it rides with the next
            // batch that brings records, or the last one. A flood of empty batches costs no
            // commit.
            if !checked.is_empty() || done {
                queue
                    .send((checked, opts))
                    .await
                    .map_err(|_| Stopped::Applier)?;
            }
            Ok::<(), Stopped>(())
        };
        if done {
            hand_over.await?;
        } else {
            // The next batch is received meanwhile.
            let (handed, received) = tokio::join!(hand_over, expect_batch(ch));
            handed?;
            incoming = Some(received?);
        }
    }
    Ok(())
}

/// The next `Batch`: its records, the cursor that covers it, and whether it is the last.
async fn expect_batch(ch: &mut Channel) -> Result<(Vec<Vec<u8>>, Cursor, bool), NodeError> {
    match ch.expect("Batch").await? {
        Message::Batch {
            records,
            next,
            done,
        } => Ok((records, next, done)),
        other => Err(ch.protocol(format!("expected Batch, got {}", other.kind()))),
    }
}

/// Decodes and checks a received batch (signatures on all cores, blocking) and drops what
/// `peer` may not pass us (`protocol::may_accept`: private records, another instance's trusted
/// ones but their withdrawals), counted as rejected. Our `own` records (signed by us, checked
/// like every record) are taken back whatever their scope: a peer sends them only to a
/// restored instance that asked for them. Public for the sync benchmark.
pub fn check_batch(
    records: Vec<Vec<u8>>,
    peer: &PublicKey,
    own: Option<&PublicKey>,
    opts: &ApplyOptions,
) -> Result<(CheckedBatch, u64), String> {
    let mut checked = CheckedBatch::check_sealed(records, opts)
        .map_err(|(index, e)| format!("undecodable record (#{index} of its batch): {e}"))?;
    let rejected = checked.retain(|r| protocol::may_accept(r, peer) || own == Some(&r.origin));
    Ok((checked, rejected as u64))
}
