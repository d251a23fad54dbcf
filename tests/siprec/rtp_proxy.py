#!/usr/bin/env python3
"""A SIP-aware UDP proxy that impairs RTP on a schedule, for the SIPREC loss tests.

    rtp_proxy.py --server 127.0.0.1:5060 --log proxy.json \\
        --drop 0:10,11 --dup 1:20 --reorder 0:30 [--seed 7 --random-drop 0.02]

The client (tests/siprec/src_client.py) sends its SIP to this proxy instead of
the SRS; the proxy forwards SIP both ways (UDP only) and rewrites just enough
for the media to pass through it: the SRS's SDP answers get this proxy's address
and one relay port per m-line (plus an `a=rtcp` relay), the client's Via and
Contact, and the SRS's Contact, name the proxy, and a Request-URI aimed at the
proxy is given back the SRS's own Contact. Content-Length is recomputed. Each
relay forwards the client's RTP to the SRS from its own socket (so the SRS's
symmetric RTP latches onto the relay), applying the schedule by the packet's
arrival index on that stream (0-based, every RTP packet counted, telephone-events
included):

  --drop S:I,J     drop packets I and J of stream S (the S-th m-line)
  --dup S:I        send packet I twice, back to back
  --reorder S:I[+K]  hold packet I and send it after the next K packets (K=1)
  --seed N --random-drop P --random-dup P --random-reorder P
                   also impair each packet with probability P, decided by a
                   random.Random(N * 1000 + S) per stream (the same seed gives
                   the same schedule)

It prints one JSON line on stdout once listening ({"sip": "host:port"}), and
exits after --idle-exit-ms without any packet (once RTP has flowed) or on
SIGTERM/SIGINT, writing --log: per stream the relay and SRS addresses and every
packet it saw (n, seq, ts, pt, action: forward, drop, dup, reorder), plus
the sequence numbers dropped, duplicated and reordered.
"""

import argparse
import json
import random
import re
import select
import signal
import socket
import struct
import sys
import time


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def spec(s):
    stream, _, idx = s.partition(":")
    return int(stream), idx


class Stream:
    def __init__(self, index, host):
        self.index = index
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((host, 0))
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.bind((host, 0))
        self.dest = None  # the SRS's RTP address
        self.dest_rtcp = None
        self.client = None  # where the client's RTP comes from (for anything sent back)
        self.client_rtcp = None
        self.n = 0
        self.drop, self.dup, self.reorder = set(), set(), {}
        self.held = []  # [(packet, release_after_n)]
        self.log = []

    def send(self, data):
        if self.dest:
            self.rtp.sendto(data, self.dest)

    def on_rtp(self, data):
        n = self.n
        self.n += 1
        seq, ts, pt = None, None, None
        if len(data) >= 12:
            _, b1, seq, ts = struct.unpack("!BBHI", data[:8])
            pt = b1 & 0x7F
        entry = {"n": n, "seq": seq, "ts": ts, "pt": pt}
        if n in self.drop:
            entry["action"] = "drop"
        elif n in self.reorder:
            entry["action"] = "reorder"
            entry["after"] = self.reorder[n]
            self.held.append((data, n + self.reorder[n]))
        else:
            entry["action"] = "dup" if n in self.dup else "forward"
            self.send(data)
            if n in self.dup:
                self.send(data)
        self.log.append(entry)
        for held in [h for h in self.held if h[1] <= n]:
            self.held.remove(held)
            self.send(held[0])

    def flush(self):
        for data, _ in self.held:
            self.send(data)
        self.held = []

    def report(self):
        def seqs(action):
            return [e["seq"] for e in self.log if e["action"] == action]

        return {
            "index": self.index,
            "relay": "%s:%d" % self.rtp.getsockname(),
            "dest": "%s:%d" % self.dest if self.dest else None,
            "received": self.n,
            "dropped": seqs("drop"),
            "duplicated": seqs("dup"),
            "reordered": seqs("reorder"),
            "packets": self.log,
        }


class Proxy:
    def __init__(self, args):
        self.args = args
        self.host, port = hostport(args.listen)
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind((self.host, port))
        self.addr = "%s:%d" % self.sip.getsockname()
        self.server = hostport(args.server)
        self.client = None
        self.vias = {}  # branch -> the client's own top Via value
        self.server_contact = None  # the SRS's Contact URI
        self.streams = []
        self.last = time.monotonic()
        self.rtp_seen = False
        self.sip_log = []

    def stream(self, i):
        while len(self.streams) <= i:
            s = Stream(len(self.streams), self.host)
            self.plan(s)
            self.streams.append(s)
        return self.streams[i]

    def plan(self, s):
        a = self.args
        for stream, idx in a.drop:
            if stream == s.index:
                s.drop |= {int(x) for x in idx.split(",")}
        for stream, idx in a.dup:
            if stream == s.index:
                s.dup |= {int(x) for x in idx.split(",")}
        for stream, idx in a.reorder:
            if stream == s.index:
                for x in idx.split(","):
                    i, _, k = x.partition("+")
                    s.reorder[int(i)] = int(k or 1)
        if a.seed is not None:
            rnd = random.Random(a.seed * 1000 + s.index)
            for n in range(a.random_span):
                r = rnd.random()
                if n in s.drop or n in s.dup or n in s.reorder:
                    continue
                if r < a.random_drop:
                    s.drop.add(n)
                elif r < a.random_drop + a.random_dup:
                    s.dup.add(n)
                elif r < a.random_drop + a.random_dup + a.random_reorder:
                    s.reorder[n] = 1

    # --- SIP --------------------------------------------------------------
    def on_sip(self, data, src):
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            return
        lines = head.decode("utf-8", "replace").split("\r\n")
        is_response = lines[0].startswith("SIP/2.0")
        from_server = src == self.server
        if not from_server and self.client is None:
            self.client = src
        self.sip_log.append({"from": "server" if from_server else "client", "start": lines[0]})
        if from_server and is_response:
            lines = self.restore_via(lines)
            lines = self.rewrite_contact(lines, remember=True)
            body = self.rewrite_sdp(lines, body)
            dest = self.client
        elif from_server:
            lines = self.rewrite_contact(lines, remember=False)
            dest = self.client
        else:
            if not is_response:
                lines = self.replace_via(lines)
                lines = self.restore_ruri(lines)
            lines = self.rewrite_contact(lines, remember=False)
            dest = self.server
        lines = [
            re.sub(r"^(Content-Length|l)\s*:.*$", f"Content-Length: {len(body)}", ln, flags=re.I)
            for ln in lines
        ]
        if dest:
            self.sip.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + body, dest)

    def replace_via(self, lines):
        for i, ln in enumerate(lines):
            m = re.match(r"^(Via|v)\s*:\s*(SIP/2.0/UDP)\s+([^;\s,]+)(.*)$", ln, re.I)
            if m:
                branch = re.search(r"branch=([^;,\s]+)", m.group(4))
                if branch:
                    self.vias[branch.group(1)] = (m.group(3), m.group(4))
                lines[i] = f"Via: {m.group(2)} {self.addr}{m.group(4)}"
                break
        return lines

    def restore_via(self, lines):
        for i, ln in enumerate(lines):
            m = re.match(r"^(Via|v)\s*:\s*(SIP/2.0/UDP)\s+([^;\s,]+)(.*)$", ln, re.I)
            if m:
                branch = re.search(r"branch=([^;,\s]+)", m.group(4))
                if branch and branch.group(1) in self.vias:
                    sent_by, _ = self.vias[branch.group(1)]
                    lines[i] = f"Via: {m.group(2)} {sent_by}{m.group(4)}"
                break
        return lines

    def restore_ruri(self, lines):
        method, uri, version = lines[0].split(" ", 2)
        if self.server_contact and self.addr in uri:
            lines[0] = f"{method} {self.server_contact} {version}"
        return lines

    def rewrite_contact(self, lines, remember):
        for i, ln in enumerate(lines):
            m = re.match(r"^(Contact|m)\s*:\s*(.*)$", ln, re.I)
            if not m:
                continue
            value = m.group(2)
            uri = re.search(r"<([^>]+)>", value)
            uri = uri.group(1) if uri else value.split(";")[0].strip()
            if remember:
                self.server_contact = uri
            um = re.match(r"^(sips?:)(?:([^@;>]*)@)?([^;>?]+)(.*)$", uri)
            if not um:
                continue
            user = um.group(2) + "@" if um.group(2) is not None else ""
            new_uri = f"{um.group(1)}{user}{self.addr}{um.group(4)}"
            lines[i] = "Contact: " + value.replace(uri, new_uri, 1)
        return lines

    def rewrite_sdp(self, lines, body):
        ctype = next((ln.split(":", 1)[1].strip() for ln in lines if re.match(r"^(content-type|c)\s*:", ln, re.I)), "")
        if not ctype.lower().startswith("application/sdp") or not body:
            return body
        sdp = body.decode().split("\r\n")
        conn = next((ln.split()[2] for ln in sdp if ln.startswith("c=")), self.server[0])
        out, m = [], -1
        for ln in sdp:
            if ln.startswith("m="):
                m += 1
                parts = ln.split(" ")
                port = int(parts[1])
                s = self.stream(m)
                if port:
                    s.dest = (conn, port)
                    s.dest_rtcp = (conn, port + 1)
                    parts[1] = str(s.rtp.getsockname()[1])
                out.append(" ".join(parts))
                if port:
                    out.append(f"a=rtcp:{s.rtcp.getsockname()[1]}")
                continue
            if ln.startswith("a=rtcp:") and m >= 0:
                self.streams[m].dest_rtcp = (conn, int(ln.split(":")[1].split()[0]))
                continue
            if ln.startswith("c="):
                ln = f"c=IN IP4 {self.host}"
            if ln.startswith("o="):
                ln = re.sub(r"IN IP4 \S+$", f"IN IP4 {self.host}", ln)
            out.append(ln)
        return "\r\n".join(out).encode()

    # --- loop -------------------------------------------------------------
    def run(self):
        print(json.dumps({"sip": self.addr}), flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        while not stop:
            # Media first: RTP sent before a re-INVITE or BYE that is ready in
            # the same round goes out before it, as the client sent them.
            socks = [x for s in self.streams for x in (s.rtp, s.rtcp)] + [self.sip]
            try:
                ready, _, _ = select.select(socks, [], [], 0.05)
            except InterruptedError:
                continue
            now = time.monotonic()
            if self.rtp_seen and (now - self.last) * 1000 > self.args.idle_exit_ms:
                break
            for sock in sorted(ready, key=socks.index):
                data, src = sock.recvfrom(65535)
                self.last = now
                if sock is self.sip:
                    self.on_sip(data, src)
                    continue
                s = next(s for s in self.streams if sock in (s.rtp, s.rtcp))
                if sock is s.rtp and src == s.dest:
                    if s.client:
                        s.rtp.sendto(data, s.client)
                elif sock is s.rtp:
                    s.client = src
                    self.rtp_seen = True
                    s.on_rtp(data)
                elif src == s.dest_rtcp:
                    if s.client_rtcp:
                        s.rtcp.sendto(data, s.client_rtcp)
                else:
                    s.client_rtcp = src
                    if s.dest_rtcp:
                        s.rtcp.sendto(data, s.dest_rtcp)
        for s in self.streams:
            s.flush()
        with open(self.args.log, "w") as f:
            json.dump(
                {"sip": self.addr, "server": "%s:%d" % self.server, "seed": self.args.seed,
                 "sip_messages": self.sip_log, "streams": [s.report() for s in self.streams]},
                f,
            )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", required=True, help="the SRS's SIP address, host:port (UDP)")
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--log", required=True, help="where to write what the proxy did (JSON)")
    p.add_argument("--drop", type=spec, action="append", default=[])
    p.add_argument("--dup", type=spec, action="append", default=[])
    p.add_argument("--reorder", type=spec, action="append", default=[])
    p.add_argument("--seed", type=int)
    p.add_argument("--random-drop", type=float, default=0.0)
    p.add_argument("--random-dup", type=float, default=0.0)
    p.add_argument("--random-reorder", type=float, default=0.0)
    p.add_argument("--random-span", type=int, default=100000, help="packets per stream the random schedule covers")
    p.add_argument("--idle-exit-ms", type=int, default=3000)
    args = p.parse_args()
    Proxy(args).run()


if __name__ == "__main__":
    sys.exit(main())
