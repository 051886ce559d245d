//! Upcasters that turn stored older event shapes into the current ones on read.
//!
//! Events are never rewritten in the store; a change of an event's shape bumps its
//! `event_version` and adds an upcaster here.

use cqrs_es::persist::EventUpcaster;

/// Every upcaster Berth applies when loading events, oldest shape first.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}
