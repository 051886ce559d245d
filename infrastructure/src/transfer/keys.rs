//! The wrapped data keys (`owner_data_keys`) as JSON Lines, carried beside an export so
//! that the imported store's sealed secrets open and its API keys verify. They are
//! wrapped by the master key, which never leaves the data directory: the keys file opens
//! nothing without it.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::line::json_message;
use super::TransferError;

const SELECT_KEYS: &str = "SELECT owner, key_id, wrapped_key, wrap_nonce, master_key_id, \
     created_at, destroyed_at FROM owner_data_keys ORDER BY owner";

const COUNT_KEYS: &str = "SELECT count(*) FROM owner_data_keys";

const INSERT_KEYS: &str = "INSERT INTO owner_data_keys \
     (owner, key_id, wrapped_key, wrap_nonce, master_key_id, created_at, destroyed_at) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::text[], \
                          $6::timestamptz[], $7::timestamptz[])";

/// One owner's data key, as one JSON object on one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataKeyLine {
    /// `user:NAME`, `system:credentials`, ...
    pub owner: String,
    /// The key's id, stored beside every ciphertext it sealed.
    pub key_id: String,
    /// The key wrapped by the master key, hex (null once destroyed).
    pub wrapped_key: Option<String>,
    /// The wrapping nonce, hex (null once destroyed).
    pub wrap_nonce: Option<String>,
    /// The id of the master key that wrapped it.
    pub master_key_id: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was destroyed (`berth users forget`).
    pub destroyed_at: Option<DateTime<Utc>>,
}

/// Data keys read from a keys file, validated, ready to import with the events.
#[derive(Debug, Clone, Default)]
pub struct DataKeys {
    keys: Vec<ValidKey>,
}

/// A line of a keys file with its hex decoded.
#[derive(Debug, Clone)]
struct ValidKey {
    line: DataKeyLine,
    wrapped_key: Option<Vec<u8>>,
    wrap_nonce: Option<Vec<u8>>,
}

impl DataKeys {
    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads and checks a keys file (one owner per line; small, so read whole).
    pub async fn read<R: AsyncBufRead + Unpin>(input: R) -> Result<Self, TransferError> {
        let mut lines = input.lines();
        let mut keys = Vec::new();
        let mut number = 0;
        loop {
            number += 1;
            let text = lines
                .next_line()
                .await
                .map_err(|source| TransferError::Read {
                    line: number,
                    source,
                })?;
            let Some(text) = text else {
                return Ok(Self { keys });
            };
            let invalid = |field: Option<&str>, message: String| TransferError::InvalidKeyLine {
                line: number,
                field: field.map(str::to_owned),
                message,
            };
            let mut de = serde_json::Deserializer::from_str(&text);
            let key: DataKeyLine = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                let field = (path != "." && path != "?").then_some(path);
                invalid(field.as_deref(), json_message(e.inner()))
            })?;
            de.end().map_err(|e| invalid(None, json_message(&e)))?;
            let bytes = |field: &str, text: &Option<String>| {
                text.as_deref()
                    .map(hex::decode)
                    .transpose()
                    .map_err(|_| invalid(Some(field), "must be hexadecimal digits".into()))
            };
            keys.push(ValidKey {
                wrapped_key: bytes("wrapped_key", &key.wrapped_key)?,
                wrap_nonce: bytes("wrap_nonce", &key.wrap_nonce)?,
                line: key,
            });
        }
    }

    /// Inserts the keys inside the import's first transaction, into a store that has
    /// none yet.
    pub(super) async fn insert(&self, tx: &Transaction<'_>) -> Result<(), TransferError> {
        let existing: i64 = tx.query_one(COUNT_KEYS, &[]).await?.try_get(0)?;
        if existing > 0 {
            return Err(TransferError::KeysNotEmpty { keys: existing });
        }
        if self.keys.is_empty() {
            return Ok(());
        }
        let owners: Vec<&str> = self.keys.iter().map(|k| k.line.owner.as_str()).collect();
        let key_ids: Vec<&str> = self.keys.iter().map(|k| k.line.key_id.as_str()).collect();
        let wrapped: Vec<Option<&[u8]>> =
            self.keys.iter().map(|k| k.wrapped_key.as_deref()).collect();
        let nonces: Vec<Option<&[u8]>> =
            self.keys.iter().map(|k| k.wrap_nonce.as_deref()).collect();
        let masters: Vec<Option<&str>> = self
            .keys
            .iter()
            .map(|k| k.line.master_key_id.as_deref())
            .collect();
        let created: Vec<DateTime<Utc>> = self.keys.iter().map(|k| k.line.created_at).collect();
        let destroyed: Vec<Option<DateTime<Utc>>> =
            self.keys.iter().map(|k| k.line.destroyed_at).collect();
        tx.execute(
            INSERT_KEYS,
            &[
                &owners, &key_ids, &wrapped, &nonces, &masters, &created, &destroyed,
            ],
        )
        .await
        .map_err(TransferError::KeysRefused)?;
        Ok(())
    }
}

/// Writes every data key (wrapped, as stored) to `out` as JSON Lines and flushes it;
/// returns how many.
pub async fn export_data_keys<W: AsyncWrite + Unpin>(
    pool: &Pool,
    out: &mut W,
) -> Result<u64, TransferError> {
    let client = pool.get().await?;
    let rows = client.query(SELECT_KEYS, &[]).await?;
    let mut buffer = Vec::new();
    for row in &rows {
        let wrapped: Option<Vec<u8>> = row.try_get(2)?;
        let nonce: Option<Vec<u8>> = row.try_get(3)?;
        let key = DataKeyLine {
            owner: row.try_get(0)?,
            key_id: row.try_get(1)?,
            wrapped_key: wrapped.map(hex::encode),
            wrap_nonce: nonce.map(hex::encode),
            master_key_id: row.try_get(4)?,
            created_at: row.try_get(5)?,
            destroyed_at: row.try_get(6)?,
        };
        serde_json::to_writer(&mut buffer, &key)
            .map_err(|e| crate::StoreError::Malformed(format!("data key: {e}")))?;
        buffer.push(b'\n');
    }
    out.write_all(&buffer).await.map_err(TransferError::Write)?;
    out.flush().await.map_err(TransferError::Write)?;
    Ok(rows.len() as u64)
}
