//! How fast a key may call tools through the gateway: a token bucket per key, and one
//! per key and tool, so one runaway agent loop on one tool is stopped before it uses up
//! its key's whole allowance. The buckets are this replica's: replicas sharing a
//! database each allow the full rate.

use std::time::Duration;

use uuid::Uuid;

use crate::http::auth::CredentialDigest;
use crate::http::rate_limit::{RateLimitOptions, RateLimiter};

/// The gateway's limiters.
pub(crate) struct CallLimits {
    per_key: RateLimiter,
    per_tool: RateLimiter,
}

impl CallLimits {
    pub fn new(per_key: RateLimitOptions, per_tool: RateLimitOptions) -> Self {
        Self {
            per_key: RateLimiter::new(per_key),
            per_tool: RateLimiter::new(per_tool),
        }
    }

    /// Takes a request other than a tool call (a resource read, a prompt) by `key_id`
    /// from its key's bucket, or says how long until it may go.
    pub fn check_key(&self, key_id: Uuid) -> Result<(), Duration> {
        self.per_key
            .check(CredentialDigest::of(&key_id.to_string()))
    }

    /// Takes a call of `tool` on `server_id` by `key_id` from both buckets, or says how
    /// long until it may go.
    pub fn check(&self, key_id: Uuid, server_id: Uuid, tool: &str) -> Result<(), Duration> {
        self.check_key(key_id)?;
        self.per_tool.check(CredentialDigest::of(&format!(
            "{key_id}\0{server_id}\0{tool}"
        )))
    }
}
