//! Reconnect delays: exponential from `min` to `max`, each with ±25 % jitter so a fleet of
//! agents does not reconnect in step after a collector restart.
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The delay before the next attempt; doubles (up to `max`) each call.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter = 0.75 + fastrand::f64() * 0.5;
        base.mul_f64(jitter).min(self.max)
    }

    /// A connection worked: start from `min` again next time.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!((75..=125).contains(&first.as_millis()), "{first:?}");
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            last = b.next_delay();
            assert!(last <= Duration::from_secs(2));
        }
        assert!(last >= Duration::from_millis(1500), "{last:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
