//! The control socket (§7): while `wb node run` holds a home's store, every other `wb` command on
//! that home is executed by the running node, which has the store open.
//!
//! The socket is `<home>/node.sock`, mode 0600, and the node also checks that the connecting
//! process runs as its own user. A client parses its arguments itself and sends one typed call,
//! a [`Request`]: its wb version, the parsed [`Command`] (paths made absolute against its working
//! directory), `--json`, and whether its stdin is a terminal, as one JSON line. The node never
//! parses arguments a client sent: it decodes the call (a request it cannot decode, such as one
//! from another version of wb, gets an error saying so, and nothing runs), runs the command on
//! its open store and sends back one [`Reply`]: the exit status and the very lines `wb` would
//! have printed. So a command's output is the same with and without a running node.
//!
//! Questions to the operator (`confirm`) cannot be asked by the node: it answers with the
//! question instead, the client asks it on its own terminal and, on "yes", sends the command
//! again, confirmed (its `--yes` set).

use std::io::{BufReader, IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use store::Home;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use crate::args::{Cli, Command, RecordCommand, SyncCommand};
use crate::render::Reply;

/// The socket's file name in the home.
pub const SOCKET_NAME: &str = "node.sock";
/// Largest request accepted (the encoded call).
const MAX_REQUEST: u64 = 1 << 20;
/// Commands run at once for control clients; more wait.
const MAX_CONCURRENT: usize = 8;
/// This build's version: a call names the client's, and the node runs only its own version's.
const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn socket_path(home: &Home) -> PathBuf {
    home.root().join(SOCKET_NAME)
}

/// One call from a client: a command, parsed by the client.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// The client's wb version.
    wb: String,
    /// The command, its paths absolute.
    command: Command,
    /// `--json`: the reply's stdout is the JSON document.
    json: bool,
    /// Whether the client can ask its operator a question.
    stdin_tty: bool,
}

impl Request {
    /// The call for `cli`, its paths made absolute against `cwd`.
    fn new(mut command: Command, json: bool, cwd: &Path) -> Self {
        for p in command.paths_mut() {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        }
        Self {
            wb: VERSION.to_string(),
            command,
            json,
            stdin_tty: std::io::stdin().is_terminal(),
        }
    }

    /// Decodes one request line, or says why it cannot be run: not a request, a request of
    /// another wb version (or of the older form that sent an argument list), or a command that
    /// a node does not run for clients.
    fn decode(line: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            anyhow!("malformed control request (not one JSON line: {e}); nothing ran")
        })?;
        let Some(fields) = value.as_object() else {
            bail!("malformed control request (not a JSON object); nothing ran");
        };
        if fields.contains_key("argv") {
            bail!(
                "this request comes from an older wb, which sends its arguments; the running node \
                 (wb {VERSION}) takes parsed commands only: use the wb that runs the node; \
                 nothing ran"
            );
        }
        match fields.get("wb").and_then(|v| v.as_str()) {
            Some(v) if v == VERSION => {}
            Some(v) => bail!(
                "the running node is wb {VERSION} and this client is wb {v}: use the wb that runs \
                 the node (or restart the node with this one); nothing ran"
            ),
            None => bail!("malformed control request (no wb version); nothing ran"),
        }
        let mut request: Self = serde_json::from_value(value).map_err(|e| {
            anyhow!(
                "the running node (wb {VERSION}) cannot decode this request ({e}): is the client \
                 another build of wb? nothing ran"
            )
        })?;
        if stays_local(&request.command) {
            bail!(
                "this command ({}) runs only in the process that was given it, never through a \
                 running node; nothing ran",
                describe(&request.command)
            );
        }
        for p in request.command.paths_mut() {
            if p.is_relative() {
                bail!(
                    "malformed control request: the path {} is not absolute; nothing ran",
                    p.display()
                );
            }
        }
        Ok(request)
    }
}

/// Commands that run in the node's own process never go through the socket.
/// Nor do those that read no store: `config show` reports this process's environment.
fn stays_local(command: &Command) -> bool {
    crate::config::is_daemon(command)
        || matches!(
            command,
            Command::Config(_) | Command::Completions { .. } | Command::Man { .. }
        )
}

/// Runs the command through the home's running node, if there is one. `None`: no node answers
/// on this home (no socket, or a stale one left by a killed node), so the command runs here.
pub fn forward(cli: &Cli) -> Option<Reply> {
    if stays_local(&cli.command) {
        return None;
    }
    let path = socket_path(&Home::new(&cli.home));
    // Arguments can hold secrets (`record put … --body`): they go only to a socket of our own
    // user, never to one another user left (or linked) in a shared folder.
    if let Err(e) = check_socket_owner(&path) {
        // `wb doctor` then runs here, and reports the socket with its fix.
        if matches!(cli.command, Command::Doctor(_)) {
            return None;
        }
        return Some(Reply::error(&e));
    }
    let stream = UnixStream::connect(&path).ok()?;
    Some(call(stream, &path, cli).unwrap_or_else(|e| Reply::error(&e)))
}

/// A socket at `path` (if any) must be a socket, not a link to one, and belong to this user.
fn check_socket_owner(path: &Path) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let own = nix::unistd::getuid().as_raw();
    if !meta.file_type().is_socket() {
        bail!(
            "{} is not a socket (a {}); refusing to send this command there — remove it if no \
             node runs on this home",
            path.display(),
            if meta.file_type().is_symlink() {
                "symbolic link"
            } else {
                "file of another kind"
            }
        );
    }
    if meta.uid() != own {
        bail!(
            "the control socket {} belongs to uid {}, not to you (uid {own}); refusing to send \
             this command to it",
            path.display(),
            meta.uid()
        );
    }
    Ok(())
}

fn call(stream: UnixStream, path: &Path, cli: &Cli) -> Result<Reply> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let mut request = Request::new(cli.command.clone(), cli.json, &cwd);
    if let Command::Sync(SyncCommand::Vouch(args)) = &request.command
        && request.stdin_tty
        && !args.yes
        && !args.list_candidates
        && args.answers.is_none()
    {
        return vouch_here(stream, path, request);
    }
    let mut stream = stream;
    loop {
        let reply = exchange(&mut stream, &request)?;
        let Some(question) = &reply.ask else {
            return Ok(reply);
        };
        // The node needs an answer: ask here, then send the command again, confirmed.
        if !crate::prompt::ask_terminal(question)? {
            bail!("cancelled; nothing changed");
        }
        if !request.command.confirm() {
            bail!("the running node asked a question for a command that has no --yes: {question}");
        }
        stream = UnixStream::connect(path)
            .context("the node stopped before the command could be confirmed")?;
    }
}

/// Interactive `wb sync vouch` with a running node: the node lists the candidates, the questions
/// are asked here, and the node creates the vouches from the answers (`answers`).
fn vouch_here(stream: UnixStream, path: &Path, mut request: Request) -> Result<Reply> {
    let Command::Sync(SyncCommand::Vouch(args)) = &mut request.command else {
        bail!("not a vouch");
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut prompts = std::io::stderr();
    if args.voucher.is_none() {
        args.voucher = Some(crate::trust_cmd::ask_voucher(&mut input, &mut prompts)?);
    }
    let mut list_args = args.clone();
    list_args.list_candidates = true;
    let list = Request {
        wb: request.wb.clone(),
        command: Command::Sync(SyncCommand::Vouch(list_args)),
        json: true,
        stdin_tty: false,
    };
    let mut stream = stream;
    let reply = exchange(&mut stream, &list)?;
    if reply.code != 0 {
        return Ok(reply);
    }
    let listed: serde_json::Value = serde_json::from_str(reply.stdout.as_deref().unwrap_or(""))
        .context("the running node sent a candidate list wb cannot read")?;
    let candidates: Vec<crate::trust_cmd::UserView> =
        serde_json::from_value(listed["candidates"].clone())
            .context("the running node sent a candidate list wb cannot read")?;
    let answers: String = if candidates.is_empty() {
        String::new()
    } else {
        let chosen = crate::trust_cmd::choose_subjects(&candidates, &mut input, &mut prompts)?;
        (0..candidates.len())
            .map(|i| if chosen.contains(&i) { 'y' } else { 'n' })
            .collect()
    };
    args.answers = Some(answers);
    let mut stream =
        UnixStream::connect(path).context("the node stopped before the vouches were made")?;
    exchange(&mut stream, &request)
}

fn exchange(stream: &mut UnixStream, request: &Request) -> Result<Reply> {
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .context("cannot talk to the running node")?;
    stream.shutdown(std::net::Shutdown::Write).ok();
    let mut buf = Vec::new();
    BufReader::new(stream)
        .read_to_end(&mut buf)
        .context("lost the running node while it ran the command")?;
    serde_json::from_slice(&buf).context("the running node sent a reply wb cannot read")
}

/// Runs one parsed command in this process (`commands::run`).
pub type RunCommand = fn(Cli) -> Result<crate::render::Output>;

/// Serves the control socket of a running node until the task is dropped.
pub struct Server {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `<home>/node.sock` (owner-only) and answers clients. The node holds the store, so
    /// no other node runs on this home and a socket file left behind by a killed one is stale.
    ///
    /// `run` runs one command (`commands::run`, given by the caller so that this module does
    /// not import the dispatcher that imports it); `on_change` is called after a command that
    /// may have written.
    pub fn start(
        home: &Home,
        on_change: Arc<dyn Fn() + Send + Sync>,
        run: RunCommand,
    ) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let path = socket_path(home);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot remove the stale socket {}", path.display()));
            }
        }
        let listener = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("cannot create the control socket {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {} to its owner", path.display()))?;
        let home = home.clone();
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        warn!("control socket: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let home = home.clone();
                let limit = limit.clone();
                let on_change = on_change.clone();
                tokio::spawn(async move {
                    let Ok(_permit) = limit.acquire_owned().await else {
                        return;
                    };
                    if let Err(e) = serve_one(stream, &home, on_change, run).await {
                        warn!("control socket: {e:#}");
                    }
                });
            }
        });
        Ok(Self { path, task })
    }

    /// Stops answering and removes the socket file.
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_one(
    mut stream: tokio::net::UnixStream,
    home: &Home,
    on_change: Arc<dyn Fn() + Send + Sync>,
    run: RunCommand,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let peer = stream
        .peer_cred()
        .context("cannot read the client's credentials")?;
    // The node created the socket, so the socket's owner is the node's user.
    let own_uid = std::fs::metadata(socket_path(home))
        .context("cannot read the control socket's owner")?
        .uid();
    if peer.uid() != own_uid {
        bail!(
            "refused a client running as uid {} (the node runs as uid {own_uid})",
            peer.uid()
        );
    }
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new((&mut stream).take(MAX_REQUEST));
    reader
        .read_line(&mut line)
        .await
        .context("cannot read the request")?;
    let reply = match Request::decode(&line) {
        Ok(request) => {
            let home = home.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            // A plain thread: commands may block (and `sync now` waits on the node's runtime).
            std::thread::spawn(move || {
                let _ = tx.send(execute(request, &home, on_change, run));
            });
            rx.await
                .unwrap_or_else(|_| Reply::error(&anyhow::anyhow!("the command crashed")))
        }
        Err(e) => {
            warn!("control socket: {e:#}");
            Reply::error(&e)
        }
    };
    let bytes = serde_json::to_vec(&reply)?;
    stream.write_all(&bytes).await?;
    stream.shutdown().await?;
    Ok(())
}

/// Runs one client's command as `wb` would, on this node's home.
fn execute(
    request: Request,
    home: &Home,
    on_change: Arc<dyn Fn() + Send + Sync>,
    run: RunCommand,
) -> Reply {
    let cli = Cli {
        home: home.root().to_path_buf(),
        json: request.json,
        log_format: None,
        command: request.command,
    };
    let json = cli.json;
    let writes = !read_only(&cli.command);
    info!(command = %describe(&cli.command), "control: running a command for a local client");
    let result = crate::prompt::for_client(request.stdin_tty, || run(cli));
    if result.is_ok() && writes {
        on_change();
    }
    match result {
        Err(e) if e.downcast_ref::<crate::prompt::NeedsAnswer>().is_some() => {
            Reply::ask(e.to_string())
        }
        other => Reply::render(other, json),
    }
}

/// Commands that never change the store or the peer list (the others wake continuous sync).
fn read_only(command: &Command) -> bool {
    use crate::args::{HubCommand, PeersCommand, TrustCommand};
    match command {
        Command::Id
        | Command::Backup { .. }
        | Command::Trust(TrustCommand::Path { .. } | TrustCommand::Roots)
        | Command::Hub(HubCommand::List | HubCommand::Status)
        | Command::Record(RecordCommand::Get { .. } | RecordCommand::List(_))
        | Command::Sync(
            SyncCommand::Status
            | SyncCommand::Conflicts
            | SyncCommand::Export { .. }
            | SyncCommand::Peers(PeersCommand::List),
        ) => true,
        Command::Sync(SyncCommand::Vouch(args)) => args.list_candidates,
        Command::App(crate::args::AppCommand::Status) => true,
        Command::App(crate::args::AppCommand::Import { dry_run, .. }) => *dry_run,
        Command::Sync(SyncCommand::Prune { dry_run, .. })
        | Command::Sync(SyncCommand::Import { dry_run, .. }) => *dry_run,
        _ => false,
    }
}

fn describe(command: &Command) -> String {
    let text = format!("{command:?}");
    text.split([' ', '(', '{'])
        .next()
        .unwrap_or("?")
        .to_string()
}
