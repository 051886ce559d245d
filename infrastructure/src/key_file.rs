//! A 32-byte secret kept in a file of its own (mode 0600), created on first use: the
//! master key and the log signing key live this way beside each other, never in the
//! database.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::Zeroizing;

/// The length of every key file.
pub const KEY_FILE_LEN: usize = 32;

/// Why a key file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file holds something other than 32 bytes.
    #[error("it holds {0} bytes, not 32")]
    WrongLength(u64),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The key in `path`, or a new random one written there (mode 0600) when there is none;
/// `true` when it was created now. A new key goes to a private temporary file first and
/// is linked into place, so a crash never leaves a truncated key and two processes
/// racing agree on one key.
pub fn load_or_create(path: &Path) -> Result<(Zeroizing<[u8; KEY_FILE_LEN]>, bool), KeyFileError> {
    match fs::metadata(path) {
        Ok(meta) => {
            if meta.len() != KEY_FILE_LEN as u64 {
                return Err(KeyFileError::WrongLength(meta.len()));
            }
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "a key file is readable by other users; chmod 600 it"
                );
            }
            let bytes = Zeroizing::new(fs::read(path)?);
            let key: [u8; KEY_FILE_LEN] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyFileError::WrongLength(bytes.len() as u64))?;
            Ok((Zeroizing::new(key), false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(path),
        Err(e) => Err(e.into()),
    }
}

fn create(path: &Path) -> Result<(Zeroizing<[u8; KEY_FILE_LEN]>, bool), KeyFileError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut key = Zeroizing::new([0u8; KEY_FILE_LEN]);
    OsRng.fill_bytes(key.as_mut_slice());
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = write_new(&tmp, key.as_slice());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e.into());
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((key, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_or_create(path),
        Err(e) => Err(e.into()),
    }
}

/// Writes `bytes` to a new file at `path` (mode 0600, synced); refuses to overwrite.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
