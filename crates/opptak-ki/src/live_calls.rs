//! The calls this process is transcribing live: the live role (`live`)
//! adds and removes them, the batch transcriber (`transcribe::run_role`)
//! waits for them, so that a call is not transcribed twice at once. Neither
//! module needs the other for it.

use opptak_domain::model::CallId;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Calls being transcribed live in this process.
#[derive(Clone, Default)]
pub struct LiveCalls(Arc<Mutex<HashSet<CallId>>>);

impl LiveCalls {
    pub fn contains(&self, id: &CallId) -> bool {
        self.0.lock().map(|s| s.contains(id)).unwrap_or(false)
    }

    pub(crate) fn insert(&self, id: CallId) {
        if let Ok(mut s) = self.0.lock() {
            if s.insert(id) {
                opptak_telemetry::metrics().live_calls_in_flight.inc();
            }
        }
    }

    pub(crate) fn remove(&self, id: &CallId) {
        if let Ok(mut s) = self.0.lock() {
            if s.remove(id) {
                opptak_telemetry::metrics().live_calls_in_flight.dec();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
