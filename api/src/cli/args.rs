//! The `berth` command line.

use std::path::PathBuf;

use berth_domain::user::Role;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::cli::audit::AuditCommand;
use crate::cli::catalog_import::ImportArgs as CatalogImportArgs;
use crate::cli::clients::ConfigArgs;
use crate::cli::config::{FlagOverrides, LogFormat};
use crate::cli::events_tail::TailArgs;
use crate::cli::events_transfer::{ExportArgs, ImportArgs};
use crate::cli::mcp::ConnectArgs;
use crate::cli::replay::ReplayCommand;
use crate::serve::role::NodeRole;
use crate::serve::runtimes::RuntimeChoice;

/// Berth: an event-sourced control plane for MCP servers.
#[derive(Debug, Parser)]
#[command(name = "berth", version)]
pub struct Cli {
    /// A TOML settings file; unknown keys in it are an error.
    #[arg(long, env = "BERTH_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the admin token, the master key and the embedded cluster live [default: ./.berth].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How log lines are written [default: text].
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Logs what a one-shot command does (starting the embedded cluster, migrations),
    /// which it otherwise keeps to warnings and errors; `berth serve` always logs.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serves the HTTP API (starting the embedded PostgreSQL unless DATABASE_URL is set).
    Serve {
        /// The address to listen on [default: 127.0.0.1:7070].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Which runtime runs MCP servers [default: auto: Docker when it answers].
        #[arg(long, value_enum)]
        runtime: Option<RuntimeChoice>,
        /// Which parts of Berth to run when several run on one database [default: all].
        #[arg(long, value_enum)]
        role: Option<NodeRole>,
        /// The name this process goes by among those on its database [default: host
        /// name and port].
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
    },
    /// Applies pending database migrations and exits.
    Migrate,
    /// Inspects or rebuilds read models.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Follows the event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Manages API keys and the master key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manages users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Checks every event's hash chain and holds the log to its signed checkpoints;
    /// reports the first altered, missing, unlinked or truncated event and exits
    /// non-zero if there is one.
    Verify {
        /// A checkpoint kept elsewhere (from `berth checkpoint` or an export) that the
        /// log must still match; may be given more than once.
        #[arg(long = "anchor", value_name = "FILE")]
        anchors: Vec<PathBuf>,
    },
    /// Signs the event log's head now and prints the checkpoint as JSON, to keep
    /// somewhere the database cannot reach.
    Checkpoint,
    /// Queries and exports the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Rebuilds past states from the event log.
    #[command(subcommand)]
    Replay(ReplayCommand),
    /// Speaks MCP with a local client over standard input and output, relayed to the
    /// gateway (for clients that only start servers as commands).
    #[command(subcommand)]
    Mcp(McpCommand),
    /// Prints what an MCP client needs to reach the gateway, with a fresh key.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Works with the catalog.
    #[command(subcommand)]
    Catalog(CatalogCommand),
}

/// `berth catalog …`.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Registers the servers of an MCP client's configuration (Claude Desktop, Claude
    /// Code, Cursor, VS Code) as custom entries through the running Berth's API:
    /// commands become process entries, URLs remote ones; credentials are not carried
    /// over but become secrets each server brings.
    Import(CatalogImportArgs),
}

/// `berth mcp …`.
#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Relays MCP between standard input and output and the gateway at `/mcp`.
    Connect(ConnectArgs),
}

/// `berth clients …`.
#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Prints the configuration snippet of an MCP client (Claude Desktop, Claude Code,
    /// Cursor, VS Code), with a freshly created key shown this once.
    Config(ConfigArgs),
}

/// `berth keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-wraps every owner's data key under a new master key (generated, or from
    /// `--new-key-file` or BERTH_NEW_MASTER_KEY) and makes it the master key; the old
    /// one is kept as `master.key.retired-<id>` for secrets sealed before data keys.
    RotateMaster {
        /// A file holding the new key (32 raw bytes).
        #[arg(long, value_name = "PATH")]
        new_key_file: Option<PathBuf>,
    },
    /// Creates an API key for a user and prints it (shown this once only).
    Create {
        /// The user's name.
        #[arg(long)]
        user: String,
        /// What to call the key.
        #[arg(long, default_value = "cli")]
        name: String,
        /// When the key stops working (RFC 3339, e.g. 2027-01-31T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        expires_at: Option<DateTime<Utc>>,
        /// Limits the key to this gateway profile (`/mcp/p/NAME`); repeat for more.
        #[arg(long = "profile", value_name = "NAME")]
        profiles: Vec<String>,
    },
    /// Lists a user's API keys (prefixes, never the keys).
    List {
        /// The user's name.
        #[arg(long)]
        user: String,
    },
    /// Revokes an API key: it stops working at once.
    Revoke {
        /// The key's id.
        key_id: Uuid,
    },
}

/// `berth users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Creates a user.
    Create {
        /// Its unique name.
        name: String,
        /// viewer, operator or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Lists every user.
    List,
    /// Disables a user: its keys stop working at once. The last active administrator
    /// cannot be disabled.
    Disable {
        /// The user's name.
        name: String,
    },
    /// Enables a disabled user again: its keys that were not revoked work again.
    Enable {
        /// The user's name.
        name: String,
    },
    /// Destroys a user's data key (crypto-shredding): their secrets can never be opened
    /// again; the event log is left as it is.
    Forget {
        /// The user name, or an owner id like `user:NAME`.
        user: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// `berth events …`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Prints events as they are committed (from `--after`), one line each, reconnecting
    /// after a drop without missing any; until Ctrl-C.
    Tail(TailArgs),
    /// Writes the event log (after `--after`) as JSON Lines, one event per line with
    /// every column, in feed order.
    Export(ExportArgs),
    /// Writes an export into an empty store, keeping positions, ids and hashes.
    Import(ImportArgs),
}

/// `berth projections …`.
#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Builds a fresh copy of one read model from the first event beside the live one
    /// (which keeps answering), then swaps it in atomically; prints the rate and position.
    Rebuild {
        /// `catalog`, `servers`, `audit`, `bulk` or `identity`.
        name: String,
        /// Events per transaction while building the copy.
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        batch_size: i64,
    },
    /// Prints each read model's position, the head position, the lag and the rate (and
    /// the copy of any rebuild under way).
    Status {
        /// Seconds between the two readings the rate is measured over; 0 skips the rate.
        #[arg(long, default_value_t = 1.0, value_name = "SECONDS", value_parser = parse_interval)]
        interval: f64,
        /// One JSON object per projection instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=60.0).contains(&v) => Ok(v),
        _ => Err("must be a number of seconds from 0 to 60".into()),
    }
}

impl Cli {
    /// The log filter to use given the configured one: a one-shot command logs only
    /// warnings and errors unless `-v` or `RUST_LOG` asks for more, so a person sees its
    /// answer, not the embedded cluster starting and stopping.
    pub fn log_filter<'a>(&self, configured: &'a str) -> &'a str {
        let asked = self.verbose || std::env::var_os("RUST_LOG").is_some();
        if asked || matches!(self.command, Command::Serve { .. }) {
            configured
        } else {
            "warn"
        }
    }

    /// The settings the flags override.
    pub fn overrides(&self) -> FlagOverrides {
        FlagOverrides {
            data_dir: self.data_dir.clone(),
            listen: match &self.command {
                Command::Serve { listen, .. } => listen.clone(),
                _ => None,
            },
            runtime: match &self.command {
                Command::Serve { runtime, .. } => *runtime,
                _ => None,
            },
            role: match &self.command {
                Command::Serve { role, .. } => *role,
                _ => None,
            },
            node: match &self.command {
                Command::Serve { node, .. } => node.clone(),
                _ => None,
            },
            log_format: self.log_format,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "berth",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/b",
        ]);
        let cli = cli.unwrap_or_else(|e| panic!("{e}"));
        let flags = cli.overrides();
        assert_eq!(flags.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(flags.data_dir, Some(PathBuf::from("/tmp/b")));
        assert!(Cli::try_parse_from(["berth", "projections", "rebuild", "audit"]).is_ok());
        assert!(Cli::try_parse_from(["berth", "projections", "status"]).is_ok());
        assert!(matches!(
            Cli::try_parse_from("berth projections status --interval 0.5 --json".split(' '))
                .map(|c| c.command),
            Ok(Command::Projections(ProjectionsCommand::Status { json: true, interval })) if interval == 0.5
        ));
        assert!(Cli::try_parse_from("berth projections status --interval -1".split(' ')).is_err());
        assert!(
            Cli::try_parse_from("berth projections rebuild audit --batch-size 0".split(' '))
                .is_err()
        );
        assert!(matches!(
            Cli::try_parse_from(["berth", "verify"]).map(|c| c.command),
            Ok(Command::Verify { .. })
        ));
        assert!(matches!(
            Cli::try_parse_from("berth keys rotate-master --new-key-file /k".split(' '))
                .map(|c| c.command),
            Ok(Command::Keys(KeysCommand::RotateMaster { new_key_file: Some(p) })) if p == Path::new("/k")
        ));
        assert!(matches!(
            Cli::try_parse_from(["berth", "users", "forget", "user:bob"]).map(|c| c.command),
            Ok(Command::Users(UsersCommand::Forget { user })) if user == "user:bob"
        ));
        assert!(matches!(
            Cli::try_parse_from("berth users create ann --role operator".split(' '))
                .map(|c| c.command),
            Ok(Command::Users(UsersCommand::Create { name, role: Role::Operator })) if name == "ann"
        ));
        assert!(Cli::try_parse_from("berth users create ann --role root".split(' ')).is_err());
        assert!(matches!(
            Cli::try_parse_from(
                "berth keys create --user ann --expires-at 2027-01-31T00:00:00Z".split(' ')
            )
            .map(|c| c.command),
            Ok(Command::Keys(KeysCommand::Create {
                expires_at: Some(_),
                ..
            }))
        ));
        assert!(Cli::try_parse_from("berth keys revoke not-a-uuid".split(' ')).is_err());
        let tail = Cli::try_parse_from(
            "berth events tail --after 5 --type ServerCreated --json".split(' '),
        );
        match tail.map(|c| c.command) {
            Ok(Command::Events(EventsCommand::Tail(args))) => {
                assert_eq!(args.after, 5);
                assert_eq!(args.event_type.as_deref(), Some("ServerCreated"));
                assert!(args.json);
            }
            other => panic!("unexpected parse: {other:?}"),
        }
        assert!(Cli::try_parse_from(["berth", "serve", "--log-format", "yaml"]).is_err());
    }
}
