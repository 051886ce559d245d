//! `berth replay server ID [--at POSITION|TIME]`: a server as it was at a point of the
//! event log, rebuilt from its events and printed as `GET /api/v1/servers/{id}?at=`
//! answers it. Reads the database directly (Berth running or not).

use anyhow::Context;
use berth_projections::servers::{server_as_of, AsOf, PastServer};
use clap::Subcommand;
use uuid::Uuid;

use crate::cli::commands::with_database;
use crate::cli::config::Settings;

/// `berth replay …`.
#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Prints a server as it was at a point of the event log (JSON, as
    /// `GET /api/v1/servers/{id}?at=` answers); without `--at`, as of its last event.
    Server {
        /// The server's id.
        id: Uuid,
        /// A global position (every event at or before it) or an RFC 3339 time (every
        /// event recorded at or before it).
        #[arg(long, value_name = "POSITION|TIME", value_parser = parse_as_of)]
        at: Option<AsOf>,
    },
}

fn parse_as_of(text: &str) -> Result<AsOf, String> {
    AsOf::parse(text)
}

/// Runs `berth replay …`.
pub async fn run(settings: &Settings, command: &ReplayCommand) -> anyhow::Result<()> {
    let ReplayCommand::Server { id, at } = command;
    let (id, at) = (*id, *at);
    let past = with_database(settings, async |database| {
        let pool = database
            .database()
            .pool(1)
            .context("creating the connection pool")?;
        let past = async {
            let client = pool.get().await?;
            server_as_of(&client, id, at.unwrap_or(AsOf::Position(i64::MAX)))
                .await
                .context("reading the server's events")
        }
        .await;
        pool.close();
        past
    })
    .await?;
    match (past, at) {
        (PastServer::Existing(server), _) => {
            println!("{}", serde_json::to_string_pretty(&server)?);
            Ok(())
        }
        (PastServer::Absent, None) => anyhow::bail!("no server has the id {id}"),
        (PastServer::Absent, Some(at)) => anyhow::bail!("no server had the id {id} at {at}"),
        (PastServer::Deleted { position }, None) => {
            anyhow::bail!("server {id} was deleted by the event at position {position}")
        }
        (PastServer::Deleted { position }, Some(at)) => anyhow::bail!(
            "server {id} had been deleted at {at} (by the event at position {position})"
        ),
    }
}
