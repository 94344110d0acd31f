//! The clock token lifetimes are judged by: at login (`exp`, `nbf`) and at every
//! statement of a session whose token lapses. In production it is the system clock;
//! tests give the gateway one they can move ahead, so a token expires without anyone
//! waiting for it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The system clock ([`Clock::default`]), or one running ahead of it by a shared,
/// adjustable amount ([`Clock::adjustable`]). Clones share the amount.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Milliseconds ahead of the system clock; None for the system clock itself,
    /// which then costs nothing but this check.
    ahead_ms: Option<Arc<AtomicU64>>,
}

/// How far a clock may be moved ahead: the longest duration pgmoat accepts anywhere.
const MAX_AHEAD: Duration = crate::config::MAX_DURATION;

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that reads as the system clock until [`Clock::advance`] moves it on.
    pub fn adjustable() -> Clock {
        Clock {
            ahead_ms: Some(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Now, by this clock.
    #[inline]
    pub fn now(&self) -> SystemTime {
        let now = SystemTime::now();
        match &self.ahead_ms {
            None => now,
            Some(ms) => now + Duration::from_millis(ms.load(Relaxed)),
        }
    }

    /// How far ahead of the system clock this clock runs (zero for the system clock).
    pub fn ahead(&self) -> Duration {
        self.ahead_ms
            .as_ref()
            .map_or(Duration::ZERO, |ms| Duration::from_millis(ms.load(Relaxed)))
    }

    /// Move an adjustable clock `by` further ahead (all its clones with it).
    ///
    /// Panics on the system clock, and past ten years ahead.
    pub fn advance(&self, by: Duration) {
        let ms = self
            .ahead_ms
            .as_ref()
            .expect("only an adjustable clock can be moved");
        let total = self.ahead().saturating_add(by);
        assert!(total <= MAX_AHEAD, "a clock at most ten years ahead");
        ms.store(total.as_millis() as u64, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_is_the_system_clock() {
        let c = Clock::system();
        let before = SystemTime::now();
        let now = c.now();
        assert!(now >= before && now <= SystemTime::now());
        assert_eq!(c.ahead(), Duration::ZERO);
    }

    #[test]
    fn an_adjustable_clock_moves_ahead_with_its_clones() {
        let c = Clock::adjustable();
        let shared = c.clone();
        assert_eq!(c.ahead(), Duration::ZERO);
        c.advance(Duration::from_secs(90));
        c.advance(Duration::from_millis(1500));
        assert_eq!(shared.ahead(), Duration::from_millis(91_500));
        let lag = shared.now().duration_since(SystemTime::now()).unwrap();
        assert!(lag > Duration::from_secs(91) && lag <= Duration::from_millis(91_500));
    }

    #[test]
    #[should_panic(expected = "only an adjustable clock")]
    fn the_system_clock_cannot_be_moved() {
        Clock::system().advance(Duration::from_secs(1));
    }
}
