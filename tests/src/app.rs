//! The WhiteBalloon app beside `wb`, played by the app model (`tests/app-model/
//! whiteballoon_app.py`, a copy of `../shared/app-model/`; Python standard library only): an
//! app database in a test home's working directory, sharing the home (and so the key) with wb.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{Run, TestHome};

/// The app model script.
pub fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("app-model/whiteballoon_app.py")
}

/// `python3`, for the model.
pub fn python() -> Command {
    Command::new("python3")
}

/// One app database beside a [`TestHome`]: `<dir>/app.db`, exporting to `<dir>/data/public_sync`
/// signed with the home's key.
#[derive(Debug)]
pub struct App<'a> {
    pub home: &'a TestHome,
    pub db: PathBuf,
    /// The `Instance:` its exports carry.
    pub instance: String,
}

impl<'a> App<'a> {
    /// A new app database (empty tables) beside `home`.
    pub fn new(home: &'a TestHome, instance: &str) -> Self {
        let app = Self {
            home,
            db: home.dir().join("app.db"),
            instance: instance.to_string(),
        };
        app.model(&["exec", "SELECT 1"]);
        app
    }

    /// A new app database seeded as the model seeds it (admin, rosa, sam; private and public
    /// requests, comments and invites).
    pub fn seeded(home: &'a TestHome, instance: &str) -> Self {
        let app = Self::new(home, instance);
        app.model(&["seed"]);
        app
    }

    fn run_model(&self, args: &[&str]) -> Run {
        let mut cmd = python();
        cmd.arg(model())
            .arg(args[0])
            .arg(&self.db)
            .args(&args[1..])
            .current_dir(self.home.dir());
        cmd.output().expect("run python3 with the app model").into()
    }

    fn model(&self, args: &[&str]) -> Run {
        let run = self.run_model(args);
        assert!(run.status.success(), "app model {args:?} failed:\n{run}");
        run
    }

    /// One SQL statement, as an edit made in the app.
    pub fn exec(&self, sql: &str, params: &[&str]) {
        let mut args = vec!["exec", sql];
        args.extend_from_slice(params);
        self.model(&args);
    }

    /// The app's `sync export` into `data/public_sync`, signed with the home's key.
    pub fn export(&self) -> PathBuf {
        let dir = self.home.dir().join("data/public_sync");
        let home = self.home.home().display().to_string();
        let out = dir.display().to_string();
        self.model(&[
            "export",
            &out,
            "--home",
            &home,
            "--instance",
            &self.instance,
        ]);
        dir
    }

    /// The app's `sync import` of `dir`; the run (exit 1 on an integrity error, nothing applied).
    pub fn import(&self, dir: &Path) -> Run {
        self.run_model(&["import", &dir.display().to_string()])
    }

    /// Every table, as JSON: `{"users": [...], "help_requests": [...], ...}`.
    pub fn dump(&self) -> Value {
        let run = self.model(&["dump"]);
        serde_json::from_str(&run.stdout).expect("the app model's dump is JSON")
    }

    /// The rows of one table whose `column` equals `value`.
    pub fn rows(&self, table: &str, column: &str, value: &Value) -> Vec<Value> {
        self.dump()[table]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|r| &r[column] == value)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The first row of `table` whose `column` is `value`; for `username`, also the name the inbox
/// writes for `value` (see [`handed_as`]).
pub fn find<'v>(dump: &'v Value, table: &str, column: &str, value: &str) -> Option<&'v Value> {
    dump[table].as_array()?.iter().find(|r| {
        r[column]
            .as_str()
            .is_some_and(|v| v == value || (column == "username" && handed_as(v, value)))
    })
}

/// Whether `name` is the username the inbox writes for `base`: `base`, `~` and an 8-hex tag.
pub fn handed_as(name: &str, base: &str) -> bool {
    name.strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('~'))
        .is_some_and(|tag| tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}
