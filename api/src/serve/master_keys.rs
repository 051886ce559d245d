//! The master key that wraps every owner's data key, and the retired ones kept for
//! secrets sealed before data keys existed.

use std::path::Path;

use anyhow::Context;
use berth_infrastructure::cipher::{MasterKey, MasterKeyCipher};

/// The master key and the retired ones in `data_dir` (or `BERTH_MASTER_KEY`).
pub fn load_masters(data_dir: &Path) -> anyhow::Result<MasterKeyCipher> {
    let key = MasterKey::from_env_or_file(data_dir).context("loading the master key")?;
    let mut masters = MasterKeyCipher::new(key);
    for retired in MasterKey::load_retired(data_dir).context("loading retired master keys")? {
        masters = masters.with_retired(retired);
    }
    Ok(masters)
}
