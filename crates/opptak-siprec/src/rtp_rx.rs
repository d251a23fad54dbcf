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

use rustix::buffer::spare_capacity;
use rustix::event::{epoll, Timespec};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a thread gathers packets between wakes.
pub(crate) const WINDOW: Duration = Duration::from_millis(2);

/// Largest RTP packet read; a longer datagram is cut and fails to parse.
const MAX_PACKET: usize = 2048;

/// Batches on their way to the core, per thread.
pub(crate) const QUEUE: usize = 64;

/// Packets read by one thread in one wake.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) data: Vec<u8>,
    pub(crate) packets: Vec<Received>,
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
    /// `i` goes to thread `i % threads`.
    pub(crate) fn start(
        sockets: Vec<(usize, UdpSocket)>,
        threads: usize,
        tx: mpsc::Sender<Batch>,
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
            let (tx, stop) = (tx.clone(), stop.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("siprec-rtp-{n}"))
                    .spawn(move || receive(&ep, &share, &tx, &stop))?,
            );
        }
        Ok(Self { stop, threads: handles })
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

fn receive(ep: &impl std::os::fd::AsFd, sockets: &[(usize, UdpSocket)], tx: &mpsc::Sender<Batch>, stop: &AtomicBool) {
    let mut events: Vec<epoll::Event> = Vec::with_capacity(sockets.len().clamp(1, 4096));
    let mut buf = [0u8; MAX_PACKET];
    let mut batch = Batch::default();
    let poll = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    let mut woke = Instant::now();
    while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
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
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                // An ICMP error queued on the socket: nothing to read.
                Err(_) => {}
            }
        }
        if !batch.packets.is_empty() && tx.blocking_send(std::mem::take(&mut batch)).is_err() {
            return;
        }
        let spent = woke.elapsed();
        if spent < WINDOW {
            std::thread::sleep(WINDOW - spent);
        }
        woke = Instant::now();
    }
}
