//! The first administrator: at the first start of an installation (no user `admin`
//! yet), Berth creates user `admin` with the admin role and records the token in
//! `<data_dir>/admin-token` (created if missing, mode 0600) as its first API key. Later
//! starts change nothing, so revoking that key or disabling `admin` sticks; a lost
//! administrator key is replaced with `berth keys create --user admin`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_application::{Actor, AppError, CommandMetadata};
use berth_domain::user::{user_id, Role, UserError};
use berth_infrastructure::credentials::CredentialKeys;
use secrecy::SecretString;

use crate::http::state::Bus;
use crate::serve::admin_token::{AdminToken, ADMIN_TOKEN_FILE};

/// The bootstrap administrator's name.
pub const ADMIN_USER: &str = "admin";

/// What [`ensure_admin`] found or did.
pub struct Bootstrap {
    /// The token in the data directory, if there is one.
    pub token: Option<SecretString>,
    /// Where it is (or would be) stored.
    pub path: PathBuf,
    /// Where the new key's event landed, when this start created the administrator.
    pub position: Option<i64>,
}

/// Creates the bootstrap administrator and its key on an installation's first start.
pub async fn ensure_admin(
    bus: &Bus,
    keys: &CredentialKeys,
    data_dir: &Path,
) -> anyhow::Result<Bootstrap> {
    let id = user_id(ADMIN_USER);
    let existing = bus.load_user(id).await?;
    if existing.name.is_some() {
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        let token = AdminToken::read(data_dir).context("reading the admin token")?;
        return Ok(Bootstrap {
            token,
            path,
            position: None,
        });
    }
    let ensured = AdminToken::ensure(data_dir).context("preparing the admin token")?;
    let metadata = CommandMetadata::new(Actor::System("bootstrap".into()));
    match bus.create_user(ADMIN_USER, Role::Admin, &metadata).await {
        Ok(_) | Err(AppError::User(UserError::AlreadyExists)) => {}
        Err(e) => return Err(e).context("creating the bootstrap administrator"),
    }
    let key = bus
        .register_api_key(
            id,
            "bootstrap",
            ensured.token.clone(),
            None,
            keys,
            &metadata,
        )
        .await
        .context("recording the bootstrap administrator's key")?;
    tracing::info!(path = %ensured.path.display(), "administrator `admin` created; its key is in this file: send it as `Authorization: Bearer <key>`");
    Ok(Bootstrap {
        token: Some(ensured.token),
        path: ensured.path,
        position: key.receipt.position,
    })
}
