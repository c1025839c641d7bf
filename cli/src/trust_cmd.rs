//! `wb sync vouch`, `wb trust path`, `wb trust roots` and `wb trust graph`: vouches and the cross-instance trust
//! graph (issue 6). The graph itself is [`protocol::trust`], pure over records.
//!
//! The work is the instance API's (`store::instance::trust`); this module asks and prints.
//! `sync vouch` is split so that a control-socket client can run the questions on its own
//! terminal while the node process does the work: `TrustView::candidates` computes who is
//! offered, [`ask_voucher`] and [`choose_subjects`] ask on any reader/writer, and
//! `Instance::create_vouches` writes what was chosen (what `--subject … --yes` does). The hidden
//! `--list-candidates` prints the candidates as `UserView`s.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, anyhow, bail};
use protocol::trust::{LinkKind, UserRef};
use protocol::{Entity, Record, Scope};
use serde_json::{Value, json};
use store::Home;
use store::instance::TrustView as View;
pub(crate) use store::instance::UserView;
use store::instance::trust_path::TrustPath;

use crate::args::VouchArgs;
use crate::open::{Instance, open};
use crate::render::{Output, record_json};

/// Wrong answers to one y/n question before giving up.
const ANSWER_TRIES_MAX: usize = 3;

/// True when this process may ask questions: a terminal on stdin, and not a command run inside
/// a node for a control-socket client (its stdin is not the operator's).
fn can_ask() -> bool {
    crate::running::get().is_none() && std::io::stdin().is_terminal()
}

/// Reads one line; `None` at the end of input.
fn read_answer(input: &mut dyn BufRead) -> Result<Option<String>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim().to_string()))
}

/// Asks for the operator's username.
pub(crate) fn ask_voucher(input: &mut dyn BufRead, out: &mut dyn Write) -> Result<String> {
    write!(out, "Your username at this instance (the voucher): ")?;
    out.flush()?;
    match read_answer(input)? {
        Some(name) if !name.is_empty() => Ok(name),
        Some(_) => bail!("no username given; nothing changed"),
        None => bail!("cancelled (end of input); nothing changed"),
    }
}

/// Asks y/n for each candidate; returns the indices answered yes, in order. The end of input
/// cancels everything (nothing is created).
pub(crate) fn choose_subjects(
    candidates: &[UserView],
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<Vec<usize>> {
    writeln!(
        out,
        "{} {} not yet vouched for by this instance:",
        candidates.len(),
        if candidates.len() == 1 {
            "root user (nobody invited them) is"
        } else {
            "root users (nobody invited them) are"
        }
    )?;
    let mut chosen = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let mut tries = 0;
        loop {
            write!(
                out,
                "Vouch for {}, a root user of {}? [y/n] ",
                c.label, c.instance_text
            )?;
            out.flush()?;
            let Some(answer) = read_answer(input)? else {
                bail!("cancelled (end of input); nothing changed");
            };
            match answer.to_ascii_lowercase().as_str() {
                "y" | "yes" => {
                    chosen.push(i);
                    break;
                }
                "n" | "no" => break,
                _ => {
                    tries += 1;
                    if tries >= ANSWER_TRIES_MAX {
                        bail!("no y/n answer for {}; nothing changed", c.label);
                    }
                    writeln!(out, "Please answer y or n.")?;
                }
            }
        }
    }
    Ok(chosen)
}

/// `wb sync vouch`.
pub fn vouch(home: &Home, args: VouchArgs) -> Result<Output> {
    let scope = match args.scope.as_deref() {
        Some(s) => s.parse::<Scope>()?,
        None => Entity::Vouch.default_scope(),
    };
    let inst = open(home)?;
    let view = View::load(&inst)?;
    if args.list_candidates {
        let voucher = args
            .voucher
            .as_deref()
            .map(|v| view.local_user(v))
            .transpose()?;
        let offered = inst.vouch_offer(&view, voucher.as_ref(), &args.subjects)?;
        return Ok(list_candidates(&view, voucher.as_ref(), offered));
    }
    if args.answers.is_none() && !can_ask() && (args.voucher.is_none() || !args.yes) {
        bail!(
            "no terminal to ask on: pass --voucher USERNAME and --yes (with --subject REF, \
             repeatable, to choose whom to vouch for; without it, every root user not yet \
             vouched for)"
        );
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut prompts = std::io::stderr();
    let voucher = match args.voucher.as_deref() {
        Some(v) => view.local_user(v)?,
        None => view.local_user(&ask_voucher(&mut input, &mut prompts)?)?,
    };
    let (offered, views): (Vec<UserRef>, Vec<UserView>) = inst
        .vouch_offer(&view, Some(&voucher), &args.subjects)?
        .into_iter()
        .unzip();
    if offered.is_empty() {
        return Ok(Output::new(
            "Nothing to vouch for: every root user this instance knows is vouched for by it.",
            json!({
                "voucher": view.user_json(&voucher),
                "created": [],
                "declined": [],
            }),
        ));
    }
    let chosen: Vec<usize> = if let Some(answers) = &args.answers {
        answered(answers, offered.len())?
    } else if args.yes {
        (0..offered.len()).collect()
    } else {
        choose_subjects(&views, &mut input, &mut prompts)?
    };
    let subjects: Vec<UserRef> = chosen.iter().map(|&i| offered[i].clone()).collect();
    let records = inst.create_vouches(
        &view,
        &voucher,
        &subjects,
        scope,
        args.note.as_deref().unwrap_or_default(),
    )?;
    Ok(vouch_summary(
        &view, &inst, &voucher, &offered, &chosen, &records,
    ))
}

/// The indices answered yes in a control-socket client's `--answers` (one y/n per offered user).
fn answered(answers: &str, offered: usize) -> Result<Vec<usize>> {
    if answers.chars().count() != offered {
        bail!(
            "{} answers for {offered} users: the root users changed while you answered; run \
             `wb sync vouch` again (nothing changed)",
            answers.chars().count()
        );
    }
    answers
        .chars()
        .enumerate()
        .filter_map(|(i, c)| match c {
            'y' => Some(Ok(i)),
            'n' => None,
            other => Some(Err(anyhow!("--answers takes y and n only, not {other:?}"))),
        })
        .collect()
}

fn list_candidates(
    view: &View,
    voucher: Option<&UserRef>,
    offered: Vec<(UserRef, UserView)>,
) -> Output {
    let candidates: Vec<UserView> = offered.into_iter().map(|(_, v)| v).collect();
    let mut text = String::new();
    for c in &candidates {
        text.push_str(&format!(
            "{}  {}  {}\n",
            c.reference, c.label, c.instance_text
        ));
    }
    if candidates.is_empty() {
        text.push_str("no root users left to vouch for\n");
    }
    Output::new(
        text.trim_end().to_string(),
        json!({
            "voucher": voucher.map(|v| view.user_json(v)),
            "candidates": candidates,
        }),
    )
}

fn vouch_summary(
    view: &View,
    inst: &Instance,
    voucher: &UserRef,
    offered: &[UserRef],
    chosen: &[usize],
    records: &[Record],
) -> Output {
    let local = inst.key().public();
    let mut text = format!(
        "{} vouched for {} of {} {}",
        view.label(voucher),
        records.len(),
        offered.len(),
        if offered.len() == 1 { "user" } else { "users" }
    );
    let mut created = Vec::new();
    for (&i, r) in chosen.iter().zip(records) {
        let subject = &offered[i];
        text.push_str(&format!(
            "\n  {} ({}): vouch {} ({})",
            view.label(subject),
            view.instance_text(&subject.origin),
            r.id,
            r.scope
        ));
        created.push(json!({
            "subject": view.user_json(subject),
            "vouch": record_json(r, &local),
        }));
    }
    let declined: Vec<&UserRef> = (0..offered.len())
        .filter(|i| !chosen.contains(i))
        .map(|i| &offered[i])
        .collect();
    if !declined.is_empty() {
        text.push_str(&format!(
            "\nnot vouched for: {}",
            declined
                .iter()
                .map(|u| view.label(u))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Output::new(
        text,
        json!({
            "voucher": view.user_json(voucher),
            "created": created,
            "declined": declined.iter().map(|u| view.user_json(u)).collect::<Vec<_>>(),
        }),
    )
}

/// `wb trust path USER_REF [--from USER_REF]`.
pub fn path(home: &Home, target: &str, from: Option<&str>) -> Result<Output> {
    let inst = open(home)?;
    let view = View::load(&inst)?;
    let TrustPath {
        target,
        anchors,
        from_local,
        links: found,
    } = view.path(target, from)?;
    let start_text = match anchors.first() {
        Some(u) if !from_local => view.label(u),
        _ => "this instance's users".to_string(),
    };
    let mut j = json!({
        "user": view.user_json(&target),
        "from": anchors.iter().map(|u| view.user_json(u)).collect::<Vec<_>>(),
        "found": found.is_some(),
        "steps": found.as_ref().map(Vec::len),
        "hops": [],
    });
    let Some(links) = found else {
        let text = format!(
            "no path: {} is not reached from {start_text} by invites and vouches",
            view.label(&target)
        );
        return Ok(Output::new(text, j));
    };
    if links.is_empty() {
        let text = format!(
            "{} is one of {start_text}: no invite or vouch needed",
            view.label(&target)
        );
        return Ok(Output::new(text, j));
    }
    let mut text = format!(
        "{} is reached from {start_text} in {} {}:",
        view.label(&target),
        links.len(),
        if links.len() == 1 { "step" } else { "steps" }
    );
    let mut hops = Vec::new();
    for (n, link) in links.iter().enumerate() {
        let (verb, what) = match link.kind {
            LinkKind::Invite => ("invited", "user record"),
            LinkKind::Vouch => ("vouched for", "vouch"),
        };
        text.push_str(&format!(
            "\n  {}. {} {verb} {}: {what} {}, signed by {}",
            n + 1,
            view.label(&link.from),
            view.label(&link.to),
            link.record.id,
            view.instance_text(link.signer()),
        ));
        hops.push(json!({
            "kind": link.kind.as_str(),
            "from": view.user_json(&link.from),
            "to": view.user_json(&link.to),
            "record": {
                "entity": link.record.entity.as_str(),
                "id": link.record.id,
                "origin": link.record.origin.to_base64(),
            },
            "signer": view.signer_json(link.signer()),
        }));
    }
    j["hops"] = Value::Array(hops);
    Ok(Output::new(text, j))
}

/// `wb trust roots`.
pub fn roots(home: &Home) -> Result<Output> {
    let inst = open(home)?;
    let view = View::load(&inst)?;
    let mut text = String::new();
    let mut out = Vec::new();
    for root in view.graph.roots() {
        let vouches = view.graph.vouches_for(root);
        let by: Vec<String> = vouches
            .iter()
            .map(|l| {
                format!(
                    "{} (vouch {}, signed by {})",
                    view.label(&l.from),
                    l.record.id,
                    view.instance_text(l.signer())
                )
            })
            .collect();
        text.push_str(&format!(
            "{} at {}: {}\n",
            view.label(root),
            view.instance_text(&root.origin),
            if by.is_empty() {
                "not vouched for".to_string()
            } else {
                format!("vouched for by {}", by.join("; "))
            }
        ));
        out.push(json!({
            "user": view.user_json(root),
            "vouched": !vouches.is_empty(),
            "vouched_here": vouches.iter().any(|l| *l.signer() == view.local),
            "vouches": vouches.iter().map(|l| json!({
                "id": l.record.id,
                "voucher": view.user_json(&l.from),
                "signer": view.signer_json(l.signer()),
            })).collect::<Vec<_>>(),
        }));
    }
    if out.is_empty() {
        text.push_str("no root users known to this instance\n");
    }
    Ok(Output::new(text.trim_end().to_string(), Value::Array(out)))
}

/// `wb trust graph`: the picture as text; with `--json`, its nodes and edges.
pub fn graph(home: &Home, format: crate::args::GraphFormat) -> Result<Output> {
    use protocol::trust_picture::{Format, render};
    let inst = open(home)?;
    let view = View::load(&inst)?;
    let format = match format {
        crate::args::GraphFormat::Dot => Format::Dot,
        crate::args::GraphFormat::Mermaid => Format::Mermaid,
    };
    let text = render(&view.graph, format, &view);
    let users: Vec<Value> = view
        .graph
        .users()
        .map(|(u, _)| json!({"user": view.user_json(u), "instance": view.signer_json(&u.origin)}))
        .collect();
    let edges: Vec<Value> = view
        .graph
        .links()
        .iter()
        .map(|l| {
            json!({
                "from": l.from.to_string(),
                "to": l.to.to_string(),
                "kind": l.kind.as_str(),
                "record": l.record.id,
                "signer": view.signer_json(l.signer()),
            })
        })
        .collect();
    let text = text.trim_end().to_string();
    Ok(Output::new(text, json!({"users": users, "edges": edges})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(label: &str) -> UserView {
        UserView {
            reference: format!("{}/1", "ab".repeat(32)),
            id: "1".into(),
            username: Some(label.into()),
            origin: String::new(),
            origin_key_id: "0123456789abcdef".into(),
            instance: Some("b".into()),
            local: false,
            root: true,
            label: format!("{label} (b/1)"),
            instance_text: "instance b (key id 0123456789abcdef)".into(),
        }
    }

    #[test]
    fn answers_pick_subjects_and_bad_answers_are_asked_again() {
        let cands = [candidate("rosa"), candidate("tomas"), candidate("ines")];
        let mut input: &[u8] = b"y\nmaybe\nn\nYES\n";
        let mut prompts = Vec::new();
        let chosen = choose_subjects(&cands, &mut input, &mut prompts).expect("answers");
        assert_eq!(chosen, vec![0, 2]);
        let prompts = String::from_utf8(prompts).expect("utf-8");
        assert_eq!(prompts.matches("[y/n]").count(), 4, "{prompts}");
        assert!(prompts.contains("Please answer y or n."), "{prompts}");
        assert!(prompts.contains("rosa (b/1)") && prompts.contains("instance b"));
    }

    #[test]
    fn the_end_of_input_cancels_and_so_do_repeated_bad_answers() {
        let cands = [candidate("rosa"), candidate("tomas")];
        let mut input: &[u8] = b"y\n";
        let err = choose_subjects(&cands, &mut input, &mut Vec::new()).expect_err("eof");
        assert!(err.to_string().contains("nothing changed"), "{err}");
        let mut input: &[u8] = b"a\nb\nc\n";
        let err = choose_subjects(&cands, &mut input, &mut Vec::new()).expect_err("no y/n");
        assert!(err.to_string().contains("rosa"), "{err}");
    }

    #[test]
    fn the_voucher_is_read_from_one_line() {
        let mut input: &[u8] = b"  admin \n";
        let mut prompts = Vec::new();
        let name = ask_voucher(&mut input, &mut prompts).expect("a name");
        assert_eq!(name, "admin");
        assert!(String::from_utf8_lossy(&prompts).contains("username"));
        let mut input: &[u8] = b"";
        assert!(ask_voucher(&mut input, &mut Vec::new()).is_err());
    }

    #[test]
    fn candidates_round_trip_through_json() {
        let c = candidate("rosa");
        let j = serde_json::to_value(&c).expect("json");
        assert!(j["ref"].is_string());
        let back: UserView = serde_json::from_value(j).expect("back");
        assert_eq!(back, c);
    }
}
