//! Who did what, in answer to which request: the metadata every event carries.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The principal a command acts for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Actor {
    /// A person or program holding a user's credentials.
    User(String),
    /// A part of Berth acting on its own (e.g. `process-manager`, `catalog-sync`).
    System(String),
}

impl Actor {
    /// The bootstrap administrator created at first start.
    pub fn admin() -> Self {
        Self::User("admin".into())
    }

    /// The owner id recorded on what this actor creates.
    pub fn owner_id(&self) -> String {
        self.to_string()
    }

    /// Parses the form written by `Display` (`user:NAME` or `system:NAME`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once(':')? {
            ("user", id) if !id.is_empty() => Some(Self::User(id.into())),
            ("system", id) if !id.is_empty() => Some(Self::System(id.into())),
            _ => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::System(id) => write!(f, "system:{id}"),
        }
    }
}

/// Metadata recorded with every event a command produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMetadata {
    /// Who asked.
    pub actor: Actor,
    /// The request that carried the command.
    pub request_id: Uuid,
    /// A larger unit of work the command belongs to (e.g. a bulk operation).
    pub correlation_id: Option<Uuid>,
    /// The event that caused this command (process-manager commands).
    pub causation_id: Option<Uuid>,
}

impl CommandMetadata {
    /// Metadata for a fresh request by `actor`.
    pub fn new(actor: Actor) -> Self {
        Self {
            actor,
            request_id: Uuid::now_v7(),
            correlation_id: None,
            causation_id: None,
        }
    }

    /// The string map cqrs-es stores beside each event.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut m = HashMap::from([
            ("actor".to_string(), self.actor.to_string()),
            ("request_id".to_string(), self.request_id.to_string()),
        ]);
        if let Some(c) = self.correlation_id {
            m.insert("correlation_id".into(), c.to_string());
        }
        if let Some(c) = self.causation_id {
            m.insert("causation_id".into(), c.to_string());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_round_trip_through_their_text_form() {
        for a in [Actor::admin(), Actor::System("process-manager".into())] {
            assert_eq!(Actor::parse(&a.to_string()), Some(a));
        }
        assert_eq!(Actor::parse("nobody"), None);
        assert_eq!(Actor::parse("user:"), None);
    }

    #[test]
    fn metadata_names_every_field() {
        let mut md = CommandMetadata::new(Actor::admin());
        md.correlation_id = Some(Uuid::nil());
        let m = md.to_map();
        assert_eq!(m["actor"], "user:admin");
        assert_eq!(m["correlation_id"], Uuid::nil().to_string());
        assert!(m.contains_key("request_id"));
        assert!(!m.contains_key("causation_id"));
    }
}
