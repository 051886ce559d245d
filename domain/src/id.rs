//! Aggregate ids that say whose they are: a [`ServerId`] cannot be passed where a
//! [`CatalogEntryId`] is wanted. They stay typed from the edge (a path parameter) to the
//! store, where the event repository's string key is made in one place.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::bulk::BulkOperation;
use crate::catalog::CatalogEntry;
use crate::server::Server;
use crate::tool_call::ToolCall;
use crate::user::User;

/// The id of an aggregate of type `A`: a UUID, written as its hyphenated text, which is
/// how the store keys `A`'s stream.
pub struct AggregateId<A> {
    uuid: Uuid,
    of: PhantomData<fn() -> A>,
}

/// A server's id.
pub type ServerId = AggregateId<Server>;
/// A catalog entry's id.
pub type CatalogEntryId = AggregateId<CatalogEntry>;
/// A user's id.
pub type UserId = AggregateId<User>;
/// A bulk operation's id.
pub type BulkId = AggregateId<BulkOperation>;
/// A tool call's id (each call is a stream of its own).
pub type ToolCallId = AggregateId<ToolCall>;

impl<A> AggregateId<A> {
    /// The id `uuid`.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self {
            uuid,
            of: PhantomData,
        }
    }

    /// The UUID.
    pub const fn uuid(self) -> Uuid {
        self.uuid
    }
}

impl<A> From<Uuid> for AggregateId<A> {
    fn from(uuid: Uuid) -> Self {
        Self::from_uuid(uuid)
    }
}

impl<A> From<AggregateId<A>> for Uuid {
    fn from(id: AggregateId<A>) -> Self {
        id.uuid
    }
}

impl<A> std::str::FromStr for AggregateId<A> {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(Self::from_uuid)
    }
}

// Written out rather than derived: a derive would ask the same of `A`.
impl<A> Clone for AggregateId<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for AggregateId<A> {}

impl<A> PartialEq for AggregateId<A> {
    fn eq(&self, other: &Self) -> bool {
        self.uuid == other.uuid
    }
}

impl<A> Eq for AggregateId<A> {}

impl<A> PartialOrd for AggregateId<A> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<A> Ord for AggregateId<A> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.uuid.cmp(&other.uuid)
    }
}

impl<A> Hash for AggregateId<A> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.uuid.hash(state);
    }
}

impl<A> fmt::Debug for AggregateId<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.uuid, f)
    }
}

impl<A> fmt::Display for AggregateId<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.uuid, f)
    }
}

impl<A> Serialize for AggregateId<A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.uuid.serialize(serializer)
    }
}

impl<'de, A> Deserialize<'de> for AggregateId<A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Uuid::deserialize(deserializer).map(Self::from_uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_and_writes_as_its_uuid() {
        let uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);
        let id = ServerId::from_uuid(uuid);
        assert_eq!(id.to_string(), uuid.to_string());
        assert_eq!(id.to_string().parse::<ServerId>().ok(), Some(id));
        let json = serde_json::to_string(&id).expect("serialises");
        assert_eq!(json, serde_json::to_string(&uuid).expect("serialises"));
        assert_eq!(serde_json::from_str::<ServerId>(&json).ok(), Some(id));
        assert_eq!(Uuid::from(id), uuid);
    }
}
