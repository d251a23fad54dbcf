//! The speech client's circuit breaker: after `threshold` consecutive failed
//! attempts every call fails fast for `cooldown`, then one trial request
//! goes through (half-open) and its outcome closes or reopens it.

use super::AsrError;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The circuit breaker's state, for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests go through; counting consecutive failures.
    Closed,
    /// Failing fast until the cooldown is over.
    Open,
    /// One trial request is in flight (or may go next).
    HalfOpen,
}

#[derive(Debug)]
enum Circuit {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
pub(super) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    /// What a caller turned away while a trial runs is told to wait.
    trial_wait: Duration,
    circuit: Mutex<Circuit>,
}

/// Permission to send one request; a trial (half-open) resolves the breaker.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    Normal,
    Trial,
}

impl Breaker {
    pub(super) fn new(threshold: u32, cooldown: Duration, trial_wait: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            trial_wait,
            circuit: Mutex::new(Circuit::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Circuit> {
        // No code panics while holding it; a poisoned lock still holds a valid state.
        self.circuit.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn state(&self) -> BreakerState {
        match *self.lock() {
            Circuit::Closed { .. } => BreakerState::Closed,
            Circuit::Open { until } if Instant::now() < until => BreakerState::Open,
            Circuit::Open { .. } | Circuit::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// While open, the error to fail fast with. Unlike [`Breaker::admit`] it
    /// never takes the trial, so a caller that goes on to queue for a permit
    /// first cannot leave the breaker half-open with no trial in flight.
    pub(super) fn open_error(&self) -> Option<AsrError> {
        match *self.lock() {
            Circuit::Open { until } => {
                let now = Instant::now();
                (now < until).then(|| AsrError::CircuitOpen {
                    retry_after: until - now,
                })
            }
            _ => None,
        }
    }

    /// Permission to send one request, resolved by the guard.
    pub(super) fn pass(&self) -> Result<PassGuard<'_>, AsrError> {
        Ok(PassGuard {
            breaker: self,
            pass: Some(self.admit()?),
        })
    }

    /// Fails fast while open; the first caller after the cooldown is the trial.
    fn admit(&self) -> Result<Pass, AsrError> {
        let mut circuit = self.lock();
        match *circuit {
            Circuit::Closed { .. } => Ok(Pass::Normal),
            Circuit::Open { until } => {
                let now = Instant::now();
                if now < until {
                    Err(AsrError::CircuitOpen {
                        retry_after: until - now,
                    })
                } else {
                    *circuit = Circuit::HalfOpen;
                    tracing::info!("speech recognition circuit half-open, sending one trial request");
                    Ok(Pass::Trial)
                }
            }
            Circuit::HalfOpen => Err(AsrError::CircuitOpen {
                retry_after: self.trial_wait,
            }),
        }
    }

    fn success(&self, pass: &Pass) {
        let mut circuit = self.lock();
        if !matches!(*circuit, Circuit::Closed { failures: 0 }) {
            if matches!(*circuit, Circuit::Closed { .. }) || *pass == Pass::Normal {
                tracing::debug!("speech recognition failure count reset");
            } else {
                tracing::info!("speech recognition circuit closed");
            }
        }
        *circuit = Circuit::Closed { failures: 0 };
    }

    fn failure(&self, pass: &Pass) {
        let mut circuit = self.lock();
        match (&*circuit, pass) {
            (Circuit::HalfOpen, Pass::Trial) => {
                *circuit = Circuit::Open {
                    until: Instant::now() + self.cooldown,
                };
                tracing::warn!(
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "speech recognition trial failed, circuit open again"
                );
            }
            (Circuit::Closed { failures }, _) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    *circuit = Circuit::Open {
                        until: Instant::now() + self.cooldown,
                    };
                    tracing::warn!(
                        failures,
                        cooldown_ms = self.cooldown.as_millis() as u64,
                        "speech recognition circuit open"
                    );
                } else {
                    *circuit = Circuit::Closed { failures };
                }
            }
            // A request sent before the breaker opened: the breaker already knows.
            _ => {}
        }
    }

    /// A trial that ended without an outcome (its caller went away, e.g. an
    /// opt-out cancelled the request): the next caller may try.
    fn abandon(&self, pass: &Pass) {
        if *pass == Pass::Trial {
            let mut circuit = self.lock();
            if matches!(*circuit, Circuit::HalfOpen) {
                *circuit = Circuit::Open { until: Instant::now() };
            }
        }
    }
}

/// Resolves a pass exactly once, also when the future holding it is dropped.
pub(super) struct PassGuard<'a> {
    breaker: &'a Breaker,
    pass: Option<Pass>,
}

impl PassGuard<'_> {
    pub(super) fn success(mut self) {
        if let Some(pass) = self.pass.take() {
            self.breaker.success(&pass);
        }
    }

    pub(super) fn failure(mut self) {
        if let Some(pass) = self.pass.take() {
            self.breaker.failure(&pass);
        }
    }
}

impl Drop for PassGuard<'_> {
    fn drop(&mut self) {
        if let Some(pass) = self.pass.take() {
            self.breaker.abandon(&pass);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_fails_fast_then_lets_one_trial_through() {
        let b = Breaker::new(3, Duration::from_secs(10), Duration::from_secs(1));
        for _ in 0..2 {
            let p = b.admit().expect("closed");
            b.failure(&p);
        }
        let p = b.admit().expect("still closed");
        b.success(&p);
        for _ in 0..3 {
            let p = b.admit().expect("closed");
            b.failure(&p);
        }
        assert_eq!(b.state(), BreakerState::Open);
        match b.admit() {
            Err(AsrError::CircuitOpen { retry_after }) => assert_eq!(retry_after, Duration::from_secs(10)),
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(
            matches!(b.admit(), Err(AsrError::CircuitOpen { retry_after }) if retry_after == Duration::from_secs(6))
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let trial = b.admit().expect("trial");
        assert_eq!(trial, Pass::Trial);
        assert!(
            matches!(b.admit(), Err(AsrError::CircuitOpen { retry_after }) if retry_after == Duration::from_secs(1)),
            "only one trial at a time"
        );
        b.failure(&trial);
        assert_eq!(b.state(), BreakerState::Open, "a failed trial opens it again");
        tokio::time::advance(Duration::from_secs(10)).await;
        let trial = b.admit().expect("trial");
        b.success(&trial);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit().expect("closed"), Pass::Normal);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_trial_lets_the_next_caller_try() {
        let b = Breaker::new(1, Duration::from_secs(5), Duration::from_secs(1));
        let p = b.admit().expect("closed");
        b.failure(&p);
        tokio::time::advance(Duration::from_secs(5)).await;
        {
            let _guard = PassGuard {
                breaker: &b,
                pass: Some(b.admit().expect("trial")),
            };
            assert!(b.admit().is_err());
        } // dropped: the request was cancelled
        assert_eq!(b.admit().expect("next trial"), Pass::Trial);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_fast_never_takes_the_trial() {
        let b = Breaker::new(1, Duration::from_secs(5), Duration::from_secs(1));
        assert!(b.open_error().is_none(), "closed");
        b.failure(&b.admit().expect("closed"));
        assert!(
            matches!(b.open_error(), Some(AsrError::CircuitOpen { retry_after }) if retry_after == Duration::from_secs(5))
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.open_error().is_none(), "the cooldown is over");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit().expect("the trial is still there"), Pass::Trial);
    }
}
