//! One token bucket as pure arithmetic: the caller says how much time passed, so the bucket
//! is tested with a fake clock and never reads one itself.

use std::time::Duration;

use crate::config::TokenBucketConfig;

use super::REFILL_PERIOD;

/// `size` tokens per `refill_time`. Time is turned into tokens in token-nanoseconds, so
/// refills that fall between whole tokens are carried over, not lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens added per `refill_ns`.
    size: u64,
    refill_ns: u128,
    /// The most the bucket holds: `size`, or one refill period's worth when `refill_time`
    /// is shorter than the period (else a full bucket would cap the rate below the limit).
    capacity: u64,
    budget: u64,
    /// Tokens taken beyond the budget by the last request let through; refills pay it
    /// back before anything else passes.
    debt: u64,
    /// Firecracker's one_time_burst: spent before the budget, never refilled.
    one_time_burst: u64,
    /// Refill time not yet worth a whole token, in token-nanoseconds.
    carry: u128,
}

impl TokenBucket {
    /// A full bucket, or None when the configuration limits nothing.
    pub fn new(cfg: &TokenBucketConfig) -> Option<TokenBucket> {
        if !cfg.is_limit() {
            return None;
        }
        let refill_ns = u128::from(cfg.refill_time) * 1_000_000;
        let per_period = u128::from(cfg.size) * REFILL_PERIOD.as_nanos() / refill_ns;
        let capacity = u64::try_from(per_period).unwrap_or(u64::MAX).max(cfg.size);
        Some(TokenBucket {
            size: cfg.size,
            refill_ns,
            capacity,
            budget: capacity,
            debt: 0,
            one_time_burst: cfg.one_time_burst.unwrap_or(0),
            carry: 0,
        })
    }

    /// Splits `tokens` into what the one-time burst pays and what the budget must.
    fn split(&self, tokens: u64) -> (u64, u64) {
        let from_burst = tokens.min(self.one_time_burst);
        (from_burst, tokens - from_burst)
    }

    /// Whether `tokens` can be taken now: whenever the budget is positive and nothing is
    /// owed. A request larger than the budget goes through and leaves a debt the next
    /// refills pay, so the long-run rate is exact whatever the request sizes, no size can
    /// block a queue for ever, and a busy consumer never lets refills overflow the cap
    /// between two timer ticks (tokens are only lost while it does not want them).
    pub fn can_take(&self, tokens: u64) -> bool {
        let (_, rest) = self.split(tokens);
        rest == 0 || (self.debt == 0 && self.budget > 0)
    }

    /// Takes `tokens`; the caller checked [`TokenBucket::can_take`] first.
    pub fn take(&mut self, tokens: u64) {
        let (from_burst, rest) = self.split(tokens);
        self.one_time_burst -= from_burst;
        if rest <= self.budget {
            self.budget -= rest;
        } else {
            self.debt = self.debt.saturating_add(rest - self.budget);
            self.budget = 0;
        }
    }

    /// Adds what `elapsed` is worth at `size` per `refill_time`, paying debt first. When a
    /// consumer is `waiting` for tokens, the cap grows with the periods that passed: a
    /// late timer (a loaded host) must not throw away tokens the consumer was kept from.
    /// What it does not take by the next refill is capped again.
    pub fn refill(&mut self, elapsed: Duration, waiting: bool) {
        let earned = elapsed
            .as_nanos()
            .saturating_mul(u128::from(self.size))
            .saturating_add(self.carry);
        self.carry = earned % self.refill_ns;
        let mut tokens = u64::try_from(earned / self.refill_ns).unwrap_or(u64::MAX);
        let paid = tokens.min(self.debt);
        self.debt -= paid;
        tokens -= paid;
        let cap = if waiting {
            let periods = elapsed.as_nanos().div_ceil(REFILL_PERIOD.as_nanos()).max(1);
            self.capacity
                .saturating_mul(u64::try_from(periods).unwrap_or(u64::MAX))
        } else {
            self.capacity
        };
        self.budget = self.budget.saturating_add(tokens).min(cap);
        // An idle full bucket forgets the fraction; one a consumer waits on keeps it, or
        // every refill would round the rate down.
        if self.is_full() && !waiting {
            self.carry = 0;
        }
    }

    /// Full: refills would add nothing (the one-time burst does not count).
    pub fn is_full(&self) -> bool {
        self.debt == 0 && self.budget >= self.capacity
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    pub fn one_time_burst(&self) -> u64 {
        self.one_time_burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl TokenBucket {
        /// A refill with nobody waiting.
        fn refill_idle(&mut self, elapsed: Duration) {
            self.refill(elapsed, false);
        }
    }

    fn bucket(size: u64, burst: u64, refill_ms: u64) -> TokenBucket {
        TokenBucket::new(&TokenBucketConfig {
            size,
            one_time_burst: Some(burst),
            refill_time: refill_ms,
        })
        .expect("a limit")
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn zero_size_or_refill_time_is_no_limit() {
        for (size, refill_time) in [(0, 100), (100, 0), (0, 0)] {
            let cfg = TokenBucketConfig {
                size,
                one_time_burst: Some(5),
                refill_time,
            };
            assert_eq!(TokenBucket::new(&cfg), None);
        }
    }

    #[test]
    fn starts_full_and_refills_at_size_per_refill_time() {
        let mut b = bucket(1000, 0, 1000);
        assert!(b.is_full());
        assert!(b.can_take(1000));
        b.take(1000);
        assert!(!b.can_take(1));
        // 1000 tokens/s: 100 ms is worth 100 tokens.
        b.refill_idle(100 * MS);
        assert_eq!(b.budget(), 100);
        assert!(b.can_take(100));
        // Fractions carry over: 3 × 0.5 ms = 1.5 tokens → 1, then 0.5 more makes 2.
        b.take(100);
        for _ in 0..3 {
            b.refill_idle(Duration::from_micros(500));
        }
        assert_eq!(b.budget(), 1);
        b.refill_idle(Duration::from_micros(500));
        assert_eq!(b.budget(), 2);
        // Never above the size, however long it idles.
        b.refill_idle(Duration::from_secs(3600));
        assert_eq!(b.budget(), 1000);
        assert!(b.is_full());
    }

    #[test]
    fn one_time_burst_is_spent_first_and_never_refilled() {
        let mut b = bucket(100, 250, 1000);
        b.take(200);
        assert_eq!((b.one_time_burst(), b.budget()), (50, 100));
        // 80 more: 50 from the burst, 30 from the budget.
        assert!(b.can_take(80));
        b.take(80);
        assert_eq!((b.one_time_burst(), b.budget()), (0, 70));
        b.refill_idle(Duration::from_secs(10));
        assert_eq!((b.one_time_burst(), b.budget()), (0, 100));
        assert!(b.is_full());
    }

    #[test]
    fn a_request_larger_than_the_budget_passes_and_is_paid_back() {
        let mut b = bucket(1000, 0, 1000);
        assert!(b.can_take(5000));
        b.take(5000);
        assert!(!b.can_take(1));
        // 4000 of debt: four seconds of refill before anything else passes.
        b.refill_idle(Duration::from_millis(3900));
        assert!(!b.can_take(1));
        b.refill_idle(Duration::from_millis(200));
        assert_eq!(b.budget(), 100);
        // Any positive budget lets the next request through, whatever its size.
        assert!(b.can_take(5000));
        b.take(5000);
        assert!(!b.can_take(1));
    }

    #[test]
    fn refill_times_shorter_than_the_period_do_not_cap_the_rate() {
        // 10 tokens per 10 ms is 100 per period: the bucket holds a period's worth.
        let mut b = bucket(10, 0, 10);
        assert_eq!(b.budget(), 100);
        b.take(100);
        b.refill_idle(REFILL_PERIOD);
        assert_eq!(b.budget(), 100);
    }

    #[test]
    fn long_run_rate_matches_the_limit() {
        // A consumer taking 64 KiB whenever it can, refilled every 100 ms for 10 s, moves
        // the bucket's initial fill plus exactly the rate times the time.
        let rate = 1 << 20; // bytes/s
        let mut b = bucket(rate / 10, 0, 100);
        let mut moved = 0u64;
        for _ in 0..100 {
            while b.can_take(65536) {
                b.take(65536);
                moved += 65536;
            }
            b.refill_idle(100 * MS);
        }
        let expected = rate * 10 + rate / 10;
        let error = moved.abs_diff(expected) as f64 / expected as f64;
        assert!(error < 0.01, "moved {moved}, expected about {expected}");
    }

    #[test]
    fn a_late_timer_does_not_cost_a_waiting_consumer_its_tokens() {
        let mut b = bucket(1000, 0, 100);
        b.take(1000);
        assert!(!b.can_take(1));
        // The timer came 250 ms late: 3.5 periods' worth, all kept for the waiting consumer.
        b.refill(Duration::from_millis(350), true);
        assert_eq!(b.budget(), 3500);
        assert!(b.is_full());
        // Nobody waiting: the cap is the bucket's size as usual.
        let mut b = bucket(1000, 0, 100);
        b.take(1000);
        b.refill(Duration::from_millis(350), false);
        assert_eq!(b.budget(), 1000);
    }

    #[test]
    fn a_waiting_consumer_keeps_the_fraction_of_a_late_refill() {
        // One token per 500 ms, refilled 30 ms late each time, taken at once each time: two
        // tokens a second all the same.
        let mut b = bucket(1, 0, 500);
        b.take(1);
        let mut taken = 0;
        for _ in 0..100 {
            b.refill(Duration::from_millis(130), true);
            if b.can_take(1) {
                b.take(1);
                taken += 1;
            }
        }
        // 13 s at 2 tokens/s.
        assert_eq!(taken, 26);
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let mut b = bucket(u64::MAX, u64::MAX, 1);
        b.take(u64::MAX);
        b.take(u64::MAX);
        b.refill_idle(Duration::from_secs(u64::MAX / 2));
        assert!(b.is_full());
    }
}
