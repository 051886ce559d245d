//! `berth`: serve the API, migrate the database, inspect or rebuild read models, verify
//! the event log's hash chains.

use std::process::ExitCode;

use berth_api::cli::args::{
    CatalogCommand, Cli, ClientsCommand, Command, EventsCommand, KeysCommand, McpCommand,
    ProjectionsCommand, UsersCommand,
};
use berth_api::cli::config::Settings;
use berth_api::cli::{
    audit, catalog_import, clients, commands, events_tail, events_transfer, keys, logging, mcp,
    replay, users,
};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: invalid settings: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logging::init(settings.log_format, cli.log_filter(&settings.log)) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match &cli.command {
            Command::Serve { .. } => commands::serve(&settings).await,
            Command::Migrate => commands::migrate(&settings).await,
            Command::Projections(ProjectionsCommand::Rebuild { name, batch_size }) => {
                commands::rebuild(&settings, name, *batch_size).await
            }
            Command::Projections(ProjectionsCommand::Status { interval, json }) => {
                commands::status(&settings, *interval, *json).await
            }
            Command::Events(EventsCommand::Tail(args)) => events_tail::run(&settings, args).await,
            Command::Events(EventsCommand::Export(args)) => {
                events_transfer::export(&settings, args).await
            }
            Command::Events(EventsCommand::Import(args)) => {
                events_transfer::import(&settings, args).await
            }
            Command::Verify { anchors } => commands::verify(&settings, anchors).await,
            Command::Checkpoint => commands::checkpoint(&settings).await,
            Command::Audit(command) => audit::run(&settings, command).await,
            Command::Replay(command) => replay::run(&settings, command).await,
            Command::Mcp(McpCommand::Connect(args)) => mcp::connect(&settings, args).await,
            Command::Clients(ClientsCommand::Config(args)) => {
                clients::config(&settings, args).await
            }
            Command::Catalog(CatalogCommand::Import(args)) => {
                catalog_import::run(&settings, args).await
            }
            Command::Keys(KeysCommand::RotateMaster { new_key_file }) => {
                keys::rotate_master(&settings, new_key_file.as_deref()).await
            }
            Command::Keys(KeysCommand::Create {
                user,
                name,
                expires_at,
                profiles,
            }) => users::create_key(&settings, user, name, *expires_at, profiles).await,
            Command::Keys(KeysCommand::List { user }) => users::list_keys(&settings, user).await,
            Command::Keys(KeysCommand::Revoke { key_id }) => {
                users::revoke_key(&settings, *key_id).await
            }
            Command::Users(UsersCommand::Create { name, role }) => {
                users::create_user(&settings, name, *role).await
            }
            Command::Users(UsersCommand::List) => users::list(&settings).await,
            Command::Users(UsersCommand::Disable { name }) => users::disable(&settings, name).await,
            Command::Users(UsersCommand::Enable { name }) => users::enable(&settings, name).await,
            Command::Users(UsersCommand::Forget { user }) => {
                keys::forget_user(&settings, user).await
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "berth failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
