//! `wb config show`.

use anyhow::Result;
use serde_json::{Value, json};
use store::Home;

use super::{Flags, Source, resolve};
use crate::render::Output;

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
