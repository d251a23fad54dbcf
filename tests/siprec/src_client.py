#!/usr/bin/env python3
"""A SIPREC Session Recording Client (RFC 7866) on PJSIP (PyPI pjsua2-python).

The test peer of opptak's `siprec` role (tests/it/siprec.rs): a real SIP stack
sends one recording session to a target URI and prints one JSON line saying
what it did. Run it with the venv's Python that deploy/local/services.sh
installs (`services.sh env` exports it as OPPTAK_TEST_PJSUA2_PYTHON).

What goes on the wire:
- INVITE with `Require: siprec`, a Contact with the `+sip.src` feature tag and a
  multipart/mixed body: the SDP PJSIP builds (two `m=audio` streams,
  `CallSetting.audioCount = 2`, each `a=sendonly`) and an
  `application/rs-metadata+xml` part (RFC 7865) with `Content-Disposition:
  recording-session`. PJSIP puts the parts given in SipTxOption first and its
  own SDP last, so the SDP is the second part.
- `a=label:1` / `a=label:2`: PJSIP has no setting for SDP labels, but pjsua2
  re-parses the SDP when `onCallSdpCreated` changes `wholeSdp`; the client adds
  the labels there (on every offer, re-INVITEs included), so the metadata's
  `<stream><label>` names the streams as RFC 7866 intends.
- Audio: one 8 kHz mono 16-bit WAV per stream through AudioMediaPlayer (played
  once), the conference bridge at 8 kHz with 20 ms frames (no resampling, no
  VAD, no echo canceller: the RTP payload is the G.711 encoding of the file's
  samples), the codec forced by priorities (only the chosen one is offered,
  plus telephone-event).
- DTMF (scenario dtmf): RFC 4733 events with `Call.dialDtmf`; PJSIP sends them
  on the call's first audio stream (the first m-line), replacing that stream's
  audio while a digit lasts.
- SIP over TLS (`--transport tls`): PJSIP's TLS transport checks the SRS's
  certificate against `--tls-ca`, and presents `--tls-cert`/`--tls-key` when
  the SRS asks for a client certificate (mutual TLS). RTP stays plain RTP.

Scenarios (times count from the moment the call is answered):
  basic                 play both files to the end, then BYE
  pause-resume          at --pause-at-ms: re-INVITE with both streams a=inactive
                        (the players are stopped, so no audio is lost), after
                        --pause-ms a re-INVITE with a=sendonly and play on
  metadata-update       at --update-at-ms: re-INVITE (or UPDATE, --update-method)
                        carrying new metadata (the customer's AOR and name
                        changed to --update-customer-aor), then play on
  cancel-before-answer  CANCEL as soon as a provisional response arrives (if a
                        200 comes first PJSIP sends ACK and BYE: reported as
                        answered_before_cancel)
  bye-mid-burst         BYE at --bye-at-ms while both streams are sending
  vanish-without-bye    at --vanish-at-ms the process exits without BYE
  dtmf                  send --dtmf-digits at --dtmf-at-ms, play on, BYE

The JSON line: call_id (SIP Call-ID), final_status (the INVITE's final
response), retry_after (its Retry-After header, if any), the local SIP address, per stream: role, label, local and remote
RTP address, packets sent; answered_unix_ms, media_start_unix_ms (when the
players were connected; the first packet with audio leaves within a frame),
and events (each with t_ms since the start of the process).
"""

import argparse
import base64
import datetime
import json
import os
import sys
import time
import uuid
import wave

import pjsua2 as pj

ROLES = ("agent", "customer")


def b64id():
    """A RFC 7865 identifier: a UUID in base64 (URL-safe alphabet, no padding)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def build_metadata(
    session_id, labels, roles, aors, names, ucid=None, stream_ids=None, ids=None
):
    """RFC 7865 recording metadata: one session, two participants, two streams.

    `labels[i]`, `roles[i]` describe the i-th m-line; `aors`/`names` map a role to
    the participant's AOR and display name. Each participant sends its own
    stream and receives the other one (participantstreamassoc).
    """
    ids = ids or {r: b64id() for r in ROLES}
    stream_ids = stream_ids or [b64id() for _ in labels]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1">',
        "  <datamode>complete</datamode>",
        f'  <session session_id="{session_id}">',
        f"    <start-time>{now}</start-time>",
    ]
    if ucid:
        out += [
            '    <extensiondata xmlns:apkt="http://acmepacket.com/siprec/extensiondata">',
            f"      <apkt:ucid>{ucid}</apkt:ucid>",
            "    </extensiondata>",
        ]
    out.append("  </session>")
    for role in ROLES:
        out += [
            f'  <participant participant_id="{ids[role]}">',
            f'    <nameID aor="{aors[role]}">',
            f'      <name xml:lang="no">{names[role]}</name>',
            "    </nameID>",
            "  </participant>",
        ]
    for sid, label in zip(stream_ids, labels):
        out += [
            f'  <stream stream_id="{sid}" session_id="{session_id}">',
            f"    <label>{label}</label>",
            "  </stream>",
        ]
    out += [
        f'  <sessionrecordingassoc session_id="{session_id}">',
        f"    <associate-time>{now}</associate-time>",
        "  </sessionrecordingassoc>",
    ]
    for role in ROLES:
        out += [
            f'  <participantsessionassoc participant_id="{ids[role]}" session_id="{session_id}">',
            f"    <associate-time>{now}</associate-time>",
            "  </participantsessionassoc>",
        ]
    for role in ROLES:
        sent = stream_ids[roles.index(role)]
        recv = [s for s, r in zip(stream_ids, roles) if r != role]
        out.append(f'  <participantstreamassoc participant_id="{ids[role]}">')
        out.append(f"    <send>{sent}</send>")
        out += [f"    <recv>{s}</recv>" for s in recv]
        out.append("  </participantstreamassoc>")
    out.append("</recording>")
    return "\r\n".join(out) + "\r\n", ids, stream_ids


def add_labels(sdp, labels):
    """Appends `a=label:<l>` to each m=audio section (the i-th gets labels[i])."""
    lines = sdp.replace("\r\n", "\n").rstrip("\n").split("\n")
    out, m = [], -1

    def close():
        if 0 <= m < len(labels) and not any(
            line.startswith("a=label:") for line in section
        ):
            out.append(f"a=label:{labels[m]}")

    section = []
    for line in lines:
        if line.startswith("m="):
            close()
            m += 1 if line.startswith("m=audio") else 0
            section = []
        section.append(line)
        out.append(line)
    close()
    return "\r\n".join(out) + "\r\n"


class Clock:
    def __init__(self):
        self.t0 = time.monotonic()
        self.events = []

    def ms(self):
        return int((time.monotonic() - self.t0) * 1000)

    def event(self, name, **kw):
        self.events.append({"t_ms": self.ms(), "event": name, **kw})


class StderrLog(pj.LogWriter):
    def write(self, entry):
        sys.stderr.write(entry.msg if entry.msg.endswith("\n") else entry.msg + "\n")


class Player(pj.AudioMediaPlayer):
    def __init__(self, path):
        super().__init__()
        self.createPlayer(path, pj.PJMEDIA_FILE_NO_LOOP)
        self.eof = False

    def onEof2(self):
        self.eof = True


class SrcCall(pj.Call):
    def __init__(self, acc, client):
        super().__init__(acc)
        self.client = client

    def onCallSdpCreated(self, prm):
        if self.client.args.labels:
            prm.sdp.wholeSdp = add_labels(prm.sdp.wholeSdp, self.client.labels)

    def onCallTsxState(self, prm):
        self.client.on_tsx(self, prm)

    def onCallState(self, prm):
        self.client.on_state(self, prm)

    def onCallMediaState(self, prm):
        self.client.on_media(self)


class Client:
    def __init__(self, args):
        self.args = args
        self.clock = Clock()
        self.roles = list(reversed(ROLES)) if args.customer_first else list(ROLES)
        self.labels = ["1", "2"]
        self.session_id = b64id()
        self.aors = {"agent": args.agent_aor, "customer": args.customer_aor}
        self.names = {"agent": args.agent_name, "customer": args.customer_name}
        self.wavs = {"agent": args.agent_wav, "customer": args.customer_wav}
        self.metadata, self.participant_ids, self.stream_ids = build_metadata(
            self.session_id, self.labels, self.roles, self.aors, self.names, args.ucid
        )
        self.players = {}
        self.playing = False
        self.call = None
        self.state = "init"
        self.final_status = None
        self.retry_after = None
        self.answered_at = None
        self.answered_unix_ms = None
        self.media_start_unix_ms = None
        self.disconnected = False
        self.cancel_sent = False
        self.answered_before_cancel = False
        self.streams = []
        self.local_sip = None
        self.call_id = None
        self.reinvite_statuses = []
        self.first_invite_done = False
        self.step = 0
        self.paused_ms = 0

    # --- PJSIP callbacks -------------------------------------------------
    def on_tsx(self, call, prm):
        e = prm.e
        if e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx = e.body.tsxState.tsx
        method = tsx.method
        if tsx.role != pj.PJSIP_ROLE_UAC or tsx.statusCode < 100:
            return
        if method == "INVITE" and 100 <= tsx.statusCode < 200 and tsx.state == pj.PJSIP_TSX_STATE_PROCEEDING:
            self.clock.event("provisional", status=tsx.statusCode)
            if self.args.scenario == "cancel-before-answer" and not self.cancel_sent:
                self.cancel_sent = True
                self.clock.event("cancel")
                call.hangup(pj.CallOpParam(True))
        if tsx.state in (pj.PJSIP_TSX_STATE_COMPLETED, pj.PJSIP_TSX_STATE_TERMINATED) and tsx.statusCode >= 200:
            self.clock.event("response", method=method, status=tsx.statusCode, reason=tsx.statusText)
            if method in ("INVITE", "UPDATE"):
                if method == "INVITE" and not self.first_invite_done:
                    self.first_invite_done = True
                else:
                    self.reinvite_statuses.append(tsx.statusCode)

    def on_state(self, call, prm):
        info = call.getInfo()
        # A final response that ends the call (503 at capacity, say) comes
        # here only, not through onCallTsxState.
        e = prm.e
        if e.type == pj.PJSIP_EVENT_TSX_STATE and e.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG:
            for line in e.body.tsxState.src.rdata.wholeMsg.split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "retry-after" and self.retry_after is None:
                    self.retry_after = value.strip()
        self.call_id = info.callIdString
        self.clock.event("state", state=info.stateText, status=info.lastStatusCode)
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.answered_at is None:
            self.final_status = info.lastStatusCode
            self.answered_at = time.monotonic()
            self.answered_unix_ms = int(time.time() * 1000)
            if self.cancel_sent:
                self.answered_before_cancel = True
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            if self.final_status is None:
                self.final_status = info.lastStatusCode
            self.disconnected = True

    def on_media(self, call):
        info = call.getInfo()
        for i, mi in enumerate(info.media):
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or i >= 2:
                continue
            while len(self.streams) <= i:
                self.streams.append({"role": self.roles[len(self.streams)], "label": self.labels[len(self.streams)]})
            s = self.streams[i]
            try:
                tp = call.getMedTransportInfo(i)
                s["local"] = tp.localRtpName
                si = call.getStreamInfo(i)
                s["remote"] = si.remoteRtpAddress
                s["codec"] = si.codecName
                s["pt"] = si.txPt
            except pj.Error:
                pass
        self.clock.event("media", status=[m.status for m in info.media], dir=[m.dir for m in info.media])
        if not self.playing and self.state in ("answered", "resuming"):
            self.start_players(call)

    # --- actions -----------------------------------------------------------
    def start_players(self, call):
        info = call.getInfo()
        sending = [
            m for m in info.media
            if m.type == pj.PJMEDIA_TYPE_AUDIO and m.dir & pj.PJMEDIA_DIR_ENCODING
            and m.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_LOCAL_HOLD)
        ]
        if len(sending) < 2:
            return
        for i, role in enumerate(self.roles):
            if role not in self.players:
                self.players[role] = Player(self.wavs[role])
            self.players[role].startTransmit(call.getAudioMedia(i))
        self.playing = True
        if self.media_start_unix_ms is None:
            self.media_start_unix_ms = int(time.time() * 1000)
        self.clock.event("play")

    def stop_players(self, call):
        for i, role in enumerate(self.roles):
            if role in self.players:
                try:
                    self.players[role].stopTransmit(call.getAudioMedia(i))
                except pj.Error:
                    pass
        self.playing = False
        self.clock.event("stop_play")

    def tx_option(self, metadata, with_require=True):
        opt = pj.SipTxOption()
        if with_require:
            h = pj.SipHeader()
            h.hName = "Require"
            h.hValue = "siprec"
            opt.headers.append(h)
        if metadata is not None:
            opt.multipartContentType.type = "multipart"
            opt.multipartContentType.subType = "mixed"
            part = pj.SipMultipartPart()
            part.contentType.type = "application"
            part.contentType.subType = self.args.metadata_subtype
            cd = pj.SipHeader()
            cd.hName = "Content-Disposition"
            cd.hValue = "recording-session"
            part.headers.append(cd)
            part.body = metadata
            opt.multipartParts.append(part)
        return opt

    def call_setting(self, direction):
        cs = pj.CallSetting(True)
        cs.audioCount = 2
        cs.videoCount = 0
        cs.flag |= pj.PJSUA_CALL_SET_MEDIA_DIR
        cs.mediaDir.clear()
        for _ in range(2):
            cs.mediaDir.append(direction)
        return cs

    def reinvite(self, call, direction, metadata=None, method="reinvite"):
        prm = pj.CallOpParam(True)
        prm.opt = self.call_setting(direction)
        if metadata is not None:
            prm.txOption = self.tx_option(metadata, with_require=False)
        if method == "update":
            call.update(prm)
        else:
            call.reinvite(prm)

    def stats(self, call):
        for i, s in enumerate(self.streams):
            try:
                st = call.getStreamStat(i)
                s["tx_packets"] = st.rtcp.txStat.pkt
            except pj.Error:
                pass

    def run(self):
        a = self.args
        ep = pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.userAgent = "opptak-siprec-test-src (pjsua2)"
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.level = 5 if a.verbose else 0
        cfg.logConfig.msgLogging = 1 if a.verbose else 0
        if a.verbose:
            self.log_writer = StderrLog()
            cfg.logConfig.writer = self.log_writer
            cfg.logConfig.decor = 0
        m = cfg.medConfig
        m.clockRate = 8000
        m.sndClockRate = 8000
        m.channelCount = 1
        m.audioFramePtime = 20
        m.ptime = 20
        m.noVad = True
        m.ecTailLen = 0
        ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = a.bind
        tcfg.port = a.sip_port
        ttype = {
            "udp": pj.PJSIP_TRANSPORT_UDP,
            "tcp": pj.PJSIP_TRANSPORT_TCP,
            "tls": pj.PJSIP_TRANSPORT_TLS,
        }[a.transport]
        if a.transport == "tls":
            tcfg.tlsConfig.CaListFile = a.tls_ca or ""
            tcfg.tlsConfig.certFile = a.tls_cert or ""
            tcfg.tlsConfig.privKeyFile = a.tls_key or ""
            tcfg.tlsConfig.verifyServer = bool(a.tls_ca)
        tid = ep.transportCreate(ttype, tcfg)
        ti = ep.transportGetInfo(tid)
        self.local_sip = ti.localName
        ep.libStart()
        ep.audDevManager().setNullDev()
        for c in ep.codecEnum2():
            ep.codecSetPriority(c.codecId, 255 if c.codecId.lower().startswith(a.codec.lower() + "/") else 0)

        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{a.src_user}@{self.local_sip}"
        acfg.sipConfig.transportId = tid
        acfg.sipConfig.contactParams = ";+sip.src"
        acfg.regConfig.registerOnAdd = False
        acfg.mediaConfig.transportConfig.boundAddress = a.bind
        acfg.mediaConfig.transportConfig.port = a.rtp_port
        acfg.mediaConfig.transportConfig.portRange = 1000 if a.rtp_port else 0
        acc = pj.Account()
        acc.create(acfg)

        call = SrcCall(acc, self)
        self.call = call
        prm = pj.CallOpParam(True)
        prm.opt = self.call_setting(pj.PJMEDIA_DIR_ENCODING)
        metadata = self.metadata
        if a.metadata_file:
            with open(a.metadata_file, encoding="utf-8") as f:
                metadata = f.read()
        prm.txOption = self.tx_option(None if a.no_metadata else metadata)
        target = a.target
        if a.transport in ("tcp", "tls") and "transport=" not in target and not target.startswith("sips:"):
            target += f";transport={a.transport}"
        self.state = "answered"  # players start once media is up
        self.clock.event("invite")
        call.makeCall(target, prm)
        try:
            self.loop(ep, call)
        except pj.Error as e:
            # PJSIP asserts if its objects outlive a half-torn-down library:
            # report and leave without cleanup (the SRS sees a vanished SRC).
            self.clock.event("error", reason=e.reason, status=e.status)
            self.report()
            os._exit(1)
        if a.scenario == "vanish-without-bye" and self.answered_at is not None:
            self.report()
            os._exit(0)
        self.report()
        # Every pjsua2 object goes before the library (else PJSIP asserts).
        self.players.clear()
        self.call = None
        del call
        acc.shutdown()
        ep.libDestroy()

    def elapsed_ms(self):
        return (time.monotonic() - self.answered_at) * 1000 - self.paused_ms if self.answered_at else 0

    def players_done(self):
        return self.playing and len(self.players) == 2 and all(p.eof for p in self.players.values())

    def loop(self, ep, call):
        a = self.args
        deadline = time.monotonic() + a.timeout
        hung_up = False
        tail_until = None
        while not self.disconnected:
            ep.libHandleEvents(5)
            now = time.monotonic()
            if now > deadline:
                self.clock.event("timeout")
                if not hung_up:
                    call.hangup(pj.CallOpParam(True))
                    hung_up = True
                deadline = now + 5
                if tail_until == "gave-up":
                    break
                tail_until = "gave-up"
                continue
            if self.answered_at is None or hung_up:
                continue
            t = self.elapsed_ms()
            sc = a.scenario
            if sc == "pause-resume" and self.step == 0 and t >= a.pause_at_ms:
                self.step = 1
                self.stop_players(call)
                self.pause_started = now
                self.clock.event("pause")
                self.state = "paused"
                self.reinvite(call, pj.PJMEDIA_DIR_NONE)
            elif sc == "pause-resume" and self.step == 1 and (now - self.pause_started) * 1000 >= a.pause_ms:
                self.step = 2
                self.paused_ms += (now - self.pause_started) * 1000
                self.clock.event("resume")
                self.state = "resuming"
                self.reinvite(call, pj.PJMEDIA_DIR_ENCODING)
            elif sc == "metadata-update" and self.step == 0 and t >= a.update_at_ms:
                self.step = 1
                self.aors["customer"] = a.update_customer_aor
                self.names["customer"] = a.update_customer_name
                self.metadata, _, _ = build_metadata(
                    self.session_id, self.labels, self.roles, self.aors, self.names,
                    a.ucid, self.stream_ids, self.participant_ids,
                )
                self.clock.event("metadata_update", method=a.update_method)
                self.reinvite(call, pj.PJMEDIA_DIR_ENCODING, self.metadata, a.update_method)
            elif sc == "dtmf" and self.step == 0 and t >= a.dtmf_at_ms:
                self.step = 1
                self.clock.event("dtmf", count=len(a.dtmf_digits))
                call.dialDtmf(a.dtmf_digits)
            elif sc == "bye-mid-burst" and t >= a.bye_at_ms:
                self.stats(call)
                self.clock.event("bye")
                call.hangup(pj.CallOpParam(True))
                hung_up = True
            elif sc == "vanish-without-bye" and t >= a.vanish_at_ms:
                self.stats(call)
                self.clock.event("vanish")
                return
            elif self.players_done():
                if tail_until is None:
                    tail_until = now + a.tail_ms / 1000
                elif tail_until != "gave-up" and now >= tail_until:
                    self.stats(call)
                    self.clock.event("bye")
                    call.hangup(pj.CallOpParam(True))
                    hung_up = True

    def report(self):
        out = {
            "scenario": self.args.scenario,
            "transport": self.args.transport,
            "target": self.args.target,
            "call_id": self.call_id,
            "session_id": self.session_id,
            "final_status": self.final_status,
            "retry_after": self.retry_after,
            "reinvite_statuses": self.reinvite_statuses,
            "answered_before_cancel": self.answered_before_cancel,
            "local_sip": self.local_sip,
            "codec": self.args.codec,
            "streams": self.streams,
            "participants": {
                r: {"participant_id": self.participant_ids[r], "aor": self.aors[r]} for r in ROLES
            },
            "answered_unix_ms": self.answered_unix_ms,
            "media_start_unix_ms": self.media_start_unix_ms,
            "events": self.clock.events,
        }
        print(json.dumps(out), flush=True)


def wav_8k_mono(path):
    with wave.open(path, "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 2):
            sys.exit(f"{path}: need an 8 kHz mono 16-bit WAV")
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="the SRS's request URI, e.g. sip:srs@127.0.0.1:5060")
    p.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    p.add_argument("--tls-ca", help="tls: the CA file the SRS's certificate must chain to")
    p.add_argument("--tls-cert", help="tls: the client certificate (PEM) for mutual TLS")
    p.add_argument("--tls-key", help="tls: its private key (PEM)")
    p.add_argument("--agent-wav", type=wav_8k_mono, required=True)
    p.add_argument("--customer-wav", type=wav_8k_mono, required=True)
    p.add_argument("--codec", default="PCMU", help="PCMU or PCMA (any PJSIP codec name, e.g. GSM, for refusals)")
    p.add_argument(
        "--scenario",
        default="basic",
        choices=(
            "basic", "pause-resume", "metadata-update", "cancel-before-answer",
            "bye-mid-burst", "vanish-without-bye", "dtmf",
        ),
    )
    p.add_argument("--customer-first", action="store_true", help="the customer's stream is the first m-line")
    p.add_argument("--no-labels", dest="labels", action="store_false", help="no a=label in the SDP")
    p.add_argument("--agent-aor", default="sip:agent-1001@bank.example")
    p.add_argument("--agent-name", default="Agent Kari")
    p.add_argument("--customer-aor", default="sip:+4791234567@pstn.example")
    p.add_argument("--customer-name", default="Kunde Ola")
    p.add_argument("--ucid", help="a UCID in the session's extension data")
    p.add_argument("--metadata-file", help="send this file as the metadata part instead of the generated XML")
    p.add_argument("--metadata-subtype", default="rs-metadata+xml", help="the metadata part's content subtype")
    p.add_argument("--no-metadata", action="store_true", help="an SDP-only INVITE")
    p.add_argument("--pause-at-ms", type=int, default=1000)
    p.add_argument("--pause-ms", type=int, default=1000)
    p.add_argument("--update-at-ms", type=int, default=1000)
    p.add_argument("--update-method", choices=("reinvite", "update"), default="reinvite")
    p.add_argument("--update-customer-aor", default="sip:+4799887766@pstn.example")
    p.add_argument("--update-customer-name", default="Kunde Per")
    p.add_argument("--bye-at-ms", type=int, default=1000)
    p.add_argument("--vanish-at-ms", type=int, default=1000)
    p.add_argument("--dtmf-at-ms", type=int, default=500)
    p.add_argument("--dtmf-digits", default="4711")
    p.add_argument("--tail-ms", type=int, default=200, help="after both files ended, wait this long before BYE")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--sip-port", type=int, default=0, help="local SIP port (0: any)")
    p.add_argument("--rtp-port", type=int, default=0, help="first local RTP port (0: any)")
    p.add_argument("--src-user", default="src")
    p.add_argument("--timeout", type=float, default=30, help="seconds before giving up")
    p.add_argument("--verbose", action="store_true", help="PJSIP's log and SIP messages on stderr")
    args = p.parse_args()
    Client(args).run()


if __name__ == "__main__":
    main()
