//! The README's main job: a scripted local demo of `wb` in a temporary home. Every command is
//! printed with its output; the demo stops with an error if a step does not behave as shown.
//!
//! Run it with `cargo run -p wb-tests --bin demo`.

use std::process::ExitCode;

use wb_tests::harness::{TestHome, wb_bin};

/// One step: the arguments, and whether `wb` should succeed.
struct Step {
    args: &'static [&'static str],
    expect_ok: bool,
    note: &'static str,
}

const fn ok(note: &'static str, args: &'static [&'static str]) -> Step {
    Step {
        args,
        expect_ok: true,
        note,
    }
}

const fn refused(note: &'static str, args: &'static [&'static str]) -> Step {
    Step {
        args,
        expect_ok: false,
        note,
    }
}

const STEPS: &[Step] = &[
    ok(
        "Create the instance: one Ed25519 key, a store.",
        &["init", "--name", "riverside"],
    ),
    ok("Running init again keeps the identity.", &["init"]),
    ok(
        "Add a user profile; new records are private.",
        &[
            "record",
            "put",
            "user",
            "1",
            "--field",
            "Username=rosa",
            "--field",
            "Display-Name=Rosa",
            "--field",
            "Bio=Cyclist; write to rosa@example.org",
        ],
    ),
    ok(
        "A help request, public from the start.",
        &[
            "record",
            "put",
            "request",
            "7",
            "--field",
            "Title=Fix a bike tyre",
            "--field",
            "Status=open",
            "--field",
            "Created-By=1",
            "--body",
            "Rear wheel, 26 inch.",
            "--scope",
            "public",
        ],
    ),
    ok(
        "The same content again makes no new version.",
        &[
            "record",
            "put",
            "request",
            "7",
            "--field",
            "Title=Fix a bike tyre",
            "--field",
            "Status=open",
            "--field",
            "Created-By=1",
            "--body",
            "Rear wheel, 26 inch.",
            "--scope",
            "public",
        ],
    ),
    ok(
        "Widening the profile warns: its Bio holds an e-mail address.",
        &["scope", "set", "user", "1", "public"],
    ),
    ok("Everything in the store.", &["record", "list"]),
    ok(
        "One record, as JSON for scripts.",
        &["--json", "record", "get", "request", "7"],
    ),
    refused(
        "Bad input is refused with one line and changes nothing.",
        &[
            "record",
            "put",
            "request",
            "8",
            "--field",
            "Title=No status",
        ],
    ),
    ok(
        "Deleting leaves a signed tombstone for peers.",
        &["record", "rm", "request", "7"],
    ),
    ok(
        "Tombstones show with --deleted.",
        &["record", "list", "--deleted"],
    ),
    ok("The identity peers will know this instance by.", &["id"]),
];

fn main() -> ExitCode {
    let home = TestHome::new();
    println!(
        "wb demo in a temporary home: {}\n(binary: {})\n",
        home.home().display(),
        wb_bin().display()
    );
    for (i, step) in STEPS.iter().enumerate() {
        println!("# {}. {}", i + 1, step.note);
        println!(
            "$ wb {}",
            step.args
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let run = home.run(step.args.iter().copied());
        print!("{}", run.stdout);
        eprint!("{}", run.stderr);
        println!();
        if run.status.success() != step.expect_ok {
            eprintln!(
                "demo step {} did not behave as expected (exit status {})",
                i + 1,
                run.status
            );
            return ExitCode::FAILURE;
        }
    }
    println!("Demo finished: every step behaved as expected.");
    ExitCode::SUCCESS
}

fn shell_quote(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_=./@".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
