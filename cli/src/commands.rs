//! Command dispatch: each command is run by its module and returns its [`Output`] (text and
//! JSON); `main` prints it. Nothing else in the crate imports this module.

use anyhow::Result;
use store::Home;

use crate::args::{AppCommand, Cli, Command, ScopeCommand, SyncCommand, TrustCommand};
use crate::render::Output;

pub fn run(cli: Cli) -> Result<Output> {
    let home = Home::new(&cli.home);
    let json = cli.json;
    match cli.command {
        Command::Init { name } => crate::identity_cmd::init(&home, name.as_deref()),
        Command::Id => crate::identity_cmd::id(&home),
        Command::Record(cmd) => crate::record_cmd::record(&home, cmd),
        Command::Scope(ScopeCommand::Set {
            entity,
            id,
            scope,
            allow_contact,
        }) => crate::record_cmd::scope_set(&home, &entity, &id, &scope, allow_contact),
        Command::Sync(SyncCommand::Keygen {
            force,
            yes,
            test_crash_after,
        }) => crate::identity_cmd::keygen(&home, force, yes, test_crash_after.as_deref()),
        Command::Sync(SyncCommand::Prune {
            peer,
            older_than,
            dry_run,
            yes,
        }) => crate::prune_cmd::prune(&home, peer.as_deref(), older_than.as_deref(), dry_run, yes),
        Command::Sync(SyncCommand::Peers(cmd)) => crate::peers_cmd::run(&home, cmd),
        Command::Sync(SyncCommand::Export { dir, for_peer }) => {
            crate::bundle_cmd::export(&home, &dir, for_peer.as_deref())
        }
        Command::Sync(SyncCommand::Import {
            dir,
            expect_key,
            dry_run,
        }) => crate::bundle_cmd::import(&home, &dir, expect_key.as_deref(), dry_run),
        Command::Sync(SyncCommand::Init {
            from,
            name,
            peer_name,
        }) => crate::bundle_cmd::init_from(&home, &from, name.as_deref(), peer_name.as_deref()),
        Command::Sync(SyncCommand::Status) => crate::bundle_cmd::status(&home),
        Command::Node(crate::args::NodeCommand::Run {
            common,
            sync,
            test_cut_after_batches,
            app,
        }) => {
            let flags = crate::config::Flags {
                common,
                sync,
                app,
                ..Default::default()
            };
            let settings = crate::config::resolve(&home, &flags)?;
            crate::config::init_logging(&settings);
            crate::node_cmd::run(&home, &settings, test_cut_after_batches, json, run)
        }
        Command::Config(crate::args::ConfigCommand::Show {
            common,
            sync,
            relay,
            app,
        }) => crate::config::show(
            &home,
            &crate::config::Flags {
                common,
                sync,
                relay,
                app,
            },
        ),
        Command::Completions { shell } => crate::install::completions(shell),
        Command::Man { dir } => crate::install::man(dir.as_deref()),
        Command::App(AppCommand::Import {
            dir,
            allow_contact,
            dry_run,
        }) => crate::app_cmd::import(&home, &dir, allow_contact, dry_run),
        Command::App(AppCommand::Export { dir }) => crate::app_cmd::export(&home, &dir),
        Command::App(AppCommand::Status) => crate::app_cmd::status(&home),
        Command::Sync(SyncCommand::Now {
            peer,
            hub,
            pull_only,
            push_only,
            timeout,
            discovery,
        }) => {
            let deadlines =
                node::session::Deadlines::per_message(std::time::Duration::from_secs(timeout));
            let direction = match (pull_only, push_only) {
                (true, _) => node::node::Direction::PullOnly,
                (_, true) => node::node::Direction::PushOnly,
                _ => node::node::Direction::Both,
            };
            match peer {
                Some(peer) if !hub => crate::node_cmd::sync_now_with(
                    &home,
                    &peer,
                    direction,
                    deadlines,
                    discovery.as_deref(),
                ),
                _ => crate::hub_cmd::sync_hubs(&home, direction, deadlines),
            }
        }
        Command::Hub(cmd) => crate::hub_cmd::run(&home, cmd, json, run),
        Command::Sync(SyncCommand::Pull { peer }) => crate::node_cmd::sync_now(
            &home,
            &peer,
            node::node::Direction::PullOnly,
            node::session::Deadlines::default(),
        ),
        Command::Sync(SyncCommand::Push { peer }) => crate::node_cmd::sync_now(
            &home,
            &peer,
            node::node::Direction::PushOnly,
            node::session::Deadlines::default(),
        ),
        Command::Sync(SyncCommand::Conflicts) => crate::bundle_cmd::conflicts(&home),
        Command::Sync(SyncCommand::Vouch(args)) => crate::trust_cmd::vouch(&home, args),
        Command::Trust(TrustCommand::Path { user, from }) => {
            crate::trust_cmd::path(&home, &user, from.as_deref())
        }
        Command::Trust(TrustCommand::Roots) => crate::trust_cmd::roots(&home),
        Command::Trust(TrustCommand::Graph { format }) => crate::trust_cmd::graph(&home, format),
        Command::Backup { file } => crate::backup_cmd::backup(&home, &file),
        Command::Restore { file, yes } => crate::backup_cmd::restore(&home, &file, yes),
        Command::Doctor(args) => crate::doctor_cmd::doctor(&home, &args),
    }
}
