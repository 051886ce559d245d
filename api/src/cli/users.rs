//! `berth users create|list|disable` and `berth keys create|list|revoke`: managing
//! identities from the command line, with database access as the root of trust (e.g.
//! to replace a lost administrator key). Each change is an event by `system:cli`, so it
//! shows in the audit log like a change made through the API.

use std::sync::Arc;

use anyhow::Context;
use berth_application::identity::IssuedKey;
use berth_application::{Actor, CommandBus, CommandMetadata};
use berth_domain::user::{user_id, Role};
use berth_infrastructure::administrators::administrator_ids;
use berth_infrastructure::cipher::MasterKeyCipher;
use berth_infrastructure::credentials::CredentialKeys;
use berth_infrastructure::envelope::EnvelopeCipher;
use berth_infrastructure::event_store::PostgresEventRepository;
use berth_projections::identity::{get_api_key, list_api_keys, list_users};
use berth_projections::Projections;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::cli::commands::with_database;
use crate::cli::config::Settings;
use crate::cli::table::{Align, Table};
use crate::http::pagination::every_item;
use crate::http::state::Bus;
use crate::serve::database::OpenDatabase;
use crate::serve::master_keys::load_masters;

/// A command bus for the command line, sealing with `masters`.
pub fn cli_bus(pool: &Pool, masters: MasterKeyCipher) -> Bus {
    CommandBus::new(
        PostgresEventRepository::new(pool.clone()),
        Arc::new(EnvelopeCipher::new(pool.clone(), masters)),
    )
}

/// The metadata of a change made from the command line (actor `system:cli`).
pub fn cli_metadata() -> CommandMetadata {
    CommandMetadata::new(Actor::System("cli".into()))
}

/// What an identity command works with.
struct Cli {
    pool: Pool,
    bus: Bus,
    keys: CredentialKeys,
    projections: Projections,
    metadata: CommandMetadata,
}

impl Cli {
    async fn open(settings: &Settings, database: &OpenDatabase) -> anyhow::Result<Self> {
        let pool = database
            .database()
            .pool(2)
            .context("creating the connection pool")?;
        let masters = load_masters(&settings.data_dir)?;
        let keys = CredentialKeys::load(&pool, &masters)
            .await
            .context("loading the credential keys")?;
        let bus = cli_bus(&pool, masters);
        let projections = Projections::new(database.database().clone(), pool.clone());
        Ok(Self {
            pool,
            bus,
            keys,
            projections,
            metadata: cli_metadata(),
        })
    }

    /// Brings the identity read model up to date (taking turns with a running server).
    async fn catch_up(&self) -> anyhow::Result<()> {
        self.projections
            .catch_up(berth_projections::identity::NAME)
            .await
            .context("catching up the identity read model")?;
        Ok(())
    }
}

async fn run<T>(
    settings: &Settings,
    work: impl AsyncFnOnce(&Cli) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    with_database(settings, async |database| {
        let cli = Cli::open(settings, database).await?;
        let outcome = work(&cli).await;
        cli.pool.close();
        outcome
    })
    .await
}

/// `berth users create NAME --role ROLE`.
pub async fn create_user(settings: &Settings, name: &str, role: Role) -> anyhow::Result<()> {
    run(settings, async |cli| {
        let (id, _) = cli
            .bus
            .create_user(name, role, &cli.metadata)
            .await
            .with_context(|| format!("creating user `{name}`"))?;
        cli.catch_up().await?;
        println!("created user {name} ({id}) with role {role}");
        Ok(())
    })
    .await
}

/// `berth users list`.
pub async fn list(settings: &Settings) -> anyhow::Result<()> {
    run(settings, async |cli| {
        cli.catch_up().await?;
        let client = cli.pool.get().await?;
        let users = every_item(|page| list_users(&client, page)).await?;
        let mut table = Table::new(&[
            ("ID", Align::Left),
            ("NAME", Align::Left),
            ("ROLE", Align::Left),
            ("STATE", Align::Left),
        ]);
        for u in users {
            let state = match (u.forgotten, u.disabled) {
                (true, _) => "forgotten",
                (false, true) => "disabled",
                (false, false) => "active",
            };
            table.row(vec![
                u.id.to_string(),
                u.name,
                u.role.to_string(),
                state.into(),
            ]);
        }
        table.write(&mut std::io::stdout().lock())?;
        Ok(())
    })
    .await
}

/// `berth users disable NAME`.
pub async fn disable(settings: &Settings, name: &str) -> anyhow::Result<()> {
    run(settings, async |cli| {
        let administrators = administrator_ids(&cli.pool.get().await?).await?;
        cli.bus
            .disable_user(user_id(name), &administrators, &cli.metadata)
            .await
            .with_context(|| format!("disabling user `{name}`"))?;
        cli.catch_up().await?;
        println!("disabled user {name}: its keys no longer work, its tokens stop when they expire");
        Ok(())
    })
    .await
}

/// `berth users enable NAME`.
pub async fn enable(settings: &Settings, name: &str) -> anyhow::Result<()> {
    run(settings, async |cli| {
        cli.bus
            .enable_user(user_id(name), &cli.metadata)
            .await
            .with_context(|| format!("enabling user `{name}`"))?;
        cli.catch_up().await?;
        println!("enabled user {name}: its keys that were not revoked work again");
        Ok(())
    })
    .await
}

/// Creates a key for `user`, limited to `profiles` when any, and returns it.
pub(crate) async fn issue_key(
    settings: &Settings,
    user: &str,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
    profiles: &[String],
) -> anyhow::Result<IssuedKey> {
    run(settings, async |cli| {
        let profiles = profiles.iter().cloned().collect();
        let issued = cli
            .bus
            .create_api_key(
                user_id(user),
                name,
                expires_at,
                profiles,
                &cli.keys,
                &cli.metadata,
            )
            .await
            .with_context(|| format!("creating a key for user `{user}`"))?;
        cli.catch_up().await?;
        Ok(issued)
    })
    .await
}

/// `berth keys create --user NAME --name KEY [--expires-at TIME] [--profile P]...`: prints
/// the key once.
pub async fn create_key(
    settings: &Settings,
    user: &str,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
    profiles: &[String],
) -> anyhow::Result<()> {
    let issued = issue_key(settings, user, name, expires_at, profiles).await?;
    eprintln!(
        "created API key {} ({}…) for {user}; it is shown this once only:",
        issued.id, issued.prefix
    );
    println!("{}", issued.key.expose_secret());
    Ok(())
}

/// `berth keys list --user NAME`.
pub async fn list_keys(settings: &Settings, user: &str) -> anyhow::Result<()> {
    run(settings, async |cli| {
        cli.catch_up().await?;
        let client = cli.pool.get().await?;
        let keys = every_item(|page| list_api_keys(&client, user_id(user).uuid(), page)).await?;
        let mut table = Table::new(&[
            ("ID", Align::Left),
            ("PREFIX", Align::Left),
            ("NAME", Align::Left),
            ("STATE", Align::Left),
        ]);
        for k in keys {
            let state = match (k.revoked_at, k.expires_at) {
                (Some(_), _) => "revoked".to_string(),
                (None, Some(at)) if at <= Utc::now() => "expired".to_string(),
                (None, Some(at)) => format!("expires {}", at.to_rfc3339()),
                (None, None) => "active".to_string(),
            };
            table.row(vec![k.id.to_string(), k.prefix, k.name, state]);
        }
        table.write(&mut std::io::stdout().lock())?;
        Ok(())
    })
    .await
}

/// `berth keys revoke KEY_ID`.
pub async fn revoke_key(settings: &Settings, key_id: Uuid) -> anyhow::Result<()> {
    run(settings, async |cli| {
        cli.catch_up().await?;
        let key = {
            let client = cli.pool.get().await?;
            get_api_key(&client, key_id).await?
        };
        let Some(key) = key else {
            anyhow::bail!("no API key has the id {key_id}");
        };
        cli.bus
            .revoke_api_key(key.user_id.into(), key_id, &cli.metadata)
            .await
            .with_context(|| format!("revoking key {key_id}"))?;
        cli.catch_up().await?;
        println!("revoked API key {key_id} ({}…)", key.prefix);
        Ok(())
    })
    .await
}
