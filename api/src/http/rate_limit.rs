//! Rate limiting per credential: a token bucket for each bearer token presented,
//! keyed by the SHA-256 of the credential (never the credential itself), so per-user
//! keys will be limited one by one without changing this module.
//!
//! It runs after authentication: a request without a valid token is refused (401)
//! before it costs anything here. Public routes (`/healthz`, `/readyz`, `/metrics`)
//! are outside `/api/v1` and never limited.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};

use crate::http::auth::CredentialDigest;
use crate::http::problem::ApiError;

/// How fast each credential may send requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitOptions {
    /// Requests per second refilled into each bucket; `0` disables the limiter.
    pub per_second: u32,
    /// The bucket's size: requests that may arrive at once.
    pub burst: u32,
}

impl Default for RateLimitOptions {
    fn default() -> Self {
        Self {
            per_second: 100,
            burst: 200,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// How often idle buckets are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Token buckets, one per credential.
#[derive(Debug)]
pub struct RateLimiter {
    options: RateLimitOptions,
    state: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    buckets: HashMap<CredentialDigest, Bucket>,
    pruned: Instant,
}

impl RateLimiter {
    /// A limiter with `options`.
    pub fn new(options: RateLimitOptions) -> Self {
        Self {
            options,
            state: Mutex::new(Buckets {
                buckets: HashMap::new(),
                pruned: Instant::now(),
            }),
        }
    }

    /// Whether the limiter is on.
    pub fn enabled(&self) -> bool {
        self.options.per_second > 0
    }

    /// Takes one token from `key`'s bucket, or says how long until one is there.
    pub fn check(&self, key: CredentialDigest) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: CredentialDigest, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let rate = f64::from(self.options.per_second);
        let burst = f64::from(self.options.burst.max(1));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(state.pruned) >= PRUNE_EVERY {
            // A bucket that would be full again is the same as no bucket.
            state.buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst
            });
            state.pruned = now;
        }
        let bucket = state.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

/// Middleware: counts authenticated requests against their credential's bucket and
/// answers `429` with `Retry-After` when it is empty. Must run after authentication.
pub async fn limit_rate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let digest = req.extensions().get::<CredentialDigest>().copied();
    let verdict = match (req.app_data::<web::Data<RateLimiter>>(), digest) {
        (Some(limiter), Some(digest)) => limiter.check(digest),
        _ => Ok(()),
    };
    match verdict {
        Ok(()) => Ok(next.call(req).await?.map_into_boxed_body()),
        Err(wait) => {
            let retry_after_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            tracing::info!(retry_after_secs, "request refused: rate limit reached");
            let response = ApiError::TooManyRequests { retry_after_secs }.error_response();
            Ok(req.into_response(response))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_the_rate() {
        let limiter = RateLimiter::new(RateLimitOptions {
            per_second: 5,
            burst: 5,
        });
        let key = CredentialDigest::of("berth_abc");
        let other = CredentialDigest::of("berth_other");
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check_at(key, t0).is_ok());
        }
        let wait = limiter.check_at(key, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200));
        assert!(limiter.check_at(other, t0).is_ok(), "buckets are per key");
        assert!(limiter
            .check_at(key, t0 + Duration::from_millis(200))
            .is_ok());
        assert!(limiter
            .check_at(key, t0 + Duration::from_millis(200))
            .is_err());
    }

    #[test]
    fn zero_disables_and_idle_buckets_are_pruned() {
        let off = RateLimiter::new(RateLimitOptions {
            per_second: 0,
            burst: 0,
        });
        for _ in 0..1000 {
            assert!(off.check(CredentialDigest::of("x")).is_ok());
        }
        let limiter = RateLimiter::new(RateLimitOptions::default());
        let t0 = Instant::now();
        assert!(limiter.check_at(CredentialDigest::of("a"), t0).is_ok());
        assert!(limiter
            .check_at(CredentialDigest::of("b"), t0 + PRUNE_EVERY)
            .is_ok());
        let state = limiter.state.lock().unwrap();
        assert_eq!(state.buckets.len(), 1, "the idle bucket of `a` was pruned");
    }
}
