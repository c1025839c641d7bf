//! `wb completions SHELL`, `wb man`, and the checks of the systemd units in docs/: generated
//! from (or checked against) the clap definitions in `args`, so they match what `wb` accepts.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use serde_json::json;

use crate::args::Cli;
use crate::commands::Output;

/// The completion script for `shell`, as text (`--json`: `{"shell", "script"}`).
pub fn completions(shell: clap_complete::Shell) -> Result<Output> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "wb", &mut script);
    let script = String::from_utf8(script).context("the completion script is not UTF-8")?;
    let text = script.trim_end().to_string();
    Ok(Output::new(
        text,
        json!({"shell": shell.to_string(), "script": script}),
    ))
}

/// `wb man`: the main page (roff) on stdout; with `dir`, wb.1 and one page per subcommand
/// (wb-node-run.1, …) written there.
pub fn man(dir: Option<&Path>) -> Result<Output> {
    let cmd = Cli::command();
    match dir {
        None => {
            let page = render(cmd)?;
            Ok(Output::new(page.trim_end(), json!({"page": page})))
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut written = Vec::new();
            write_pages(cmd, dir, &mut written)?;
            let text = format!(
                "wrote {} manual pages into {}",
                written.len(),
                dir.display()
            );
            Ok(Output::new(
                text,
                json!({"dir": dir.display().to_string(), "pages": written}),
            ))
        }
    }
}

fn render(cmd: clap::Command) -> Result<String> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .context("cannot render the manual page")?;
    String::from_utf8(page).context("the manual page is not UTF-8")
}

/// Writes `cmd`'s page and, recursively, those of its visible subcommands, each named after
/// its path (`wb-sync-peers-add.1`), as `clap_mangen::generate_to` does, keeping the names.
fn write_pages(cmd: clap::Command, dir: &Path, written: &mut Vec<String>) -> Result<()> {
    fn write(cmd: clap::Command, dir: &Path, written: &mut Vec<String>) -> Result<()> {
        let path = clap_mangen::Man::new(cmd.clone())
            .generate_to(dir)
            .with_context(|| format!("cannot write a manual page into {}", dir.display()))?;
        written.push(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            write(sub, dir, written)?;
        }
        Ok(())
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    write(cmd, dir, written)
}

