//! Monotonic time, passed in by the caller (rvs-core never reads a clock).

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the caller's monotonic clock, in milliseconds.
///
/// rvs-core never reads a clock: every entry point that needs "now" takes a
/// `Time`. The origin is arbitrary (e.g. process start); only differences
/// matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    /// The origin.
    pub const ZERO: Time = Time(0);

    /// A time `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Time(ms)
    }

    /// A time `s` seconds after the origin (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Time(s.saturating_mul(1000))
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + secs` seconds, saturating.
    pub(crate) const fn plus_secs(self, secs: u64) -> Self {
        Time(self.0.saturating_add(secs.saturating_mul(1000)))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, rhs: Duration) -> Time {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(ms))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    /// Saturating: an earlier minus a later time is zero.
    fn sub(self, rhs: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(rhs.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_secs(5);
        assert_eq!(t.as_millis(), 5000);
        assert_eq!((t + Duration::from_millis(250)).as_millis(), 5250);
        assert_eq!(Time::ZERO - t, Duration::ZERO);
        assert_eq!(t - Time::from_secs(2), Duration::from_secs(3));
        assert_eq!(
            Time::from_millis(u64::MAX) + Duration::from_secs(1),
            Time::from_millis(u64::MAX)
        );
        assert_eq!(Time::from_secs(u64::MAX).as_millis(), u64::MAX);
    }
}
