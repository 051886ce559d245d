//! API keys verified lately, so a request with a key costs no query: the gateway and
//! the API answer every request of an agent with one.
//!
//! An entry is the principal a key proved, found by the key's keyed hash (never the key
//! itself). Entries go when the identity read model changes: at once in this process when
//! an identity command settles (the routes wait for the read model, then clear), and from
//! the event feed for changes made elsewhere (another replica, the command line) once the
//! read model has applied them. A read that began before a clear is not kept, so a lookup
//! racing a revocation cannot store the key as it was. Entries also expire on their own
//! after [`TTL`], and the cache holds at most [`MAX_ENTRIES`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::auth::Principal;

/// How long a verified key is trusted without a query, whatever else happens.
pub const TTL: Duration = Duration::from_secs(60);

/// The most keys kept; when full, the cache starts over.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
struct Verified {
    principal: Principal,
    expires_at: Option<DateTime<Utc>>,
    at: Instant,
}

#[derive(Debug, Default)]
struct Entries {
    by_hash: HashMap<String, Verified>,
    /// Bumped by every clear: a lookup stores what it read only if none came between.
    generation: u64,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct VerifiedKeys {
    entries: Mutex<Entries>,
}

/// What the cache knows of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Verified lately, and not expired.
    Valid(Principal),
    /// Verified lately, and expired since.
    Expired,
    /// Not known: read the identity read model, then [`VerifiedKeys::keep`] it with this
    /// generation.
    Unknown(u64),
}

impl VerifiedKeys {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key whose keyed hash is `hash`, as last verified.
    pub fn lookup(&self, hash: &str, now: DateTime<Utc>) -> Lookup {
        let mut entries = self.lock();
        let generation = entries.generation;
        match entries.by_hash.get(hash) {
            Some(v) if v.at.elapsed() < TTL => {
                if v.expires_at.is_some_and(|at| at <= now) {
                    Lookup::Expired
                } else {
                    Lookup::Valid(v.principal.clone())
                }
            }
            Some(_) => {
                entries.by_hash.remove(hash);
                Lookup::Unknown(generation)
            }
            None => Lookup::Unknown(generation),
        }
    }

    /// Keeps a key just verified against the read model, unless the cache was cleared
    /// since `generation` (what was read may predate the change that cleared it).
    pub fn keep(
        &self,
        hash: String,
        principal: Principal,
        expires_at: Option<DateTime<Utc>>,
        generation: u64,
    ) {
        let mut entries = self.lock();
        if entries.generation != generation {
            return;
        }
        if entries.by_hash.len() >= MAX_ENTRIES {
            entries.by_hash.clear();
        }
        entries.by_hash.insert(
            hash,
            Verified {
                principal,
                expires_at,
                at: Instant::now(),
            },
        );
    }

    /// Forgets every key: the identity read model changed.
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.by_hash.clear();
        entries.generation += 1;
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.lock().by_hash.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::auth::Credential;
    use berth_application::access::Caller;
    use berth_application::Actor;
    use berth_domain::user::Role;
    use uuid::Uuid;

    fn principal() -> Principal {
        Principal {
            caller: Caller {
                actor: Actor::User("ann".into()),
                user_id: Uuid::from_u128(1),
                name: "ann".into(),
                role: Role::Operator,
            },
            credential: Credential::ApiKey {
                key_id: Uuid::from_u128(2),
            },
            profiles: Vec::new(),
        }
    }

    #[test]
    fn a_kept_key_is_found_until_cleared() {
        let cache = VerifiedKeys::new();
        let now = Utc::now();
        let Lookup::Unknown(generation) = cache.lookup("h", now) else {
            panic!("an empty cache knows no key");
        };
        cache.keep("h".into(), principal(), None, generation);
        assert_eq!(cache.lookup("h", now), Lookup::Valid(principal()));
        cache.clear();
        assert!(matches!(cache.lookup("h", now), Lookup::Unknown(_)));
    }

    #[test]
    fn a_read_that_began_before_a_clear_is_not_kept() {
        let cache = VerifiedKeys::new();
        let now = Utc::now();
        let Lookup::Unknown(before) = cache.lookup("h", now) else {
            panic!("an empty cache knows no key");
        };
        // The key is revoked while its lookup reads the read model as it was.
        cache.clear();
        cache.keep("h".into(), principal(), None, before);
        assert!(matches!(cache.lookup("h", now), Lookup::Unknown(_)));
    }

    #[test]
    fn a_key_that_expired_since_it_was_verified_is_expired() {
        let cache = VerifiedKeys::new();
        let now = Utc::now();
        let Lookup::Unknown(generation) = cache.lookup("h", now) else {
            panic!("an empty cache knows no key");
        };
        let expires = now + chrono::Duration::seconds(5);
        cache.keep("h".into(), principal(), Some(expires), generation);
        assert!(matches!(cache.lookup("h", now), Lookup::Valid(_)));
        assert_eq!(
            cache.lookup("h", expires + chrono::Duration::seconds(1)),
            Lookup::Expired
        );
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = VerifiedKeys::new();
        let now = Utc::now();
        for i in 0..=MAX_ENTRIES {
            cache.keep(format!("h{i}"), principal(), None, 0);
        }
        assert_eq!(cache.len(), 1);
        assert!(matches!(cache.lookup("h0", now), Lookup::Unknown(_)));
    }
}
