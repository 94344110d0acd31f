//! A client connection's timeouts without a timer per request.
//!
//! Arming a tokio timer for every request (the head's deadline, the target's answer)
//! costs a timer-wheel insert and removal under the driver's lock, and, whenever the
//! new deadline is earlier than the one the driver sleeps towards, a write to the
//! runtime's eventfd to wake it (seen at 0.7 system calls per request in one run
//! of the lean path; benches/README.md). Here a connection keeps one `Sleep`, armed no later
//! than `horizon` (the shortest timeout it uses) ahead: any deadline set afterwards is
//! at or past it, so a request never moves it. When it fires before the deadline
//! being waited for, it is armed again (at most once per `horizon` per connection).

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

pub(super) struct Clock {
    /// None while taken out (`take`): then a plain timer serves.
    sleep: Option<Pin<Box<Sleep>>>,
    horizon: Duration,
}

impl Clock {
    /// `horizon`: the shortest timeout the connection waits with.
    pub fn new(horizon: Duration) -> Clock {
        Clock {
            sleep: Some(Box::pin(tokio::time::sleep(horizon))),
            horizon,
        }
    }

    /// The clock, leaving a stand-in (for a future that borrows the connection).
    pub fn take(&mut self) -> Clock {
        Clock {
            sleep: self.sleep.take(),
            horizon: self.horizon,
        }
    }

    /// Resolves once `deadline` has passed.
    pub async fn passed(&mut self, deadline: Instant) {
        let Some(sleep) = self.sleep.as_mut() else {
            return tokio::time::sleep_until(deadline).await;
        };
        loop {
            // Armed again once fired, never later than `horizon` ahead: a deadline
            // set before it fires again is at or past it, so requests do not move
            // it. (Were a deadline ever nearer, it is moved: never late.) While it
            // is armed and due no later than the deadline there is nothing to
            // decide before it fires, so the clock is not read (each request on
            // the lean path waits here twice).
            if sleep.is_elapsed() || sleep.deadline() > deadline {
                let now = Instant::now();
                if now >= deadline {
                    return;
                }
                sleep.as_mut().reset(deadline.min(now + self.horizon));
            }
            sleep.as_mut().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolved no earlier than its deadline and not long after (generous: a loaded
    /// machine may run the task late, never early).
    async fn on_time(c: &mut Clock, after: Duration) {
        let start = Instant::now();
        c.passed(start + after).await;
        let took = start.elapsed();
        assert!(took >= after, "{took:?} < {after:?}");
        assert!(took < after + Duration::from_secs(5), "{took:?}");
    }

    #[tokio::test]
    async fn deadlines_pass_on_time_whatever_the_horizon() {
        let ms = Duration::from_millis;
        let mut c = Clock::new(ms(50));
        // Further than the horizon: woken on the way, resolved at the deadline.
        on_time(&mut c, ms(220)).await;
        // Within it, and again after it fired.
        on_time(&mut c, ms(30)).await;
        on_time(&mut c, ms(50)).await;
        // A deadline already past resolves at once.
        let t = Instant::now();
        c.passed(t - ms(1)).await;
        assert!(t.elapsed() < Duration::from_secs(5));
        // Taken out, both the stand-in and the clock still keep time.
        let mut taken = c.take();
        on_time(&mut c, ms(40)).await;
        on_time(&mut taken, ms(120)).await;
    }
}
