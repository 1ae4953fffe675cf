//! [`Backoff`]: how every polling loop of this crate waits between two
//! failed attempts (a lock word, a flag, a mailbox that is not ready yet).
//!
//! The schedule, counted in failures since the loop started (or since it
//! last made progress, [`Backoff::reset`]):
//!
//! * failures 1–3: a spin-loop hint; 4–15: a yield of the thread;
//! * from the 16th on: a sleep of 2 µs, doubling on every failure up to
//!   the loop's cap ([`Backoff::LOCKS`], [`Backoff::MESSAGES`]);
//! * from the 16th on, before every wait: the loop's `progress`, which
//!   lets the Lamellar runtime of this PE run its pending tasks (with the
//!   `single_thread` executor nothing else would while this thread waits:
//!   e.g. the packed transfers other PEs ask of this one, see
//!   [`crate::pack`]);
//! * every 16th failure, first: the loop's periodic check, if it has one
//!   ([`Backoff::wait_checking`]; e.g. whether the peer it waits for has
//!   departed). The loop acts on what the check saw at its next attempt.
//!
//! (Sleeps under about 50 µs last about 50 µs on Linux, the default timer
//! slack of a thread: the short ones mostly mark the steps of the
//! schedule.)

use std::time::Duration;

/// Failures between two periodic checks; also the first failure that
/// drives the runtime and sleeps.
const PERIOD: u64 = 16;
/// Failures that only spin.
const SPINS: u64 = 4;
/// The first sleep, in µs (doubled per failure up to the cap).
const FIRST_SLEEP_US: u64 = 2;

/// The waiting of one polling loop (see the module documentation).
pub(crate) struct Backoff<'a> {
    /// The longest sleep.
    cap: Duration,
    /// Drives this PE's Lamellar runtime.
    progress: &'a dyn Fn(),
    /// Failures since the start or the last [`Backoff::reset`].
    failures: u64,
}

impl<'a> Backoff<'a> {
    /// The cap of lock, guard and collective waits: 1 ms (the holder or
    /// the other PEs may be busy for long; a waiting PE should leave the
    /// core to them).
    pub(crate) const LOCKS: Duration = Duration::from_millis(1);
    /// The cap of neighbour-message waits: 50 µs (the message is expected
    /// soon; latency matters more than the cost of polling).
    pub(crate) const MESSAGES: Duration = Duration::from_micros(50);

    /// A loop sleeping at most `cap`, driving the runtime with `progress`
    /// (a loop that drives it before every attempt itself passes a no-op).
    pub(crate) fn new(cap: Duration, progress: &'a dyn Fn()) -> Self {
        Backoff {
            cap,
            progress,
            failures: 0,
        }
    }

    /// The loop made progress: the next failure starts the schedule over.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// Waits after a failed attempt.
    pub(crate) fn wait(&mut self) {
        self.wait_checking(|| {});
    }

    /// Waits after a failed attempt, running `check` first on every 16th
    /// failure.
    pub(crate) fn wait_checking(&mut self, check: impl FnOnce()) {
        self.failures += 1;
        let f = self.failures;
        if f.is_multiple_of(PERIOD) {
            check();
        }
        match sleep_after(f, self.cap) {
            None if f < SPINS => std::hint::spin_loop(),
            None => std::thread::yield_now(),
            Some(d) => {
                (self.progress)();
                std::thread::sleep(d);
            }
        }
    }
}

/// The sleep after failure `f` of a loop capped at `cap` (`None`: a spin
/// or a yield).
fn sleep_after(f: u64, cap: Duration) -> Option<Duration> {
    (f >= PERIOD).then(|| Duration::from_micros(FIRST_SLEEP_US << (f - PERIOD).min(20)).min(cap))
}

/// Calls `attempt` until it returns `true`, waiting between failures with
/// a [`Backoff`] capped at [`Backoff::LOCKS`] that drives the runtime with
/// `progress`: the wait of the lock words, guards and collectives.
pub(crate) fn backoff_until(mut attempt: impl FnMut() -> bool, progress: &dyn Fn()) {
    let mut backoff = Backoff::new(Backoff::LOCKS, progress);
    while !attempt() {
        backoff.wait();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn sleeps_start_at_the_16th_failure_and_double_up_to_the_cap() {
        let us = |f, cap| sleep_after(f, cap).map(|d| d.as_micros());
        assert!((1..PERIOD).all(|f| us(f, Backoff::LOCKS).is_none()));
        let messages: Vec<_> = (16..24).map(|f| us(f, Backoff::MESSAGES)).collect();
        let want = [2, 4, 8, 16, 32, 50, 50, 50].map(Some);
        assert_eq!(messages, want);
        let locks: Vec<_> = (16..27).map(|f| us(f, Backoff::LOCKS)).collect();
        let want = [2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000].map(Some);
        assert_eq!(locks, want);
        assert_eq!(us(u64::MAX, Backoff::LOCKS), Some(1000), "no overflow");
    }

    #[test]
    fn check_and_progress_run_when_due() {
        let progressed = Cell::new(0u64);
        let progress = || progressed.set(progressed.get() + 1);
        let checked = Cell::new(Vec::new());
        // a zero cap: the sleeps return at once
        let mut b = Backoff::new(Duration::ZERO, &progress);
        for i in 1..=2 * PERIOD + 1 {
            b.wait_checking(|| {
                let mut v = checked.take();
                v.push(i);
                checked.set(v);
            });
        }
        assert_eq!(checked.take(), [PERIOD, 2 * PERIOD]);
        // from the 16th failure on, every one
        assert_eq!(progressed.get(), PERIOD + 2);
    }

    #[test]
    fn backoff_until_retries_until_success() {
        let tries = Cell::new(0);
        let progressed = Cell::new(0);
        backoff_until(
            || {
                tries.set(tries.get() + 1);
                tries.get() == 20
            },
            &|| progressed.set(progressed.get() + 1),
        );
        assert_eq!(tries.get(), 20);
        // failures 16..=19 drove the runtime
        assert_eq!(progressed.get(), 4);
    }
}
