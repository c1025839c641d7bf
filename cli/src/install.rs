//! `wb completions SHELL`, `wb man`, and the checks of the systemd units in docs/: generated
//! from (or checked against) the clap definitions in `args`, so they match what `wb` accepts.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use serde_json::json;

use crate::args::Cli;
use crate::render::Output;

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

#[cfg(test)]
mod tests {
    //! The systemd units in docs/ (systemd-analyze is not there in CI): well-formed, sandboxed,
    //! and starting a command line that `wb` accepts.

    use clap::Parser;

    use crate::args::{Cli, Command, HubCommand, NodeCommand};

    const NODE_UNIT: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wb.service"));
    const HUB_UNIT: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/wb-hub.service"
    ));

    /// The directives the units may use (a typo is not silently ignored, as systemd would).
    const KNOWN: &[(&str, &[&str])] = &[
        ("Unit", &["Description", "Documentation", "After", "Wants"]),
        (
            "Service",
            &[
                "Type",
                "User",
                "Group",
                "WorkingDirectory",
                "ExecStart",
                "Restart",
                "RestartSec",
                "TimeoutStopSec",
                "StateDirectory",
                "StateDirectoryMode",
                "UMask",
                "NoNewPrivileges",
                "ProtectSystem",
                "ReadWritePaths",
                "ProtectHome",
                "PrivateTmp",
                "PrivateDevices",
                "ProtectKernelTunables",
                "ProtectKernelModules",
                "ProtectKernelLogs",
                "ProtectControlGroups",
                "ProtectClock",
                "ProtectHostname",
                "ProtectProc",
                "RestrictSUIDSGID",
                "RestrictRealtime",
                "RestrictNamespaces",
                "LockPersonality",
                "MemoryDenyWriteExecute",
                "RemoveIPC",
                "CapabilityBoundingSet",
                "AmbientCapabilities",
                "RestrictAddressFamilies",
                "SystemCallArchitectures",
                "SystemCallFilter",
                "SystemCallErrorNumber",
            ],
        ),
        ("Install", &["WantedBy"]),
    ];

    /// (section, key, value) of every directive; panics on a line that is none of a comment,
    /// a blank, a `[Section]` or a known `Key=Value`.
    fn directives(unit: &str, file: &str) -> Vec<(String, String, String)> {
        let mut section = String::new();
        let mut out = Vec::new();
        for (n, line) in unit.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                assert!(
                    KNOWN.iter().any(|(s, _)| *s == name),
                    "{file}:{}: unknown section [{name}]",
                    n + 1
                );
                section = name.to_string();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{file}:{}: not Key=Value: {line}", n + 1));
            let known = KNOWN
                .iter()
                .find(|(s, _)| *s == section)
                .is_some_and(|(_, keys)| keys.contains(&key));
            assert!(
                known,
                "{file}:{}: unknown directive {key} in [{section}]",
                n + 1
            );
            out.push((section.clone(), key.to_string(), value.to_string()));
        }
        out
    }

    fn get<'a>(d: &'a [(String, String, String)], key: &str) -> &'a str {
        let values: Vec<&str> = d
            .iter()
            .filter(|(_, k, _)| k == key)
            .map(|(_, _, v)| v.as_str())
            .collect();
        assert_eq!(values.len(), 1, "{key} once: {values:?}");
        values[0]
    }

    /// Parses an ExecStart line as `wb` would, checks its program and returns the parse and
    /// its --home.
    fn exec_start(line: &str) -> (Cli, String) {
        let mut words = line.split_whitespace();
        let program = words.next().expect("a program");
        assert!(
            program.starts_with('/') && program.ends_with("/wb"),
            "ExecStart runs an absolute path to wb: {program}"
        );
        let cli = Cli::try_parse_from(std::iter::once("wb").chain(words))
            .unwrap_or_else(|e| panic!("wb refuses ExecStart={line}: {e}"));
        let home = cli.home.display().to_string();
        (cli, home)
    }

    fn check_sandbox(d: &[(String, String, String)], home: &str) {
        assert_eq!(get(d, "NoNewPrivileges"), "yes");
        assert_eq!(get(d, "ProtectSystem"), "strict");
        assert_eq!(
            get(d, "ReadWritePaths"),
            home,
            "the home, and only it, is writable"
        );
        assert_eq!(get(d, "WorkingDirectory"), home);
        assert_eq!(
            format!("/var/lib/{}", get(d, "StateDirectory")),
            home,
            "systemd keeps the home"
        );
        let user = get(d, "User");
        assert!(
            !user.is_empty() && user != "root",
            "a dedicated user: {user}"
        );
        assert_eq!(get(d, "CapabilityBoundingSet"), "");
    }

    #[test]
    fn the_node_unit_runs_node_run_sandboxed() {
        let d = directives(NODE_UNIT, "docs/wb.service");
        let (cli, home) = exec_start(get(&d, "ExecStart"));
        assert!(matches!(
            cli.command,
            Command::Node(NodeCommand::Run { .. })
        ));
        check_sandbox(&d, &home);
        // The commented variant beside the app parses too.
        let beside = NODE_UNIT
            .lines()
            .find_map(|l| l.strip_prefix("#   ExecStart="))
            .expect("the app variant");
        let (cli, _) = exec_start(beside);
        assert!(matches!(
            cli.command,
            Command::Node(NodeCommand::Run { .. })
        ));
    }

    #[test]
    fn the_hub_unit_runs_hub_run_sandboxed() {
        let d = directives(HUB_UNIT, "docs/wb-hub.service");
        let (cli, home) = exec_start(get(&d, "ExecStart"));
        assert!(matches!(cli.command, Command::Hub(HubCommand::Run { .. })));
        check_sandbox(&d, &home);
    }

    #[test]
    fn the_units_install_commands_are_wb_commands() {
        // `sudo -u USER wb --home … ARGS` lines in the comments are commands wb accepts.
        for unit in [NODE_UNIT, HUB_UNIT] {
            for line in unit.lines().filter_map(|l| l.strip_prefix("#   sudo -u ")) {
                // "Riverside" is one word; the units use no other quoting.
                let args = line
                    .split('#')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .skip(2)
                    .map(|w| w.trim_matches('"'));
                Cli::try_parse_from(std::iter::once("wb").chain(args))
                    .unwrap_or_else(|e| panic!("wb refuses `{line}`: {e}"));
            }
        }
    }
}
