//! The `CatalogEntry` aggregate.

use cqrs_es::{Aggregate, DomainEvent};

use serde::{Deserialize, Serialize};

use super::definition::{CatalogDefinition, CatalogKind};
use crate::decide::handle_by_decide;
use crate::FieldError;

/// A kind of MCP server, predefined or custom, with a version bumped on every update.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// What the entry says now; `None` until registered.
    pub definition: Option<CatalogDefinition>,
    /// Predefined or custom.
    pub kind: Option<CatalogKind>,
    /// Who added a custom entry (`None` for predefined ones).
    pub owner: Option<String>,
    /// 1 at registration, +1 on every update.
    pub version: u32,
    /// Removed entries accept no further commands.
    pub removed: bool,
    /// For predefined entries, what the shipped catalog last said. Syncing compares
    /// against this, not against the current definition, so an administrator's edit
    /// stands until a new release ships a different definition.
    #[serde(default)]
    pub shipped: Option<CatalogDefinition>,
    /// A custom entry an administrator made visible to every user.
    #[serde(default)]
    pub published: bool,
    /// What versions 1 to `version - 1` said, oldest first: a server runs the version it
    /// was created from (or upgraded to), not whatever the entry says now.
    #[serde(default)]
    pub past: Vec<CatalogDefinition>,
}

/// What may be asked of a catalog entry.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogCommand {
    /// Add a custom entry.
    Register {
        /// The principal adding it.
        owner: String,
        /// What it says.
        definition: CatalogDefinition,
    },
    /// Make a predefined entry say what the shipped catalog says: registers it the
    /// first time, updates it when the shipped text changed, and does nothing otherwise.
    SyncPredefined {
        /// The shipped definition.
        definition: CatalogDefinition,
    },
    /// Replace what the entry says.
    Update {
        /// The new definition.
        definition: CatalogDefinition,
    },
    /// Remove a custom entry.
    Remove,
    /// Make a custom entry visible to every user.
    Publish,
    /// Make a custom entry private to its owner again.
    Unpublish,
}

/// What happened to a catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CatalogEvent {
    /// The entry exists from now on, at version 1.
    Registered {
        /// Predefined or custom.
        kind: CatalogKind,
        /// Who added it (custom entries).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        /// What it says.
        definition: CatalogDefinition,
    },
    /// The entry says something new.
    Updated {
        /// The version it has from now on.
        version: u32,
        /// What it says now.
        definition: CatalogDefinition,
        /// The update came from a new shipped catalog rather than a person.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shipped: bool,
    },
    /// The entry is gone.
    Removed,
    /// Every user may see and use the (custom) entry from now on.
    Published,
    /// Only its owner (and administrators) may see the entry from now on.
    Unpublished,
}

impl DomainEvent for CatalogEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Registered { .. } => "CatalogEntryRegistered",
            Self::Updated { .. } => "CatalogEntryUpdated",
            Self::Removed => "CatalogEntryRemoved",
            Self::Published => "CatalogEntryPublished",
            Self::Unpublished => "CatalogEntryUnpublished",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// Why a catalog command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    /// The entry was registered before.
    #[error("a catalog entry with this id already exists")]
    AlreadyExists,
    /// No such entry, or it was removed.
    #[error("catalog entry not found")]
    NotFound,
    /// Predefined entries ship with Berth and cannot be removed.
    #[error("predefined catalog entries cannot be removed")]
    PredefinedCannotBeRemoved,
    /// The entry was predefined but the command would treat it as custom, or the reverse.
    #[error("catalog entry is {actual:?}, not {expected:?}")]
    WrongKind {
        /// What the command expected.
        expected: CatalogKind,
        /// What the entry is.
        actual: CatalogKind,
    },
    /// Only custom entries are private; predefined ones are visible to everyone.
    #[error("predefined catalog entries are always published")]
    PredefinedAlwaysPublished,
    /// Publishing a published entry, or unpublishing a private one.
    #[error("the catalog entry is already {0}")]
    AlreadyInVisibility(&'static str),
    /// The definition breaks a rule.
    #[error("invalid catalog entry")]
    Invalid(Vec<FieldError>),
}

impl CatalogEntry {
    /// What version `version` of the entry said, if it had that version.
    pub fn definition_at(&self, version: u32) -> Option<&CatalogDefinition> {
        if version == self.version {
            return self.definition.as_ref();
        }
        let index = usize::try_from(version.checked_sub(1)?).ok()?;
        self.past.get(index)
    }

    fn live(&self) -> Result<&CatalogDefinition, CatalogError> {
        match &self.definition {
            Some(d) if !self.removed => Ok(d),
            _ => Err(CatalogError::NotFound),
        }
    }

    /// Decides which events `command` produces, without changing anything.
    pub fn decide(&self, command: CatalogCommand) -> Result<Vec<CatalogEvent>, CatalogError> {
        match command {
            CatalogCommand::Register { owner, definition } => {
                if self.definition.is_some() {
                    return Err(CatalogError::AlreadyExists);
                }
                definition.validate().map_err(CatalogError::Invalid)?;
                Ok(vec![CatalogEvent::Registered {
                    kind: CatalogKind::Custom,
                    owner: Some(owner),
                    definition,
                }])
            }
            CatalogCommand::SyncPredefined { definition } => {
                definition.validate().map_err(CatalogError::Invalid)?;
                match (&self.definition, self.kind) {
                    (None, _) => Ok(vec![CatalogEvent::Registered {
                        kind: CatalogKind::Predefined,
                        owner: None,
                        definition,
                    }]),
                    (Some(_), Some(CatalogKind::Custom)) => Err(CatalogError::WrongKind {
                        expected: CatalogKind::Predefined,
                        actual: CatalogKind::Custom,
                    }),
                    _ if self.shipped.as_ref() == Some(&definition) => Ok(vec![]),
                    _ => Ok(vec![CatalogEvent::Updated {
                        version: self.version + 1,
                        definition,
                        shipped: true,
                    }]),
                }
            }
            CatalogCommand::Update { definition } => {
                self.live()?;
                definition.validate().map_err(CatalogError::Invalid)?;
                Ok(vec![CatalogEvent::Updated {
                    version: self.version + 1,
                    definition,
                    shipped: false,
                }])
            }
            CatalogCommand::Remove => {
                self.live()?;
                if self.kind == Some(CatalogKind::Predefined) {
                    return Err(CatalogError::PredefinedCannotBeRemoved);
                }
                Ok(vec![CatalogEvent::Removed])
            }
            CatalogCommand::Publish | CatalogCommand::Unpublish => {
                self.live()?;
                if self.kind == Some(CatalogKind::Predefined) {
                    return Err(CatalogError::PredefinedAlwaysPublished);
                }
                let publish = command == CatalogCommand::Publish;
                match (publish, self.published) {
                    (true, true) => Err(CatalogError::AlreadyInVisibility("published")),
                    (false, false) => Err(CatalogError::AlreadyInVisibility("private")),
                    (true, false) => Ok(vec![CatalogEvent::Published]),
                    (false, true) => Ok(vec![CatalogEvent::Unpublished]),
                }
            }
        }
    }
}

impl Aggregate for CatalogEntry {
    const TYPE: &'static str = "catalog_entry";
    type Command = CatalogCommand;
    type Event = CatalogEvent;
    type Error = CatalogError;
    type Services = ();

    handle_by_decide!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            CatalogEvent::Registered {
                kind,
                owner,
                definition,
            } => {
                if kind == CatalogKind::Predefined {
                    self.shipped = Some(definition.clone());
                }
                self.kind = Some(kind);
                self.owner = owner;
                self.definition = Some(definition);
                self.version = 1;
            }
            CatalogEvent::Updated {
                version,
                definition,
                shipped,
            } => {
                if shipped {
                    self.shipped = Some(definition.clone());
                }
                if let Some(previous) = self.definition.replace(definition) {
                    self.past.push(previous);
                }
                self.version = version;
            }
            CatalogEvent::Removed => self.removed = true,
            CatalogEvent::Published => self.published = true,
            CatalogEvent::Unpublished => self.published = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::catalog::{Resources, RuntimeSpec, Transport};

    type Given = TestFramework<CatalogEntry>;

    fn definition(name: &str) -> CatalogDefinition {
        CatalogDefinition {
            name: name.into(),
            description: "a test server".into(),
            transport: Transport::Stdio,
            runtime: RuntimeSpec::Docker {
                image: "berth/fixture:latest".into(),
                command: vec![],
                port: None,
            },
            config_schema: vec![],
            resources: Resources::default(),
            gateway: Default::default(),
        }
    }

    fn registered_custom() -> CatalogEvent {
        CatalogEvent::Registered {
            kind: CatalogKind::Custom,
            owner: Some("user:a".into()),
            definition: definition("one"),
        }
    }

    #[test]
    fn every_version_stays_readable_after_updates() {
        let mut entry = CatalogEntry::default();
        entry.apply(registered_custom());
        for (version, name) in [(2, "two"), (3, "three")] {
            entry.apply(CatalogEvent::Updated {
                version,
                definition: definition(name),
                shipped: false,
            });
        }
        let name_at = |v| entry.definition_at(v).map(|d| d.name.as_str());
        assert_eq!(name_at(1), Some("one"));
        assert_eq!(name_at(2), Some("two"));
        assert_eq!(name_at(3), Some("three"));
        assert_eq!(name_at(0), None);
        assert_eq!(name_at(4), None);
    }

    #[test]
    fn register_then_update_bumps_the_version() {
        Given::with(())
            .given(vec![registered_custom()])
            .when(CatalogCommand::Update {
                definition: definition("two"),
            })
            .then_expect_events(vec![CatalogEvent::Updated {
                version: 2,
                definition: definition("two"),
                shipped: false,
            }]);
    }

    #[test]
    fn register_twice_is_refused() {
        Given::with(())
            .given(vec![registered_custom()])
            .when(CatalogCommand::Register {
                owner: "user:a".into(),
                definition: definition("one"),
            })
            .then_expect_error(CatalogError::AlreadyExists);
    }

    #[test]
    fn invalid_definitions_produce_no_events() {
        Given::with(())
            .given_no_previous_events()
            .when(CatalogCommand::Register {
                owner: "user:a".into(),
                definition: definition("bad name"),
            })
            .then_expect_error(CatalogError::Invalid(vec![FieldError::new(
                "name",
                "must start with a letter or digit and contain only letters, digits, '.', '_' or '-'",
            )]));
    }

    #[test]
    fn predefined_sync_is_idempotent_and_versions_changes() {
        let shipped = CatalogEvent::Registered {
            kind: CatalogKind::Predefined,
            owner: None,
            definition: definition("one"),
        };
        Given::with(())
            .given_no_previous_events()
            .when(CatalogCommand::SyncPredefined {
                definition: definition("one"),
            })
            .then_expect_events(vec![shipped.clone()]);
        Given::with(())
            .given(vec![shipped.clone()])
            .when(CatalogCommand::SyncPredefined {
                definition: definition("one"),
            })
            .then_expect_events(vec![]);
        let mut changed = definition("one");
        changed.description = "now better".into();
        Given::with(())
            .given(vec![shipped.clone()])
            .when(CatalogCommand::SyncPredefined {
                definition: changed.clone(),
            })
            .then_expect_events(vec![CatalogEvent::Updated {
                version: 2,
                definition: changed.clone(),
                shipped: true,
            }]);
        // An administrator's edit stands while the shipped text stays the same...
        let edited = CatalogEvent::Updated {
            version: 2,
            definition: definition("edited"),
            shipped: false,
        };
        Given::with(())
            .given(vec![shipped.clone(), edited.clone()])
            .when(CatalogCommand::SyncPredefined {
                definition: definition("one"),
            })
            .then_expect_events(vec![]);
        // ...and a new release's text replaces it.
        Given::with(())
            .given(vec![shipped, edited])
            .when(CatalogCommand::SyncPredefined {
                definition: changed.clone(),
            })
            .then_expect_events(vec![CatalogEvent::Updated {
                version: 3,
                definition: changed,
                shipped: true,
            }]);
    }

    #[test]
    fn predefined_entries_cannot_be_removed_and_removed_ones_are_gone() {
        Given::with(())
            .given(vec![CatalogEvent::Registered {
                kind: CatalogKind::Predefined,
                owner: None,
                definition: definition("one"),
            }])
            .when(CatalogCommand::Remove)
            .then_expect_error(CatalogError::PredefinedCannotBeRemoved);
        Given::with(())
            .given(vec![registered_custom()])
            .when(CatalogCommand::Remove)
            .then_expect_events(vec![CatalogEvent::Removed]);
        Given::with(())
            .given(vec![registered_custom(), CatalogEvent::Removed])
            .when(CatalogCommand::Update {
                definition: definition("one"),
            })
            .then_expect_error(CatalogError::NotFound);
    }
}
