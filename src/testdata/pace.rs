//! Pacing of a write load ([`super::load`]): when each transaction starts so that the load
//! runs at a fixed rate in total, whichever connection takes the next tick.
//!
//! Time is a [`Duration`] since the run began, so the arithmetic is pure and testable.

use std::time::Duration;

/// Hands out transaction start times at `tps` per second until the run's end.
///
/// A caller that comes back more than one whole tick late (its transaction was slow, every
/// connection was busy) starts at once and the schedule restarts from there: missed ticks
/// are dropped, never made up in a burst, so a stalled server is not hit by a backlog.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Ticks per second; 0 runs unpaced.
    tps: u32,
    /// Where the schedule (re)started.
    origin: Duration,
    /// Ticks handed out since `origin`. Tick `n` is at `origin + n / tps` seconds, computed
    /// exactly, so rates that do not divide a second do not drift.
    ticks: u64,
    /// No transaction starts at or after this.
    end: Option<Duration>,
}

impl Pacer {
    /// Ticks at `tps` per second from time zero (`tps` 0: every caller starts at once), none
    /// at or after `end`.
    pub fn new(tps: u32, end: Option<Duration>) -> Pacer {
        Pacer {
            tps,
            origin: Duration::ZERO,
            ticks: 0,
            end,
        }
    }

    /// The time between two ticks (`None`: unpaced).
    pub fn period(&self) -> Option<Duration> {
        (self.tps > 0).then(|| Duration::from_secs(1) / self.tps)
    }

    fn tick(&self, n: u64) -> Duration {
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(self.tps);
        self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// When the caller's next transaction starts, `now` being the time since the run began
    /// (a start before `now` means "at once"); `None` once the run's time is up.
    pub fn next_start(&mut self, now: Duration) -> Option<Duration> {
        let paced = self.tps > 0 && self.tick(self.ticks + 1) > now;
        let start = if paced {
            self.tick(self.ticks)
        } else {
            // More than one tick behind (or unpaced): start now, drop the missed ticks.
            now
        };
        if self.end.is_some_and(|end| start >= end) {
            return None;
        }
        if !paced {
            self.origin = now;
            self.ticks = 0;
        }
        self.ticks += 1;
        Some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn callers_that_keep_up_follow_the_schedule() {
        let mut p = Pacer::new(100, None);
        assert_eq!(p.period(), Some(ms(10)));
        // Four idle connections ask at time zero: they get consecutive ticks.
        let starts: Vec<_> = (0..4).map(|_| p.next_start(ms(0)).unwrap()).collect();
        assert_eq!(starts, vec![ms(0), ms(10), ms(20), ms(30)]);
        assert_eq!(p.next_start(ms(3)), Some(ms(40)));
    }

    #[test]
    fn a_tick_less_than_a_period_late_starts_at_once_and_keeps_the_schedule() {
        let mut p = Pacer::new(100, None);
        assert_eq!(p.next_start(ms(0)), Some(ms(0)));
        // The next tick (10 ms) is 5 ms overdue: taken as is, the one after is on time.
        assert_eq!(p.next_start(ms(15)), Some(ms(10)));
        assert_eq!(p.next_start(ms(16)), Some(ms(20)));
    }

    #[test]
    fn missed_ticks_are_not_made_up_in_a_burst() {
        let mut p = Pacer::new(100, None);
        assert_eq!(p.next_start(ms(0)), Some(ms(0)));
        // A one-second stall: 100 ticks were missed. Only one start is immediate.
        assert_eq!(p.next_start(ms(1000)), Some(ms(1000)));
        assert_eq!(p.next_start(ms(1000)), Some(ms(1010)));
        assert_eq!(p.next_start(ms(1000)), Some(ms(1020)));
    }

    #[test]
    fn a_run_of_s_seconds_has_tps_times_s_ticks() {
        let mut p = Pacer::new(100, Some(Duration::from_secs(3)));
        let mut n = 0;
        let mut now = Duration::ZERO;
        while let Some(start) = p.next_start(now) {
            assert!(start < Duration::from_secs(3));
            now = start + ms(2); // each transaction takes 2 ms
            n += 1;
        }
        assert_eq!(n, 300);
        assert_eq!(p.next_start(Duration::from_secs(10)), None);
    }

    #[test]
    fn rates_that_do_not_divide_a_second_stay_close() {
        let mut p = Pacer::new(7, Some(Duration::from_secs(10)));
        let n = std::iter::from_fn(|| p.next_start(Duration::ZERO)).count();
        assert_eq!(n, 70);
    }

    #[test]
    fn zero_tps_is_unpaced() {
        let mut p = Pacer::new(0, Some(ms(50)));
        assert_eq!(p.period(), None);
        assert_eq!(p.next_start(ms(1)), Some(ms(1)));
        assert_eq!(p.next_start(ms(1)), Some(ms(1)));
        assert_eq!(p.next_start(ms(49)), Some(ms(49)));
        assert_eq!(p.next_start(ms(50)), None);
    }
}
