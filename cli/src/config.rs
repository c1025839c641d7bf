//! The settings of `wb node run`, `wb hub run` and the app bridge: each from its flag, else its
//! `WB_*` variable, else `<home>/wb.toml`, else its default, remembering where it came from
//! (`wb config show`). Every layer is checked whole before a node starts: an unknown key or a
//! bad value is an error naming the file, line and column (or the variable, or the flag).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use store::Home;

use crate::args::{AppBridgeArgs, CommonFlags, NodeFlags, RelayFlags};
use crate::render::Output;

/// The settings file's name in the home.
pub const FILE_NAME: &str = "wb.toml";

/// The tables of wb.toml; every other key lives at the top level.
const SECTIONS: &[(&str, &str)] = &[
    ("node", "`wb node run`: syncing with peers"),
    ("hub", "`wb hub run`: the packet relay"),
    (
        "app",
        "`wb node run`: the bridge to the WhiteBalloon app beside this instance (relative paths \
         are relative to the node's working directory, where the import command runs too)",
    ),
    ("log", "`wb node run` and `wb hub run`: logging"),
];

/// One setting: its key in wb.toml (`section.name`), its variable, its flag, its default as
/// TOML (`None`: unset), and what it is.
#[derive(Debug)]
pub struct Spec {
    pub key: &'static str,
    pub env: &'static str,
    pub flag: &'static str,
    pub default: Option<&'static str>,
    /// An example value for an unset one, as TOML (for the file `wb init` writes).
    pub example: &'static str,
    pub doc: &'static str,
}

/// Every setting, in the order `wb config show` prints them.
pub const SPECS: &[Spec] = &[
    Spec {
        key: "listen",
        env: "WB_LISTEN",
        flag: "--listen",
        default: Some("\"0.0.0.0:4433\""),
        example: "",
        doc: "The address to listen on (QUIC), IP:PORT; for `node run` and `hub run`.",
    },
    Spec {
        key: "open",
        env: "WB_OPEN",
        flag: "--open",
        default: Some("false"),
        example: "",
        doc: "Open mode: a node lets unknown peers pull public records; a hub admits any \
              instance that is not revoked.",
    },
    Spec {
        key: "discovery",
        env: "WB_DISCOVERY",
        flag: "--discovery",
        default: Some("\"off\""),
        example: "",
        doc: "Find peers by key without a hub: \"pkarr=URL\" publishes this node's addresses \
              (signed) to the pkarr relay at URL and looks peers without an address up there; \
              \"off\": only wb_peers.txt's addresses and hubs. For `node run`, `sync now` and \
              `doctor`.",
    },
    Spec {
        key: "node.sync_interval",
        env: "WB_NODE_SYNC_INTERVAL",
        flag: "--sync-interval",
        default: Some("30"),
        example: "",
        doc: "Seconds between syncs with each peer, changes or not (at least 1).",
    },
    Spec {
        key: "node.auto_sync",
        env: "WB_NODE_AUTO_SYNC",
        flag: "--auto-sync / --no-auto-sync",
        default: Some("true"),
        example: "",
        doc: "Dial peers by itself; false: only serve peers that connect (and `wb sync now`).",
    },
    Spec {
        key: "node.timeout",
        env: "WB_NODE_TIMEOUT",
        flag: "--timeout",
        default: Some("30"),
        example: "",
        doc: "Seconds a peer may take to send or read one message (1 to 3600).",
    },
    Spec {
        key: "hub.relay_listen",
        env: "WB_HUB_RELAY_LISTEN",
        flag: "--relay-listen",
        default: None,
        example: "\"0.0.0.0:3340\"",
        doc: "Also run a relay server on this address, IP:PORT (plain HTTP: put a TLS proxy \
              in front and set relay_url).",
    },
    Spec {
        key: "hub.relay_url",
        env: "WB_HUB_RELAY_URL",
        flag: "--relay-url",
        default: None,
        example: "\"https://hub.example.org/\"",
        doc: "The URL instances reach the relay at (default: http://<relay_listen>/).",
    },
    Spec {
        key: "app.snapshot",
        env: "WB_APP_SNAPSHOT",
        flag: "--app-snapshot",
        default: None,
        example: "\"data/public_sync\"",
        doc: "The app's export folder: each new snapshot there is adopted.",
    },
    Spec {
        key: "app.inbox",
        env: "WB_APP_INBOX",
        flag: "--app-inbox",
        default: None,
        example: "\"data/wb_inbox\"",
        doc: "Where to write the app's inbox after received changes.",
    },
    Spec {
        key: "app.import_cmd",
        env: "WB_APP_IMPORT_CMD",
        flag: "--app-import-cmd",
        default: None,
        example: "\"./wb sync import data/wb_inbox\"",
        doc: "A shell command that imports the inbox into the app (needs app.inbox).",
    },
    Spec {
        key: "app.poll",
        env: "WB_APP_POLL",
        flag: "--app-poll",
        default: Some("3"),
        example: "",
        doc: "Seconds between looks for a new snapshot and for received changes (at least 1).",
    },
    Spec {
        key: "app.allow_contact",
        env: "WB_APP_ALLOW_CONTACT",
        flag: "--app-allow-contact",
        default: Some("false"),
        example: "",
        doc: "Keep Contact-* fields when adopting snapshots.",
    },
    Spec {
        key: "metrics",
        env: "WB_METRICS",
        flag: "--metrics",
        default: None,
        example: "\"127.0.0.1:9464\"",
        doc: "Serve Prometheus metrics at http://IP:PORT/metrics (wb's and iroh's series); for \
              `node run` and `hub run`.",
    },
    Spec {
        key: "log.format",
        env: "WB_LOG_FORMAT",
        flag: "--log-format",
        default: Some("\"text\""),
        example: "",
        doc: "How log lines look: \"text\", or \"json\" (one JSON object per line, for log \
              shippers).",
    },
    Spec {
        key: "log.level",
        env: "WB_LOG_LEVEL",
        flag: "--log-level",
        default: Some("\"node=info\""),
        example: "",
        doc: "What to log, in RUST_LOG syntax (e.g. \"info\", \"node=debug\"); the variable \
              RUST_LOG counts when WB_LOG_LEVEL is not set.",
    },
];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File { line: usize, column: usize },
    Env(&'static str),
    Flag(&'static str),
}

impl Source {
    fn word(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File { .. } => "file",
            Source::Env(_) => "env",
            Source::Flag(_) => "flag",
        }
    }
}

/// One setting's effective value.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// The effective settings: every one checked, none missing.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `<home>/wb.toml`, and whether it exists.
    pub file: PathBuf,
    pub file_found: bool,
    pub listen: Setting<SocketAddr>,
    pub open: Setting<bool>,
    pub discovery: Setting<node::discovery::Discovery>,
    pub sync_interval: Setting<u64>,
    pub auto_sync: Setting<bool>,
    pub timeout: Setting<u64>,
    pub relay_listen: Setting<Option<SocketAddr>>,
    pub relay_url: Setting<Option<String>>,
    pub app_snapshot: Setting<Option<PathBuf>>,
    pub app_inbox: Setting<Option<PathBuf>>,
    pub app_import_cmd: Setting<Option<String>>,
    pub app_poll: Setting<u64>,
    pub app_allow_contact: Setting<bool>,
    pub metrics: Setting<Option<SocketAddr>>,
    pub log_format: Setting<String>,
    pub log_level: Setting<String>,
}

/// The flags of one command line (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub common: CommonFlags,
    pub sync: NodeFlags,
    pub relay: RelayFlags,
    pub app: AppBridgeArgs,
}

/// A value before it is checked: flag and variable values are text (or typed by clap); file
/// values keep their TOML type.
#[derive(Debug, Clone)]
enum Raw {
    Text(String),
    Int(i64),
    Bool(bool),
    /// A TOML value of another type (array, table, float, date), by its type's name.
    Other(&'static str),
}

impl Raw {
    fn show(&self) -> String {
        match self {
            Raw::Text(s) => format!("{s:?}"),
            Raw::Int(n) => n.to_string(),
            Raw::Bool(b) => b.to_string(),
            Raw::Other(kind) => format!("a TOML {kind}"),
        }
    }
}

/// Which layer a raw value came from (file values must have the right TOML type; variables
/// are text to be read as the setting's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    File,
    Text,
}

/// The file's values by key, each with its position.
#[derive(Debug, Default)]
struct FileValues {
    path: PathBuf,
    values: BTreeMap<&'static str, (Raw, usize, usize)>,
}

/// Reads `<home>/wb.toml` (absent: no values) and checks every key is known.
fn read_file(home: &Path) -> Result<(FileValues, bool)> {
    let path = home.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((
                FileValues {
                    path,
                    values: BTreeMap::new(),
                },
                false,
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let values = parse_file(&text).map_err(|(offset, message)| {
        let (line, column) = line_column(&text, offset);
        anyhow::anyhow!("{}:{line}:{column}: {message}", path.display())
    })?;
    let values = values
        .into_iter()
        .map(|(key, (raw, offset))| {
            let (line, column) = line_column(&text, offset);
            (key, (raw, line, column))
        })
        .collect();
    Ok((FileValues { path, values }, true))
}

/// A wb.toml's settings by key, each with the byte offset of its value.
type Parsed = BTreeMap<&'static str, (Raw, usize)>;

/// The settings in a wb.toml text; an error is a byte offset and a message.
fn parse_file(text: &str) -> Result<Parsed, (usize, String)> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        (offset, e.message().trim().to_string())
    })?;
    let mut out = BTreeMap::new();
    let mut take = |key: &str,
                    at: usize,
                    value: &toml::Spanned<DeValue<'_>>,
                    known: &str|
     -> Result<(), (usize, String)> {
        let Some(spec) = SPECS.iter().find(|s| s.key == key) else {
            return Err((at, unknown_key(key, known)));
        };
        let raw = match value.get_ref() {
            DeValue::String(s) => Raw::Text(s.to_string()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Raw::Int(n),
                Err(_) => return Err((value.span().start, "the number is too large".into())),
            },
            DeValue::Boolean(b) => Raw::Bool(*b),
            other => Raw::Other(other.type_str()),
        };
        out.insert(spec.key, (raw, value.span().start));
        Ok(())
    };
    for (key, value) in doc.get_ref() {
        let name = key.get_ref().as_ref();
        match value.get_ref() {
            DeValue::Table(table) if SECTIONS.iter().any(|(s, _)| *s == name) => {
                let known = SPECS
                    .iter()
                    .filter_map(|s| s.key.strip_prefix(&format!("{name}.")[..]))
                    .collect::<Vec<_>>()
                    .join(", ");
                for (sub, value) in table {
                    let full = format!("{name}.{}", sub.get_ref());
                    take(&full, sub.span().start, value, &known)?;
                }
            }
            _ if SECTIONS.iter().any(|(s, _)| *s == name) => {
                return Err((
                    value.span().start,
                    format!(
                        "`{name}` must be a table ([{name}]), not a {}",
                        value.get_ref().type_str()
                    ),
                ));
            }
            _ => {
                let known = SPECS
                    .iter()
                    .filter(|s| !s.key.contains('.'))
                    .map(|s| s.key)
                    .chain(SECTIONS.iter().map(|(s, _)| *s))
                    .collect::<Vec<_>>()
                    .join(", ");
                take(name, key.span().start, value, &known)?;
            }
        }
    }
    Ok(out)
}

fn unknown_key(key: &str, known: &str) -> String {
    if key == "hubs" || key.ends_with(".hubs") {
        return "unknown key `hubs`: hubs are not set in wb.toml; they are the peers marked \
                `Hub: yes` in wb_peers.txt (`wb sync peers add NAME --key KEY --hub`)"
            .into();
    }
    format!("unknown key `{key}` (known here: {known})")
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// How a setting's value is read and checked; the message says what was expected.
type Check<'a, T> = &'a dyn Fn(&Raw, Layer) -> Result<T, String>;

fn text(raw: &Raw, _: Layer) -> Result<String, String> {
    match raw {
        Raw::Text(s) => Ok(s.clone()),
        other => Err(format!(
            "expected a string in quotes, found {}",
            other.show()
        )),
    }
}

fn boolean(raw: &Raw, layer: Layer) -> Result<bool, String> {
    match (raw, layer) {
        (Raw::Bool(b), _) => Ok(*b),
        (Raw::Text(s), Layer::Text) if s == "true" => Ok(true),
        (Raw::Text(s), Layer::Text) if s == "false" => Ok(false),
        (other, _) => Err(format!("expected true or false, found {}", other.show())),
    }
}

fn seconds(min: u64, max: u64) -> impl Fn(&Raw, Layer) -> Result<u64, String> {
    move |raw, layer| {
        let n = match (raw, layer) {
            (Raw::Int(n), _) => u64::try_from(*n).ok(),
            (Raw::Text(s), Layer::Text) => s.parse::<u64>().ok(),
            _ => None,
        };
        let range = if max == u64::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "expected a whole number of seconds, {range}; found {}",
                raw.show()
            )),
        }
    }
}

fn addr(raw: &Raw, layer: Layer) -> Result<SocketAddr, String> {
    let s = text(raw, layer)?;
    s.parse()
        .map_err(|_| format!("{s:?} is not IP:PORT (e.g. 0.0.0.0:4433)"))
}

fn discovery_value(raw: &Raw, layer: Layer) -> Result<node::discovery::Discovery, String> {
    text(raw, layer)?.parse().map_err(|e| format!("{e}"))
}

fn log_format(raw: &Raw, layer: Layer) -> Result<String, String> {
    let s = text(raw, layer)?;
    match s.as_str() {
        "text" | "json" => Ok(s),
        other => Err(format!("expected \"text\" or \"json\", found {other:?}")),
    }
}

fn format_name(format: crate::args::LogFormat) -> &'static str {
    match format {
        crate::args::LogFormat::Text => "text",
        crate::args::LogFormat::Json => "json",
    }
}

fn filter(raw: &Raw, layer: Layer) -> Result<String, String> {
    let s = text(raw, layer)?;
    tracing_subscriber::EnvFilter::try_new(&s)
        .map(|_| s.clone())
        .map_err(|e| format!("{s:?} is not a log filter in RUST_LOG syntax: {e}"))
}

fn url(raw: &Raw, layer: Layer) -> Result<String, String> {
    let s = text(raw, layer)?;
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(s),
        _ => Err(format!("{s:?} is not an http:// or https:// URL")),
    }
}

/// An optional setting: an empty string (in a variable or the file) unsets it.
fn optional<T>(
    check: impl Fn(&Raw, Layer) -> Result<T, String>,
) -> impl Fn(&Raw, Layer) -> Result<Option<T>, String> {
    move |raw, layer| match raw {
        Raw::Text(s) if s.is_empty() => Ok(None),
        _ => check(raw, layer).map(Some),
    }
}

/// The layers a setting is looked up in.
struct Layers<'a> {
    file: &'a FileValues,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Layers<'_> {
    /// Checks the setting in every layer that has it (so a bad value is refused even where a
    /// higher layer hides it), then takes the highest.
    fn pick<T>(
        &self,
        key: &'static str,
        flag: Option<Raw>,
        check: Check<'_, T>,
        default: T,
    ) -> Result<Setting<T>> {
        let spec = SPECS
            .iter()
            .find(|s| s.key == key)
            .ok_or_else(|| anyhow::anyhow!("internal: no setting {key}"))?;
        let mut best = Setting {
            value: default,
            source: Source::Default,
        };
        if let Some((raw, line, column)) = self.file.values.get(key) {
            let value = check(raw, Layer::File).map_err(|m| {
                anyhow::anyhow!(
                    "{}:{line}:{column}: bad value for `{key}`: {m}",
                    self.file.path.display()
                )
            })?;
            best = Setting {
                value,
                source: Source::File {
                    line: *line,
                    column: *column,
                },
            };
        }
        let mut env_names = vec![spec.env];
        if key == "log.level" {
            env_names.push("RUST_LOG");
        }
        if let Some((name, text)) = env_names
            .into_iter()
            .find_map(|name| (self.env)(name).map(|v| (name, v)))
        {
            let value = check(&Raw::Text(text.clone()), Layer::Text)
                .map_err(|m| anyhow::anyhow!("{name}={text:?}: {m}"))?;
            best = Setting {
                value,
                source: Source::Env(name),
            };
        }
        if let Some(raw) = flag {
            let name = spec.flag.split(' ').next().unwrap_or(spec.flag);
            let value = check(&raw, Layer::Text)
                .map_err(|m| anyhow::anyhow!("{name} {}: {m}", raw.show()))?;
            best = Setting {
                value,
                source: Source::Flag(name),
            };
        }
        Ok(best)
    }
}

/// The effective settings for `home` and these flags, from the process's environment.
pub fn resolve(home: &Home, flags: &Flags) -> Result<Settings> {
    resolve_with(home.root(), flags, &|name| std::env::var(name).ok())
}

/// The discovery a command that dials peers uses (`wb sync now`, `wb doctor`): `flag` (its
/// `--discovery`, `None` when not given), else `WB_DISCOVERY`, else wb.toml's `discovery`, else
/// off. The other settings are checked too: a bad wb.toml is an error here as for `node run`.
pub fn discovery(home: &Home, flag: Option<&str>) -> Result<node::discovery::Discovery> {
    let flags = Flags {
        sync: NodeFlags {
            discovery: flag.map(str::to_string),
            ..NodeFlags::default()
        },
        ..Flags::default()
    };
    Ok(resolve(home, &flags)?.discovery.value)
}

/// [`resolve`] with the environment given (for tests).
pub fn resolve_with(
    home: &Path,
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings> {
    let (file, file_found) = read_file(home)?;
    let layers = Layers { file: &file, env };
    let text_flag = |v: &Option<String>| v.clone().map(Raw::Text);
    let path_flag = |v: &Option<PathBuf>| v.as_ref().map(|p| Raw::Text(p.display().to_string()));
    let int_flag = |v: Option<u64>| v.map(|n| Raw::Int(i64::try_from(n).unwrap_or(i64::MAX)));
    let auto_sync_flag = if flags.sync.no_auto_sync {
        Some(Raw::Bool(false))
    } else if flags.sync.auto_sync {
        Some(Raw::Bool(true))
    } else {
        None
    };
    let path = |raw: &Raw, layer: Layer| text(raw, layer).map(PathBuf::from);
    let settings = Settings {
        listen: layers.pick(
            "listen",
            text_flag(&flags.common.listen),
            &addr,
            SocketAddr::from(([0, 0, 0, 0], 4433)),
        )?,
        open: layers.pick("open", flags.common.open.map(Raw::Bool), &boolean, false)?,
        discovery: layers.pick(
            "discovery",
            text_flag(&flags.sync.discovery),
            &discovery_value,
            node::discovery::Discovery::Off,
        )?,
        sync_interval: layers.pick(
            "node.sync_interval",
            int_flag(flags.sync.sync_interval),
            &seconds(1, u64::MAX),
            30,
        )?,
        auto_sync: layers.pick("node.auto_sync", auto_sync_flag, &boolean, true)?,
        timeout: layers.pick(
            "node.timeout",
            int_flag(flags.sync.timeout),
            &seconds(1, 3600),
            30,
        )?,
        relay_listen: layers.pick(
            "hub.relay_listen",
            text_flag(&flags.relay.relay_listen),
            &optional(addr),
            None,
        )?,
        relay_url: layers.pick(
            "hub.relay_url",
            text_flag(&flags.relay.relay_url),
            &optional(url),
            None,
        )?,
        app_snapshot: layers.pick(
            "app.snapshot",
            path_flag(&flags.app.app_snapshot),
            &optional(path),
            None,
        )?,
        app_inbox: layers.pick(
            "app.inbox",
            path_flag(&flags.app.app_inbox),
            &optional(path),
            None,
        )?,
        app_import_cmd: layers.pick(
            "app.import_cmd",
            text_flag(&flags.app.app_import_cmd),
            &optional(text),
            None,
        )?,
        app_poll: layers.pick(
            "app.poll",
            int_flag(flags.app.app_poll),
            &seconds(1, u64::MAX),
            3,
        )?,
        app_allow_contact: layers.pick(
            "app.allow_contact",
            flags.app.app_allow_contact.map(Raw::Bool),
            &boolean,
            false,
        )?,
        metrics: layers.pick(
            "metrics",
            text_flag(&flags.common.metrics),
            &optional(addr),
            None,
        )?,
        log_format: layers.pick(
            "log.format",
            LOG_FORMAT
                .get()
                .copied()
                .flatten()
                .map(|f| Raw::Text(format_name(f).to_string())),
            &log_format,
            "text".to_string(),
        )?,
        log_level: layers.pick(
            "log.level",
            text_flag(&flags.common.log_level),
            &filter,
            "node=info".to_string(),
        )?,
        file: file.path.clone(),
        file_found,
    };
    settings.check_together()?;
    Ok(settings)
}

impl Settings {
    /// Settings that only make sense with another one.
    fn check_together(&self) -> Result<()> {
        if self.app_import_cmd.value.is_some() && self.app_inbox.value.is_none() {
            bail!(
                "app.import_cmd ({}) needs app.inbox: the command imports the inbox wb writes",
                self.describe(&self.app_import_cmd.source)
            );
        }
        if self.relay_url.value.is_some() && self.relay_listen.value.is_none() {
            bail!(
                "hub.relay_url ({}) needs hub.relay_listen: the URL is the relay's",
                self.describe(&self.relay_url.source)
            );
        }
        Ok(())
    }

    /// Where a value came from, for people: `flag --listen`, `env WB_OPEN`, `wb.toml line 3`.
    fn describe(&self, source: &Source) -> String {
        match source {
            Source::Default => "default".into(),
            Source::File { line, .. } => format!("{FILE_NAME} line {line}"),
            Source::Env(name) => format!("env {name}"),
            Source::Flag(name) => format!("flag {name}"),
        }
    }

    /// Every setting as (key, JSON value, source), in [`SPECS`] order.
    fn rows(&self) -> Vec<(&'static str, Value, &Source)> {
        let path = |p: &Option<PathBuf>| json!(p.as_ref().map(|p| p.display().to_string()));
        vec![
            (
                "listen",
                json!(self.listen.value.to_string()),
                &self.listen.source,
            ),
            ("open", json!(self.open.value), &self.open.source),
            (
                "discovery",
                json!(self.discovery.value.to_string()),
                &self.discovery.source,
            ),
            (
                "node.sync_interval",
                json!(self.sync_interval.value),
                &self.sync_interval.source,
            ),
            (
                "node.auto_sync",
                json!(self.auto_sync.value),
                &self.auto_sync.source,
            ),
            (
                "node.timeout",
                json!(self.timeout.value),
                &self.timeout.source,
            ),
            (
                "hub.relay_listen",
                json!(self.relay_listen.value.map(|a| a.to_string())),
                &self.relay_listen.source,
            ),
            (
                "hub.relay_url",
                json!(self.relay_url.value),
                &self.relay_url.source,
            ),
            (
                "app.snapshot",
                path(&self.app_snapshot.value),
                &self.app_snapshot.source,
            ),
            (
                "app.inbox",
                path(&self.app_inbox.value),
                &self.app_inbox.source,
            ),
            (
                "app.import_cmd",
                json!(self.app_import_cmd.value),
                &self.app_import_cmd.source,
            ),
            (
                "app.poll",
                json!(self.app_poll.value),
                &self.app_poll.source,
            ),
            (
                "app.allow_contact",
                json!(self.app_allow_contact.value),
                &self.app_allow_contact.source,
            ),
            (
                "metrics",
                json!(self.metrics.value.map(|a| a.to_string())),
                &self.metrics.source,
            ),
            (
                "log.format",
                json!(self.log_format.value),
                &self.log_format.source,
            ),
            (
                "log.level",
                json!(self.log_level.value),
                &self.log_level.source,
            ),
        ]
    }
}

/// `node run` and `hub run`: the commands these settings are for, which start logging
/// themselves once their settings are read.
pub fn is_daemon(command: &crate::args::Command) -> bool {
    use crate::args::{Command, HubCommand, NodeCommand};
    matches!(
        command,
        Command::Node(NodeCommand::Run { .. }) | Command::Hub(HubCommand::Run { .. })
    )
}

/// Starts logging to stderr with `log.level` and `log.format` (checked when the settings were
/// read).
pub fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level.value)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("node=info"));
    init_logging_with(filter, settings.log_format.value == "json");
}

/// `--log-format` as given on the command line (`None`: not given), set once by `main`.
static LOG_FORMAT: std::sync::OnceLock<Option<crate::args::LogFormat>> = std::sync::OnceLock::new();

/// Records the command line's `--log-format` (before any settings are read).
pub fn set_log_format(format: Option<crate::args::LogFormat>) {
    let _ = LOG_FORMAT.set(format);
}

/// The log format of a command that reads no settings: `--log-format`, else `WB_LOG_FORMAT`
/// (json or text), else text.
pub fn command_log_json() -> bool {
    match LOG_FORMAT.get().copied().flatten() {
        Some(format) => format == crate::args::LogFormat::Json,
        None => std::env::var("WB_LOG_FORMAT").is_ok_and(|v| v == "json"),
    }
}

/// Starts logging to stderr with this filter, as JSON lines or text (once per process; later
/// calls do nothing).
pub fn init_logging_with(filter: tracing_subscriber::EnvFilter, json: bool) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        logs.json().try_init()
    } else {
        logs.try_init()
    };
}

/// `wb config show`: every setting, its value and where it came from, and the registry's hubs.
pub fn show(home: &Home, flags: &Flags) -> Result<Output> {
    let settings = resolve(home, flags)?;
    let hubs: Vec<String> = store::load_peers(home)?
        .into_iter()
        .filter(|p| p.hub && !p.revoked)
        .map(|p| p.name)
        .collect();
    let rows = settings.rows();
    let mut by_key = serde_json::Map::new();
    let mut lines = vec![format!(
        "settings file: {}{}",
        settings.file.display(),
        if settings.file_found {
            ""
        } else {
            " (not there: `wb init` writes one)"
        }
    )];
    let mut table: Vec<(String, String, String)> = Vec::new();
    for (key, value, source) in &rows {
        let mut entry = json!({"value": value, "source": source.word()});
        match source {
            Source::Default => {}
            Source::File { line, column } => {
                entry["line"] = json!(line);
                entry["column"] = json!(column);
            }
            Source::Env(name) => entry["env"] = json!(name),
            Source::Flag(name) => entry["flag"] = json!(name),
        }
        by_key.insert((*key).to_string(), entry);
        let shown = match value {
            Value::Null => "(unset)".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        table.push(((*key).to_string(), shown, settings.describe(source)));
    }
    table.push((
        "hubs".into(),
        if hubs.is_empty() {
            "(none)".into()
        } else {
            hubs.join(", ")
        },
        "wb_peers.txt, the peers marked `Hub: yes`".into(),
    ));
    let key_width = table.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let value_width = table.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    for (key, value, from) in &table {
        lines.push(format!("{key:key_width$}  {value:value_width$}  {from}"));
    }
    Ok(Output::new(
        lines.join("\n"),
        json!({
            "file": settings.file.display().to_string(),
            "file_found": settings.file_found,
            "settings": by_key,
            "hubs": {"names": hubs, "source": "wb_peers.txt"},
        }),
    ))
}

/// The file `wb init` writes: every setting with its default (unset ones commented out with
/// an example), each explained.
pub fn template() -> String {
    let mut out = String::from(
        "# wb's settings for `wb node run` and `wb hub run` in this home.\n\
         # A flag wins over a WB_* variable, a variable over this file, this file over the\n\
         # default; `wb config show` prints each setting and where it came from. An unknown\n\
         # key or a bad value stops the node before it starts, naming its line and column.\n\
         #\n\
         # Hubs are not set here: they are the peers marked `Hub: yes` in wb_peers.txt\n\
         # (`wb sync peers add NAME --key KEY --hub`).\n",
    );
    fn entry(out: &mut String, spec: &Spec, name: &str) {
        out.push('\n');
        for line in wrap(spec.doc, 90) {
            out.push_str(&format!("# {line}\n"));
        }
        out.push_str(&format!("# (flag {}, variable {})\n", spec.flag, spec.env));
        match spec.default {
            Some(default) => out.push_str(&format!("{name} = {default}\n")),
            None => out.push_str(&format!("# {name} = {}\n", spec.example)),
        }
    }
    for spec in SPECS.iter().filter(|s| !s.key.contains('.')) {
        entry(&mut out, spec, spec.key);
    }
    for (section, about) in SECTIONS {
        out.push_str(&format!("\n[{section}]\n"));
        for line in wrap(about, 90) {
            out.push_str(&format!("# {line}\n"));
        }
        let prefix = format!("{section}.");
        for spec in SPECS {
            if let Some(name) = spec.key.strip_prefix(&prefix[..]) {
                entry(&mut out, spec, name);
            }
        }
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().map_or(0, |l| l.len());
        if last > 0 && last + 1 + word.len() > width {
            lines.push(String::new());
        }
        if let Some(line) = lines.last_mut() {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

/// Writes [`template`] to `<home>/wb.toml` unless a file is there; true when written.
pub fn write_template(home: &Home) -> Result<bool> {
    let path = home.root().join(FILE_NAME);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut file) => {
            use std::io::Write;
            file.write_all(template().as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_text(text: &str, env: &[(&str, &str)], flags: &Flags) -> Result<Settings> {
        let dir = tempfile_dir();
        std::fs::write(dir.join(FILE_NAME), text).map_err(anyhow::Error::from)?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let result = resolve_with(&dir, flags, &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        });
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn tempfile_dir() -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wb-config-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        dir
    }

    #[test]
    fn the_template_parses_to_the_defaults() {
        let from_file = resolve_text(&template(), &[], &Flags::default()).expect("template");
        let dir = tempfile_dir();
        let defaults = resolve_with(&dir, &Flags::default(), &|_| None).expect("defaults");
        let _ = std::fs::remove_dir_all(&dir);
        let values = |s: &Settings| {
            s.rows()
                .into_iter()
                .map(|(k, v, _)| (k, v))
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&from_file), values(&defaults));
        // Every setting with a default is written out (and so comes from the file).
        for (key, _, source) in from_file.rows() {
            let spec = SPECS.iter().find(|s| s.key == key).expect("a spec per row");
            assert_eq!(
                matches!(source, Source::File { .. }),
                spec.default.is_some(),
                "{key}"
            );
        }
        // And every unset one is there as a commented-out example that parses.
        let uncommented = template()
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") && !rest.contains('`') => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let all = resolve_text(&uncommented, &[], &Flags::default()).expect("examples");
        assert!(all.relay_listen.value.is_some() && all.app_import_cmd.value.is_some());
    }

    #[test]
    fn variables_are_wb_and_the_key_in_capitals() {
        for spec in SPECS {
            let expected = format!("WB_{}", spec.key.replace('.', "_").to_uppercase());
            assert_eq!(spec.env, expected);
            let section = spec.key.split_once('.').map(|(s, _)| s);
            assert!(section.is_none_or(|s| SECTIONS.iter().any(|(name, _)| *name == s)));
        }
    }

    #[test]
    fn rows_follow_the_specs() {
        let dir = tempfile_dir();
        let s = resolve_with(&dir, &Flags::default(), &|_| None).expect("defaults");
        let _ = std::fs::remove_dir_all(&dir);
        let keys: Vec<&str> = s.rows().into_iter().map(|(k, _, _)| k).collect();
        let specs: Vec<&str> = SPECS.iter().map(|s| s.key).collect();
        assert_eq!(keys, specs);
    }

    #[test]
    fn positions_and_messages() {
        let err = |text: &str| {
            resolve_text(text, &[], &Flags::default())
                .expect_err("refused")
                .to_string()
        };
        let e = err("open = true\n[node]\nsync_intervall = 5\n");
        assert!(
            e.contains("wb.toml:3:1: unknown key `node.sync_intervall`"),
            "{e}"
        );
        assert!(e.contains("sync_interval, auto_sync, timeout"), "{e}");
        let e = err("[node]\n  sync_interval = \"5\"\n");
        assert!(
            e.contains(":2:19: bad value for `node.sync_interval`"),
            "{e}"
        );
        let e = err("listen = \"nowhere\"\n");
        assert!(e.contains(":1:10: bad value for `listen`"), "{e}");
        let e = err("hubs = [\"a\"]\n");
        assert!(e.contains("wb_peers.txt"), "{e}");
        let e = err("node = 3\n");
        assert!(e.contains(":1:8: `node` must be a table"), "{e}");
        let e = err("[node\n");
        assert!(e.contains("wb.toml:1:"), "{e}");
        let e = err("[app]\nimport_cmd = \"true\"\n");
        assert!(e.contains("needs app.inbox"), "{e}");
    }

    #[test]
    fn flag_over_env_over_file_over_default() {
        let file = "listen = \"127.0.0.1:1\"\nopen = true\n[node]\ntimeout = 7\n";
        let env = [("WB_LISTEN", "127.0.0.1:2"), ("WB_OPEN", "false")];
        let mut flags = Flags::default();
        flags.common.listen = Some("127.0.0.1:3".into());
        let s = resolve_text(file, &env, &flags).expect("settings");
        assert_eq!(s.listen.value.port(), 3);
        assert_eq!(s.listen.source, Source::Flag("--listen"));
        assert!(!s.open.value);
        assert_eq!(s.open.source, Source::Env("WB_OPEN"));
        assert_eq!(s.timeout.value, 7);
        assert_eq!(
            s.timeout.source,
            Source::File {
                line: 4,
                column: 11
            }
        );
        assert_eq!(s.sync_interval.source, Source::Default);
        // A bad variable is refused even when a flag hides it.
        let e = resolve_text("", &[("WB_NODE_TIMEOUT", "soon")], &Flags::default())
            .expect_err("refused")
            .to_string();
        assert!(
            e.starts_with("WB_NODE_TIMEOUT=\"soon\": expected a whole number"),
            "{e}"
        );
        // An empty variable unsets an optional setting the file sets.
        let s = resolve_text(
            "[app]\nsnapshot = \"x\"\n",
            &[("WB_APP_SNAPSHOT", "")],
            &Flags::default(),
        )
        .expect("settings");
        assert_eq!(s.app_snapshot.value, None);
        // RUST_LOG counts for the log level when WB_LOG_LEVEL is not set.
        let s = resolve_text("", &[("RUST_LOG", "debug")], &Flags::default()).expect("ok");
        assert_eq!(s.log_level.source, Source::Env("RUST_LOG"));
    }
}
