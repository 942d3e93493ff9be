//! When to try a failed send again: exponential backoff with full jitter, `Retry-After` as a floor.
//!
//! Full jitter (a uniform draw between zero and the exponential ceiling) spreads the retries of
//! many alarms that failed together, e.g. when FCM comes back after an outage, so they do not
//! hit it in one wave. FCM's `Retry-After` is a floor: Google says senders that ignore it risk
//! being throttled harder. The worker stores the resulting due time in the retry row; escalation
//! runs in parallel and never waits for these retries.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter, capped, never shorter than the server's `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay; it doubles with each attempt.
    pub base: Duration,
    /// The largest ceiling the doubling reaches.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 1 s doubling to at most 60 s, as the FCM guidance for 5xx suggests.
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry).
    ///
    /// A uniform draw in `[0, min(cap, base * 2^attempt)]`, raised to `retry_after` if the
    /// server asked for longer.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let ceiling = self.base.saturating_mul(2u32.saturating_pow(attempt)).min(self.cap);
        let jittered = ceiling.mul_f64(rng.gen_range(0.0..=1.0));
        jittered.max(retry_after.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn delays_stay_under_a_ceiling_that_doubles_up_to_the_cap() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        for (attempt, ceiling_s) in [(0, 1), (1, 2), (2, 4), (5, 32), (6, 60), (30, 60), (u32::MAX, 60)] {
            for _ in 0..200 {
                let delay = backoff.delay(attempt, None, &mut rng);
                assert!(delay <= Duration::from_secs(ceiling_s), "attempt {attempt}: {delay:?}");
            }
        }
    }

    #[test]
    fn delays_are_jittered_across_the_whole_range() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..200).map(|_| backoff.delay(6, None, &mut rng)).collect();
        assert!(delays.iter().any(|d| *d < Duration::from_secs(10)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(50)));
    }

    #[test]
    fn retry_after_is_a_floor_even_above_the_cap() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..10 {
            let delay = backoff.delay(attempt, Some(Duration::from_secs(90)), &mut rng);
            assert_eq!(delay, Duration::from_secs(90));
            assert!(backoff.delay(attempt, Some(Duration::from_secs(1)), &mut rng) >= Duration::from_secs(1));
        }
    }
}
