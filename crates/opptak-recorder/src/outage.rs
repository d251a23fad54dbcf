//! Riding out an outage of the stores (a PostgreSQL primary failing over,
//! an object store restarting) inside the process, for the roles that
//! consume the bus (the recorder, the messages role): the role's session
//! ends on the error, drops what it read since its last commit (as a crash
//! would), waits until the metadata store answers again and starts over
//! from the committed offsets. A role that keeps failing, or a store that
//! stays away longer than [`WAIT`], ends the role and with it the process
//! (crash-only: its supervisor sees it and restarts it).

use opptak_vault::Vault;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Sessions in a row a store outage may end (none of them getting an
/// effect through) before the role ends: with the back-off between them
/// (1 s doubling) about half a minute.
const SESSIONS: u32 = 5;
/// How long a role waits for its metadata store to answer between two
/// sessions: a PostgreSQL failover or an object store's restart takes
/// seconds to tens of seconds; an outage longer than this is its
/// supervisor's to see.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// The outages a role's sessions ended on, in a row.
#[derive(Default)]
pub(crate) struct Outages {
    in_a_row: u32,
}

impl Outages {
    /// A session ended on a store outage (`progressed`: it made something
    /// durable first). The back-off before the next, or `None` when the role
    /// should end instead.
    pub(crate) fn next(&mut self, progressed: bool) -> Option<Duration> {
        if progressed {
            self.in_a_row = 0;
        }
        self.in_a_row += 1;
        (self.in_a_row <= SESSIONS).then(|| Duration::from_secs(1 << (self.in_a_row - 1)))
    }
}

/// Waits `delay`, then until the vault's stores answer (metadata and
/// blobs: [`Vault::stores_answer`]), for at most [`WAIT`]:
/// rejoining the consumer group before it does would only move every
/// member's partitions for nothing. False if it did not answer (or on
/// shutdown).
pub(crate) async fn store_answers(
    role: &'static str,
    vault: &Vault,
    delay: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let deadline = Instant::now() + WAIT;
    let mut wait = delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return false;
        }
        match vault.stores_answer().await {
            Ok(()) => return true,
            Err(e) if Instant::now() >= deadline => {
                tracing::error!(role, error = %e, waited_s = WAIT.as_secs(), "the stores still do not answer");
                return false;
            }
            Err(_) => wait = Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_back_off_and_end_the_role_unless_it_progresses() {
        let mut o = Outages::default();
        let delays: Vec<_> = (0..SESSIONS).map(|_| o.next(false)).collect();
        assert_eq!(delays.first(), Some(&Some(Duration::from_secs(1))));
        assert_eq!(delays.last(), Some(&Some(Duration::from_secs(16))));
        assert_eq!(o.next(false), None, "the sixth in a row ends the role");
        let mut o = Outages::default();
        for _ in 0..3 * SESSIONS {
            assert_eq!(
                o.next(true),
                Some(Duration::from_secs(1)),
                "a session that flushed resets the count"
            );
        }
    }
}
