//! The loop both batch KI roles run over their input topic (the transcriber
//! over `opptak.recordings.v1`, the summarizer over `opptak.transcripts.v1`):
//! subscribe, poll until shutdown, turn each record into a call to work on
//! ([`Role::job`]), work on the call until it settles ([`settle`]), then
//! acknowledge the record. A record is acknowledged only once its call
//! settled, so an outage or a restart loses nothing; the calls behind it
//! wait (they would fail the same way). What differs between the roles is
//! their [`Role`].
//!
//! The live role (`live::run_role`) is not one of these: it keeps
//! no per-call retries and commits whole polls, since its state is not
//! durable anyway.

use crate::error::TranscribeError;
use crate::retry::{self, Attempts, Backoff, Policy, Step};
use opptak_bus::{Bus, Record, Subscription};
use opptak_domain::model::CallId;
use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

/// Attempts of a role at a call that fails with a transient error (not an
/// outage of its backend) before it moves on and leaves the call pending.
pub(crate) const MAX_FAILURES: u32 = 5;

/// Between attempts at one call: 0.5 s doubling to 30 s.
const BACKOFF: Backoff = Backoff::doubling(Duration::from_millis(500), Duration::from_secs(30));

/// What a record of the input topic asks of a role.
pub(crate) enum Job {
    /// Work on this call; the record is acknowledged once the call settled.
    Call(CallId),
    /// Nothing to do; the record is acknowledged.
    Skip,
    /// Nothing to do; the record is left unacknowledged (the transcriber's
    /// undecodable records: the next acknowledged record's commit covers it).
    Ignore,
}

/// What one attempt of a role at a call came to, for [`settle`].
pub(crate) enum Attempt {
    /// Stored.
    Done,
    /// Nothing to do, or nothing more will help (not KI, opted out, done before).
    Final,
    /// The backend is unavailable; try again later.
    Pending(String),
}

/// What a batch role does; [`run_role`] does the rest.
pub(crate) trait Role: Send + Sync {
    /// What the role makes, in logs and as `{WHAT}-pending`.
    const WHAT: &'static str;

    /// Logs the start (after subscribing).
    fn started(&self, group: &str, topic: &str);

    /// What `r` asks for (logging what is not understood).
    fn job(&self, r: &Record) -> Job;

    /// The span the work on `call_id` runs in.
    fn span(&self, call_id: &CallId) -> tracing::Span;

    /// Waits until the call may be worked on (or `shutdown`).
    fn ready(&self, _call_id: &CallId, _shutdown: &mut watch::Receiver<bool>) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// One attempt at the call.
    fn attempt(&self, call_id: &CallId) -> impl Future<Output = Result<Attempt, TranscribeError>> + Send;
}

/// Runs `role` over `topic` in `group` until `shutdown`; returns the calls done.
pub(crate) async fn run_role<R: Role>(
    role: &R,
    bus: &dyn Bus,
    group: &str,
    topic: &str,
    mut shutdown: watch::Receiver<bool>,
) -> Result<u64, TranscribeError> {
    let mut sub = bus.subscribe(group, &[topic.to_owned()]).await?;
    let mut done = 0u64;
    role.started(group, topic);
    // Records returned while the input was paused (a partition assigned
    // meanwhile), worked on before the next poll.
    let mut held: VecDeque<Record> = VecDeque::new();
    while !*shutdown.borrow() {
        let records = if held.is_empty() {
            tokio::select! {
                r = sub.poll(100, Duration::from_millis(500)) => r?,
                _ = shutdown.changed() => Vec::new(),
            }
        } else {
            held.drain(..).collect()
        };
        for r in records {
            let call_id = match role.job(&r) {
                Job::Call(call_id) => call_id,
                Job::Skip => {
                    acknowledge(sub.as_mut(), &r)?;
                    continue;
                }
                Job::Ignore => continue,
            };
            let work = async {
                role.ready(&call_id, &mut shutdown).await;
                settle(&call_id, R::WHAT, &mut shutdown, || role.attempt(&call_id))
                    .instrument(role.span(&call_id))
                    .await
            };
            let settled = polling_while(sub.as_mut(), &mut held, work).await?;
            match settled {
                // Not acknowledged: the next start retries it.
                None => {
                    sub.flush_commits().await?;
                    return Ok(done);
                }
                Some(true) => done += 1,
                Some(false) => {}
            }
            acknowledge(sub.as_mut(), &r)?;
        }
    }
    sub.flush_commits().await?;
    Ok(done)
}

/// How long a call is worked on before the role pauses its input and
/// polls while it waits: far inside `max.poll.interval.ms` (5 minutes by
/// default), and long enough that a call done at once costs no pause.
const POLL_WHILE_WORKING_AFTER: Duration = Duration::from_secs(1);

/// Runs `work` (one call: waiting for a live transcription of it, for a
/// recognizer slot, for a backend to come back) while the subscription is
/// polled with its partitions paused, so that a long wait does not put the
/// role out of its consumer group (issue 16: under a backlog the batch
/// transcriber stopped polling past `max.poll.interval.ms`, left its group
/// and ended, and the process with it). What a paused poll returns anyway
/// goes to `held`. A poll under way is finished, never dropped: a record
/// it had taken would be lost.
async fn polling_while<T>(
    sub: &mut dyn Subscription,
    held: &mut VecDeque<Record>,
    work: impl Future<Output = T>,
) -> Result<T, TranscribeError> {
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return Ok(out),
        _ = tokio::time::sleep(POLL_WHILE_WORKING_AFTER) => {}
    }
    sub.pause()?;
    let out = loop {
        let poll = sub.poll(100, Duration::from_millis(200));
        tokio::pin!(poll);
        tokio::select! {
            out = &mut work => {
                held.extend(poll.await?);
                break out;
            }
            polled = &mut poll => held.extend(polled?),
        }
    };
    sub.resume()?;
    Ok(out)
}

/// Marks `r` done for the role's group. A partition that moved to another
/// member meanwhile (a rebalance) is not an error: the new owner reads the
/// record again and the work is idempotent (a role that stopped here left
/// its process running without it; found by the fault suite, tests/it/fault.rs).
fn acknowledge(sub: &mut dyn Subscription, r: &Record) -> Result<(), TranscribeError> {
    match sub.commit(&[r.next_position()]) {
        Err(opptak_bus::BusError::NotAssigned(e)) => {
            tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "offset not stored: partition moved");
            Ok(())
        }
        other => Ok(other?),
    }
}

/// What a role's attempt that failed with `e` comes to: a transient error
/// while the stores do not answer (the metadata store a ping, the blob store
/// a listing: [`opptak_vault::Vault::stores_answer`]) is an outage of the
/// role's backend (a PostgreSQL primary failing over, an object store
/// restarting), waited out like a speech server that is down
/// ([`Attempt::Pending`], not counted), so no call is left pending for it
/// however long the outage lasts. Any other error is the attempt's.
pub(crate) async fn outage_or(e: TranscribeError, vault: &opptak_vault::Vault) -> Result<Attempt, TranscribeError> {
    if e.is_transient() {
        if let Err(down) = vault.stores_answer().await {
            return Ok(Attempt::Pending(format!("{e} (the stores do not answer: {down})")));
        }
    }
    Err(e)
}

/// Tries `attempt` on a call until it settles: an unavailable backend is
/// retried with backoff (0.5 s doubling to 30 s) for as long as it takes, a
/// transient error ([`TranscribeError::is_transient`]) [`MAX_FAILURES`]
/// times, after which the call stays `{what}-pending` (`opptak ki
/// --pending` lists it) and the role moves on; any other error settles the
/// call at once (a retry would meet the same verdict). `None` when
/// `shutdown` came first (the caller must not acknowledge the call), else
/// whether the call is done.
async fn settle<F, Fut>(call_id: &CallId, what: &str, shutdown: &mut watch::Receiver<bool>, attempt: F) -> Option<bool>
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<Attempt, TranscribeError>> + Send,
{
    let policy = Policy {
        backoff: BACKOFF,
        max_failures: MAX_FAILURES,
    };
    let mut settling = Settling {
        call_id,
        what,
        shutdown,
        attempt,
    };
    match retry::run(policy, &mut settling).await {
        Ok(done) => Some(done),
        Err(Unsettled::ShutDown) => None,
        Err(Unsettled::Pending(_) | Unsettled::Failed(_)) => Some(false),
    }
}

/// Why a call is not settled yet.
enum Unsettled {
    Pending(String),
    Failed(TranscribeError),
    ShutDown,
}

struct Settling<'a, F> {
    call_id: &'a CallId,
    what: &'a str,
    shutdown: &'a mut watch::Receiver<bool>,
    attempt: F,
}

impl<F, Fut> Attempts for Settling<'_, F>
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<Attempt, TranscribeError>> + Send,
{
    type Output = bool;
    type Error = Unsettled;

    async fn attempt(&mut self, _failures: u32) -> Step<bool, Unsettled> {
        match (self.attempt)().await {
            Ok(Attempt::Done) => Step::Done(true),
            Ok(Attempt::Final) => Step::Done(false),
            Ok(Attempt::Pending(why)) => Step::Pending(Unsettled::Pending(why)),
            Err(e) if e.is_transient() => Step::Retry(Unsettled::Failed(e), None),
            Err(e) => {
                let what = self.what;
                tracing::warn!(call_id = %self.call_id, error = %e, "{what} failed for good; the call stays {what}-pending");
                Step::Done(false)
            }
        }
    }

    fn retrying(&mut self, error: &Unsettled, delay: Duration) {
        let (call_id, what, retry_in_ms) = (self.call_id, self.what, delay.as_millis() as u64);
        match error {
            Unsettled::Pending(why) => tracing::warn!(call_id = %call_id, %why, retry_in_ms, "{what} pending"),
            Unsettled::Failed(e) => {
                tracing::warn!(call_id = %call_id, error = %e, retry_in_ms, "{what} failed; retrying")
            }
            Unsettled::ShutDown => {}
        }
    }

    fn giving_up(&mut self, error: &Unsettled, failures: u32) {
        if let Unsettled::Failed(e) = error {
            let what = self.what;
            tracing::error!(call_id = %self.call_id, error = %e, attempts = failures,
                "{what} keeps failing; the call stays {what}-pending");
        }
    }

    async fn wait(&mut self, delay: Duration) -> Result<(), Unsettled> {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.shutdown.changed() => {}
        }
        if *self.shutdown.borrow() {
            Err(Unsettled::ShutDown)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opptak_bus::memory::MemoryBus;
    use std::collections::HashMap;
    use std::sync::Mutex;

    const TOPIC: &str = "in";

    /// A role whose records name what each attempt at their call returns:
    /// `skip`, `ignore`, or `<call>=<steps>` with steps `d` (done), `f`
    /// (final), `p` (pending), `t` (transient error), `x` (permanent
    /// error); the last step repeats.
    #[derive(Default)]
    struct Scripted {
        scripts: Mutex<HashMap<String, Vec<u8>>>,
        attempts: Mutex<HashMap<String, usize>>,
        records: Mutex<usize>,
    }

    impl Scripted {
        fn attempts(&self, call: &str) -> usize {
            self.attempts.lock().unwrap().get(call).copied().unwrap_or(0)
        }
    }

    impl Role for Scripted {
        const WHAT: &'static str = "test";

        fn started(&self, _: &str, _: &str) {}

        fn job(&self, r: &Record) -> Job {
            *self.records.lock().unwrap() += 1;
            match std::str::from_utf8(&r.payload).unwrap() {
                "skip" => Job::Skip,
                "ignore" => Job::Ignore,
                script => {
                    let (call, steps) = script.split_once('=').unwrap();
                    self.scripts
                        .lock()
                        .unwrap()
                        .insert(call.into(), steps.bytes().collect());
                    Job::Call(CallId::parse(call).unwrap())
                }
            }
        }

        fn span(&self, _: &CallId) -> tracing::Span {
            tracing::Span::none()
        }

        async fn attempt(&self, call_id: &CallId) -> Result<Attempt, TranscribeError> {
            let n = {
                let mut attempts = self.attempts.lock().unwrap();
                let n = attempts.entry(call_id.to_string()).or_default();
                *n += 1;
                *n
            };
            let steps = self.scripts.lock().unwrap()[call_id.as_str()].clone();
            match steps[(n - 1).min(steps.len() - 1)] {
                b'd' => Ok(Attempt::Done),
                b'f' => Ok(Attempt::Final),
                b'p' => Ok(Attempt::Pending("backend down".into())),
                b't' => Err(opptak_bus::BusError::Unavailable("broker away".into()).into()),
                _ => Err(TranscribeError::UnknownCall(call_id.to_string())),
            }
        }
    }

    async fn bus_with(records: &[&str]) -> MemoryBus {
        let bus = MemoryBus::new();
        bus.create_topic(TOPIC, 1).await.unwrap();
        for r in records {
            bus.publish(TOPIC, b"k", r.as_bytes()).await.unwrap();
        }
        bus
    }

    /// What a new member of the group is given: the unacknowledged records.
    async fn unacknowledged(bus: &MemoryBus) -> Vec<String> {
        let mut sub = bus.subscribe("g", &[TOPIC.to_owned()]).await.unwrap();
        let records = sub.poll(100, Duration::from_millis(10)).await.unwrap();
        records
            .iter()
            .map(|r| String::from_utf8(r.payload.to_vec()).unwrap())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn calls_settle_and_their_records_are_acknowledged() {
        let records = ["a=ppd", "skip", "b=x", "c=t", "d=ttd", "e=f", "ignore"];
        let bus = bus_with(&records).await;
        let role = Scripted::default();
        let (stop, shutdown) = watch::channel(false);
        let started = tokio::time::Instant::now();
        let run = run_role(&role, &bus, "g", TOPIC, shutdown);
        let watch = async {
            while *role.records.lock().unwrap() < records.len() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            stop.send(true).unwrap();
        };
        let (done, ()) = tokio::join!(run, watch);
        assert_eq!(done.unwrap(), 2, "a and d");
        assert_eq!(role.attempts("a"), 3, "pending is retried until done");
        assert_eq!(role.attempts("b"), 1, "a permanent error settles at once");
        assert_eq!(
            role.attempts("c"),
            MAX_FAILURES as usize,
            "a transient error, MAX_FAILURES times"
        );
        assert_eq!(role.attempts("d"), 3);
        assert_eq!(role.attempts("e"), 1);
        // a: 0.5 + 1; c: 0.5 + 1 + 2 + 4; d: 0.5 + 1.
        assert!(started.elapsed() >= Duration::from_secs(10), "{:?}", started.elapsed());
        assert_eq!(unacknowledged(&bus).await, ["ignore"], "all but the ignored record");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_while_pending_leaves_the_record_unacknowledged() {
        let bus = bus_with(&["a=d", "b=p", "c=d"]).await;
        let role = Scripted::default();
        let (stop, shutdown) = watch::channel(false);
        let run = run_role(&role, &bus, "g", TOPIC, shutdown);
        let watch = async {
            while role.attempts("b") < 3 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            stop.send(true).unwrap();
        };
        let (done, ()) = tokio::join!(run, watch);
        assert_eq!(done.unwrap(), 1);
        assert_eq!(role.attempts("c"), 0, "the calls behind it wait");
        assert_eq!(unacknowledged(&bus).await, ["b=p", "c=d"]);
    }
}
