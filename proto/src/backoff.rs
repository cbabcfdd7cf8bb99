//! The one backoff policy of AIGIS: a delay that doubles from `first` up to
//! `max`, optionally with ±20 % jitter so that many hosts that dropped
//! together do not come back together. Reconnecting to a LAN host, loading
//! a plugin whose host was unreachable, and restarting a crashed plugin all
//! use it; only their numbers differ.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    jitter: bool,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
            jitter: false,
        }
    }

    /// The same schedule, each delay moved by up to ±20 %.
    pub const fn jittered(mut self) -> Backoff {
        self.jitter = true;
        self
    }

    /// The delay to wait now; the next one is twice as long (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        if self.jitter {
            delay.mul_f64(0.8 + fastrand::f64() * 0.4)
        } else {
            delay
        }
    }

    /// Back to `first` (after a success, or a healthy run).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(2));
        let got: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [500, 1000, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
        let mut j = Backoff::new(Duration::from_secs(10), Duration::from_secs(10)).jittered();
        for _ in 0..100 {
            let d = j.next_delay();
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }
}
