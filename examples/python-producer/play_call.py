#!/usr/bin/env python3
"""Reference telephony producer for opptak: plays a WAV file as one call.

Written from the contract alone (docs/telephony-contract.md,
proto/opptak/v1/telephony.proto, docs/asyncapi.yaml): every event a
telephony system sends for a call, in the contract's order, on the input
topic, keyed by the call id, with the producer settings of the contract's
section 6. See README.md beside this file for installing and running it.

The Python classes are generated from the .proto files at start-up (with
grpcio-tools' protoc, into a temporary directory), so they never drift from
the contract.

Exit codes: 0 the call was sent and every message acknowledged; 2 bad
arguments or input file; 3 a message is too large for the contract or the
topic (refused before anything was produced); 4 a message was not
delivered; 5 the broker or the topic is not there.
"""

from __future__ import annotations

import argparse
import array
import importlib.resources
import json
import re
import struct
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

TOPIC = "opptak.telephony.v1"
# docs/telephony-contract.md 2.4: a chunk's payload is at most 256 KiB.
MAX_PAYLOAD = 262_144
# What the topic's max.message.bytes counts besides key and value: a record
# batch of one record (61 bytes of batch header, offset and length included)
# and the record's own framing (length, attributes, timestamp and offset
# deltas, key and value lengths, header count: at most 28 bytes as varints).
RECORD_OVERHEAD = 61 + 28
# librdkafka's default message.max.bytes; the producer never builds a request
# larger than this, and refuses a message whose key and value exceed it.
PRODUCER_MAX = 1_000_000
# docs/telephony-contract.md section 7: the topic's max.message.bytes when the
# broker will not tell us (no DescribeConfigs permission).
CONTRACT_TOPIC_MAX = 1_048_588
CALL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
RATES = {
    "pcmu": (8000,),
    "pcma": (8000,),
    "l16": (8000, 16000, 24000, 32000, 48000),
}

EXIT_INPUT, EXIT_TOO_LARGE, EXIT_UNDELIVERED, EXIT_UNAVAILABLE = 2, 3, 4, 5


class Refusal(Exception):
    """A reason to stop, with its exit code; printed as one line."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def kafka_error(e: Exception) -> str:
    """The text of a KafkaException (its KafkaError's own words)."""
    err = e.args[0] if e.args else e
    return err.str() if hasattr(err, "str") else str(err)


def log(msg: str) -> None:
    print(f"play_call: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ proto ---


def load_proto(proto_dir: Path):
    """Generates the opptak.v1 classes from proto_dir and imports them."""
    from grpc_tools import protoc

    files = sorted(proto_dir.glob("opptak/v1/*.proto"))
    if not any(f.name == "telephony.proto" for f in files):
        raise Refusal(EXIT_INPUT, f"no opptak/v1/telephony.proto under {proto_dir} (set --proto-dir)")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="opptak-proto-") as out:
        args = ["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out}", *map(str, files)]
        if protoc.main(args) != 0:
            raise Refusal(EXIT_INPUT, f"protoc failed on {proto_dir}")
        sys.path.insert(0, out)
        try:
            from opptak.v1 import telephony_pb2  # generated just now
        finally:
            sys.path.remove(out)
    return telephony_pb2


# ------------------------------------------------------------------ audio ---


@dataclass
class Audio:
    codec: str  # pcmu, pcma or l16: the wire encoding of `data`
    rate: int
    channels: int
    data: bytes  # interleaved frames in the wire encoding

    @property
    def frame_bytes(self) -> int:
        return self.channels * (2 if self.codec == "l16" else 1)

    @property
    def frames(self) -> int:
        return len(self.data) // self.frame_bytes


def read_wav(path: Path) -> tuple[str, int, int, bytes]:
    """(encoding, rate, channels, data) of a PCM16, A-law or µ-law WAV file."""
    b = path.read_bytes()
    if len(b) < 12 or b[0:4] != b"RIFF" or b[8:12] != b"WAVE":
        raise Refusal(EXIT_INPUT, f"{path}: not a RIFF/WAVE file")
    at, fmt = 12, None
    while at + 8 <= len(b):
        cid, size = b[at : at + 4], struct.unpack_from("<I", b, at + 4)[0]
        body = b[at + 8 : at + 8 + size]
        if len(body) < size:
            raise Refusal(EXIT_INPUT, f"{path}: chunk {cid!r} runs past the end of the file")
        if cid == b"fmt ":
            if size < 16:
                raise Refusal(EXIT_INPUT, f"{path}: fmt chunk too short")
            tag, channels, rate = struct.unpack_from("<HHI", body, 0)
            bits = struct.unpack_from("<H", body, 14)[0]
            if tag == 0xFFFE and size >= 26:  # WAVE_FORMAT_EXTENSIBLE: the GUID starts with the tag
                tag = struct.unpack_from("<H", body, 24)[0]
            kinds = {(1, 16): "l16", (6, 8): "pcma", (7, 8): "pcmu"}
            if (tag, bits) not in kinds:
                raise Refusal(EXIT_INPUT, f"{path}: WAV format {tag} with {bits} bits; use 16-bit PCM, A-law or µ-law")
            fmt = (kinds[(tag, bits)], rate, channels)
        elif cid == b"data":
            if fmt is None:
                raise Refusal(EXIT_INPUT, f"{path}: data chunk before fmt chunk")
            return (*fmt, body)
        at += 8 + size + (size & 1)
    raise Refusal(EXIT_INPUT, f"{path}: no data chunk")


# ITU-T G.711 encoders (the reference algorithm of Sun's public-domain g711.c).
_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for i, end in enumerate(ends):
        if value <= end:
            return i
    return 8


def ulaw_encode(sample: int) -> int:
    pcm = sample >> 2
    mask = 0xFF
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    pcm = min(pcm, 8159) + (0x84 >> 2)
    seg = _segment(pcm, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def alaw_encode(sample: int) -> int:
    pcm = sample >> 3
    mask = 0xD5
    if pcm < 0:
        pcm, mask = -pcm - 1, 0x55
    seg = _segment(pcm, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    shift = 1 if seg < 2 else seg
    return ((seg << 4) | ((pcm >> shift) & 0xF)) ^ mask


def encode(pcm16le: bytes, codec: str) -> bytes:
    """16-bit little-endian PCM in the contract's wire encoding for `codec`."""
    if codec == "l16":
        return pcm16le  # the contract's L16 is little-endian, as in WAV
    samples = array.array("h")
    samples.frombytes(pcm16le)
    if sys.byteorder == "big":
        samples.byteswap()
    one = ulaw_encode if codec == "pcmu" else alaw_encode
    table = bytes(one(s - 65536 if s >= 32768 else s) for s in range(65536))
    return bytes(table[s & 0xFFFF] for s in samples)


def load_audio(path: Path, codec: str | None) -> Audio:
    kind, rate, channels, data = read_wav(path)
    if channels not in (1, 2):
        raise Refusal(EXIT_INPUT, f"{path}: {channels} channels; the contract takes 1 or 2")
    if kind == "l16":
        codec = codec or "pcma"
        data = data[: len(data) - len(data) % (2 * channels)]
        data = encode(data, codec)
    elif codec not in (None, kind):
        raise Refusal(EXIT_INPUT, f"{path} is {kind.upper()} already; --codec {codec} would need a transcode")
    else:
        codec = kind
    if rate not in RATES[codec]:
        allowed = ", ".join(map(str, RATES[codec]))
        raise Refusal(EXIT_INPUT, f"{path}: {rate} Hz; {codec.upper()} is sent at {allowed} Hz")
    audio = Audio(codec, rate, channels, data)
    return Audio(codec, rate, channels, data[: audio.frames * audio.frame_bytes])


# ----------------------------------------------------------------- events ---


def nanos(frames: int, rate: int) -> int:
    return (frames * 1_000_000_000 + rate // 2) // rate


def build_events(pb, args, audio: Audio, started_ns: int) -> list:
    """Every event of the call, in the order they are sent."""
    from google.protobuf.duration_pb2 import Duration
    from google.protobuf.timestamp_pb2 import Timestamp

    def ts(ns: int) -> Timestamp:
        t = Timestamp()
        t.FromNanoseconds(ns)
        return t

    def dur(ns: int) -> Duration:
        d = Duration()
        d.FromNanoseconds(ns)
        return d

    def enum(kind, prefix: str, name: str) -> int:
        return kind.Value(f"{prefix}_{name.upper()}")

    def event(**kw):
        return pb.TelephonyEvent(call_id=args.call_id, **kw)

    roles = args.channel_roles or (["agent", "customer"] if audio.channels == 2 else ["mixed"])
    # docs/telephony-contract.md 2.3: one role per channel; stereo is one
    # agent and one customer, in either order.
    if len(roles) != audio.channels or not set(roles) <= {"agent", "customer", "mixed"}:
        raise Refusal(
            EXIT_INPUT,
            f"--channel-roles {','.join(roles)}: {audio.channels} channels need {audio.channels} roles, "
            "each agent, customer or mixed",
        )
    if audio.channels == 2 and sorted(roles) != ["agent", "customer"]:
        raise Refusal(EXIT_INPUT, f"--channel-roles {','.join(roles)}: stereo is one agent and one customer channel")
    started = event(
        call_started=pb.CallStarted(
            started_at=ts(started_ns),
            direction=enum(pb.Direction, "DIRECTION", args.direction),
            customer_ref=args.customer_ref,
            advisor_id=args.advisor_id,
            desk=enum(pb.Desk, "DESK", args.desk),
            service_category=enum(pb.ServiceCategory, "SERVICE_CATEGORY", args.service),
            ki_enabled=args.ki,
            customer_informed=args.customer_informed,
            audio_format=pb.AudioFormat(
                codec=enum(pb.Codec, "CODEC", audio.codec),
                sample_rate_hz=audio.rate,
                channels=audio.channels,
                channel_roles=[enum(pb.ChannelRole, "CHANNEL_ROLE", r) for r in roles],
            ),
        )
    )

    if (args.chunk_ms * audio.rate) % 1000 or args.chunk_ms <= 0:
        raise Refusal(EXIT_INPUT, f"--chunk-ms {args.chunk_ms} is not a whole number of frames at {audio.rate} Hz")
    per_chunk = args.chunk_ms * audio.rate // 1000
    if per_chunk * audio.frame_bytes > MAX_PAYLOAD:
        raise Refusal(
            EXIT_TOO_LARGE,
            f"a {args.chunk_ms} ms chunk of {audio.codec.upper()} with {audio.channels} channels is "
            f"{per_chunk * audio.frame_bytes:,} bytes, over the contract's {MAX_PAYLOAD:,}-byte chunk limit "
            "(docs/telephony-contract.md 2.4); nothing was sent: use shorter chunks (--chunk-ms)",
        )
    call_ns = nanos(audio.frames, audio.rate)
    for name, ms in (("--ki-notice-ms", args.ki_notice_ms), ("--opt-out-ms", args.opt_out_ms)):
        if ms is not None and not 0 <= ms * 1_000_000 <= call_ns:
            raise Refusal(EXIT_INPUT, f"{name} {ms} is outside the call's {call_ns / 1e9:.3f} s of audio")

    # (position on the audio timeline in ns, event): a notice or an opt-out
    # goes out once the audio up to its offset has been sent.
    marks = []
    if args.ki_notice_ms is not None:
        by = args.ki_notice_by if args.ki_notice_by is not None else args.advisor_id if args.ki_notice_method == "advisor" else ""
        off = args.ki_notice_ms * 1_000_000
        marks.append(
            (
                off,
                event(
                    ki_notice=pb.KiNotice(
                        at=ts(started_ns + off),
                        offset=dur(off),
                        method=enum(pb.KiNoticeMethod, "KI_NOTICE_METHOD", args.ki_notice_method),
                        announcement_id=args.announcement_id if args.ki_notice_method == "ivr_announcement" else "",
                        by=by,
                    )
                ),
            )
        )
    if args.opt_out_ms is not None:
        off = args.opt_out_ms * 1_000_000
        marks.append(
            (
                off,
                event(
                    ki_opt_out=pb.KiOptOut(
                        requested_by=args.opt_out_by or args.advisor_id,
                        at=ts(started_ns + off),
                        offset=dur(off),
                    )
                ),
            )
        )
    marks.sort(key=lambda m: m[0])

    events = [(0, started)]
    sequence, frame = 0, 0
    while frame < audio.frames:
        while marks and marks[0][0] <= nanos(frame, audio.rate):
            events.append(marks.pop(0))
        n = min(per_chunk, audio.frames - frame)
        payload = audio.data[frame * audio.frame_bytes : (frame + n) * audio.frame_bytes]
        chunk = pb.AudioChunk(
            sequence=sequence,
            payload=payload,
            duration=dur(nanos(frame + n, audio.rate) - nanos(frame, audio.rate)),
            offset=dur(nanos(frame, audio.rate)),
        )
        frame += n
        sequence += 1
        # A chunk can be sent once its last frame was spoken.
        events.append((nanos(frame, audio.rate), event(audio_chunk=chunk)))
    events.extend(marks)
    ended = pb.CallEnded(
        ended_at=ts(started_ns + call_ns),
        reason=enum(pb.EndReason, "END_REASON", args.end_reason),
        last_sequence=max(sequence - 1, 0),
        no_audio=sequence == 0,
    )
    events.append((call_ns, event(call_ended=ended)))
    return events


# ------------------------------------------------------------------ kafka ---


def client_config(args) -> dict:
    conf = {"bootstrap.servers": args.bootstrap_servers, "client.id": args.client_id}
    for kv in args.config:
        key, sep, value = kv.partition("=")
        if not sep:
            raise Refusal(EXIT_INPUT, f"-X {kv}: expected KEY=VALUE")
        conf[key] = value
    return conf


def topic_limit(args, conf: dict, topic: str) -> int:
    """The topic's max.message.bytes, after checking the topic exists."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    # log_level 4: warnings and errors; its notices (e.g. on teardown) are noise here.
    try:
        admin = AdminClient({**conf, "allow.auto.create.topics": False, "log_level": 4})
    except KafkaException as e:
        raise Refusal(EXIT_INPUT, f"client settings: {kafka_error(e)}")
    try:
        md = admin.list_topics(topic=topic, timeout=args.timeout)
    except KafkaException as e:
        raise Refusal(EXIT_UNAVAILABLE, f"cannot reach the broker at {args.bootstrap_servers}: {kafka_error(e)}")
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        raise Refusal(
            EXIT_UNAVAILABLE,
            f"topic {topic} is not on the broker ({t.error.str() if t and t.error else 'unknown'}); create it "
            "(docs/telephony-contract.md section 7) or check --topic-prefix: opptak's bus.topic_prefix is put "
            "in front of the name as is, with no separator added",
        )
    if args.max_message_bytes is not None:
        return args.max_message_bytes
    try:
        res = ConfigResource(ResourceType.TOPIC, topic)
        entries = admin.describe_configs([res], request_timeout=args.timeout)[res].result(timeout=args.timeout)
        return int(entries["max.message.bytes"].value)
    except Exception as e:  # an ACL without DescribeConfigs, an old broker
        log(
            f"cannot read {topic}'s max.message.bytes ({e}); assuming the contract's {CONTRACT_TOPIC_MAX:,} "
            "(set --max-message-bytes to the topic's real value)"
        )
        return CONTRACT_TOPIC_MAX


class Sender:
    """An idempotent producer that checks sizes first and delivery after."""

    def __init__(self, args, conf: dict, topic: str, limit: int):
        from confluent_kafka import KafkaException

        self.topic, self.key = topic, args.call_id.encode("utf-8")
        self.topic_max = limit
        # The producer's own request limit, never above the topic's: then
        # a batch of several small messages cannot exceed the topic's either.
        self.producer_max = min(int(conf.get("message.max.bytes", PRODUCER_MAX)), limit)
        try:
            self.producer = self._producer(conf)
        except KafkaException as e:
            raise Refusal(EXIT_INPUT, f"producer settings: {kafka_error(e)}")
        self.pending: dict[int, bytes] = {}
        self.failed: dict[int, object] = {}
        self.delivered: list[tuple[int, int]] = []  # (partition, offset)
        self.names: dict[int, str] = {}

    def _producer(self, conf: dict):
        from confluent_kafka import Producer

        return Producer(
            {
                **conf,
                "enable.idempotence": True,
                "acks": "all",
                "compression.type": "none",
                # Java's partitioner: the same call lands where a Java producer puts it.
                "partitioner": "murmur2_random",
                "linger.ms": 10,
                "message.max.bytes": max(self.producer_max, 1000),
                "allow.auto.create.topics": False,
            }
        )

    def check(self, what: str, value: bytes) -> None:
        """Refuses a message the broker would never take: resending it cannot help."""
        size = len(self.key) + len(value)
        if size > self.producer_max or size + RECORD_OVERHEAD > self.topic_max:
            raise Refusal(
                EXIT_TOO_LARGE,
                f"{what} is {size:,} bytes of key and value ({size + RECORD_OVERHEAD:,} with Kafka's record "
                f"framing), over the topic's limit of {self.topic_max:,} bytes (max.message.bytes); nothing was sent: "
                "use shorter chunks (--chunk-ms)",
            )

    def send(self, index: int, what: str, value: bytes) -> None:
        def report(err, msg, index=index):
            if err is None:
                self.pending.pop(index, None)
                self.delivered.append((msg.partition(), msg.offset()))
            else:
                self.failed[index] = err

        self.pending[index] = value
        self.names[index] = what
        while True:
            try:
                self.producer.produce(self.topic, key=self.key, value=value, on_delivery=report)
                break
            except BufferError:  # the local queue is full: let it drain
                self.producer.poll(0.5)
        self.producer.poll(0)

    def settle(self, resends: int, timeout: float) -> None:
        """Waits for every delivery report; resends what failed and may succeed."""
        for attempt in range(resends + 1):
            deadline = time.monotonic() + timeout
            while self.producer.flush(1.0) > 0:
                if time.monotonic() > deadline:
                    raise Refusal(EXIT_UNDELIVERED, f"{len(self.pending)} messages unacknowledged after {timeout:.0f} s")
            if not self.failed:
                return
            failed, self.failed = self.failed, {}
            final = {i: e for i, e in failed.items() if e.fatal() or not e.retriable() or attempt == resends}
            if final:
                first = min(final)
                which = ", ".join(self.names[i] for i in sorted(final)[:3])
                more = f" and {len(final) - 3} more" if len(final) > 3 else ""
                raise Refusal(EXIT_UNDELIVERED, f"{which}{more} not delivered: {final[first].str()}")
            log(f"resending {len(failed)} messages (same content, same sequence numbers)")
            for index in sorted(failed):
                self.send(index, self.names[index], self.pending[index])


# ------------------------------------------------------------------- main ---


def parse_args(argv: list[str]) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(
        description="Play a WAV file as one call on opptak's telephony topic (docs/telephony-contract.md).",
    )
    lower = str.lower
    p.add_argument("wav", type=Path, help="8 kHz mono or stereo WAV: 16-bit PCM, A-law or µ-law")
    p.add_argument("--bootstrap-servers", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    p.add_argument("--topic-prefix", default="", help="opptak's bus.topic_prefix, put in front of opptak.telephony.v1 as is")
    p.add_argument("-X", dest="config", action="append", default=[], metavar="KEY=VALUE",
                   help="a librdkafka setting (security.protocol, sasl.*, ssl.*); repeatable")
    p.add_argument("--client-id", default="opptak-example-producer", help="client.id in the broker's logs")
    p.add_argument("--call-id", default=None, help="the call id and message key (default: tlf-<random uuid>)")
    p.add_argument("--codec", type=lower, choices=["pcmu", "pcma", "l16"], default=None,
                   help="wire encoding of a 16-bit PCM file (default pcma); a G.711 file is sent as it is")
    p.add_argument("--chunk-ms", type=int, default=100, help="audio per chunk in ms (default 100)")
    p.add_argument("--channel-roles", type=lambda s: [r.strip().lower() for r in s.split(",")], default=None,
                   help="roles of the channels in order (default agent,customer for stereo, mixed for mono)")
    p.add_argument("--direction", type=lower, choices=["inbound", "outbound", "internal"], default="inbound")
    p.add_argument("--customer-ref", default="cust-example", help="pseudonymous customer reference")
    p.add_argument("--advisor-id", default="adv-example")
    p.add_argument("--desk", type=lower, default="customer_center",
                   choices=["customer_center", "markets", "private_banking", "corporate"])
    p.add_argument("--service", type=lower, default="general",
                   choices=["investment_advice", "loan", "savings", "insurance", "payments", "general"])
    p.add_argument("--no-ki", dest="ki", action="store_false", help="ki_enabled = false (default true)")
    p.add_argument("--customer-informed", action="store_true",
                   help="customer_informed = true: told about KI before the call connected")
    p.add_argument("--ki-notice-ms", type=int, default=0,
                   help="offset (ms) at which the customer was told about KI: a KiNotice (default 0)")
    p.add_argument("--no-ki-notice", dest="ki_notice_ms", action="store_const", const=None, help="send no KiNotice")
    p.add_argument("--ki-notice-method", type=lower, choices=["ivr_announcement", "advisor"], default="ivr_announcement")
    p.add_argument("--announcement-id", default="ki-notice-v1", help="the IVR announcement played (IVR notices)")
    p.add_argument("--ki-notice-by", default=None, help="who told the customer (advisor notices; default --advisor-id)")
    p.add_argument("--opt-out-ms", type=int, default=None, help="offset (ms) at which the customer refused KI: a KiOptOut")
    p.add_argument("--opt-out-by", default=None, help="requested_by of the KiOptOut (default --advisor-id)")
    p.add_argument("--end-reason", type=lower, default="hangup_customer",
                   choices=["hangup_customer", "hangup_agent", "transfer", "error"])
    p.add_argument("--realtime", action="store_true", help="send each chunk when its audio has been spoken")
    p.add_argument("--max-message-bytes", type=int, default=None,
                   help="the topic's max.message.bytes, when the producer may not read it from the broker")
    p.add_argument("--resend", type=int, default=3, help="resends of a message whose delivery failed (default 3)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the broker (default 30)")
    p.add_argument("--proto-dir", type=Path, default=here.parent.parent / "proto", help="the contract's proto/ directory")
    args = p.parse_args(argv)
    args.call_id = args.call_id or f"tlf-{uuid.uuid4().hex}"
    if not CALL_ID.match(args.call_id) or args.call_id in (".", ".."):
        p.error(f"--call-id {args.call_id!r}: 1-128 characters of [A-Za-z0-9._:-], not . or ..")
    for name in ("customer_ref", "advisor_id"):
        if len(getattr(args, name).encode()) > 256:
            p.error(f"--{name.replace('_', '-')} is over 256 bytes")
    return args


def describe(ev) -> str:
    kind = ev.WhichOneof("event")
    return f"chunk {ev.audio_chunk.sequence}" if kind == "audio_chunk" else kind


def run(args) -> dict:
    pb = load_proto(args.proto_dir)
    audio = load_audio(args.wav, args.codec)
    call_ns = nanos(audio.frames, audio.rate)
    # Played as fast as the broker takes it, the call is dated as if it had
    # just ended; played in real time, as it happens.
    started_ns = time.time_ns() - (0 if args.realtime else call_ns)
    events = build_events(pb, args, audio, started_ns)

    topic = args.topic_prefix + TOPIC
    conf = client_config(args)
    sender = Sender(args, conf, topic, topic_limit(args, conf, topic))
    values = [ev.SerializeToString() for _, ev in events]
    names = [describe(ev) for _, ev in events]
    # Every message is checked before the first is produced: a message the
    # broker cannot take fails the same way on every resend (the contract's
    # "resend the same event" would loop forever), so none of the call goes out.
    for what, value in zip(names, values):
        sender.check(f"the message of {what}", value)

    t0 = time.monotonic()
    last = len(events) - 1
    for i, ((at_ns, _), value) in enumerate(zip(events, values)):
        if args.realtime:
            time.sleep(max(0.0, t0 + at_ns / 1e9 - time.monotonic()))
        if i == last:
            # CallEnded only once every chunk is acknowledged: a chunk resent
            # after it would be refused (AFTER_END / LATE_CHUNK).
            sender.settle(args.resend, args.timeout)
        sender.send(i, names[i], value)
        if i == 0:
            # The chunks only once CallStarted is acknowledged: had it failed,
            # every chunk would be dead-lettered as UNKNOWN_CALL.
            sender.settle(args.resend, args.timeout)
    sender.settle(args.resend, args.timeout)

    chunks = sum(1 for _, ev in events if ev.WhichOneof("event") == "audio_chunk")
    partitions = sorted({p for p, _ in sender.delivered})
    return {
        "call_id": args.call_id,
        "topic": topic,
        "partition": partitions[0] if len(partitions) == 1 else partitions,
        "messages": len(events),
        "events": [ev.WhichOneof("event") for _, ev in events],
        "chunks": chunks,
        "last_sequence": events[-1][1].call_ended.last_sequence,
        "codec": audio.codec,
        "sample_rate_hz": audio.rate,
        "channels": audio.channels,
        "frames": audio.frames,
        "audio_bytes": len(audio.data),
        "duration_ms": call_ns / 1e6,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except Refusal as r:
        log(f"error: {r}")
        return r.code
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
