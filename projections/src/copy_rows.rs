//! Rows for `COPY … FROM STDIN (FORMAT binary)`, encoded by hand and handed to
//! PostgreSQL in large chunks. tokio-postgres's own writer sends every 4 KiB, each send
//! a hand-over to the connection's task; at a million rows those hand-overs cost more
//! than the encoding. Only the few column types the projectors copy are supported.

use std::io::Cursor;
use std::pin::Pin;

use berth_infrastructure::StoreError;
use chrono::{DateTime, Utc};
use futures_util::SinkExt;
use tokio_postgres::CopyInSink;
use uuid::Uuid;

/// Bytes gathered before they are sent.
const CHUNK: usize = 256 * 1024;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The binary COPY stream of one statement.
pub(crate) struct CopyRows {
    buf: Vec<u8>,
    columns: i16,
}

impl CopyRows {
    /// A stream of rows of `columns` values each, starting with the format's header.
    pub(crate) fn new(columns: i16) -> Self {
        let mut buf = Vec::with_capacity(CHUNK + CHUNK / 4);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0_i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0_i32.to_be_bytes()); // header extension length
        Self { buf, columns }
    }

    /// Starts a row; exactly `columns` values must follow.
    pub(crate) fn row(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&self.columns.to_be_bytes());
        self
    }

    /// An `int8` value.
    pub(crate) fn int8(&mut self, value: i64) -> &mut Self {
        self.buf.extend_from_slice(&8_i32.to_be_bytes());
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// A `uuid` value.
    pub(crate) fn uuid(&mut self, value: &Uuid) -> &mut Self {
        self.buf.extend_from_slice(&16_i32.to_be_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self
    }

    /// A `timestamptz` value, in microseconds as PostgreSQL stores it.
    pub(crate) fn timestamptz(&mut self, value: &DateTime<Utc>) -> &mut Self {
        self.int8(value.timestamp_micros() - POSTGRES_EPOCH_MICROS)
    }

    /// A `text` value.
    pub(crate) fn text(&mut self, value: &str) -> Result<&mut Self, StoreError> {
        let len = i32::try_from(value.len())
            .map_err(|_| StoreError::Malformed(format!("{} bytes of text", value.len())))?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        Ok(self)
    }

    /// A `text` value or `NULL`.
    pub(crate) fn opt_text(&mut self, value: Option<&str>) -> Result<&mut Self, StoreError> {
        match value {
            Some(value) => self.text(value),
            None => {
                self.buf.extend_from_slice(&(-1_i32).to_be_bytes());
                Ok(self)
            }
        }
    }

    /// Sends what was gathered once it makes a chunk.
    pub(crate) async fn send_full(
        &mut self,
        sink: &mut Pin<&mut CopyInSink<Cursor<Vec<u8>>>>,
    ) -> Result<(), StoreError> {
        if self.buf.len() >= CHUNK {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + CHUNK / 4));
            sink.send(Cursor::new(chunk)).await?;
        }
        Ok(())
    }

    /// Sends the rest and the trailer, and ends the `COPY`; returns the rows it stored.
    pub(crate) async fn finish(
        mut self,
        mut sink: Pin<&mut CopyInSink<Cursor<Vec<u8>>>>,
    ) -> Result<u64, StoreError> {
        self.buf.extend_from_slice(&(-1_i16).to_be_bytes());
        sink.send(Cursor::new(self.buf)).await?;
        Ok(sink.finish().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_binary_copy_format() {
        let mut rows = CopyRows::new(3);
        let at = DateTime::<Utc>::from_timestamp(946_684_801, 1_000).unwrap_or_default();
        rows.row().int8(7).timestamptz(&at);
        assert!(rows.opt_text(None).is_ok());
        let header = 11 + 4 + 4;
        let row = &rows.buf[header..];
        assert_eq!(&row[..2], &3_i16.to_be_bytes());
        assert_eq!(&row[2..6], &8_i32.to_be_bytes());
        assert_eq!(&row[6..14], &7_i64.to_be_bytes());
        // One second and one microsecond after PostgreSQL's epoch.
        assert_eq!(&row[18..26], &1_000_001_i64.to_be_bytes());
        assert_eq!(&row[26..30], &(-1_i32).to_be_bytes());
        assert_eq!(row.len(), 30);
    }
}
