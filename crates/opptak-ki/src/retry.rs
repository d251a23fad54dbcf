//! The one retry loop of the crate: the speech client (`asr::HttpAsr`), the
//! chat client (`llm::ChatDrafts`) and the roles' per-call settling
//! (`role::settle`) each describe one attempt ([`Attempts`]) and leave
//! counting, backing off and giving up to [`run`].
//!
//! What differs between them is data: the [`Backoff`] schedule (jitter or
//! not, how a server's `Retry-After` counts), how many counted failures are
//! allowed, and what an attempt reports ([`Step`]).

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// What one attempt came to.
pub(crate) enum Step<T, E> {
    /// Finished: the loop returns it.
    Done(T),
    /// Failed for good (or fails fast): returned as is, nothing more is tried.
    Fail(E),
    /// A transient failure: counted, then retried after a backoff (which the
    /// server's `Retry-After` changes as [`RetryAfter`] says), until the
    /// count reaches the limit.
    Retry(E, Option<Duration>),
    /// Waiting on a backend that is down: retried after a backoff for as long
    /// as it takes, not counted.
    Pending(E),
    /// Try again at once, not counted (a protocol downgrade, a corrected
    /// prompt); the attempt keeps its own limit.
    Again,
}

/// One thing to try until it settles, with its logging.
pub(crate) trait Attempts: Send {
    type Output: Send;
    type Error: Send;

    /// One attempt; `failures` is how many counted failures ([`Step::Retry`])
    /// came before it.
    fn attempt(&mut self, failures: u32) -> impl Future<Output = Step<Self::Output, Self::Error>> + Send;

    /// `error` is retried after `delay` (log it).
    fn retrying(&mut self, error: &Self::Error, delay: Duration);

    /// `failures` counted failures: `error` is returned (log it).
    fn giving_up(&mut self, error: &Self::Error, failures: u32);

    /// Waits `delay` before the next attempt; an error ends the loop with it
    /// (a shutdown).
    fn wait(&mut self, delay: Duration) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async move {
            tokio::time::sleep(delay).await;
            Ok(())
        }
    }
}

/// How often and how patiently [`run`] retries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    pub(crate) backoff: Backoff,
    /// Counted failures ([`Step::Retry`]) after which the last one is returned.
    pub(crate) max_failures: u32,
}

/// Tries `attempts` until it settles, as [`Step`] describes; the `n`-th wait
/// (pending or counted) is [`Backoff::delay`]`(n, ..)`.
pub(crate) async fn run<A: Attempts>(policy: Policy, attempts: &mut A) -> Result<A::Output, A::Error> {
    let (mut failures, mut waits) = (0u32, 0u32);
    loop {
        let (error, retry_after) = match attempts.attempt(failures).await {
            Step::Done(value) => return Ok(value),
            Step::Fail(error) => return Err(error),
            Step::Again => continue,
            Step::Pending(error) => (error, None),
            Step::Retry(error, retry_after) => {
                failures += 1;
                if failures >= policy.max_failures {
                    attempts.giving_up(&error, failures);
                    return Err(error);
                }
                (error, retry_after)
            }
        };
        waits = waits.saturating_add(1);
        let delay = policy.backoff.delay(waits, retry_after);
        attempts.retrying(&error, delay);
        attempts.wait(delay).await?;
    }
}

/// Exponential backoff: `first * 2^(retry-1)`, at most `max`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    /// The first retry's delay.
    pub(crate) first: Duration,
    /// The longest delay the doubling reaches.
    pub(crate) max: Duration,
    /// "Equal jitter": each delay drawn from the upper half of its value, so
    /// that clients failing together do not retry together.
    pub(crate) jitter: bool,
    pub(crate) retry_after: RetryAfter,
}

/// How a server's `Retry-After` changes a delay.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RetryAfter {
    /// The delay is at least the server's, which is believed up to `cap`.
    AtLeast { cap: Duration },
    /// The server's replaces the delay, up to [`Backoff::max`].
    Instead,
}

impl Backoff {
    /// Plain doubling, no jitter; a server's `Retry-After` replaces the
    /// delay (the chat client's schedule, and the roles', which have none).
    pub(crate) const fn doubling(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            jitter: false,
            retry_after: RetryAfter::Instead,
        }
    }

    /// The delay before retry number `retry` (1-based).
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let full = self
            .first
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max);
        let delay = if self.jitter {
            full.mul_f64(0.5 + 0.5 * unit_fraction())
        } else {
            full
        };
        match (retry_after, self.retry_after) {
            (None, _) => delay,
            (Some(server), RetryAfter::AtLeast { cap }) => delay.max(server.min(cap)),
            (Some(server), RetryAfter::Instead) => server.min(self.max),
        }
    }
}

/// A number in `[0, 1)`, different on every call (jitter, not cryptography).
fn unit_fraction() -> f64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = KEYS.get_or_init(RandomState::new).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts calls; fails as scripted.
    struct Script {
        steps: Vec<Step<&'static str, &'static str>>,
        calls: u32,
        seen_failures: Vec<u32>,
        delays: Vec<Duration>,
        gave_up: Option<u32>,
    }

    impl Attempts for Script {
        type Output = &'static str;
        type Error = &'static str;

        async fn attempt(&mut self, failures: u32) -> Step<&'static str, &'static str> {
            self.calls += 1;
            self.seen_failures.push(failures);
            if self.steps.is_empty() {
                Step::Done("done")
            } else {
                self.steps.remove(0)
            }
        }

        fn retrying(&mut self, _: &&'static str, delay: Duration) {
            self.delays.push(delay);
        }

        fn giving_up(&mut self, _: &&'static str, failures: u32) {
            self.gave_up = Some(failures);
        }
    }

    fn script(steps: Vec<Step<&'static str, &'static str>>) -> Script {
        Script {
            steps,
            calls: 0,
            seen_failures: Vec::new(),
            delays: Vec::new(),
            gave_up: None,
        }
    }

    fn policy(max_failures: u32) -> Policy {
        Policy {
            backoff: Backoff::doubling(Duration::from_millis(100), Duration::from_millis(250)),
            max_failures,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn counted_failures_end_the_loop_pending_and_again_do_not() {
        let mut s = script(vec![
            Step::Retry("a", None),
            Step::Pending("down"),
            Step::Again,
            Step::Retry("b", None),
            Step::Pending("down"),
        ]);
        assert_eq!(run(policy(3), &mut s).await, Ok("done"));
        assert_eq!(s.calls, 6);
        assert_eq!(s.seen_failures, [0, 1, 1, 1, 2, 2]);
        let ms: Vec<u128> = s.delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 250, 250], "every wait doubles, Again waits not");

        let mut s = script(vec![
            Step::Retry("a", None),
            Step::Retry("b", None),
            Step::Retry("c", None),
        ]);
        assert_eq!(run(policy(2), &mut s).await, Err("b"));
        assert_eq!((s.calls, s.gave_up), (2, Some(2)));

        let mut s = script(vec![Step::Retry("a", None), Step::Fail("no")]);
        assert_eq!(run(policy(5), &mut s).await, Err("no"));
        assert_eq!((s.calls, s.gave_up), (2, None));
    }

    #[test]
    fn retry_after_is_a_floor_or_a_replacement() {
        let floor = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(800),
            jitter: false,
            retry_after: RetryAfter::AtLeast {
                cap: Duration::from_secs(2),
            },
        };
        assert_eq!(floor.delay(1, Some(Duration::ZERO)), Duration::from_millis(100));
        assert_eq!(floor.delay(1, Some(Duration::from_secs(1))), Duration::from_secs(1));
        assert_eq!(floor.delay(1, Some(Duration::from_secs(9))), Duration::from_secs(2));
        let instead = Backoff::doubling(Duration::from_millis(100), Duration::from_millis(800));
        assert_eq!(instead.delay(3, Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(
            instead.delay(3, Some(Duration::from_secs(9))),
            Duration::from_millis(800)
        );
        assert_eq!(instead.delay(u32::MAX, None), Duration::from_millis(800));
    }
}
