//! Who opened each session: every request that names a session must come from the same
//! user, with the same key, through the same profile, whatever its method. The SDK
//! answers `GET` (the notification stream, replays) and `DELETE` itself, without asking
//! the session's handler, so the check is made here, before the request reaches it.
//! This is the memory of one Berth; [`super::stored_sessions`] is every Berth's.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

/// The most sessions remembered; beyond it the oldest half is forgotten (and read again
/// from the database when asked about).
const MAX_SESSIONS: usize = 100_000;

/// Whose a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    pub user_id: Uuid,
    pub key_id: Uuid,
    pub profile: Option<String>,
}

/// Session id → the binding it was opened with, in opening order.
#[derive(Debug, Default)]
pub(crate) struct SessionOwners {
    sessions: Mutex<Opened>,
}

/// Each session's opening number and binding, and the last number given.
#[derive(Debug, Default)]
struct Opened {
    sessions: HashMap<String, (u64, Binding)>,
    counter: u64,
}

impl SessionOwners {
    /// Remembers that `session` was opened by `binding`.
    pub fn opened(&self, session: &str, binding: Binding) {
        let mut opened = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if opened.sessions.len() >= MAX_SESSIONS {
            let cutoff = opened.counter - (MAX_SESSIONS as u64) / 2;
            opened.sessions.retain(|_, (n, _)| *n > cutoff);
        }
        opened.counter += 1;
        let number = opened.counter;
        opened
            .sessions
            .insert(session.to_owned(), (number, binding));
    }

    /// Who opened `session`, if it is remembered.
    pub fn get(&self, session: &str) -> Option<Binding> {
        let opened = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        opened.sessions.get(session).map(|(_, owner)| owner.clone())
    }

    /// Forgets, and returns, the sessions whose binding `ends` picks.
    pub fn take(&self, ends: impl Fn(&Binding) -> bool) -> Vec<String> {
        let mut opened = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let ended: Vec<String> = opened
            .sessions
            .iter()
            .filter(|(_, (_, binding))| ends(binding))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ended {
            opened.sessions.remove(id);
        }
        ended
    }

    /// Forgets an ended session.
    pub fn ended(&self, session: &str) {
        let mut opened = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        opened.sessions.remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(user: u128, profile: Option<&str>) -> Binding {
        Binding {
            user_id: Uuid::from_u128(user),
            key_id: Uuid::from_u128(user),
            profile: profile.map(str::to_owned),
        }
    }

    #[test]
    fn only_the_opener_may_use_a_session() {
        let owners = SessionOwners::default();
        owners.opened("s1", binding(1, None));
        assert_eq!(owners.get("s1"), Some(binding(1, None)));
        assert_ne!(owners.get("s1"), Some(binding(2, None)));
        assert_ne!(owners.get("s1"), Some(binding(1, Some("work"))));
        assert_eq!(owners.get("unknown"), None);
        owners.ended("s1");
        assert_eq!(owners.get("s1"), None);
    }
}
