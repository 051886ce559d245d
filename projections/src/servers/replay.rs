//! A server as it was at any point of the log: its events up to that point, decoded with
//! the domain's upcasters and folded with the servers projection's own fold
//! (`change_of`, `ServerRow::apply`), rendered as the same `ServerView`.

use std::collections::BTreeMap;
use std::fmt;

use berth_domain::server::{SealedSecret, Server, ServerEvent};
use berth_domain::upcasting::upcasters;
use berth_infrastructure::feed::StoredEvent;
use berth_infrastructure::stream::{read_stream, StreamEnd};
use berth_infrastructure::StoreError;
use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::persist::EventUpcaster;
use cqrs_es::Aggregate;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::query::ServerView;
use super::row::{change_of, Change, ServerRow};

/// Events read per round trip while replaying a stream.
const BATCH: i64 = 500;

/// A point in the event log: everything at or before a global position, or everything
/// recorded at or before a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// At or before this global position.
    Position(i64),
    /// Recorded at or before this time.
    Time(DateTime<Utc>),
}

impl AsOf {
    /// Reads `text`: a whole number is a global position (0 or more), anything else an
    /// RFC 3339 time. The error says what was expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<i64>() {
                Ok(p) if p >= 0 => Ok(Self::Position(p)),
                Ok(_) => Err("must be a global position of 0 or more, or an RFC 3339 time".into()),
                Err(_) => Err("is a position out of range".into()),
            };
        }
        parse_time(text).map(Self::Time).ok_or_else(|| {
            "must be a global position (a whole number) or an RFC 3339 time such as \
             2026-01-31T12:00:00Z"
                .into()
        })
    }

    fn end(self) -> StreamEnd {
        match self {
            Self::Position(p) => StreamEnd::Position(p),
            Self::Time(t) => StreamEnd::Time(t),
        }
    }
}

/// An RFC 3339 time. A `+` of an offset that reached us as a space (an unencoded `+`
/// in a query string decodes to one) is read as the `+` it was.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(text).ok().or_else(|| {
        let (head, offset) = text.rsplit_once(' ')?;
        DateTime::parse_from_rfc3339(&format!("{head}+{offset}")).ok()
    })?;
    Some(parsed.with_timezone(&Utc))
}

impl fmt::Display for AsOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Position(p) => write!(f, "position {p}"),
            Self::Time(t) => write!(f, "{}", t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    }
}

/// What a server was at some point.
#[derive(Debug, Clone, PartialEq)]
pub enum PastServer {
    /// It existed, like this.
    Existing(Box<ServerView>),
    /// It had not been created yet (or never was).
    Absent,
    /// It had been deleted, by the event at this position.
    Deleted {
        /// The position of its `ServerDeleted` event.
        position: i64,
    },
}

/// The fold of one server's events, event by event.
pub(crate) struct Replay {
    id: Uuid,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    row: Option<ServerRow>,
    sealed: BTreeMap<String, SealedSecret>,
    deleted_at: Option<i64>,
}

impl Replay {
    /// Before the server's first event.
    pub(crate) fn new(id: Uuid) -> Self {
        Self {
            id,
            upcasters: upcasters(),
            row: None,
            sealed: BTreeMap::new(),
            deleted_at: None,
        }
    }

    /// Applies the server's next event exactly as the servers projection does.
    pub(crate) fn apply(&mut self, stored: &StoredEvent) -> Result<(), StoreError> {
        let event = stored.decode::<Server>(&self.upcasters)?;
        // The read model keeps secret names only; histories compare the sealed values
        // to tell a changed secret from an unchanged one.
        if let ServerEvent::Created { secrets, .. } | ServerEvent::ConfigUpdated { secrets, .. } =
            &event
        {
            self.sealed = secrets.clone();
        }
        match change_of(self.id, event, stored.into()) {
            Change::Create(row) => {
                self.row = Some(*row);
                self.deleted_at = None;
            }
            Change::Delete => {
                self.row = None;
                self.sealed.clear();
                self.deleted_at = Some(stored.position);
            }
            Change::Update(event) => match self.row.as_mut() {
                Some(row) => row.apply(event, stored.into()),
                None => tracing::warn!(
                    server_id = %self.id,
                    position = stored.position,
                    "event for a server that does not exist at that point; skipped"
                ),
            },
        }
        Ok(())
    }

    /// The server as folded so far, when it exists.
    pub(crate) fn view(&self) -> Result<Option<ServerView>, StoreError> {
        self.row.as_ref().map(ServerRow::to_view).transpose()
    }

    /// Its sealed secrets as folded so far.
    pub(crate) fn sealed(&self) -> &BTreeMap<String, SealedSecret> {
        &self.sealed
    }
}

/// One server's events, oldest first, read batch by batch.
pub(crate) struct ServerEvents {
    id: String,
    end: StreamEnd,
    after_sequence: i64,
    done: bool,
}

impl ServerEvents {
    /// Server `id`'s events up to `end`.
    pub(crate) fn new(id: Uuid, end: StreamEnd) -> Self {
        Self {
            id: id.to_string(),
            end,
            after_sequence: 0,
            done: false,
        }
    }

    /// The next batch, or `None` once every event was read.
    pub(crate) async fn next_batch(
        &mut self,
        client: &impl GenericClient,
    ) -> Result<Option<Vec<StoredEvent>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let batch = read_stream(
            client,
            Server::TYPE,
            &self.id,
            self.after_sequence,
            self.end,
            BATCH,
        )
        .await?;
        self.done = i64::try_from(batch.len()).unwrap_or(i64::MAX) < BATCH;
        match batch.last() {
            Some(last) => {
                self.after_sequence = last.sequence;
                Ok(Some(batch))
            }
            None => Ok(None),
        }
    }
}

/// Server `id` as it was at `at`, rebuilt from its events.
pub async fn server_as_of(
    client: &impl GenericClient,
    id: Uuid,
    at: AsOf,
) -> Result<PastServer, StoreError> {
    let mut replay = Replay::new(id);
    let mut events = ServerEvents::new(id, at.end());
    while let Some(batch) = events.next_batch(client).await? {
        for stored in &batch {
            replay.apply(stored)?;
        }
    }
    Ok(match (replay.view()?, replay.deleted_at) {
        (Some(view), _) => PastServer::Existing(Box::new(view)),
        (None, Some(position)) => PastServer::Deleted { position },
        (None, None) => PastServer::Absent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_positions_or_times() {
        assert_eq!(AsOf::parse("42"), Ok(AsOf::Position(42)));
        assert_eq!(AsOf::parse("0"), Ok(AsOf::Position(0)));
        assert!(AsOf::parse("-1").is_err());
        assert!(AsOf::parse("99999999999999999999").is_err());
        let t = DateTime::parse_from_rfc3339("2026-01-31T12:00:00.123456Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(
            AsOf::parse("2026-01-31T12:00:00.123456Z").ok(),
            t.map(AsOf::Time)
        );
        assert_eq!(
            AsOf::parse("2026-01-31T13:00:00.123456 01:00").ok(),
            t.map(AsOf::Time)
        );
        for bad in [
            "",
            "garbage",
            "2026-13-45T99:99:99Z",
            "1e3",
            "yesterday",
            "4 2",
        ] {
            assert!(AsOf::parse(bad).is_err(), "{bad}");
        }
    }
}
