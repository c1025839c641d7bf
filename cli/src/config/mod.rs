//! The settings of `wb node run`, `wb hub run` and the app bridge: each from its flag, else its
//! `WB_*` variable, else `<home>/wb.toml`, else its default, remembering where it came from
//! (`wb config show`). Every layer is checked whole before a node starts: an unknown key or a
//! bad value is an error naming the file, line and column (or the variable, or the flag).
//!
//! - this file: the settings (their specs), the layering of flag, variable, file and default,
//!   and reading each value;
//! - [`file`]: the wb.toml file model: parsing it with positions, and the template `wb init`
//!   writes;
//! - [`logging`]: starting the logs of a command or a node;
//! - [`show`]: `wb config show`.

mod file;
mod logging;
mod show;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::{Value, json};
use store::Home;

use crate::args::{AppBridgeArgs, CommonFlags, NodeFlags, RelayFlags};
pub use file::write_template;
use file::{FileValues, Layer, Raw, read_file};
pub use logging::{command_log_json, init_logging, init_logging_with, is_daemon, set_log_format};
pub use show::show;

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
            logging::command_line_format().map(|f| Raw::Text(format_name(f).to_string())),
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

#[cfg(test)]
mod tests;
