//! Limits that keep one client from starving the others: a token bucket per identity on writes,
//! and the request body limit answered as a `Status`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Error;

/// Writes per second each identity may make, with a burst: a token bucket per actor.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The default: 200 writes a second per identity, in bursts of up to 400.
pub const DEFAULT_WRITES_PER_SECOND: u32 = 200;

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::per_second(DEFAULT_WRITES_PER_SECOND)
    }
}

impl RateLimit {
    /// `rate` writes a second per identity, in bursts of twice that; 0 means no limit.
    pub fn per_second(rate: u32) -> RateLimit {
        RateLimit::new(rate, rate.saturating_mul(2))
    }

    /// `rate` writes a second per identity, in bursts of up to `burst`; a rate of 0 means no limit.
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        RateLimit { per_second: f64::from(rate), burst: f64::from(burst.max(1)), buckets: Default::default() }
    }

    /// No limit at all.
    pub fn unlimited() -> RateLimit {
        RateLimit::new(0, 0)
    }

    /// Take one write for `actor`, or say how long until one is available.
    pub fn take(&self, actor: &str) -> Result<(), Duration> {
        self.take_at(actor, Instant::now())
    }

    fn take_at(&self, actor: &str, now: Instant) -> Result<(), Duration> {
        if self.per_second == 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("rate limit lock");
        let bucket = buckets.entry(actor.to_string()).or_insert(Bucket { tokens: self.burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
        }
    }
}

/// Rewrite the body-limit layer's plain-text `413` as a `Status`, so clients show why.
pub async fn status_for_too_large(request: Request<Body>, next: Next) -> Response {
    let response = next.run(request).await;
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| !v.starts_with("application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && plain {
        return Error::TooLarge(format!(
            "the request body is larger than {} bytes; a resource must be smaller (store large content in the CAS and reference its digest)",
            crate::MAX_BODY
        ))
        .into_response();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limit = RateLimit::new(10, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limit.take_at("alice", t0).is_ok());
        }
        let wait = limit.take_at("alice", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO, "{wait:?}");
        // Another identity has its own bucket.
        assert!(limit.take_at("bob", t0).is_ok());
        // A tenth of a second later, one more write.
        let t1 = t0 + Duration::from_millis(100);
        assert!(limit.take_at("alice", t1).is_ok());
        assert!(limit.take_at("alice", t1).is_err());
        assert!(RateLimit::unlimited().take_at("alice", t0).is_ok());
    }
}
