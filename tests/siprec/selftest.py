#!/usr/bin/env python3
"""Checks the SIPREC test peer without opptak: src_client.py and rtp_proxy.py
against a minimal Session Recording Server written here on plain sockets.

    $OPPTAK_TEST_PJSUA2_PYTHON tests/siprec/selftest.py

The server answers the INVITE (100, then 200 with an SDP answer: one
`a=recvonly` port per offered stream, labels kept), takes ACK, re-INVITE,
UPDATE and BYE, and captures every RTP packet. Each case then checks what
arrived: the INVITE's multipart/mixed body with the SDP (two m=audio,
a=label, a=sendonly) and the rs-metadata part, `Require: siprec`, the
`+sip.src` Contact, RTP with PT 0 (PCMU) or 8 (PCMA) whose payload is the
G.711 encoding of each WAV (the Sun reference code, written out here) after
the first packet, and, through the proxy, exactly the packets its log says it
let through. Exits non-zero on the first failure.
"""

import json
import math
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave


# The reference G.711 codec: Sun Microsystems' public-domain g711.c (ITU
# G.711/G.191), as opptak_domain::g711 and Python's old audioop implement it.
def ulaw_encode(x):
    pcm = x >> 2
    mask = 0x7F if pcm < 0 else 0xFF
    pcm = min(-pcm if pcm < 0 else pcm, 8159) + (0x84 >> 2)
    seg = next((i for i, end in enumerate((0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)) if pcm <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def alaw_encode(x):
    pcm = x >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask, pcm = 0x55, -pcm - 1
    seg = next((i for i, end in enumerate((0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)) if pcm <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (1 if seg < 2 else seg)) & 0xF)) ^ mask


def ulaw_decode(c):
    c = ~c & 0xFF
    t = (((c & 0x0F) << 3) + 0x84) << ((c & 0x70) >> 4)
    return (0x84 - t) if c & 0x80 else (t - 0x84)


def alaw_decode(c):
    c ^= 0x55
    t = (c & 0x0F) << 4
    seg = (c & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if c & 0x80 else -t


def encode(pcm, codec):
    """16-bit little-endian PCM to G.711 codes."""
    enc = ulaw_encode if codec == "PCMU" else alaw_encode
    return bytes(enc(x) for x in struct.unpack(f"<{len(pcm) // 2}h", pcm))


def decode(codes, codec):
    dec = ulaw_decode if codec == "PCMU" else alaw_decode
    return struct.pack(f"<{len(codes)}h", *(dec(c) for c in codes))


HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable


def parse_msg(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return lines[0], headers, body


def hget(headers, name, compact=None):
    for n, v in headers:
        if n == name or (compact and n == compact):
            return v
    return None


def hall(headers, name, compact=None):
    return [v for n, v in headers if n == name or (compact and n == compact)]


def multipart(ctype, body):
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    assert m, f"no boundary in {ctype}"
    delim = b"--" + m.group(1).encode()
    parts = []
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        h, _, b = chunk.partition(b"\r\n\r\n")
        hs = {}
        for line in h.decode().split("\r\n"):
            if line:
                n, _, v = line.partition(":")
                hs[n.strip().lower()] = v.strip()
        parts.append((hs, b[:-2] if b.endswith(b"\r\n") else b))
    return parts


class Uas:
    """One SIPREC session at a time, UDP or TCP (Content-Length framing)."""

    def __init__(self, transport, delay_answer_ms=0):
        self.transport = transport
        self.delay_answer_ms = delay_answer_ms
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        if transport == "tcp":
            self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.rtp = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for s in self.rtp:
            s.bind(("127.0.0.1", 0))
        self.packets = [[] for _ in self.rtp]  # (pt, seq, ts, marker, payload)
        self.events = [[] for _ in self.rtp]  # telephone-event packets, same shape
        self.event_pt = [None, None]
        self.requests = []  # (start line, headers, body)
        self.invite = None
        self.tag = "srs" + os.urandom(4).hex()
        self.stop = False
        self.conn = None
        self.pending = None  # an INVITE held for delay_answer_ms
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def uri(self):
        return f"sip:srs@127.0.0.1:{self.port}"

    def send(self, data, addr):
        if self.transport == "udp":
            self.sock.sendto(data, addr)
        else:
            self.conn.sendall(data)

    def respond(self, req, addr, code, reason, body=b"", ctype=None):
        _, headers, _ = req
        out = [f"SIP/2.0 {code} {reason}"]
        for v in hall(headers, "via", "v"):
            out.append(f"Via: {v}")
        to = hget(headers, "to", "t")
        if code > 100 and "tag=" not in to:
            to += f";tag={self.tag}"
        out += [
            f"From: {hget(headers, 'from', 'f')}",
            f"To: {to}",
            f"Call-ID: {hget(headers, 'call-id', 'i')}",
            f"CSeq: {hget(headers, 'cseq')}",
            f"Contact: <sip:srs@127.0.0.1:{self.port};transport={self.transport}>",
        ]
        if ctype:
            out.append(f"Content-Type: {ctype}")
        out.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(out) + "\r\n\r\n").encode() + body, addr)

    def answer_sdp(self, offer):
        """recvonly on our port per offered m=audio: its first codec and
        telephone-event kept, labels kept, a=inactive answered with a=inactive."""
        sections = offer.decode().split("\r\nm=")[1:]
        out = ["v=0", "o=srs 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
        for i, sec in enumerate(sections):
            lines = ("m=" + sec).strip().split("\r\n")
            fmts = lines[0].split()[3:]
            events = [ln.split()[0][9:] for ln in lines if "telephone-event" in ln]
            self.event_pt[i] = int(events[0]) if events else None
            keep = [fmts[0]] + events
            out.append(f"m=audio {self.rtp[i].getsockname()[1]} RTP/AVP {' '.join(keep)}")
            out += [ln for ln in lines if ln.startswith("a=label:")]
            out += [ln for ln in lines if ln.startswith("a=rtpmap:") and ln.split()[0][9:] in keep]
            out += [ln for ln in lines if ln.startswith("a=fmtp:") and ln.split()[0][7:] in keep]
            out.append("a=inactive" if "a=inactive" in lines else "a=recvonly")
        return ("\r\n".join(out) + "\r\n").encode()

    def sdp_of(self, headers, body):
        ctype = hget(headers, "content-type", "c") or ""
        if ctype.startswith("multipart/"):
            for hs, b in multipart(ctype, body):
                if hs.get("content-type", "").startswith("application/sdp"):
                    return b
            return None
        return body if ctype.startswith("application/sdp") else None

    def handle(self, data, addr):
        req = parse_msg(data)
        start, headers, body = req
        if start.startswith("SIP/2.0"):
            return
        self.requests.append(req)
        method = start.split()[0]
        if method == "INVITE":
            self.respond(req, addr, 100, "Trying")
            if self.invite is None:
                self.invite = req
            if self.delay_answer_ms:
                self.pending = (req, addr, time.monotonic() + self.delay_answer_ms / 1000)
                self.respond(req, addr, 180, "Ringing")
                return
            self.respond(req, addr, 200, "OK", self.answer_sdp(self.sdp_of(headers, body)), "application/sdp")
        elif method == "UPDATE":
            sdp = self.sdp_of(headers, body)
            if sdp:
                self.respond(req, addr, 200, "OK", self.answer_sdp(sdp), "application/sdp")
            else:
                self.respond(req, addr, 200, "OK")
        elif method == "CANCEL":
            self.respond(req, addr, 200, "OK")
            if self.pending:
                self.respond(self.pending[0], self.pending[1], 487, "Request Terminated")
                self.pending = None
        elif method in ("BYE", "OPTIONS"):
            self.respond(req, addr, 200, "OK")

    def serve(self):
        buf = b""
        while not self.stop:
            socks = self.rtp + ([self.conn] if self.conn else []) + [self.sock]
            ready, _, _ = select.select(socks, [], [], 0.05)
            if self.pending and time.monotonic() >= self.pending[2]:
                req, addr, _ = self.pending
                self.pending = None
                self.respond(req, addr, 200, "OK", self.answer_sdp(self.sdp_of(req[1], req[2])), "application/sdp")
            for s in ready:
                if s in self.rtp:
                    data, _ = s.recvfrom(2048)
                    if len(data) >= 12 and data[0] >> 6 == 2 and not 72 <= (data[1] & 0x7F) <= 76:
                        _, b1, seq, ts = struct.unpack("!BBHI", data[:8])
                        i = self.rtp.index(s)
                        kind = self.events if b1 & 0x7F == self.event_pt[i] else self.packets
                        kind[i].append((b1 & 0x7F, seq, ts, b1 >> 7, data[12:]))
                elif s is self.sock and self.transport == "udp":
                    data, addr = s.recvfrom(65535)
                    if data.strip():
                        self.handle(data, addr)
                elif s is self.sock:
                    self.conn, _ = s.accept()
                else:
                    chunk = s.recv(65535)
                    if not chunk:
                        self.conn = None
                        continue
                    buf += chunk
                    while b"\r\n\r\n" in buf:
                        head, _, rest = buf.partition(b"\r\n\r\n")
                        n = int(re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head).group(1))
                        if len(rest) < n:
                            break
                        self.handle(head + b"\r\n\r\n" + rest[:n], None)
                        buf = rest[n:]

    def close(self):
        self.stop = True
        self.thread.join()


def tone_wav(path, freqs, seconds, seed, codec):
    """A deterministic non-silent 8 kHz signal: two tones and a little noise,
    companded once through `codec` so every sample is a G.711 reconstruction
    level. PJSIP's A-law encoder rounds negative samples that sit exactly on an
    interval boundary one level away from ITU G.191 (and Sun's g711.c, audioop,
    opptak_domain::g711): -736 becomes 0x72 there, 0x73 here. A reconstruction
    level is mid-interval, so every correct encoder maps it to the same code."""
    import random

    rnd = random.Random(seed)
    n = int(8000 * seconds)
    samples = [
        int(6000 * math.sin(2 * math.pi * freqs[0] * i / 8000)
            + 3000 * math.sin(2 * math.pi * freqs[1] * i / 8000)
            + rnd.randint(-300, 300))
        for i in range(n)
    ]
    pcm = struct.pack(f"<{n}h", *samples)
    pcm = decode(encode(pcm, codec), codec)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)


def reference(path, codec):
    with wave.open(path, "rb") as w:
        pcm = w.readframes(w.getnframes())
    return encode(pcm, codec)


def run_client(uas_uri, transport, wavs, codec, scenario="basic", extra=()):
    cmd = [
        PY, os.path.join(HERE, "src_client.py"), "--target", uas_uri, "--transport", transport,
        "--agent-wav", wavs[0], "--customer-wav", wavs[1], "--codec", codec,
        "--scenario", scenario, "--timeout", "20", *extra,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        sys.exit(f"client failed ({p.returncode}):\n{p.stdout}\n{p.stderr[-3000:]}")
    return json.loads(lines[-1])


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def payload(pkts):
    """The stream's audio in sequence order (packets as captured, deduplicated)."""
    seen, out = set(), []
    for pt, seq, ts, _, data in sorted(pkts, key=lambda p: p[1]):
        if seq not in seen:
            seen.add(seq)
            out.append(data)
    return b"".join(out)


def check_invite(uas, report, codec):
    start, headers, body = uas.invite
    check("siprec" in (hget(headers, "require") or ""), "Require: siprec")
    check("+sip.src" in (hget(headers, "contact", "m") or ""), "+sip.src in Contact")
    ctype = hget(headers, "content-type", "c")
    check(ctype.startswith("multipart/mixed"), f"multipart/mixed, got {ctype}")
    parts = multipart(ctype, body)
    types = [hs.get("content-type") for hs, _ in parts]
    check(sorted(types) == ["application/rs-metadata+xml", "application/sdp"], f"parts {types}")
    meta = [b for hs, b in parts if hs["content-type"] == "application/rs-metadata+xml"][0]
    md = [hs for hs, _ in parts if hs["content-type"] == "application/rs-metadata+xml"][0]
    check(md.get("content-disposition") == "recording-session", f"metadata disposition {md}")
    import xml.etree.ElementTree as ET

    root = ET.fromstring(meta)
    ns = "{urn:ietf:params:xml:ns:recording:1}"
    check(len(root.findall(ns + "participant")) == 2, "two participants")
    check([e.text for e in root.iter(ns + "label")] == ["1", "2"], "labels 1, 2 in metadata")
    sdp = [b for hs, b in parts if hs["content-type"] == "application/sdp"][0].decode()
    check(sdp.count("m=audio") == 2, "two m=audio")
    check(re.findall(r"a=label:(\S+)", sdp) == ["1", "2"], f"a=label in SDP:\n{sdp}")
    check(sdp.count("a=sendonly") == 2, f"a=sendonly on both:\n{sdp}")
    pt = "0" if codec == "PCMU" else "8"
    for m in re.findall(r"m=audio \d+ RTP/AVP ([\d ]+)", sdp):
        check(m.split()[0] == pt, f"offered codec first {pt}: {m}")
    check(report["call_id"] == hget(headers, "call-id", "i"), "call id reported")
    return root


def check_audio(uas, wavs, codec, roles=("agent", "customer"), prefix=False):
    pt = 0 if codec == "PCMU" else 8
    silence = b"\xff" if codec == "PCMU" else b"\xd5"
    for i, role in enumerate(roles):
        pkts = uas.packets[i]
        check(pkts, f"stream {i}: no RTP")
        check({p[0] for p in pkts} == {pt}, f"stream {i}: payload types {({p[0] for p in pkts})}")
        got = payload(pkts)
        ref = reference(wavs[0 if role == "agent" else 1], codec)
        stripped = got.lstrip(silence)
        lead = len(got) - len(stripped)
        if prefix:
            n = len(stripped.rstrip(silence))
            check(n > 0 and stripped[:n] == ref[:n], f"stream {i}: not a prefix of the reference")
        else:
            # The player's last frame is padded with silence up to 20 ms.
            check(stripped.startswith(ref.lstrip(silence)), f"stream {i}: audio differs from the reference")
            tail = stripped[len(ref.lstrip(silence)):]
            check(tail.strip(silence) == b"", f"stream {i}: trailing non-silence")
        print(f"  stream {i} ({role}): {len(pkts)} packets PT {pt}, {lead} leading silence bytes, audio identical")


def main():
    tmp = tempfile.mkdtemp(prefix="siprec-selftest-")
    wav_sets = {}
    for codec in ("PCMU", "PCMA"):
        wav_sets[codec] = [os.path.join(tmp, f"agent-{codec}.wav"), os.path.join(tmp, f"customer-{codec}.wav")]
        tone_wav(wav_sets[codec][0], (440, 1250), 1.5, 1, codec)
        tone_wav(wav_sets[codec][1], (660, 1900), 1.3, 2, codec)
    wavs = wav_sets["PCMU"]

    for transport, codec in (("udp", "PCMU"), ("tcp", "PCMA")):
        wavs = wav_sets[codec]
        print(f"basic over {transport}, {codec}")
        uas = Uas(transport)
        rep = run_client(uas.uri(), transport, wavs, codec)
        time.sleep(0.3)
        uas.close()
        check(rep["final_status"] == 200, f"final status {rep['final_status']}")
        check_invite(uas, rep, codec)
        check_audio(uas, wavs, codec)
        check(any(r[0].startswith("BYE") for r in uas.requests), "BYE sent")

    wavs = wav_sets["PCMU"]
    print("customer first")
    uas = Uas("udp")
    rep = run_client(uas.uri(), "udp", wavs, "PCMU", extra=["--customer-first"])
    time.sleep(0.3)
    uas.close()
    check([s["role"] for s in rep["streams"]] == ["customer", "agent"], f"roles {rep['streams']}")
    root = check_invite(uas, rep, "PCMU")
    check_audio(uas, wavs, "PCMU", roles=("customer", "agent"))

    print("pause-resume")
    uas = Uas("udp")
    rep = run_client(uas.uri(), "udp", wavs, "PCMU", "pause-resume", ["--pause-at-ms", "500", "--pause-ms", "600"])
    time.sleep(0.3)
    uas.close()
    invites = [r for r in uas.requests if r[0].startswith("INVITE")]
    check(len(invites) == 3, f"3 INVITEs, got {len(invites)}")
    check(uas.sdp_of(invites[1][1], invites[1][2]).decode().count("a=inactive") == 2, "pause: a=inactive")
    check(uas.sdp_of(invites[2][1], invites[2][2]).decode().count("a=sendonly") == 2, "resume: a=sendonly")
    check(rep["reinvite_statuses"] == [200, 200], f"re-INVITEs {rep['reinvite_statuses']}")
    check_audio(uas, wavs, "PCMU")
    for i in range(2):
        ts = sorted((p[1], p[2]) for p in uas.packets[i])
        gaps = [b[1] - a[1] for a, b in zip(ts, ts[1:]) if b[1] - a[1] > 160]
        check(len(gaps) == 1 and gaps[0] >= 8 * 500, f"stream {i}: one pause gap in timestamps, got {gaps}")
        print(f"  stream {i}: pause = {gaps[0]} samples of RTP time")

    for method in ("reinvite", "update"):
        print(f"metadata-update by {method}")
        uas = Uas("udp")
        rep = run_client(uas.uri(), "udp", wav_sets["PCMA"], "PCMA", "metadata-update", ["--update-method", method])
        time.sleep(0.3)
        uas.close()
        name = "INVITE" if method == "reinvite" else "UPDATE"
        upd = [r for r in uas.requests if r[0].startswith(name)][-1]
        ctype = hget(upd[1], "content-type", "c")
        meta = [b for hs, b in multipart(ctype, upd[2]) if "rs-metadata" in hs.get("content-type", "")]
        check(meta and b"+4799887766" in meta[0], f"{name} carries the new metadata")
        check(rep["reinvite_statuses"] == [200], f"{rep['reinvite_statuses']}")
        check_audio(uas, wav_sets["PCMA"], "PCMA")

    print("cancel-before-answer")
    uas = Uas("udp", delay_answer_ms=3000)
    rep = run_client(uas.uri(), "udp", wavs, "PCMU", "cancel-before-answer")
    uas.close()
    check(any(r[0].startswith("CANCEL") for r in uas.requests), "CANCEL sent")
    check(rep["final_status"] == 487 and not rep["answered_before_cancel"], f"487: {rep['final_status']}")

    print("bye-mid-burst")
    uas = Uas("udp")
    rep = run_client(uas.uri(), "udp", wavs, "PCMU", "bye-mid-burst", ["--bye-at-ms", "700"])
    time.sleep(0.3)
    uas.close()
    check(any(r[0].startswith("BYE") for r in uas.requests), "BYE sent")
    check_audio(uas, wavs, "PCMU", prefix=True)
    check(all(len(p) < 1.3 * 50 for p in uas.packets), "stopped before the end of the files")

    print("vanish-without-bye")
    uas = Uas("udp")
    rep = run_client(uas.uri(), "udp", wavs, "PCMU", "vanish-without-bye", ["--vanish-at-ms", "600"])
    time.sleep(0.5)
    uas.close()
    check(not any(r[0].startswith("BYE") for r in uas.requests), "no BYE")
    check_audio(uas, wavs, "PCMU", prefix=True)

    print("dtmf")
    uas = Uas("udp")
    rep = run_client(uas.uri(), "udp", wavs, "PCMU", "dtmf", ["--dtmf-digits", "4711"])
    time.sleep(0.3)
    uas.close()
    check(not uas.events[1], "telephone-events only on the first stream")
    digits = []
    for _, _, ts, _, data in uas.events[0]:
        if not digits or digits[-1][0] != ts:
            digits.append((ts, data[0]))
    check([d for _, d in digits] == [4, 7, 1, 1], f"RFC 4733 events 4711, got {digits}")
    print(f"  stream 0: {len(uas.events[0])} telephone-event packets, digits 4711 (event codes)")
    check({p[0] for p in uas.packets[0]} == {0}, "audio PT 0 around the events")

    print("impairment proxy: drop, duplicate, reorder (explicit and seeded)")
    wavs = wav_sets["PCMU"]
    uas = Uas("udp")
    log = os.path.join(tmp, "proxy.json")
    proxy = subprocess.Popen(
        [PY, os.path.join(HERE, "rtp_proxy.py"), "--server", f"127.0.0.1:{uas.port}", "--log", log,
         "--drop", "0:10,11,12", "--dup", "0:20", "--reorder", "0:30", "--drop", "1:40",
         "--reorder", "1:5+3", "--seed", "7", "--random-drop", "0.03", "--random-dup", "0.03",
         "--random-reorder", "0.03", "--idle-exit-ms", "1000"],
        stdout=subprocess.PIPE, text=True,
    )
    sip = json.loads(proxy.stdout.readline())["sip"]
    rep = run_client(f"sip:srs@{sip}", "udp", wavs, "PCMU")
    proxy.wait(timeout=20)
    time.sleep(0.2)
    uas.close()
    check(rep["final_status"] == 200 and any(r[0].startswith("BYE") for r in uas.requests), "call through the proxy")
    with open(log) as f:
        plog = json.load(f)
    for i, st in enumerate(plog["streams"]):
        sent = [e for e in st["packets"]]
        got = [p[1] for p in uas.packets[i]]
        expect = []
        held = []
        for e in sent:
            if e["action"] == "drop":
                pass
            elif e["action"] == "reorder":
                held.append((e["seq"], e["n"] + e["after"]))
            else:
                expect += [e["seq"]] * (2 if e["action"] == "dup" else 1)
            for h in [h for h in held if h[1] <= e["n"]]:
                held.remove(h)
                expect.append(h[0])
        expect += [h[0] for h in held]
        check(got == expect, f"stream {i}: arrival order differs from the proxy's log")
        check(len(st["dropped"]) >= 1 and st["duplicated"] and st["reordered"], f"stream {i}: schedule {st}")
        check({p[1] for p in uas.packets[i]} == {e["seq"] for e in sent} - set(st["dropped"]), "lost = dropped")
        print(f"  stream {i}: {st['received']} in, dropped {st['dropped']}, "
              f"duplicated {st['duplicated']}, reordered {st['reordered']}")
    # The same seed gives the same schedule.
    uas2 = Uas("udp")
    log2 = os.path.join(tmp, "proxy2.json")
    proxy = subprocess.Popen(
        [PY, os.path.join(HERE, "rtp_proxy.py"), "--server", f"127.0.0.1:{uas2.port}", "--log", log2,
         "--seed", "7", "--random-drop", "0.03", "--random-dup", "0.03", "--random-reorder", "0.03",
         "--idle-exit-ms", "1000"],
        stdout=subprocess.PIPE, text=True,
    )
    sip = json.loads(proxy.stdout.readline())["sip"]
    run_client(f"sip:srs@{sip}", "udp", wavs, "PCMU")
    proxy.wait(timeout=20)
    uas2.close()
    with open(log2) as f:
        plog2 = json.load(f)
    for a, b in zip(plog["streams"], plog2["streams"]):
        ka = {e["n"]: e["action"] for e in a["packets"] if e["n"] not in (10, 11, 12, 20, 30, 40, 5)}
        kb = {e["n"]: e["action"] for e in b["packets"] if e["n"] in ka}
        check({n: x for n, x in ka.items() if n in kb} == kb, "seeded schedule repeats")

    print("ok")


if __name__ == "__main__":
    main()
