//! The bootstrap admin token: created once in `<data_dir>/admin-token` (mode 0600),
//! reused on later starts. It is the bootstrap administrator's first API key. Replicas of
//! one installation share it: as that file in each data directory, or as
//! `BERTH_ADMIN_TOKEN`, which then takes the file's place.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_application::identity::generate_api_key;
use secrecy::{ExposeSecret, SecretString};

/// The token file's name inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The environment variable that may hold the token instead of the file.
pub const ADMIN_TOKEN_ENV: &str = "BERTH_ADMIN_TOKEN";

/// Every token Berth issues starts with this, so leaked ones are easy to scan for.
pub use berth_application::identity::KEY_TAG as TOKEN_PREFIX;

/// The bootstrap administrator's key file. The key is verified like every API key
/// (by keyed hash, in the identity read model); this only creates and reads the file.
pub struct AdminToken;

/// The outcome of [`AdminToken::ensure`].
pub struct EnsuredToken {
    /// The token itself, for the caller that must hand it out (tests, first start).
    pub token: SecretString,
    /// Where it is stored.
    pub path: PathBuf,
    /// Whether this call created it.
    pub created: bool,
}

impl AdminToken {
    /// The token in `BERTH_ADMIN_TOKEN` or else `<data_dir>/admin-token`, or `None` when
    /// neither is there.
    pub fn read(data_dir: &Path) -> io::Result<Option<SecretString>> {
        if let Some(token) = from_env()? {
            return Ok(Some(token));
        }
        match read_token(&data_dir.join(ADMIN_TOKEN_FILE)) {
            Ok(token) => Ok(Some(token)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Loads the token from `<data_dir>/admin-token`, creating a fresh random one
    /// (mode 0600) when the file does not exist yet.
    /// `BERTH_ADMIN_TOKEN`, when set, is used instead and no file is written.
    pub fn ensure(data_dir: &Path) -> io::Result<EnsuredToken> {
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        if let Some(token) = from_env()? {
            return Ok(EnsuredToken {
                token,
                path,
                created: false,
            });
        }
        let (token, created) = match read_token(&path) {
            Ok(token) => (token, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_token(&path)?,
            Err(e) => return Err(e),
        };
        Ok(EnsuredToken {
            token,
            path,
            created,
        })
    }
}

/// The token in `BERTH_ADMIN_TOKEN`, if set.
fn from_env() -> io::Result<Option<SecretString>> {
    match std::env::var(ADMIN_TOKEN_ENV) {
        Ok(value) => checked(&value).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(not_a_token()),
    }
}

/// `value` as a token, if it has the form of the keys Berth makes: the prefix and 64
/// hex digits (so it is as hard to guess as those).
fn checked(value: &str) -> io::Result<SecretString> {
    let value = value.trim();
    let digits = value.strip_prefix(TOKEN_PREFIX).ok_or_else(not_a_token)?;
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_a_token());
    }
    Ok(SecretString::from(value.to_owned()))
}

fn not_a_token() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{ADMIN_TOKEN_ENV} must be `{TOKEN_PREFIX}` and 64 hex digits (deploy/keys.sh makes one)"),
    )
}

fn read_token(path: &Path) -> io::Result<SecretString> {
    let meta = fs::metadata(path)?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the admin token file is readable by other users; chmod 600 it");
    }
    let text = fs::read_to_string(path)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is empty: remove it to have a new admin token created",
                path.display()
            ),
        ));
    }
    Ok(SecretString::from(token.to_string()))
}

/// Writes the token to a private temporary file and links it into place, so a crash
/// never leaves a truncated token and two processes starting together agree on one.
fn create_token(path: &Path) -> io::Result<(SecretString, bool)> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let token = generate_api_key();
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(token.expose_secret().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((token, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((read_token(path)?, false)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let first = AdminToken::ensure(dir.path()).unwrap_or_else(|e| panic!("ensure: {e}"));
        assert!(first.created);
        assert!(first.token.expose_secret().starts_with(TOKEN_PREFIX));
        assert_eq!(first.token.expose_secret().len(), TOKEN_PREFIX.len() + 64);
        let mode = fs::metadata(&first.path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));

        let second = AdminToken::ensure(dir.path()).unwrap_or_else(|e| panic!("ensure: {e}"));
        assert!(!second.created);
        assert_eq!(second.token.expose_secret(), first.token.expose_secret());
        let read = AdminToken::read(dir.path()).unwrap_or_else(|e| panic!("read: {e}"));
        assert_eq!(
            read.as_ref().map(|t| t.expose_secret().to_string()),
            Some(first.token.expose_secret().to_string())
        );
        let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        assert!(matches!(AdminToken::read(empty.path()), Ok(None)));
    }

    #[test]
    fn a_token_from_the_environment_must_look_like_one_berth_makes() {
        let made = generate_api_key();
        let accepted =
            checked(&format!(" {}\n", made.expose_secret())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(accepted.expose_secret(), made.expose_secret());
        for bad in [
            "",
            "berth_",
            "secret",
            &format!("berth_{}", "a".repeat(63)),
            &format!("berth_{}", "g".repeat(64)),
            &format!("other_{}", "a".repeat(64)),
        ] {
            let refused = checked(bad).map(|_| ()).unwrap_err();
            assert!(refused.to_string().contains(ADMIN_TOKEN_ENV), "{refused}");
        }
    }
}
