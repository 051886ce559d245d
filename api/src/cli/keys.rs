//! `berth keys rotate-master` and `berth users forget`: the operator's side of
//! envelope encryption. Each records an event (`MasterKeyRotated`, `UserForgotten`) by
//! `system:cli`, so both show in the audit log.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_application::metadata::Actor;
use berth_domain::keyring::KeyRingCommand;
use berth_domain::user::user_id;
use berth_domain::UserId;
use berth_infrastructure::administrators::administrator_ids;
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher, MASTER_KEY_ENV, MASTER_KEY_FILE};
use berth_infrastructure::key_store::{self, Forgotten};
use deadpool_postgres::Pool;
use secrecy::ExposeSecret;

use crate::cli::users::{cli_bus, cli_metadata};
use crate::http::state::Bus;
use crate::serve::master_keys::load_masters;

use crate::cli::commands::{with_database, with_database_as};
use crate::cli::config::Settings;
use crate::serve::database::ClusterUse;

/// The environment variable that may hold the new master key (base64 of 32 bytes).
pub const NEW_MASTER_KEY_ENV: &str = "BERTH_NEW_MASTER_KEY";

/// `berth keys rotate-master`: re-wraps every data key under a new master key in one
/// transaction, then makes it the master key (replacing `<data_dir>/master.key`, or
/// telling the operator to update `BERTH_MASTER_KEY`). The old key is kept as
/// `<data_dir>/master.key.retired-<id>`: it still opens secrets sealed directly under
/// it before data keys existed.
pub async fn rotate_master(settings: &Settings, new_key_file: Option<&Path>) -> anyhow::Result<()> {
    let data_dir = settings.data_dir.clone();
    let from_env = std::env::var_os(MASTER_KEY_ENV).is_some();
    let key_file = data_dir.join(MASTER_KEY_FILE);
    if !from_env && !key_file.exists() {
        anyhow::bail!(
            "there is no master key to rotate: {MASTER_KEY_ENV} is unset and {} does not exist",
            key_file.display()
        );
    }
    let old = MasterKey::from_env_or_file(&data_dir).context("loading the master key")?;
    let (new, supplied) = new_key(new_key_file)?;
    if new.id() == old.id() {
        anyhow::bail!("the new master key is the current one ({})", old.id());
    }
    let mut masters = MasterKeyCipher::new(old.clone());
    for retired in MasterKey::load_retired(&data_dir).context("loading retired master keys")? {
        masters = masters.with_retired(retired);
    }

    // The new key reaches durable storage (or the operator) before any row is wrapped
    // under it, so no crash can leave data keys wrapped by a key nobody has.
    let next = data_dir.join(format!("{MASTER_KEY_FILE}.next"));
    if !from_env {
        new.write_new_file(&next).with_context(|| {
            format!(
                "writing the new key to {} (if an earlier rotation was interrupted, check which key master.key.next is and remove it)",
                next.display()
            )
        })?;
    } else if !supplied {
        println!(
            "new master key {} (base64; shown once; it becomes valid when this command succeeds):\n{}",
            new.id(),
            new.to_base64().expose_secret()
        );
    }

    // A running Berth keeps the old key in memory and would wrap new data keys under
    // it: refuse to rotate beside one (on the embedded cluster, where that is known).
    let rewrapped = with_database_as(settings, ClusterUse::Exclusive, async |database| {
        let pool = database
            .database()
            .pool(1)
            .context("creating the connection pool")?;
        let rewrapped = key_store::rewrap_all(&pool, &masters, &new).await;
        if let Ok(count) = &rewrapped {
            record_rotation(&pool, &new, u64::try_from(*count).unwrap_or(u64::MAX)).await;
        }
        pool.close();
        rewrapped.context("re-wrapping the data keys")
    })
    .await;
    let rewrapped = match rewrapped {
        Ok(n) => n,
        Err(e) => {
            if !from_env {
                let _ = fs::remove_file(&next);
            }
            return Err(e.context("nothing was changed; the current master key stays in use"));
        }
    };

    let retired = retire(&old, &data_dir)?;
    if !from_env {
        fs::rename(&next, &key_file).with_context(|| {
            format!(
                "the data keys are now wrapped by {}, held in {}: move it to {} by hand",
                new.id(),
                next.display(),
                key_file.display()
            )
        })?;
    }
    tracing::warn!(
        old_key = old.id(),
        new_key = new.id(),
        rewrapped,
        "master key rotated"
    );
    println!(
        "re-wrapped {rewrapped} data key(s): {} → {}",
        old.id(),
        new.id()
    );
    if from_env {
        println!("set {MASTER_KEY_ENV} to the new key before Berth next starts");
    } else {
        println!("{} now holds the new key", key_file.display());
    }
    println!(
        "the old key is kept in {}: it still opens secrets sealed before per-owner data keys; keep it while such secrets exist",
        retired.display()
    );
    Ok(())
}

/// Records the rotation in the key ring's stream. The data keys are already re-wrapped:
/// a failure here is reported, not undone.
async fn record_rotation(pool: &Pool, new: &MasterKey, data_keys: u64) {
    let bus = cli_bus(pool, MasterKeyCipher::new(new.clone()));
    let command = KeyRingCommand::RecordRotation {
        master_key_id: new.id().to_string(),
        data_keys,
    };
    if let Err(e) = bus.key_ring(command, &cli_metadata()).await {
        tracing::error!(error = %e, "the rotation succeeded but its event could not be recorded");
        eprintln!("warning: the rotation succeeded but its event could not be recorded: {e}");
    }
}

/// Records that user `name` was forgotten, when such a user exists (owners from before
/// users existed have no stream to record it on; the log line is then the trail).
/// A user about to be forgotten, checked before its data key is destroyed: the last
/// active administrator is refused while nothing has happened yet.
struct Forgettable {
    bus: Bus,
    id: UserId,
    administrators: Vec<UserId>,
    exists: bool,
}

async fn forgettable_user(
    settings: &Settings,
    pool: &Pool,
    name: &str,
) -> anyhow::Result<Forgettable> {
    let bus = cli_bus(pool, load_masters(&settings.data_dir)?);
    let id = user_id(name);
    let administrators = administrator_ids(&pool.get().await?).await?;
    let user = bus.load_user(id).await?;
    let exists = user.name.is_some() && !user.forgotten;
    if exists {
        bus.ensure_forgettable(id, &administrators)
            .await
            .with_context(|| format!("forgetting user `{name}`"))?;
    }
    Ok(Forgettable {
        bus,
        id,
        administrators,
        exists,
    })
}

async fn record_forgotten(user: &Forgettable) {
    if !user.exists {
        return;
    }
    let outcome = user
        .bus
        .record_user_forgotten(user.id, &user.administrators, &cli_metadata())
        .await;
    if let Err(e) = outcome {
        tracing::error!(error = %e, "the data key is destroyed but the event could not be recorded");
        eprintln!("warning: the data key is destroyed but the event could not be recorded: {e}");
    }
}

/// The new key: from `--new-key-file`, `BERTH_NEW_MASTER_KEY`, or freshly generated;
/// and whether the operator supplied it.
fn new_key(file: Option<&Path>) -> anyhow::Result<(MasterKey, bool)> {
    if let Some(path) = file {
        if !path.exists() {
            anyhow::bail!("the new key file {} does not exist", path.display());
        }
        return Ok((MasterKey::from_file(path)?, true));
    }
    match std::env::var(NEW_MASTER_KEY_ENV) {
        Ok(value) => {
            let value = zeroize::Zeroizing::new(value);
            let key = MasterKey::from_base64(&value)
                .with_context(|| format!("reading {NEW_MASTER_KEY_ENV}"))?;
            Ok((key, true))
        }
        Err(_) => Ok((MasterKey::generate(), false)),
    }
}

fn retire(old: &MasterKey, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(format!("{MASTER_KEY_FILE}.retired-{}", old.id()));
    match old.write_new_file(&path) {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(path),
        Err(e) => Err(e).with_context(|| format!("keeping the old key in {}", path.display())),
    }
}

/// `berth users forget USER`: destroys the data key of `user:USER`; every secret it
/// sealed can never be opened again. The event log is not touched.
pub async fn forget_user(settings: &Settings, user: &str) -> anyhow::Result<()> {
    let owner = match Actor::parse(user) {
        Some(actor) => actor.owner_id(),
        None if !user.is_empty() && !user.contains(':') => Actor::User(user.into()).owner_id(),
        None => anyhow::bail!("`{user}` is not a user name or an owner id like `user:NAME`"),
    };
    let outcome = with_database(settings, async |database| {
        let pool = database
            .database()
            .pool(1)
            .context("creating the connection pool")?;
        let user = match owner.strip_prefix("user:") {
            Some(name) => Some(forgettable_user(settings, &pool, name).await?),
            None => None,
        };
        let outcome = key_store::forget(&pool, &owner).await;
        if outcome.is_ok() {
            if let Some(user) = &user {
                record_forgotten(user).await;
            }
        }
        pool.close();
        outcome.context("destroying the data key")
    })
    .await?;
    match &outcome {
        Forgotten::Destroyed(key_id) => {
            tracing::warn!(owner, key_id, "data key destroyed (crypto-shredded)");
            println!("destroyed the data key {key_id} of {owner}: their secrets can never be opened again");
        }
        Forgotten::AlreadyDestroyed(key_id) => {
            println!("the data key {key_id} of {owner} was already destroyed");
        }
        Forgotten::NeverHadOne(key_id) => {
            tracing::warn!(owner, key_id, "owner forgotten before any data key existed");
            println!("{owner} had no data key; none will ever be created for them");
        }
    }
    Ok(())
}
