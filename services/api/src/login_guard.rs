//! Login abuse: rate limits per source address and per account, and a cap on how many password
//! hashes run at once.
//!
//! An argon2id hash with its recommended parameters takes about 19 MiB and tens of milliseconds
//! of CPU; without a bound, a flood of wrong-password logins ran one per blocking thread (512)
//! and grew the process by gigabytes. Now at most [`MAX_CONCURRENT_HASHES`] hashes run, a login
//! that cannot get one within [`HASH_WAIT`] is answered 503 with `Retry-After`, and attempts
//! beyond a source address's or an account's budget are answered 429 with `Retry-After` before
//! any hashing. Budgets are token buckets: `per_minute` attempts at once, refilled evenly over a
//! minute. They count every attempt, right or wrong, so an attacker learns nothing from which
//! ones are limited; the account key is the email as typed (normalised), known or not.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::ApiError;

/// Most password hashes (login checks, new passwords) computed at once in the process.
pub const MAX_CONCURRENT_HASHES: usize = 4;
/// Longest a login waits for a hashing slot before it is answered 503.
pub const HASH_WAIT: Duration = Duration::from_secs(5);

static HASHES: Semaphore = Semaphore::const_new(MAX_CONCURRENT_HASHES);

/// A slot to compute one password hash; 503 with `Retry-After` if none frees up in time.
async fn hashing_slot() -> Result<SemaphorePermit<'static>, ApiError> {
    match tokio::time::timeout(HASH_WAIT, HASHES.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::Busy { retry_after_secs: 1 }),
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads' queue. Hashes run on [`MAX_CONCURRENT_HASHES`] threads of their own, not
/// on tokio's blocking pool: the allocator keeps a freed 19 MiB block in the arena of the thread
/// that used it, so hashes spread over the pool's many threads kept hundreds of MiB resident even
/// with only four running at a time.
fn hashers() -> &'static std::sync::mpsc::Sender<Job> {
    static QUEUE: std::sync::OnceLock<std::sync::mpsc::Sender<Job>> = std::sync::OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..MAX_CONCURRENT_HASHES {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("trygg-hash-{i}")).spawn(move || {
                loop {
                    let job = rx.lock().expect("hash queue").recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(error) = spawned {
                tracing::error!(%error, "Could not start a password hashing thread");
            }
        }
        tx
    })
}

/// Runs a password hash or check on a hashing thread once a slot is free (503 if none frees up
/// within [`HASH_WAIT`]).
pub(crate) async fn hash_on_slot<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _slot = hashing_slot().await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    hashers()
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .map_err(|_| ApiError::Internal("the hashing threads are gone".to_owned()))?;
    rx.await.map_err(|_| ApiError::Internal("a hashing thread failed".to_owned()))
}

/// Login attempt budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Attempts per minute from one source address.
    pub per_address_per_minute: u32,
    /// Attempts per minute for one account (email).
    pub per_account_per_minute: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self { per_address_per_minute: 60, per_account_per_minute: 10 }
    }
}

/// The budgets' state.
#[derive(Debug)]
pub struct LoginGuard {
    per_address: Buckets<IpAddr>,
    per_account: Buckets<String>,
}

impl Default for LoginGuard {
    fn default() -> Self {
        Self::new(LoginLimits::default())
    }
}

impl LoginGuard {
    /// A guard with these budgets.
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            per_address: Buckets::new(limits.per_address_per_minute),
            per_account: Buckets::new(limits.per_account_per_minute),
        }
    }

    /// Takes one attempt from the address's and the account's budget; 429 with the seconds until
    /// the next attempt is allowed when either is spent.
    pub(crate) fn attempt(&self, address: Option<IpAddr>, account: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        if let Some(address) = address {
            self.per_address.take(address, now)?;
        }
        self.per_account.take(account.to_owned(), now)
    }
}

/// Token buckets by key: `capacity` attempts, one more every `60 / capacity` seconds.
#[derive(Debug)]
struct Buckets<K> {
    capacity: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq> Buckets<K> {
    /// Most keys remembered; beyond it, full buckets (nothing to remember) are dropped first.
    const MAX_KEYS: usize = 100_000;

    fn new(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Self { capacity, per_sec: capacity / 60.0, buckets: Mutex::new(HashMap::new()) }
    }

    fn take(&self, key: K, now: Instant) -> Result<(), ApiError> {
        let mut buckets = self.buckets.lock().expect("login buckets");
        if buckets.len() >= Self::MAX_KEYS && !buckets.contains_key(&key) {
            let (capacity, per_sec) = (self.capacity, self.per_sec);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < capacity
            });
            if buckets.len() >= Self::MAX_KEYS {
                // Every remembered key is being limited: refuse new ones rather than grow.
                return Err(ApiError::TooManyRequests { retry_after_secs: 60 });
            }
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.per_sec).ceil();
            // At most a minute: the bucket refills completely in one.
            Err(ApiError::TooManyRequests { retry_after_secs: wait.clamp(1.0, 60.0) as u64 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_refuses_with_the_wait_and_refills_over_a_minute() {
        let b = Buckets::new(2);
        let t0 = Instant::now();
        assert!(b.take("a", t0).is_ok());
        assert!(b.take("a", t0).is_ok());
        match b.take("a", t0) {
            Err(ApiError::TooManyRequests { retry_after_secs }) => assert_eq!(retry_after_secs, 30),
            other => panic!("{other:?}"),
        }
        assert!(b.take("b", t0).is_ok(), "another key has its own budget");
        assert!(b.take("a", t0 + Duration::from_secs(30)).is_ok(), "one attempt back after 30 s");
    }
}
