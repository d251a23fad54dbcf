//! The live path's queue in front of the speech recognizer: every utterance
//! of every live call waits here for one of a fixed number of slots (the
//! recognizer's concurrency), and a freed slot goes to an utterance of a
//! call that has **ended** first, then to the one that waited longest
//! (issue 16, section 8: under a backlog a call's transcript, and so its
//! draft, waited behind the utterances of calls still in progress; drafts
//! came 68-86 s after hang-up). Among ended calls the one that ended first
//! goes first, so a long call that ends later does not overtake a call
//! that ended before it with utterances cut earlier. Calls in progress lose
//! nothing that is awaited: their transcript is not awaited until they end.
//!
//! An utterance takes its place when it is cut ([`LiveQueue::enqueue`], not
//! when its task first runs), so the order is the order of the calls'
//! audio. A cancelled utterance (an opt-out, an abandoned call) leaves the
//! queue when its [`Ticket`] is dropped; a [`Slot`] goes back when dropped.

use opptak_domain::model::CallId;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

tokio::task_local! {
    /// Set while a request runs in a slot of this queue: its wait was
    /// counted here, and the recognizer's own bound does not count it again.
    static IN_SLOT: ();
}

/// Runs a recognizer request that waited in this queue.
pub(crate) async fn in_slot<F: std::future::Future>(request: F) -> F::Output {
    IN_SLOT.scope((), request).await
}

/// Whether the request running now waited in this queue ([`in_slot`]).
pub(crate) fn waited_in_slot() -> bool {
    IN_SLOT.try_with(|_| ()).is_ok()
}

/// The queue, shared by the workers of all live calls of a process.
#[derive(Clone)]
pub(crate) struct LiveQueue {
    inner: Arc<Inner>,
}

struct Inner {
    /// Ended calls first; `false`: strictly first come, first served (for
    /// the benchmark that measures what the order gains).
    ended_first: bool,
    state: Mutex<State>,
}

struct State {
    /// Slots not held. Never above zero while an utterance waits.
    free: usize,
    next: u64,
    /// Waiting utterances by arrival.
    waiting: BTreeMap<u64, Waiter>,
    /// Calls whose end was read, whose utterances go first, in the order
    /// they ended.
    ended: HashMap<CallId, u64>,
    ends: u64,
}

struct Waiter {
    call: CallId,
    tx: oneshot::Sender<Slot>,
}

impl State {
    /// Where the utterance that arrived `at` for `call` stands: ended calls
    /// in the order they ended, then everything else in the order it arrived.
    fn rank(&self, ended_first: bool, at: u64, call: &CallId) -> (u64, u64) {
        match self.ended.get(call) {
            Some(end) if ended_first => (*end, at),
            _ => (u64::MAX, at),
        }
    }

    /// The next utterance to serve.
    fn pick(&mut self, ended_first: bool) -> Option<Waiter> {
        let at = self
            .waiting
            .iter()
            .min_by_key(|(at, w)| self.rank(ended_first, **at, &w.call))
            .map(|(at, _)| *at)?;
        self.waiting.remove(&at)
    }
}

/// A recognizer slot, held while one request runs; freed on drop.
pub(crate) struct Slot {
    inner: Option<Arc<Inner>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.release();
        }
    }
}

/// An utterance's place in the queue; [`Ticket::slot`] waits for its turn.
pub(crate) struct Ticket {
    rx: oneshot::Receiver<Slot>,
    /// Counts it in `opptak_asr_queue_depth` and `_oldest_seconds` while it waits.
    _waiting: opptak_telemetry::AsrWaiting,
}

impl Ticket {
    /// Waits for a slot. `None` only when the queue itself is gone.
    pub(crate) async fn slot(self) -> Option<Slot> {
        self.rx.await.ok()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data: a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot came back: to the next waiting utterance, else free.
    fn release(self: Arc<Self>) {
        loop {
            let next = {
                let mut st = self.lock();
                match st.pick(self.ended_first) {
                    Some(w) => w,
                    None => {
                        st.free += 1;
                        return;
                    }
                }
            };
            // Sent outside the lock: a slot dropped on the way releases again.
            match next.tx.send(Slot {
                inner: Some(self.clone()),
            }) {
                Ok(()) => return,
                // Its utterance was cancelled while it waited: the next one.
                Err(mut slot) => slot.inner = None,
            }
        }
    }
}

impl LiveQueue {
    /// A queue with `slots` (at least 1) recognizer slots.
    pub(crate) fn new(slots: usize, ended_first: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                ended_first,
                state: Mutex::new(State {
                    free: slots.max(1),
                    next: 0,
                    waiting: BTreeMap::new(),
                    ended: HashMap::new(),
                    ends: 0,
                }),
            }),
        }
    }

    /// Queues an utterance of `call`.
    pub(crate) fn enqueue(&self, call: &CallId) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let waiting = opptak_telemetry::metrics().asr_waiting();
        let mut st = self.inner.lock();
        if st.free > 0 {
            st.free -= 1;
            drop(st);
            // The receiver is in hand: the send cannot fail.
            let _ = tx.send(Slot {
                inner: Some(self.inner.clone()),
            });
        } else {
            let at = st.next;
            st.next += 1;
            st.waiting.insert(at, Waiter { call: call.clone(), tx });
        }
        Ticket { rx, _waiting: waiting }
    }

    /// `call` has ended: its waiting utterances, and those cut from what was
    /// left of its audio, go before those of calls in progress.
    pub(crate) fn ended(&self, call: &CallId) {
        let mut st = self.inner.lock();
        let end = st.ends;
        st.ends += 1;
        st.ended.entry(call.clone()).or_insert(end);
    }

    /// `call`'s worker is done (its utterances answered or cancelled).
    pub(crate) fn forget(&self, call: &CallId) {
        self.inner.lock().ended.remove(call);
    }

    /// The waiting utterances in the order they will be served: each one's
    /// call, and whether the call has ended.
    pub(crate) fn waiting(&self) -> Vec<(CallId, bool)> {
        let st = self.inner.lock();
        let mut all: Vec<((u64, u64), &CallId)> = st
            .waiting
            .iter()
            .filter(|(_, w)| !w.tx.is_closed())
            .map(|(at, w)| (st.rank(self.inner.ended_first, *at, &w.call), &w.call))
            .collect();
        all.sort_by_key(|(rank, _)| *rank);
        all.into_iter()
            .map(|(_, call)| (call.clone(), st.ended.contains_key(call)))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(s: &str) -> CallId {
        CallId::parse(s).unwrap()
    }

    /// Takes the slots of `tickets` in turn, each freed before the next is
    /// served; returns whose each was.
    async fn served(tickets: Vec<(&'static str, Ticket)>) -> Vec<&'static str> {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for (who, t) in tickets {
            let order = order.clone();
            tasks.spawn(async move {
                let slot = t.slot().await.unwrap();
                order.lock().unwrap().push(who);
                drop(slot);
            });
        }
        while tasks.join_next().await.is_some() {}
        let out = order.lock().unwrap().clone();
        out
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_first_ended_call_then_the_oldest() {
        let q = LiveQueue::new(1, true);
        let (a, b, c, d) = (id("call-a"), id("call-b"), id("call-c"), id("call-d"));
        let held = q.enqueue(&a).slot().await.unwrap();
        let tickets = vec![
            ("a1", q.enqueue(&a)),
            ("c1", q.enqueue(&c)),
            ("d1", q.enqueue(&d)),
            ("b1", q.enqueue(&b)),
            ("a2", q.enqueue(&a)),
            ("b2", q.enqueue(&b)),
        ];
        // b ends before c, whose utterance is older.
        q.ended(&b);
        q.ended(&c);
        assert_eq!(
            q.waiting(),
            [
                (b.clone(), true),
                (b.clone(), true),
                (c.clone(), true),
                (a.clone(), false),
                (d, false),
                (a, false)
            ]
        );
        let order = tokio::spawn(served(tickets));
        drop(held);
        assert_eq!(order.await.unwrap(), ["b1", "b2", "c1", "a1", "d1", "a2"]);
    }

    #[tokio::test]
    async fn a_request_in_a_slot_is_not_counted_waiting_twice() {
        assert!(!waited_in_slot());
        assert!(in_slot(async { waited_in_slot() }).await);
    }

    #[tokio::test]
    async fn first_come_first_served_when_asked() {
        let q = LiveQueue::new(1, false);
        let (a, b) = (id("call-a"), id("call-b"));
        let held = q.enqueue(&a).slot().await.unwrap();
        let tickets = vec![("a1", q.enqueue(&a)), ("b1", q.enqueue(&b))];
        q.ended(&b);
        let order = tokio::spawn(served(tickets));
        drop(held);
        assert_eq!(order.await.unwrap(), ["a1", "b1"]);
    }

    #[tokio::test]
    async fn a_cancelled_utterance_passes_its_turn_on() {
        let q = LiveQueue::new(1, true);
        let a = id("call-a");
        let held = q.enqueue(&a).slot().await.unwrap();
        let gone = q.enqueue(&a);
        let next = q.enqueue(&a);
        drop(gone);
        assert_eq!(q.waiting().len(), 1);
        drop(held);
        let slot = next.slot().await.unwrap();
        drop(slot);
        // Every slot back: the next utterance is served at once.
        assert!(q.enqueue(&a).slot().await.is_some());
        assert_eq!(q.inner.lock().free, 1);
    }
}
