//! A circuit breaker per upstream server: after enough failures in a row the gateway
//! stops sending it calls for a while (its tools drop out of the lists, calls to them
//! fail at once), then lets one call through to see whether it recovered.
//!
//! Only failures of the server count (no answer in time, a closed connection, an answer
//! that is not MCP): a tool that answers `isError`, or a JSON-RPC error the server chose
//! to send, is an answer.

use std::time::Duration;

use tokio::time::Instant;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures in a row that open it.
    pub failures_to_open: u32,
    /// How long it stays open before one call may try again.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures_to_open: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Calls go through; `failures` in a row so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// Calls are refused until `until`.
    Open {
        /// When one call may try again.
        until: Instant,
    },
    /// One call is trying; the others are refused until it ends.
    HalfOpen,
}

impl Circuit {
    /// `closed`, `open` or `half_open`, as the API and metrics show it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// What a breaker says of a call about to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Make it.
    Go,
    /// Make it: it is the one trying whether the server recovered.
    Probe,
    /// Refuse it; the circuit opens again to calls at `until` (or when the probe ends).
    Refused {
        /// When calls may go again, if known.
        until: Option<Instant>,
    },
}

/// One server's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    policy: BreakerPolicy,
    circuit: Circuit,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            circuit: Circuit::Closed { failures: 0 },
        }
    }

    /// Where it is at `now` (an open circuit whose time is up shows as half-open).
    pub fn circuit(&self, now: Instant) -> Circuit {
        match self.circuit {
            Circuit::Open { until } if now >= until => Circuit::HalfOpen,
            other => other,
        }
    }

    /// Whether a call may be made at `now`; a call admitted as the probe must report
    /// its outcome, or the circuit stays half-open.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.circuit {
            Circuit::Closed { .. } => Admission::Go,
            Circuit::Open { until } if now < until => Admission::Refused { until: Some(until) },
            Circuit::Open { .. } => {
                self.circuit = Circuit::HalfOpen;
                Admission::Probe
            }
            Circuit::HalfOpen => Admission::Refused { until: None },
        }
    }

    /// The server answered.
    pub fn succeeded(&mut self) {
        self.circuit = Circuit::Closed { failures: 0 };
    }

    /// The server failed a call at `now`.
    pub fn failed(&mut self, now: Instant) {
        self.circuit = match self.circuit {
            Circuit::Closed { failures } if failures + 1 < self.policy.failures_to_open => {
                Circuit::Closed {
                    failures: failures + 1,
                }
            }
            _ => Circuit::Open {
                until: now + self.policy.open_for,
            },
        };
    }

    /// A call admitted as the probe ended without telling (it was cancelled): the next
    /// call may probe.
    pub fn probe_abandoned(&mut self, now: Instant) {
        if self.circuit == Circuit::HalfOpen {
            self.circuit = Circuit::Open { until: now };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        failures_to_open: 3,
        open_for: Duration::from_secs(10),
    };

    #[test]
    fn it_opens_after_failures_in_a_row_and_an_answer_resets_the_count() {
        let now = Instant::now();
        let mut breaker = Breaker::new(POLICY);
        breaker.failed(now);
        breaker.failed(now);
        breaker.succeeded();
        breaker.failed(now);
        breaker.failed(now);
        assert_eq!(breaker.admit(now), Admission::Go);
        breaker.failed(now);
        assert_eq!(breaker.circuit(now).name(), "open");
        assert_eq!(
            breaker.admit(now + Duration::from_secs(9)),
            Admission::Refused {
                until: Some(now + Duration::from_secs(10))
            }
        );
    }

    #[test]
    fn after_its_time_one_call_probes_and_its_outcome_decides() {
        let now = Instant::now();
        let mut breaker = Breaker::new(POLICY);
        for _ in 0..3 {
            breaker.failed(now);
        }
        let later = now + Duration::from_secs(10);
        assert_eq!(breaker.circuit(later), Circuit::HalfOpen);
        assert_eq!(breaker.admit(later), Admission::Probe);
        assert_eq!(breaker.admit(later), Admission::Refused { until: None });
        breaker.failed(later);
        assert_eq!(
            breaker.circuit(later),
            Circuit::Open {
                until: later + Duration::from_secs(10)
            }
        );
        let again = later + Duration::from_secs(10);
        assert_eq!(breaker.admit(again), Admission::Probe);
        breaker.succeeded();
        assert_eq!(breaker.admit(again), Admission::Go);
        assert_eq!(breaker.circuit(again), Circuit::Closed { failures: 0 });
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let now = Instant::now();
        let mut breaker = Breaker::new(POLICY);
        for _ in 0..3 {
            breaker.failed(now);
        }
        let later = now + Duration::from_secs(11);
        assert_eq!(breaker.admit(later), Admission::Probe);
        breaker.probe_abandoned(later);
        assert_eq!(breaker.admit(later), Admission::Probe);
    }
}
