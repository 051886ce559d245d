//! What stands between the gateway and each upstream server: its circuit breaker and a
//! bound on the calls in flight to it, so one slow or broken server costs its own callers
//! time and nobody else's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

use super::breaker::{Admission, Breaker, BreakerPolicy, Circuit};
use super::directory::Directory;

/// How many calls may be in flight to one server by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;

/// Why a call was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Held {
    /// The server's circuit is open.
    #[error("the server failed repeatedly; calls to it are paused{}", until_text(*.retry_after))]
    CircuitOpen {
        /// How long until calls go again, if known.
        retry_after: Option<Duration>,
    },
    /// Too many calls to it are in flight, and none ended in time.
    #[error("the server is busy with {0} calls; none ended in time")]
    Busy(usize),
}

fn until_text(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|d| format!(" for {} s more", d.as_secs().max(1)))
        .unwrap_or_default()
}

/// Every server's guard.
pub struct Guards {
    policy: BreakerPolicy,
    max_in_flight: usize,
    directory: Arc<Directory>,
    servers: Mutex<HashMap<Uuid, Arc<Guard>>>,
}

struct Guard {
    breaker: Mutex<Breaker>,
    in_flight: Arc<Semaphore>,
}

/// A call let through; report how it went with [`Pass::succeeded`] or [`Pass::failed`].
pub struct Pass {
    guard: Arc<Guard>,
    directory: Arc<Directory>,
    probe: bool,
    settled: bool,
    _permit: OwnedSemaphorePermit,
}

impl Guards {
    /// Guards opening breakers by `policy`, letting `max_in_flight` calls go to one
    /// server at once, and telling `directory` when a server's tools come and go.
    pub fn new(policy: BreakerPolicy, max_in_flight: usize, directory: Arc<Directory>) -> Self {
        Self {
            policy,
            max_in_flight: max_in_flight.max(1),
            directory,
            servers: Mutex::new(HashMap::new()),
        }
    }

    fn guard(&self, server_id: Uuid) -> Arc<Guard> {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(servers.entry(server_id).or_insert_with(|| {
            Arc::new(Guard {
                breaker: Mutex::new(Breaker::new(self.policy)),
                in_flight: Arc::new(Semaphore::new(self.max_in_flight)),
            })
        }))
    }

    /// Lets a call to `server_id` through, waiting up to `wait` for a free slot.
    pub async fn pass(&self, server_id: Uuid, wait: Duration) -> Result<Pass, Held> {
        let guard = self.guard(server_id);
        let now = Instant::now();
        let admission = guard.breaker().admit(now);
        let probe = match admission {
            Admission::Go => false,
            Admission::Probe => true,
            Admission::Refused { until } => {
                return Err(Held::CircuitOpen {
                    retry_after: until.map(|u| u.saturating_duration_since(now)),
                })
            }
        };
        let permit = tokio::time::timeout(wait, Arc::clone(&guard.in_flight).acquire_owned()).await;
        let Ok(Ok(permit)) = permit else {
            if probe {
                guard.breaker().probe_abandoned(Instant::now());
            }
            return Err(Held::Busy(self.max_in_flight));
        };
        Ok(Pass {
            guard,
            directory: Arc::clone(&self.directory),
            probe,
            settled: false,
            _permit: permit,
        })
    }

    /// Where `server_id`'s circuit is now.
    pub fn circuit(&self, server_id: Uuid) -> Circuit {
        let servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        servers
            .get(&server_id)
            .map_or(Circuit::Closed { failures: 0 }, |g| {
                g.breaker().circuit(Instant::now())
            })
    }

    /// Whether the server's tools are out of the lists: its circuit is open.
    pub fn hides(&self, server_id: Uuid) -> bool {
        matches!(self.circuit(server_id), Circuit::Open { .. })
    }

    /// Every server whose circuit is not closed, with where it is.
    pub fn tripped(&self) -> Vec<(Uuid, Circuit)> {
        let now = Instant::now();
        let servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        servers
            .iter()
            .map(|(id, g)| (*id, g.breaker().circuit(now)))
            .filter(|(_, c)| !matches!(c, Circuit::Closed { .. }))
            .collect()
    }

    /// Calls in flight to `server_id`.
    pub fn in_flight(&self, server_id: Uuid) -> usize {
        let servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        servers
            .get(&server_id)
            .map_or(0, |g| self.max_in_flight - g.in_flight.available_permits())
    }
}

impl Guard {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Pass {
    /// The server answered.
    pub fn succeeded(mut self) {
        self.settled = true;
        let was_open = !matches!(
            self.guard.breaker().circuit(Instant::now()),
            Circuit::Closed { .. }
        );
        self.guard.breaker().succeeded();
        if was_open {
            self.directory.touch();
        }
    }

    /// The server failed the call.
    pub fn failed(mut self) {
        self.settled = true;
        let now = Instant::now();
        let opened = {
            let mut breaker = self.guard.breaker();
            breaker.failed(now);
            breaker.circuit(now)
        };
        if let Circuit::Open { until } = opened {
            // Its tools leave the lists now, and come back (for a probe) when it may be
            // tried again.
            self.directory.touch();
            let directory = Arc::clone(&self.directory);
            tokio::spawn(async move {
                tokio::time::sleep_until(until).await;
                directory.touch();
            });
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.guard.breaker().probe_abandoned(Instant::now());
        }
    }
}
