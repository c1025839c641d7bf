//! The wb.toml file model: its keys (every one known, checked with its line and column) and
//! the template `wb init` writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use store::Home;

use super::{FILE_NAME, SECTIONS, SPECS, Spec};

/// A value before it is checked: flag and variable values are text (or typed by clap); file
/// values keep their TOML type.
#[derive(Debug, Clone)]
pub(super) enum Raw {
    Text(String),
    Int(i64),
    Bool(bool),
    /// A TOML value of another type (array, table, float, date), by its type's name.
    Other(&'static str),
}

impl Raw {
    pub(super) fn show(&self) -> String {
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
pub(super) enum Layer {
    File,
    Text,
}

/// The file's values by key, each with its position.
#[derive(Debug, Default)]
pub(super) struct FileValues {
    pub(super) path: PathBuf,
    pub(super) values: BTreeMap<&'static str, (Raw, usize, usize)>,
}

/// Reads `<home>/wb.toml` (absent: no values) and checks every key is known.
pub(super) fn read_file(home: &Path) -> Result<(FileValues, bool)> {
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
