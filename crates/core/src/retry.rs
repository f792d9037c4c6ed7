//! How often a step may start and how long to wait between attempts.
//!
//! The policy is pure arithmetic: the caller supplies the random number for jitter, so the engine can
//! be deterministic in tests and this crate needs no random source.

use std::time::Duration;

/// How the delay grows between attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// `initial`, `2 × initial`, `4 × initial`, … up to `max`.
    Exponential,
    /// Always `initial`.
    Fixed,
}

/// A step's retry policy: `retry: { attempts, backoff, initial, max, jitter }` in a workflow file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most times the step may start, counting the first attempt and any attempt that a crash of the
    /// process interrupted. `1` means the step never runs twice.
    pub attempts: u32,
    /// How the delay grows.
    pub backoff: Backoff,
    /// Delay before the second attempt.
    pub initial: Duration,
    /// Longest delay between attempts (a `Retry-After` from the server may ask for more, up to
    /// [`RetryPolicy::MAX_RETRY_AFTER`]).
    pub max: Duration,
    /// Whether to spread delays randomly between half and all of the computed delay, so that many
    /// runs failing together do not retry in lockstep.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            backoff: Backoff::Exponential,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The longest `Retry-After` that is honoured; a server asking for more gets this.
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

    /// The delay after attempt number `failed` (1-based) failed, before the next one.
    ///
    /// `random` is a number in `[0, 1)` used for jitter; `retry_after` is what the server asked for.
    pub fn delay(&self, failed: u32, random: f64, retry_after: Option<Duration>) -> Duration {
        let base = match self.backoff {
            Backoff::Fixed => self.initial,
            Backoff::Exponential => {
                let factor = 2u32.saturating_pow(failed.saturating_sub(1).min(31));
                self.initial.saturating_mul(factor)
            }
        }
        .min(self.max);
        let base = if self.jitter {
            base.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
        } else {
            base
        };
        match retry_after {
            Some(asked) => base.max(asked.min(Self::MAX_RETRY_AFTER)),
            None => base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, jitter: bool) -> RetryPolicy {
        RetryPolicy {
            attempts: 10,
            backoff,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter,
        }
    }

    #[test]
    fn exponential_doubles_up_to_max() {
        let p = policy(Backoff::Exponential, false);
        let delays: Vec<u128> = (1..=6).map(|n| p.delay(n, 0.0, None).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(200, 0.0, None), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        let p = policy(Backoff::Fixed, true);
        assert_eq!(p.delay(1, 0.0, None), Duration::from_millis(50));
        assert_eq!(p.delay(1, 0.999_999, None).as_millis(), 99);
    }

    #[test]
    fn retry_after_wins_when_longer_but_is_bounded() {
        let p = policy(Backoff::Fixed, false);
        assert_eq!(
            p.delay(1, 0.0, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            p.delay(1, 0.0, Some(Duration::from_millis(1))),
            Duration::from_millis(100)
        );
        assert_eq!(
            p.delay(1, 0.0, Some(Duration::from_secs(86_400))),
            RetryPolicy::MAX_RETRY_AFTER
        );
    }
}
