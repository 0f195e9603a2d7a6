//! Budgets that keep leadsync inside a portal's HubSpot quota, which every other app shares.
//!
//! - General calls: at most N per rolling `interval` (HubSpot's ten-second window), enforced by
//!   a log of the last N sends: a call goes only when fewer than N were sent in the `interval`
//!   before it, whatever its priority, so no window ever holds more than N.
//!   - Background work is also paced: a burst of 2, then one every `interval / (N - 1)` (the
//!     sustained rate is (N - 1)/N of the budget; the burst of 2 absorbs a late timer wake-up,
//!     which a burst of 1 would lose for good). A backfill thus spreads its calls instead of
//!     spending the window at once.
//!   - A page of a cursor (a form's submissions while a backfill files them) is background
//!     work served first: each of its calls waits for the one before, so a wait behind other
//!     background calls would stretch the whole chain (and, its last pages alone, leave most of
//!     the budget unused).
//!   - Real-time work (a webhook) is not paced: it may spend at once what the window has left.
//!     A form's reads (the contact and its five engagement types, six calls) then leave together
//!     instead of 127 ms apart at the default 80 per 10 s, within the configured budget, which is
//!     itself under HubSpot's own (100 or 190 per 10 s for private apps).
//! - CRM search: its own per-second budget (HubSpot allows 5 per second per account).
//! - Daily: the remaining count HubSpot reports (`X-HubSpot-RateLimit-Daily-Remaining`, sent to
//!   private apps); below the configured reserve, background work is refused and only real-time
//!   work (webhooks) goes on. HubSpot tells OAuth apps nothing (no daily headers), so for them
//!   leadsync counts its own calls per HubSpot day against a configured daily allocation. The
//!   HubSpot day ends at midnight in the portal's time zone: there the count starts again and a
//!   reported remaining count is forgotten, so background work never stays paused past the reset.
//!
//! The limiters run on tokio's clock, so tests with a paused clock observe the waits exactly.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Days, TimeZone, Utc};
use chrono_tz::Tz;

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
    /// Background work paging a cursor, each call waiting for the one before: paced and held
    /// to the daily reserve like background work, and served before it.
    Chained,
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
    /// The spacing of its slots.
    period: Duration,
    /// Callers waiting that go first ([`Priority::Chained`]).
    first: AtomicUsize,
}

/// Counts a caller among those that go first while it waits (given back if the wait is dropped).
struct First<'a>(&'a AtomicUsize);

impl Drop for First<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
            period,
            first: AtomicUsize::new(0),
        }
    }

    /// Waits for this budget's next slot; returns how long it waited. A caller that goes
    /// `first` takes the next slot; the others let every slot go to it while one waits.
    async fn acquire(&self, first: bool) -> Duration {
        let mut waited = Duration::ZERO;
        let _first = first.then(|| {
            self.first.fetch_add(1, Ordering::SeqCst);
            First(&self.first)
        });
        loop {
            if !first && self.first.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(self.period).await;
                waited += self.period;
                continue;
            }
            match self.limiter.check() {
                Ok(()) => return waited,
                Err(not_until) => {
                    let wait: Duration = not_until.wait_time_from(self.clock.now());
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
            }
        }
    }
}

/// The rolling window itself: when the last `count` calls were sent.
#[derive(Debug)]
struct Window {
    count: usize,
    /// The window's length, and a hair more (as the pacer's spacing), so that even a window
    /// closed at both ends holds at most `count`.
    span: Duration,
    sent: Mutex<VecDeque<tokio::time::Instant>>,
}

impl Window {
    fn new(count: u32, interval: Duration) -> Self {
        let count = count.max(1) as usize;
        Self {
            count,
            span: interval + Duration::from_micros(100),
            sent: Mutex::new(VecDeque::with_capacity(count)),
        }
    }

    /// Waits until fewer than `count` calls were sent in the last `span`, then counts this one
    /// as sent now; returns how long it waited.
    async fn acquire(&self) -> Duration {
        let mut waited = Duration::ZERO;
        loop {
            let wait = {
                let now = tokio::time::Instant::now();
                let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
                while sent.front().is_some_and(|t| now.duration_since(*t) >= self.span) {
                    sent.pop_front();
                }
                match sent.front() {
                    Some(oldest) if sent.len() >= self.count => *oldest + self.span - now,
                    _ => {
                        sent.push_back(now);
                        return waited;
                    }
                }
            };
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }
}

/// The budgets of one portal.
#[derive(Debug)]
pub struct HubSpotLimits {
    /// The general budget's rolling window, which every general call passes.
    window: Window,
    /// The spacing of background general calls.
    general: Pacer,
    search: Pacer,
    daily: Mutex<Daily>,
    daily_reserve: u64,
    /// OAuth apps: calls per HubSpot day leadsync may spend (HubSpot reports nothing to them).
    daily_allocation: Option<u64>,
    time_zone: Tz,
    waited_ms: AtomicU64,
}

/// Where the HubSpot day stands.
#[derive(Debug, Default)]
struct Daily {
    /// The instant the current HubSpot day ends (`None` before the first call).
    ends: Option<DateTime<Utc>>,
    /// What HubSpot last said is left today (private apps).
    reported: Option<u64>,
    /// Calls leadsync sent this HubSpot day.
    ours: u64,
}

/// What `HubSpotLimits::admit` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "HubSpot daily budget down to {remaining} calls, at or under the reserve of {reserve} kept for real-time work; background work resumes at the portal's daily reset, {resumes_at}"
)]
pub struct ReserveReached {
    /// Calls left today, as HubSpot said or (OAuth apps) as leadsync counted.
    pub remaining: u64,
    /// The configured reserve.
    pub reserve: u64,
    /// The next daily reset: midnight in the portal's time zone.
    pub resumes_at: DateTime<Utc>,
}

/// The first midnight in `tz` after `now`: HubSpot's daily reset. A midnight that a daylight
/// saving change skips becomes the first local instant after it.
pub fn next_daily_reset(now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let local = now.with_timezone(&tz).date_naive();
    let tomorrow = local.checked_add_days(Days::new(1)).unwrap_or(local);
    let midnight = tomorrow.and_hms_opt(0, 0, 0).expect("midnight exists");
    (0..=3)
        .find_map(|h| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(h)))
                .earliest()
        })
        .map_or(now + chrono::Duration::days(1), |t| t.with_timezone(&Utc))
}

impl HubSpotLimits {
    /// `burst` general calls per `interval`, `search_per_second` searches, and a daily reserve;
    /// no daily allocation, the HubSpot day in UTC (see [`HubSpotLimits::with_daily`]).
    pub fn new(burst: u32, interval: Duration, search_per_second: u32, daily_reserve: u64) -> Self {
        Self {
            window: Window::new(burst, interval),
            general: Pacer::new(burst, interval),
            search: Pacer::new(search_per_second, Duration::from_secs(1)),
            daily: Mutex::new(Daily::default()),
            daily_reserve,
            daily_allocation: None,
            time_zone: Tz::UTC,
            waited_ms: AtomicU64::new(0),
        }
    }

    /// The portal's time zone (its day resets at midnight there) and, for OAuth apps, the
    /// calls per HubSpot day leadsync may spend.
    pub fn with_daily(mut self, allocation: Option<u64>, time_zone: Tz) -> Self {
        self.daily_allocation = allocation;
        self.time_zone = time_zone;
        self
    }

    /// The day's state at `now`, a new day begun when the reset has passed.
    fn day(&self, now: DateTime<Utc>) -> std::sync::MutexGuard<'_, Daily> {
        let mut d = self.daily.lock().unwrap_or_else(|p| p.into_inner());
        if d.ends.is_none_or(|end| now >= end) {
            *d = Daily {
                ends: Some(next_daily_reset(now, self.time_zone)),
                reported: None,
                ours: 0,
            };
        }
        d
    }

    /// Refuses background work once the daily budget reaches the reserve; real-time work always
    /// passes. The budget is what HubSpot reported, else (OAuth apps) the allocation less the
    /// calls leadsync sent this HubSpot day, else unknown (never refused).
    pub fn admit(&self, priority: Priority, now: DateTime<Utc>) -> Result<(), ReserveReached> {
        let d = self.day(now);
        let remaining = d
            .reported
            .or_else(|| self.daily_allocation.map(|a| a.saturating_sub(d.ours)));
        match remaining {
            Some(remaining) if priority != Priority::RealTime && remaining <= self.daily_reserve => {
                Err(ReserveReached {
                    remaining,
                    reserve: self.daily_reserve,
                    resumes_at: d.ends.unwrap_or(now),
                })
            }
            _ => Ok(()),
        }
    }

    /// Counts one request sent at `now` against the HubSpot day.
    pub fn record_call(&self, now: DateTime<Utc>) {
        self.day(now).ours += 1;
    }

    /// Waits for a background slot in `budget`: [`HubSpotLimits::acquire_for`] with
    /// [`Priority::Background`].
    pub async fn acquire(&self, budget: Budget) {
        self.acquire_for(budget, Priority::Background).await;
    }

    /// Waits for a slot in `budget`. A general call waits for room in the rolling window, and a
    /// background one for its paced slot first; search has its own budget only, since HubSpot
    /// exempts it from the ten-second limit.
    pub async fn acquire_for(&self, budget: Budget, priority: Priority) {
        let waited = match (budget, priority) {
            (Budget::General, Priority::RealTime) => self.window.acquire().await,
            (Budget::General, Priority::Background) => self.general.acquire(false).await + self.window.acquire().await,
            (Budget::General, Priority::Chained) => self.general.acquire(true).await + self.window.acquire().await,
            (Budget::Search, p) => self.search.acquire(p == Priority::Chained).await,
        };
        if !waited.is_zero() {
            self.waited_ms.fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Records what HubSpot said at `now` is left today.
    pub fn observe_daily_remaining(&self, remaining: u64, now: DateTime<Utc>) {
        self.day(now).reported = Some(remaining);
    }

    /// Calls left today at `now`: as HubSpot last reported, else as counted against the
    /// allocation (OAuth apps), else `None`.
    pub fn daily_remaining(&self, now: DateTime<Utc>) -> Option<u64> {
        let d = self.day(now);
        d.reported
            .or_else(|| self.daily_allocation.map(|a| a.saturating_sub(d.ours)))
    }

    /// Calls leadsync sent this HubSpot day, at `now` (the status page's "used today").
    pub fn calls_today(&self, now: DateTime<Utc>) -> u64 {
        self.day(now).ours
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
    async fn real_time_calls_spend_what_the_window_has_left_at_once_and_background_stays_paced() {
        let limits = HubSpotLimits::new(10, Duration::from_secs(10), 4, 0);
        let start = tokio::time::Instant::now();
        // A form's six reads leave together: no pacing between them.
        let six = (0..6).map(|_| limits.acquire_for(Budget::General, Priority::RealTime));
        futures::future::join_all(six).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Four more fit in the window; the eleventh waits for the first call's window to end.
        for _ in 0..4 {
            limits.acquire_for(Budget::General, Priority::RealTime).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limits.acquire_for(Budget::General, Priority::RealTime).await;
        assert!(start.elapsed() >= Duration::from_secs(10), "{:?}", start.elapsed());
        assert!(start.elapsed() < Duration::from_millis(10_010), "{:?}", start.elapsed());

        // Background work on an idle portal is still paced: a burst of 2, then one per 10/9 s.
        let limits = HubSpotLimits::new(10, Duration::from_secs(10), 4, 0);
        let start = tokio::time::Instant::now();
        for _ in 0..4 {
            limits.acquire_for(Budget::General, Priority::Background).await;
        }
        assert!(start.elapsed() >= Duration::from_millis(2_222), "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn real_time_bursts_beside_background_work_never_exceed_the_budget_in_any_window() {
        for budget in [3, 10, 80] {
            let limits = std::sync::Arc::new(HubSpotLimits::new(budget, Duration::from_secs(10), 4, 0));
            let times = std::sync::Arc::new(Mutex::new(Vec::new()));
            let background = {
                let (limits, times) = (limits.clone(), times.clone());
                tokio::spawn(async move {
                    for _ in 0..budget * 4 {
                        limits.acquire_for(Budget::General, Priority::Background).await;
                        times.lock().unwrap().push(tokio::time::Instant::now());
                    }
                })
            };
            // A webhook's burst of six every 3.7 s while the background work runs.
            for _ in 0..12 {
                let burst = (0..6).map(|_| async {
                    limits.acquire_for(Budget::General, Priority::RealTime).await;
                    times.lock().unwrap().push(tokio::time::Instant::now());
                });
                futures::future::join_all(burst).await;
                tokio::time::sleep(Duration::from_millis(3_700)).await;
            }
            background.await.unwrap();
            let times = times.lock().unwrap().clone();
            assert_eq!(times.len() as u32, budget * 4 + 72);
            let busiest = busiest(&times, Duration::from_secs(10));
            assert!(busiest <= budget as usize, "budget {budget}: {busiest} in one window");
            assert!(
                busiest >= budget as usize - 1,
                "budget {budget}: the budget is used: {busiest}"
            );
        }
    }

    /// 20 calls per 10 s (a slot every 10/19 s); ten background callers each want 8 calls,
    /// and a chain of 10 pages at `priority`, each sent 150 ms after the one before answered,
    /// runs beside them. How long the chain took, and when every call was let through.
    async fn chain_beside_background(priority: Priority) -> (Duration, Vec<tokio::time::Instant>) {
        let limits = std::sync::Arc::new(HubSpotLimits::new(20, Duration::from_secs(10), 4, 0));
        let times = std::sync::Arc::new(Mutex::new(Vec::new()));
        let start = tokio::time::Instant::now();
        let background: Vec<_> = (0..10)
            .map(|_| {
                let (limits, times) = (limits.clone(), times.clone());
                tokio::spawn(async move {
                    for _ in 0..8 {
                        limits.acquire_for(Budget::General, Priority::Background).await;
                        times.lock().unwrap().push(tokio::time::Instant::now());
                    }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        for _ in 0..10 {
            limits.acquire_for(Budget::General, priority).await;
            times.lock().unwrap().push(tokio::time::Instant::now());
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let took = start.elapsed();
        for b in background {
            b.await.unwrap();
        }
        let times = times.lock().unwrap().clone();
        (took, times)
    }

    #[tokio::test(start_paused = true)]
    async fn a_chain_of_pages_beside_background_work_keeps_its_pace_and_the_budget_holds() {
        let (chained, times) = chain_beside_background(Priority::Chained).await;
        // Each page waits at most about one slot (0.53 s) and its 150 ms: under 7 s for ten.
        assert!(chained < Duration::from_secs(7), "{chained:?}");
        assert_eq!(times.len(), 90);
        let busiest = busiest(&times, Duration::from_secs(10));
        assert!(busiest <= 20, "{busiest} in one window");
    }

    /// Which of `waiting` background callers, each already waiting for a slot, and a caller at
    /// `priority` arriving after them, is let through first: the index, `waiting` for the last.
    async fn first_through(waiting: usize, priority: Priority) -> usize {
        let limits = std::sync::Arc::new(HubSpotLimits::new(20, Duration::from_secs(10), 4, 0));
        // Spend the burst: the next slot is 10/19 s away.
        limits.acquire(Budget::General).await;
        limits.acquire(Budget::General).await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..=waiting {
            let (limits, order) = (limits.clone(), order.clone());
            let p = if i == waiting { priority } else { Priority::Background };
            tasks.push(tokio::spawn(async move {
                limits.acquire_for(Budget::General, p).await;
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        let first = order.lock().unwrap()[0];
        for t in tasks {
            t.abort();
        }
        first
    }

    #[tokio::test(start_paused = true)]
    async fn a_chained_caller_arriving_last_takes_the_next_slot_and_background_ones_in_their_turn() {
        assert_eq!(first_through(5, Priority::Chained).await, 5);
        assert_ne!(first_through(5, Priority::Background).await, 5);
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

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn background_work_stops_at_the_reserve_and_real_time_goes_on() {
        let limits = HubSpotLimits::new(10, Duration::from_secs(10), 4, 1_000);
        let now = at("2026-12-01T10:00:00Z");
        assert!(
            limits.admit(Priority::Background, now).is_ok(),
            "unknown remaining: go on"
        );
        limits.observe_daily_remaining(1_001, now);
        assert!(limits.admit(Priority::Background, now).is_ok());
        limits.observe_daily_remaining(1_000, now);
        let err = limits.admit(Priority::Background, now).unwrap_err();
        assert_eq!(err.remaining, 1_000);
        assert_eq!(err.resumes_at, at("2026-12-02T00:00:00Z"));
        assert!(
            limits.admit(Priority::Chained, now).is_err(),
            "a cursor's pages are background work"
        );
        assert!(limits.admit(Priority::RealTime, now).is_ok());
    }

    #[test]
    fn a_tripped_reserve_lifts_at_the_portals_midnight_not_later() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let limits = HubSpotLimits::new(10, Duration::from_secs(10), 4, 1_000).with_daily(None, ny);
        // 22:00 in New York on 1 December (UTC-5): the day ends at 05:00 UTC on 2 December.
        let evening = at("2026-12-02T03:00:00Z");
        limits.observe_daily_remaining(10, evening);
        let err = limits.admit(Priority::Background, evening).unwrap_err();
        assert_eq!(err.resumes_at, at("2026-12-02T05:00:00Z"));
        assert!(limits.admit(Priority::Background, at("2026-12-02T04:59:59Z")).is_err());
        assert!(limits.admit(Priority::Background, at("2026-12-02T05:00:00Z")).is_ok());
        assert_eq!(limits.daily_remaining(at("2026-12-02T05:00:00Z")), None);
    }

    #[test]
    fn an_oauth_app_counts_its_own_calls_against_the_allocation_per_hubspot_day() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let limits = HubSpotLimits::new(10, Duration::from_secs(10), 4, 2).with_daily(Some(5), berlin);
        let now = at("2026-12-01T12:00:00Z");
        for _ in 0..3 {
            assert!(limits.admit(Priority::Background, now).is_ok());
            limits.record_call(now);
        }
        let err = limits.admit(Priority::Background, now).unwrap_err();
        assert_eq!((err.remaining, err.reserve), (2, 2));
        // Berlin is UTC+1 in December: its midnight is 23:00 UTC.
        assert_eq!(err.resumes_at, at("2026-12-01T23:00:00Z"));
        assert!(limits.admit(Priority::RealTime, now).is_ok(), "webhooks go on");
        assert!(limits.admit(Priority::Background, at("2026-12-01T23:00:00Z")).is_ok());
        assert_eq!(limits.daily_remaining(at("2026-12-01T23:00:00Z")), Some(5));
    }

    #[test]
    fn the_daily_reset_is_local_midnight_across_daylight_saving_changes() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // Summer (UTC-4), then the day the clocks go back.
        assert_eq!(
            next_daily_reset(at("2026-07-01T12:00:00Z"), ny),
            at("2026-07-02T04:00:00Z")
        );
        assert_eq!(
            next_daily_reset(at("2026-11-01T12:00:00Z"), ny),
            at("2026-11-02T05:00:00Z")
        );
        // Midnight itself belongs to the new day.
        assert_eq!(
            next_daily_reset(at("2026-11-02T05:00:00Z"), ny),
            at("2026-11-03T05:00:00Z")
        );
        // Santiago skips midnight when summer time starts (6 September 2026): 01:00 local.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        assert_eq!(
            next_daily_reset(at("2026-09-05T12:00:00Z"), santiago),
            at("2026-09-06T04:00:00Z")
        );
    }
}
