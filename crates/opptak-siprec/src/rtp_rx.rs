//! The RTP pool's receive threads.
//!
//! One socket per recorded stream receives one packet per 20 ms, so a
//! socket never has a batch to read: what costs is waking up per packet.
//! With a task per socket on tokio's (edge-triggered) reactor, each packet
//! cost a reactor wake, a task poll, two `recvfrom` calls (the second to
//! see `EAGAIN`) and a channel send that woke the core: measured at about
//! 9 µs of CPU per packet, the role's whole budget at 1,000 calls.
//!
//! Here `siprec.rtp_threads` OS threads each own a share of the sockets in
//! one level-triggered epoll set. A thread wakes at most once per
//! [`WINDOW`], reads one packet from each ready socket (one `recvfrom`;
//! a socket with more waiting is still ready at the next wake), and hands
//! the whole batch to the core in one message. Packets wait in their
//! socket's kernel buffer for up to [`WINDOW`]: their arrival time is when
//! they were read, so the jitter figure has that resolution.
//!
//! The channel to the core is bounded: when the core stops taking batches
//! (its bus is backlogged), a thread blocks, the sockets' buffers fill and
//! the kernel drops what does not fit (`RcvbufErrors`), instead of this
//! process growing without bound.
//!
//! A BYE must not overtake the RTP sent before it (the soak found calls
//! short by their last 20–100 ms under overload). The core marks a
//! session's ports as draining when it answers the BYE; a thread reads a
//! draining socket until it is empty, and stamps each batch with the
//! instant its wake began. Every thread sends a batch at least every
//! [`HEARTBEAT`], empty or not, so once the core has a batch from every
//! thread that began after the BYE, all that had reached the ports before
//! the BYE is in its hands (see `Core::caught_up`).

use rustix::buffer::spare_capacity;
use rustix::event::{epoll, Timespec};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a thread gathers packets between wakes.
pub(crate) const WINDOW: Duration = Duration::from_millis(2);

/// Largest RTP packet read; a longer datagram is cut and fails to parse.
const MAX_PACKET: usize = 2048;

/// Batches on their way to the core, per thread.
pub(crate) const QUEUE: usize = 64;

/// The longest a thread goes without sending a batch, empty or not.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(20);

/// Most packets read from one draining socket in one wake (a socket's
/// kernel buffer holds a few hundred).
const DRAIN_MAX: usize = 1024;

/// Packets read by one thread in one wake.
pub(crate) struct Batch {
    /// The thread that read them.
    pub(crate) thread: usize,
    /// When the wake began: every packet queued on a draining socket at
    /// this instant is in this batch or an earlier one.
    pub(crate) began: Instant,
    pub(crate) data: Vec<u8>,
    pub(crate) packets: Vec<Received>,
}

/// Batches the core has handled, for the threads to fill again: a batch
/// allocated on one thread and freed on another on every wake was a
/// measurable share of the role's CPU in the allocator.
#[derive(Clone, Default)]
pub(crate) struct Spares(Arc<Mutex<Vec<Batch>>>);

impl Spares {
    /// Hands a handled batch back.
    pub(crate) fn give(&self, b: Batch) {
        if let Ok(mut v) = self.0.lock() {
            if v.len() < QUEUE {
                v.push(b);
            }
        }
    }

    fn take(&self, thread: usize) -> Batch {
        let spare = self.0.lock().ok().and_then(|mut v| v.pop());
        let mut b = spare.unwrap_or_else(|| Batch {
            thread,
            began: Instant::now(),
            data: Vec::new(),
            packets: Vec::new(),
        });
        b.thread = thread;
        b.began = Instant::now();
        b.data.clear();
        b.packets.clear();
        b
    }
}

pub(crate) struct Received {
    pub(crate) slot: usize,
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) from: SocketAddr,
    /// When the thread read it.
    pub(crate) at: Instant,
}

impl Batch {
    pub(crate) fn payload(&self, r: &Received) -> &[u8] {
        &self.data[r.start..r.start + r.len]
    }
}

/// The running threads; dropping it stops them (within 100 ms).
pub(crate) struct Receivers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Receivers {
    /// Starts `threads` threads over `sockets` (slot index, socket); socket
    /// `i` goes to thread `i % threads`. `draining[slot]` set means: read
    /// that slot's socket until it is empty.
    pub(crate) fn start(
        sockets: Vec<(usize, UdpSocket)>,
        threads: usize,
        tx: mpsc::Sender<Batch>,
        draining: Arc<[AtomicBool]>,
        spares: Spares,
    ) -> std::io::Result<Self> {
        let threads = threads.clamp(1, sockets.len().max(1));
        let mut shares: Vec<Vec<(usize, UdpSocket)>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, s) in sockets.into_iter().enumerate() {
            s.1.set_nonblocking(true)?;
            shares[i % threads].push(s);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for (n, share) in shares.into_iter().enumerate() {
            let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
            for (i, (_, s)) in share.iter().enumerate() {
                epoll::add(&ep, s, epoll::EventData::new_u64(i as u64), epoll::EventFlags::IN)?;
            }
            let (tx, stop, draining, spares) = (tx.clone(), stop.clone(), draining.clone(), spares.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("siprec-rtp-{n}"))
                    .spawn(move || receive(n, &ep, &share, &tx, &stop, &draining, &spares))?,
            );
        }
        Ok(Self { stop, threads: handles })
    }

    /// How many threads run (the configured number, at most one per socket).
    pub(crate) fn len(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Not joined: a thread blocked on a full queue ends when the core's
        // receiver is dropped, which may be after this.
        self.threads.clear();
    }
}

fn receive(
    thread: usize,
    ep: &impl std::os::fd::AsFd,
    sockets: &[(usize, UdpSocket)],
    tx: &mpsc::Sender<Batch>,
    stop: &AtomicBool,
    draining: &[AtomicBool],
    spares: &Spares,
) {
    // Room for every socket: a ready one is never left for the next wake.
    let mut events: Vec<epoll::Event> = Vec::with_capacity(sockets.len().max(1));
    let mut buf = [0u8; MAX_PACKET];
    let poll = Timespec {
        tv_sec: 0,
        tv_nsec: HEARTBEAT.as_nanos() as i64,
    };
    let mut sent = Instant::now();
    while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
        // Stamped before the wait: a packet queued now is still queued (only
        // this thread reads these sockets) when the wait returns it ready.
        let mut batch = spares.take(thread);
        events.clear();
        match epoll::wait(ep, spare_capacity(&mut events), Some(&poll)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::error!(error = %e, "siprec rtp epoll failed, this receive thread stops");
                return;
            }
        }
        for ev in &events {
            let (slot, socket) = &sockets[ev.data.u64() as usize];
            let reads = if draining[*slot].load(Ordering::SeqCst) {
                DRAIN_MAX
            } else {
                1
            };
            for _ in 0..reads {
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let start = batch.data.len();
                        batch.data.extend_from_slice(&buf[..n]);
                        batch.packets.push(Received {
                            slot: *slot,
                            start,
                            len: n,
                            from,
                            at: Instant::now(),
                        });
                    }
                    // Empty, or an ICMP error queued on the socket: nothing to read.
                    Err(_) => break,
                }
            }
        }
        let began = batch.began;
        if !batch.packets.is_empty() || sent.elapsed() >= HEARTBEAT {
            if tx.blocking_send(batch).is_err() {
                return;
            }
            sent = Instant::now();
        }
        let spent = began.elapsed();
        if spent < WINDOW {
            std::thread::sleep(WINDOW - spent);
        }
    }
}
