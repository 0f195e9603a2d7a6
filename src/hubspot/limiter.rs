//! Budgets that keep leadsync inside a portal's HubSpot quota, which every other app shares.
//!
//! - General calls: at most N per rolling `interval` (HubSpot's ten-second window). A token
//!   bucket with a burst of N could let almost 2N through one rolling window, so requests are
//!   paced: a burst of 2, then one every `interval / (N - 1)`. Any window then holds at most
//!   2 + (N - 2) = N, and the sustained rate is (N - 1)/N of the budget; the burst of 2 absorbs
//!   a late timer wake-up, which a burst of 1 would lose for good.
//! - CRM search: its own per-second budget (HubSpot allows 5 per second per account).
//! - Daily: the remaining count HubSpot reports (`X-HubSpot-RateLimit-Daily-Remaining`, sent to
//!   private apps); below the configured reserve, background work is refused and only real-time
//!   work (webhooks) goes on.
//!
//! The limiters run on tokio's clock, so tests with a paused clock observe the waits exactly.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Who is asking: background work yields to real-time work when the daily budget runs low.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Webhook-driven work: a form was just submitted.
    RealTime,
    /// Scheduled syncs, backfills, sweeps.
    Background,
}

/// Which budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Every CRM call but search.
    General,
    /// The CRM search API.
    Search,
}

/// governor's clock, read from tokio so that `tokio::time::pause` governs it too.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(tokio::time::Instant::now().duration_since(self.start))
    }
}

type Paced = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// One paced budget: `count` requests per `interval`, evenly spaced.
#[derive(Debug)]
struct Pacer {
    limiter: Paced,
    clock: TokioClock,
}

impl Pacer {
    fn new(count: u32, interval: Duration) -> Self {
        let count = count.max(1);
        let burst = if count >= 4 { 2 } else { 1 };
        // burst + (count - burst) spaced slots fit in one window; a hair more spacing keeps even
        // a window closed at both ends within `count`.
        let period = interval / (count - burst + 1) + Duration::from_micros(100);
        let quota = Quota::with_period(period)
            .expect("period is positive")
            .allow_burst(NonZeroU32::new(burst).expect("burst is 1 or 2"));
        let clock = TokioClock::new();
        Self {
            limiter: RateLimiter::direct_with_clock(quota, clock),
            clock,
        }
    }

    /// Waits for this budget's next slot; returns how long it waited.
    async fn acquire(&self) -> Duration {
        let mut waited = Duration::ZERO;
        while let Err(not_until) = self.limiter.check() {
            let wait: Duration = not_until.wait_time_from(self.clock.now());
            tokio::time::sleep(wait).await;
            waited += wait;
        }
        waited
    }
}

/// The budgets of one portal.
#[derive(Debug)]
pub struct HubSpotLimits {
    general: Pacer,
    search: Pacer,
    daily_remaining: AtomicU64,
    daily_reserve: u64,
    waited_ms: AtomicU64,
}

/// What `HubSpotLimits::admit` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HubSpot daily budget down to {remaining} calls, at or under the reserve of {reserve} kept for real-time work")]
pub struct ReserveReached {
    /// Calls HubSpot says are left today.
    pub remaining: u64,
    /// The configured reserve.
    pub reserve: u64,
}

impl HubSpotLimits {
    /// `burst` general calls per `interval`, `search_per_second` searches, and a daily reserve.
    pub fn new(burst: u32, interval: Duration, search_per_second: u32, daily_reserve: u64) -> Self {
        Self {
            general: Pacer::new(burst, interval),
            search: Pacer::new(search_per_second, Duration::from_secs(1)),
            daily_remaining: AtomicU64::new(u64::MAX),
            daily_reserve,
            waited_ms: AtomicU64::new(0),
        }
    }

    /// Refuses background work once the daily budget reaches the reserve; real-time work always passes.
    pub fn admit(&self, priority: Priority) -> Result<(), ReserveReached> {
        let remaining = self.daily_remaining.load(Ordering::Relaxed);
        if priority == Priority::Background && remaining <= self.daily_reserve {
            return Err(ReserveReached {
                remaining,
                reserve: self.daily_reserve,
            });
        }
        Ok(())
    }

    /// Waits for a slot in `budget` (search draws from both budgets' spacing rules: its own only,
    /// since HubSpot exempts search from the ten-second limit).
    pub async fn acquire(&self, budget: Budget) {
        let waited = match budget {
            Budget::General => self.general.acquire().await,
            Budget::Search => self.search.acquire().await,
        };
        if !waited.is_zero() {
            self.waited_ms.fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Records what HubSpot said is left today.
    pub fn observe_daily_remaining(&self, remaining: u64) {
        self.daily_remaining.store(remaining, Ordering::Relaxed);
    }

    /// Calls left today as last reported (`None` until HubSpot says; OAuth apps are never told).
    pub fn daily_remaining(&self) -> Option<u64> {
        let r = self.daily_remaining.load(Ordering::Relaxed);
        (r != u64::MAX).then_some(r)
    }

    /// Total time spent waiting for slots.
    pub fn waited(&self) -> Duration {
        Duration::from_millis(self.waited_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most requests any window of `len` (half-open) holds.
    fn busiest(times: &[tokio::time::Instant], len: Duration) -> usize {
        times
            .iter()
            .map(|s| times.iter().filter(|t| **t >= *s && t.duration_since(*s) < len).count())
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn general_calls_never_exceed_the_budget_in_any_window_and_nearly_use_it() {
        for budget in [1, 3, 10, 100] {
            let limits = HubSpotLimits::new(budget, Duration::from_secs(10), 4, 0);
            let mut times = Vec::new();
            for _ in 0..budget * 5 {
                limits.acquire(Budget::General).await;
                times.push(tokio::time::Instant::now());
            }
            assert!(
                busiest(&times, Duration::from_secs(10)) <= budget as usize,
                "budget {budget}"
            );
            if budget >= 10 {
                let span = times.last().unwrap().duration_since(times[0]).as_secs_f64();
                let rate = (times.len() - 1) as f64 / span;
                assert!(rate >= 0.89 * f64::from(budget) / 10.0, "budget {budget}: {rate}/s");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn search_has_its_own_budget() {
        let limits = HubSpotLimits::new(10, Duration::from_secs(10), 4, 0);
        limits.acquire(Budget::General).await;
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            limits.acquire(Budget::Search).await;
        }
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert!(start.elapsed() < Duration::from_millis(1_010));
    }

    #[test]
    fn background_work_stops_at_the_reserve_and_real_time_goes_on() {
        let limits = HubSpotLimits::new(10, Duration::from_secs(10), 4, 1_000);
        assert!(limits.admit(Priority::Background).is_ok(), "unknown remaining: go on");
        limits.observe_daily_remaining(1_001);
        assert!(limits.admit(Priority::Background).is_ok());
        limits.observe_daily_remaining(1_000);
        let err = limits.admit(Priority::Background).unwrap_err();
        assert_eq!(err.remaining, 1_000);
        assert!(limits.admit(Priority::RealTime).is_ok());
    }
}
