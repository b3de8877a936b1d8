//! A download rate limit shared by every request that holds a clone: a token
//! bucket on the main context. A request that received `n` bytes takes `n` tokens
//! and, when the bucket is in debt, waits until its share of the debt is paid:
//! requests queue behind each other's debt, so together they stay under the rate
//! however many run at once.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long after its last wait the limit still counts as holding requests back.
const THROTTLING_MEMORY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct RateLimiter {
    bucket: Rc<RefCell<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes per second.
    rate: f64,
    /// Tokens saved up at most: a tenth of a second's worth (at least one read).
    burst: f64,
    tokens: f64,
    last: Instant,
    /// When the latest wait handed out ends.
    waits_until: Option<Instant>,
}

impl Bucket {
    /// Takes `bytes` tokens at `now` and says how long the taker must wait.
    fn reserve(&mut self, bytes: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        let wait = Duration::from_secs_f64(-self.tokens / self.rate);
        self.waits_until = Some(now + wait);
        wait
    }
}

impl RateLimiter {
    /// At most `bytes_per_second` (more than 0) through every clone together.
    pub fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        let burst = (rate / 10.0).max(64.0 * 1024.0);
        Self {
            bucket: Rc::new(RefCell::new(Bucket {
                rate,
                burst,
                tokens: burst,
                last: Instant::now(),
                waits_until: None,
            })),
        }
    }

    /// Counts `bytes` just received and waits until the limit allows them; returns
    /// how long it waited.
    pub async fn take(&self, bytes: u64) -> Duration {
        let wait = self.bucket.borrow_mut().reserve(bytes, Instant::now());
        if !wait.is_zero() {
            glib::timeout_future(wait).await;
        }
        wait
    }

    /// Whether the limit has held requests back within the last second: then a
    /// request's slowness is the limit's doing, not its source's.
    pub fn is_throttling(&self) -> bool {
        self.bucket
            .borrow()
            .waits_until
            .is_some_and(|until| until + THROTTLING_MEMORY > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
            waits_until: None,
        }
    }

    #[test]
    fn requests_queue_behind_each_others_debt() {
        let start = Instant::now();
        let mut b = bucket(1000.0, 100.0, start);
        // The saved burst first, then each taker waits for everything taken before.
        assert_eq!(b.reserve(100, start), Duration::ZERO);
        assert_eq!(b.reserve(500, start), Duration::from_millis(500));
        assert_eq!(b.reserve(500, start), Duration::from_millis(1000));
        // Time pays the debt back at the rate.
        let later = start + Duration::from_millis(1000);
        assert_eq!(b.reserve(0, later), Duration::ZERO);
        assert_eq!(b.reserve(1000, later), Duration::from_millis(1000));
    }

    #[test]
    fn idle_time_saves_no_more_than_the_burst() {
        let start = Instant::now();
        let mut b = bucket(1000.0, 100.0, start);
        let much_later = start + Duration::from_secs(60);
        assert_eq!(b.reserve(100, much_later), Duration::ZERO);
        assert_eq!(b.reserve(100, much_later), Duration::from_millis(100));
    }

    #[test]
    fn throughput_over_many_takers_is_the_rate() {
        // 40 takers of 64 KiB each at 1 MiB/s: the last one waits ~2.5 s, the
        // whole 2.5 MiB (less the burst) spread over that time.
        let start = Instant::now();
        let rate = 1024.0 * 1024.0;
        let mut b = bucket(rate, 64.0 * 1024.0, start);
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            last = b.reserve(64 * 1024, start);
        }
        let expected = (40.0 * 64.0 * 1024.0 - 64.0 * 1024.0) / rate;
        assert!((last.as_secs_f64() - expected).abs() < 1e-6, "{last:?}");
    }
}
