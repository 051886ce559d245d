//! Files Berth writes for a person that hold what others must not read (exports of the
//! event log, wrapped data keys, audit entries).

use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates (or truncates) `path`, readable and writable by its owner only (mode 0600),
/// whatever mode an existing file had.
pub fn create(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_existing_files_end_up_owner_only() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let existing = dir.path().join("existing");
        std::fs::write(&existing, b"old").expect("writing");
        std::fs::set_permissions(&existing, Permissions::from_mode(0o644)).expect("chmod");
        for path in [dir.path().join("new"), existing] {
            create(&path).expect("creating");
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
            assert_eq!(std::fs::metadata(&path).expect("stat").len(), 0);
        }
    }
}
