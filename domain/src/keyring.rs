//! The `KeyRing` aggregate: the installation's record of master-key rotations, so a
//! rotation is an event with an actor in the audit log like every other change.

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::decide::handle_by_decide;

/// The id of the one key ring an installation has.
pub const KEY_RING_ID: &str = "master";

/// How many rotations were recorded.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRing {
    /// Rotations so far.
    pub rotations: u64,
}

/// What may be asked of the key ring.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyRingCommand {
    /// Record that every data key was re-wrapped under a new master key.
    RecordRotation {
        /// The new master key's id (a fingerprint, never key material).
        master_key_id: String,
        /// How many data keys were re-wrapped.
        data_keys: u64,
    },
}

/// What happened to the key ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyRingEvent {
    /// Every data key is wrapped by a new master key from now on.
    MasterKeyRotated {
        /// The new master key's id.
        master_key_id: String,
        /// How many data keys were re-wrapped.
        data_keys: u64,
    },
}

impl DomainEvent for KeyRingEvent {
    fn event_type(&self) -> String {
        "MasterKeyRotated".to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// The key ring refuses nothing; the type exists for the framework.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("key ring error")]
pub struct KeyRingError;

impl KeyRing {
    /// A rotation is always recorded: the ring only counts them.
    pub fn decide(&self, command: KeyRingCommand) -> Result<Vec<KeyRingEvent>, KeyRingError> {
        let KeyRingCommand::RecordRotation {
            master_key_id,
            data_keys,
        } = command;
        Ok(vec![KeyRingEvent::MasterKeyRotated {
            master_key_id,
            data_keys,
        }])
    }
}

impl Aggregate for KeyRing {
    const TYPE: &'static str = "key_ring";
    type Command = KeyRingCommand;
    type Event = KeyRingEvent;
    type Error = KeyRingError;
    type Services = ();

    handle_by_decide!();

    fn apply(&mut self, _event: Self::Event) {
        self.rotations += 1;
    }
}
