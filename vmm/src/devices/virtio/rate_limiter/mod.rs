//! Token-bucket rate limiting for virtio queues, in Firecracker's shape: a bucket of bytes
//! and a bucket of operations per limiter, each `size` tokens per `refill_time`.
//!
//! Refills happen on a timer, not per request: while any bucket is below full, the
//! limiter's timerfd fires every [`REFILL_PERIOD`] on the device event loop and the buckets
//! get what the time since the last refill is worth. A queue the limiter refuses is parked
//! (its chain stays in the ring) and served again on the next refill, so a throttled guest
//! costs one bounded pass per period; a full limiter disarms its timer, so an idle one
//! costs nothing.

mod bucket;
mod timer;

use std::time::{Duration, Instant};

pub use bucket::TokenBucket;
pub use timer::RefillTimer;

use super::guest_fault::note;
use crate::config::RateLimiterConfig;

/// How often a limiter below full refills (and a parked queue is retried).
pub const REFILL_PERIOD: Duration = Duration::from_millis(100);

/// The limits on one stream of requests (a drive's queue, an interface's rx or tx).
#[derive(Debug)]
pub struct RateLimiter {
    bandwidth: Option<TokenBucket>,
    ops: Option<TokenBucket>,
    timer: RefillTimer,
    /// When the buckets were last refilled; Some exactly while the timer runs.
    refilled_at: Option<Instant>,
    /// A request was refused since the last refill: its queue waits for the timer.
    blocked: bool,
    /// Timer failures, the first of each kind logged; a timer that cannot be armed drops
    /// the limits (see `start_refills`).
    timer_errors: u64,
    /// Names the device in logs.
    device: &'static str,
}

impl RateLimiter {
    /// A limiter with `cfg`'s buckets (none: no limits until an update brings some). The
    /// timerfd is created either way, so limits can be set after the device thread took its
    /// seccomp filter.
    pub fn new(
        device: &'static str,
        cfg: Option<&RateLimiterConfig>,
    ) -> std::io::Result<RateLimiter> {
        let mut limiter = RateLimiter {
            bandwidth: None,
            ops: None,
            timer: RefillTimer::new()?,
            refilled_at: None,
            blocked: false,
            timer_errors: 0,
            device,
        };
        if let Some(cfg) = cfg {
            limiter.update(cfg);
        }
        Ok(limiter)
    }

    /// Replaces the buckets `update` names (a bucket of size or refill_time 0 removes the
    /// limit); the others keep their state. New buckets start full. Makes no syscall, so it
    /// may run on any thread holding the device.
    pub fn update(&mut self, update: &RateLimiterConfig) {
        if let Some(cfg) = &update.bandwidth {
            self.bandwidth = TokenBucket::new(cfg);
        }
        if let Some(cfg) = &update.ops {
            self.ops = TokenBucket::new(cfg);
        }
    }

    /// Whether any bucket limits anything.
    pub fn is_limited(&self) -> bool {
        self.bandwidth.is_some() || self.ops.is_some()
    }

    /// A request was refused and waits for the next refill.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The timerfd to register with the device's event loop.
    pub fn timer(&self) -> &RefillTimer {
        &self.timer
    }

    fn buckets(&mut self) -> impl Iterator<Item = &mut TokenBucket> {
        self.bandwidth.iter_mut().chain(self.ops.iter_mut())
    }

    /// Takes `bytes` and `ops` tokens if both buckets have them, else takes nothing and
    /// marks the limiter blocked: the caller leaves the request in its queue and retries
    /// when [`RateLimiter::on_timer`] says so.
    pub fn consume(&mut self, bytes: u64, ops: u64) -> bool {
        if !self.is_limited() {
            return true;
        }
        let fits = self.bandwidth.as_ref().is_none_or(|b| b.can_take(bytes))
            && self.ops.as_ref().is_none_or(|b| b.can_take(ops));
        if fits {
            if let Some(b) = &mut self.bandwidth {
                b.take(bytes);
            }
            if let Some(b) = &mut self.ops {
                b.take(ops);
            }
        } else {
            self.blocked = true;
        }
        self.start_refills();
        // Without a timer nothing would ever refill: start_refills dropped the limits.
        fits || !self.is_limited()
    }

    /// Arms the timer when a bucket fell below full. If the timer cannot be armed the
    /// limits are dropped (a queue parked for ever would hang the guest's device).
    fn start_refills(&mut self) {
        if self.refilled_at.is_some() || self.buckets().all(|b| b.is_full()) {
            return;
        }
        match self.timer.set_period(REFILL_PERIOD) {
            Ok(()) => self.refilled_at = Some(Instant::now()),
            Err(e) => {
                note(
                    &mut self.timer_errors,
                    self.device,
                    &format_args!("cannot arm the rate limiter's timer, limits dropped: {e}"),
                );
                self.bandwidth = None;
                self.ops = None;
                self.blocked = false;
            }
        }
    }

    /// The timer fired: refills the buckets with the time since the last refill, disarms
    /// the timer once they are full, and says whether a parked queue should be retried.
    pub fn on_timer(&mut self) -> bool {
        if let Err(e) = self.timer.drain() {
            note(
                &mut self.timer_errors,
                self.device,
                &format_args!("rate limiter timer: {e}"),
            );
        }
        let now = Instant::now();
        let elapsed = self
            .refilled_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        let waiting = self.blocked;
        for b in self.buckets() {
            b.refill(elapsed, waiting);
        }
        // With a consumer waiting the timer keeps its phase: it takes the tokens at once,
        // and re-arming from then on would add the timer's lateness to every wait.
        if !waiting && self.buckets().all(|b| b.is_full()) {
            if let Err(e) = self.timer.set_period(Duration::ZERO) {
                note(
                    &mut self.timer_errors,
                    self.device,
                    &format_args!("cannot disarm the rate limiter's timer: {e}"),
                );
            }
            self.refilled_at = None;
        } else {
            self.refilled_at = Some(now);
        }
        std::mem::take(&mut self.blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenBucketConfig;

    fn limits(bytes: u64, ops: u64) -> RateLimiterConfig {
        RateLimiterConfig {
            bandwidth: Some(TokenBucketConfig {
                size: bytes,
                one_time_burst: None,
                refill_time: 100,
            }),
            ops: Some(TokenBucketConfig {
                size: ops,
                one_time_burst: None,
                refill_time: 100,
            }),
        }
    }

    #[test]
    fn unlimited_passes_everything_and_never_arms() {
        let mut l = RateLimiter::new("test", None).unwrap();
        assert!(l.consume(u64::MAX, u64::MAX));
        assert!(l.refilled_at.is_none());
        l.update(&limits(0, 0));
        assert!(!l.is_limited());
    }

    #[test]
    fn both_buckets_must_agree_and_a_refusal_takes_nothing() {
        let mut l = RateLimiter::new("test", Some(&limits(1000, 2))).unwrap();
        assert!(l.consume(100, 1));
        assert!(l.refilled_at.is_some(), "below full: refilling");
        assert!(l.consume(100, 1));
        // Out of ops: refused, bytes untouched.
        assert!(!l.consume(100, 1));
        assert!(l.is_blocked());
        assert_eq!(l.bandwidth.as_ref().unwrap().budget(), 800);
        // Removing the ops limit alone lets it through; bytes keep their state.
        l.update(&RateLimiterConfig {
            bandwidth: None,
            ops: Some(TokenBucketConfig::default()),
        });
        assert!(l.consume(100, 1));
        assert_eq!(l.bandwidth.as_ref().unwrap().budget(), 700);
    }

    #[test]
    fn the_timer_refills_unparks_and_disarms_when_full() {
        let mut l = RateLimiter::new("test", Some(&limits(1000, 1000))).unwrap();
        assert!(l.consume(1000, 1));
        assert!(!l.consume(1, 1));
        std::thread::sleep(REFILL_PERIOD + Duration::from_millis(20));
        assert!(l.on_timer(), "the parked queue is told to retry");
        assert!(!l.on_timer(), "only once per refusal");
        assert!(l.consume(1, 1));
        std::thread::sleep(2 * REFILL_PERIOD);
        l.on_timer();
        assert!(l.refilled_at.is_none(), "full again: timer disarmed");
    }
}
