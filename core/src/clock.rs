//! Time as a port, so tests can move it (expiry, lease take-over, the sliding lock) without sleeping.

#[cfg(any(test, feature = "test-util"))]
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch: the unit of DynamoDB's TTL attribute.
    fn now(&self) -> i64;

    /// Milliseconds since the Unix epoch: for what lasts less than a second (the presence cache and
    /// its budget).
    fn now_millis(&self) -> i64 {
        self.now().saturating_mul(1_000)
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        self.now_millis() / 1_000
    }

    fn now_millis(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            // A clock set before 1970 is broken; treating it as the epoch keeps every lock expired
            // (the safe side: the bot answers) instead of panicking.
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
}

#[cfg(any(test, feature = "test-util"))]
impl ManualClock {
    pub fn starting_at(epoch_secs: i64) -> Self {
        Self {
            millis: AtomicI64::new(epoch_secs.saturating_mul(1_000)),
        }
    }

    pub fn advance(&self, secs: i64) {
        self.advance_millis(secs.saturating_mul(1_000));
    }

    pub fn advance_millis(&self, millis: i64) {
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }

    pub fn set(&self, epoch_secs: i64) {
        self.millis
            .store(epoch_secs.saturating_mul(1_000), Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now_millis().div_euclid(1_000)
    }

    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for epoch seconds (UTC).
pub fn rfc3339(epoch_secs: i64) -> String {
    jiff::Timestamp::from_second(epoch_secs)
        .map(|at| at.to_string())
        .unwrap_or_default()
}

/// Epoch seconds as a person reads them in a message that may reach any time zone:
/// `2026-12-07 08:00 UTC` (a page that knows its own zone shows the time in it instead).
pub fn human_utc(epoch_secs: i64) -> String {
    jiff::Timestamp::from_second(epoch_secs)
        .map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_for_people_is_minutes_in_utc() {
        assert_eq!(human_utc(1_796_630_400), "2026-12-07 08:00 UTC");
    }

    #[test]
    fn formats_epoch_seconds_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_750_000_000), "2025-06-15T15:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::starting_at(1_000);
        assert_eq!(clock.now(), 1_000);
        clock.advance(86_400);
        assert_eq!(clock.now(), 87_400);
        clock.advance_millis(999);
        assert_eq!((clock.now(), clock.now_millis()), (87_400, 87_400_999));
        clock.advance_millis(1);
        assert_eq!(clock.now(), 87_401);
        clock.set(5);
        assert_eq!(clock.now(), 5);
    }

    #[test]
    fn system_clock_is_after_2024() {
        assert!(SystemClock.now() > 1_700_000_000);
    }
}
