//! The settings: the template, the layering, positions and messages.

use super::file::template;
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
