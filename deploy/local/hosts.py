#!/usr/bin/env python3
"""The two daemons of deploy/local/hosts.sh, standard library only.

  hosts.py delay --queue N --delay-ms MS --loss FRACTION [--seed S]
      A delay line on netfilter queue N of the network namespace it runs in
      (hosts.sh starts it with `ip netns exec`): every packet iptables sends
      to the queue is dropped with probability FRACTION or released MS
      milliseconds after it arrived, in arrival order. It is what `tc qdisc
      ... netem delay MS loss P` does, for kernels built without sch_netem
      (this machine's): the packet stays in the kernel, only its id comes up
      (copy mode "meta"), and one batch verdict releases every packet due.
      hosts.sh queues packets where they arrive (INPUT), never where they
      leave: a sent packet held below TCP counts against TCP Small Queues,
      which then lets two packets per socket out per delay (netem orphans
      its packets for that; a packet that crossed a veth is orphaned).

  hosts.py forward --listen ADDR:PORT --to ADDR:PORT
      A TCP forwarder: lets the hosts' namespaces reach a service of the root
      namespace that listens on loopback only (PostgreSQL, MinIO, the speech
      server), at the bridge's address, without changing the service.
"""

import argparse
import asyncio
import collections
import os
import random
import select
import signal
import socket
import struct
import sys
import time

# linux/netfilter/nfnetlink.h, nfnetlink_queue.h
NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQNL_CFG_CMD_BIND = 1
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_COPY_META = 1
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NF_DROP = 0
NF_ACCEPT = 1
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
# A queue long enough that it never drops on its own: at 200 ms, 64 Ki
# packets are 320,000 packets per second.
QUEUE_MAXLEN = 65536


def log(msg):
    print(f"hosts.py: {msg}", file=sys.stderr, flush=True)


def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


class Queue:
    def __init__(self, number):
        self.number = number
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        # Room for bursts while the line sleeps; a notification lost to a full
        # buffer is harmless anyway: the next batch verdict releases its packet.
        for opt in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE (root), then the capped one
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, 16 << 20)
                break
            except OSError:
                continue
        self.sock.bind((0, 0))

    def send(self, msg, attrs, ack=False):
        self.seq += 1
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(self.number)) + b"".join(attrs)
        flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
        head = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, self.seq, 0)
        self.sock.send(head + body)
        if ack:
            self.expect_ack()

    def expect_ack(self):
        data = self.sock.recv(65536)
        length, kind = struct.unpack_from("=IH", data, 0)
        if kind == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, 16)
            if err != 0:
                raise OSError(-err, f"netfilter queue {self.number}: {os.strerror(-err)}")

    def bind(self):
        self.send(NFQNL_MSG_CONFIG, [attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0))], ack=True)
        self.send(NFQNL_MSG_CONFIG, [attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))], ack=True)
        self.send(NFQNL_MSG_CONFIG, [attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))], ack=True)
        # No NFQA_CFG_F_GSO: the kernel cuts a GSO packet (up to 64 KiB
        # between namespaces) into wire-sized ones before queueing, so the
        # loss hits single packets as on a real link.

    def verdict(self, packet_id, verdict, batch=False):
        msg = NFQNL_MSG_VERDICT_BATCH if batch else NFQNL_MSG_VERDICT
        self.send(msg, [attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))])

    def packet_ids(self, data):
        """The ids of the packet notifications in one datagram."""
        off = 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if length < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                a = off + 20  # nlmsghdr + nfgenmsg
                while a + 4 <= off + length:
                    alen, akind = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if akind & 0x3FFF == NFQA_PACKET_HDR:
                        yield struct.unpack_from("!I", data, a + 4)[0]
                        break
                    a += (alen + 3) & ~3
            off += (length + 3) & ~3


def delay(args):
    q = Queue(args.queue)
    q.bind()
    rng = random.Random(args.seed)
    hold = args.delay_ms / 1000.0
    line = collections.deque()  # (due, packet id), in arrival order
    stats = {"passed": 0, "dropped": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    log(f"delay line on queue {args.queue}: {args.delay_ms} ms, loss {args.loss}")
    while not stop:
        timeout = max(0.0, line[0][0] - time.monotonic()) if line else 1.0
        try:
            ready, _, _ = select.select([q.sock], [], [], timeout)
        except InterruptedError:
            continue
        if ready:
            try:
                data = q.sock.recv(65536)
            except OSError as e:  # ENOBUFS: notifications lost, their packets go with the next batch
                log(f"receive: {e}")
                continue
            now = time.monotonic()
            for pid in q.packet_ids(data):
                if args.loss > 0 and rng.random() < args.loss:
                    q.verdict(pid, NF_DROP)
                    stats["dropped"] += 1
                else:
                    line.append((now + hold, pid))
        now = time.monotonic()
        last = None
        while line and line[0][0] <= now:
            last = line.popleft()[1]
            stats["passed"] += 1
        if last is not None:
            # Every packet queued up to `last` (all arrived before it, so all due).
            q.verdict(last, NF_ACCEPT, batch=True)
    # Whatever waits goes now; with no reader left the kernel would let the
    # rest through anyway (the rule's --queue-bypass).
    if line:
        q.verdict(line[-1][1], NF_ACCEPT, batch=True)
    log(f"delay line on queue {args.queue} stopped: {stats['passed']} packets passed, {stats['dropped']} dropped")


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


def split(hostport):
    host, _, port = hostport.rpartition(":")
    return host, int(port)


async def forward_main(args):
    to_host, to_port = split(args.to)

    async def serve(r1, w1):
        try:
            r2, w2 = await asyncio.open_connection(to_host, to_port)
        except OSError as e:
            log(f"forward to {args.to}: {e}")
            w1.close()
            return
        await asyncio.gather(pipe(r1, w2), pipe(r2, w1))

    host, port = split(args.listen)
    server = await asyncio.start_server(serve, host, port, reuse_address=True)
    log(f"forwarding {args.listen} to {args.to}")
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: done.done() or done.set_result(None))
    async with server:
        await done


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("delay")
    d.add_argument("--queue", type=int, default=0)
    d.add_argument("--delay-ms", type=float, default=0.0)
    d.add_argument("--loss", type=float, default=0.0, help="fraction of packets dropped, 0..1")
    d.add_argument("--seed", type=int, default=None)
    f = sub.add_parser("forward")
    f.add_argument("--listen", required=True)
    f.add_argument("--to", required=True)
    args = p.parse_args()
    if args.cmd == "delay":
        delay(args)
    else:
        asyncio.run(forward_main(args))


if __name__ == "__main__":
    main()
