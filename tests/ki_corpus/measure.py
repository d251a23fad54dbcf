#!/usr/bin/env python3
"""Word error rate of a speech server on the KI corpus (tests/ki_corpus/).

Usage: tests/ki_corpus/measure.py OUT_DIR [--url URL] [--whole] [-j N] [-v] [--topics] [--max-wer X]

OUT_DIR is what generate.sh wrote (calls.toml and calls/ki-00NN.wav, any of
its rates and codecs). Each turn of each call is cut from the speaker's
channel using the line times in the manifest's comments (with PAD_MS of the
channel's own silence either side), sent as a mono 16-bit WAV to the
OpenAI-compatible POST /v1/audio/transcriptions (model tiny.en, language en,
response_format json), and compared with the script's line. With --whole,
each channel is sent whole instead (the other party's turns are silence on
it) and compared with that party's lines joined.

WER = word-level edit distance / reference words, summed over the corpus.
Both texts are normalised first: lowercase, punctuation dropped, hyphens and
slashes split words, "%" -> "percent", e-mail addresses spelled as spoken
("ola.nordmann@example.com" -> "ola dot nordmann at example dot com": "@"
is "at", a dot between letters or digits is "dot", but "A.I." is "ai"),
numerals spelled in English words ("400" -> "four hundred", "2,000" -> "two
thousand", "4.5" -> "four point five"), except that a run of numerals with
five or more digits in all, or with a leading zero, is read digit by digit
("912 34 567" -> "nine one two three four five six seven": phone and account
numbers), and a few British spellings become American ("centre" -> "center")
as Whisper writes them. A second figure uses the rules of
opptak_ki::eval::normalize_words (no e-mail or digit-run rules, "%" dropped).

--topics also runs a port of the embedded phrase classifier
(opptak_domain::summary::classify, English phrases of
crates/opptak-domain/taxonomy/topics.toml) on each script and on each
transcript and compares with the manifest's `topics`.

Python 3.11, standard library only.
"""

import argparse
import concurrent.futures
import io
import json
import os
import re
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
import wave
from array import array

PAD_MS = 200
HERE = os.path.dirname(os.path.abspath(__file__))
TAXONOMY = os.path.join(HERE, "..", "..", "crates", "opptak-domain", "taxonomy", "topics.toml")

# ------------------------------------------------------------------ audio ---


def alaw_to_linear(a):
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def ulaw_to_linear(u):
    u = ~u & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if u & 0x80 else (t - 0x84)


ALAW = [alaw_to_linear(i) for i in range(256)]
ULAW = [ulaw_to_linear(i) for i in range(256)]


def read_wav(path):
    """(rate, [channel samples as array('h')]) of a PCM16, A-law or mu-law WAV.

    Walks the RIFF chunks (sox writes an 18-byte fmt chunk and a fact chunk
    for G.711, so the data does not start at byte 44)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file")
    pos, fmt, payload = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = (
                int.from_bytes(body[0:2], "little"),
                int.from_bytes(body[2:4], "little"),
                int.from_bytes(body[4:8], "little"),
                int.from_bytes(body[14:16], "little"),
            )
        elif cid == b"data":
            payload = body
        pos += 8 + size + (size & 1)
    if fmt is None or payload is None:
        raise ValueError(f"{path}: no fmt or data chunk")
    tag, channels, rate, bits = fmt
    if tag == 1 and bits == 16:
        samples = array("h")
        samples.frombytes(payload[: len(payload) // 2 * 2])
        if sys.byteorder == "big":
            samples.byteswap()
    elif tag in (6, 7) and bits == 8:
        table = ALAW if tag == 6 else ULAW
        samples = array("h", (table[b] for b in payload))
    else:
        raise ValueError(f"{path}: unsupported WAV format tag {tag}, {bits} bits")
    return rate, [samples[c::channels] for c in range(channels)]


def wav_bytes(samples, rate):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        s = array("h", samples)
        if sys.byteorder == "big":
            s.byteswap()
        w.writeframes(s.tobytes())
    return buf.getvalue()


# ----------------------------------------------------------------- server ---


def transcribe(url, wav, retries=5):
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (("model", "tiny.en"), ("response_format", "json"), ("language", "en")):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="turn.wav"\r\n'
        f"Content-Type: audio/wav\r\n\r\n".encode()
        + wav
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    body = b"".join(parts)
    for attempt in range(retries):
        req = urllib.request.Request(
            url.rstrip("/") + "/v1/audio/transcriptions",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return json.load(r)["text"]
        except urllib.error.HTTPError as e:
            if e.code == 503 and attempt + 1 < retries:
                time.sleep(1)
                continue
            raise SystemExit(f"measure.py: server answered {e.code}: {e.read()[:300]!r}")
    raise SystemExit("measure.py: server busy")


# ------------------------------------------------------------- normalise ---

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
BRITISH = {
    "centre": "center", "centres": "centers", "colour": "color", "favour": "favor",
    "favourite": "favorite", "cheque": "check", "cheques": "checks", "organise": "organize",
    "realise": "realize", "programme": "program", "okay": "ok", "recognise": "recognize",
}


def spell_number(n):
    """English words for n, as opptak_ki::asr::spell_number writes them."""
    if n >= 10**12:
        return " ".join(ONES[int(c)] for c in str(n))

    def below_thousand(n, out):
        h, rest = divmod(n, 100)
        if h:
            out += [ONES[h], "hundred"]
        if rest >= 20:
            out.append(TENS[rest // 10])
            if rest % 10:
                out.append(ONES[rest % 10])
        elif rest or not h:
            out.append(ONES[rest])

    out, rest = [], n
    for scale, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if rest >= scale:
            below_thousand(rest // scale, out)
            out.append(name)
            rest %= scale
    if rest or not out:
        below_thousand(rest, out)
    return " ".join(out)


DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
ACRONYM = re.compile(r"\b(?:[a-z]\.){2,}")  # "a.i." -> "ai"
DOT = re.compile(r"(?<=[a-z0-9])\.(?=[a-z0-9])")  # a dot inside a word: an address


def normalize(text):
    """Reference and hypothesis words (see the module docstring)."""
    t = text.lower().replace("\u2019", "'")
    t = DECIMAL.sub(lambda m: f"{m.group(1)} point {' '.join(ONES[int(c)] for c in m.group(2))}", t)
    t = ACRONYM.sub(lambda m: m.group(0).replace(".", ""), t)
    t = DOT.sub(" dot ", t).replace("@", " at ")
    t = t.replace("%", " percent ")
    tokens = []  # (kind, value): ("num", "912") | ("amount", 2000) | ("word", "bank")
    for raw in re.split(r"[\s/-]+", t):
        core = raw.strip(".,;:!?()[]\"'")
        if core and re.fullmatch(r"\d{1,3}(,\d{3})+", core):
            tokens.append(("amount", int(core.replace(",", ""))))
            continue
        if core.isdigit():
            tokens.append(("num", core))
            continue
        word = "".join(c for c in raw if c.isalnum() or c == "'").strip("'")
        if word:
            tokens.append(("word", BRITISH.get(word, word)))
    words, i = [], 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "num":
            j = i
            while j < len(tokens) and tokens[j][0] == "num":
                j += 1
            run = [v for _, v in tokens[i:j]]
            if sum(map(len, run)) >= 5 or any(len(v) > 1 and v[0] == "0" for v in run):
                words += [ONES[int(c)] for v in run for c in v]
            else:
                for v in run:
                    words += spell_number(int(v)).split()
            i = j
            continue
        words += spell_number(value).split() if kind == "amount" else [value]
        i += 1
    return words


def normalize_rust(text):
    """opptak_ki::eval::normalize_words, ported."""
    words = []
    for raw in re.split(r"[\s/-]", text.lower()):
        digits = raw.strip("".join(set(c for c in raw if not c.isdigit())))
        if digits and all(c.isdigit() or c == "," for c in digits):
            plain = "".join(c for c in digits if c.isdigit())
            if plain:
                words += spell_number(int(plain)).split()
                continue
        word = "".join(c for c in raw if c.isalnum() or c == "'").strip("'")
        if word:
            words.append(BRITISH.get(word, word) if word != "recognise" else word)
    return words


def edit_distance(r, h):
    row = list(range(len(h) + 1))
    for i, rw in enumerate(r):
        diagonal, row[0] = row[0], i + 1
        for j, hw in enumerate(h):
            sub = diagonal + (rw != hw)
            diagonal = row[j + 1]
            row[j + 1] = min(sub, row[j] + 1, row[j + 1] + 1)
    return row[len(h)]


# ---------------------------------------------------------------- topics ---


def words_for_topics(text):
    """opptak_domain::summary::words: lowercase; ' and - between word chars stay."""
    chars = text.replace("\u2019", "'")
    out, cur = [], ""
    for i, c in enumerate(chars):
        nxt = chars[i + 1] if i + 1 < len(chars) else ""
        if c.isalnum() or (c in "'-" and cur and nxt.isalnum()):
            cur += c.lower()
        elif cur:
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out


def load_taxonomy(path):
    with open(path, "rb") as f:
        tax = tomllib.load(f)
    topics = []
    for t in tax["topic"]:
        phrases = []
        for p in t["phrases_en"]:
            ph = []
            for raw in p.split():
                prefix = raw.endswith("*")
                ws = words_for_topics(raw.rstrip("*"))
                ph += [(w, prefix and k + 1 == len(ws)) for k, w in enumerate(ws)]
            if ph:
                phrases.append(ph)
        topics.append((t["id"], phrases))
    return topics


def classify(topics, lines):
    texts = [words_for_topics(l) for l in lines]
    scores = []
    for tid, phrases in topics:
        score = 0
        for ph in phrases:
            n = len(ph)
            for w in texts:
                for i in range(len(w) - n + 1):
                    if all(w[i + k].startswith(p) if pre else w[i + k] == p for k, (p, pre) in enumerate(ph)):
                        score += n
        if score and tid != "other":
            scores.append((tid, score))
    if not scores:
        return ["other"], {}
    best = max(s for _, s in scores)
    ranked = sorted(scores, key=lambda x: -x[1])  # stable: taxonomy order on ties
    return [tid for tid, s in ranked if 3 * s >= best][:3], dict(scores)


# ------------------------------------------------------------------ main ---


def load_manifest(out_dir):
    path = os.path.join(out_dir, "calls.toml")
    with open(path, "rb") as f:
        calls = tomllib.load(f)["call"]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    times = dict(
        (m.group(1), [tuple(map(int, span.split("-"))) for span in m.group(2).split()])
        for m in re.finditer(r'id = "([^"]+)".*?# duration \d+ ms; line times \(ms\): ([0-9 -]+)\n', text, re.S)
    )
    for c in calls:
        c["times"] = times[c["id"]]
        assert len(c["times"]) == len(c["script"]), c["id"]
    return calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--url", default=os.environ.get("OPPTAK_TEST_SPEECH_URL", "http://127.0.0.1:19100"))
    ap.add_argument("--whole", action="store_true", help="send each channel whole, not turn by turn")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="requests in flight (default 2)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every reference and transcript")
    ap.add_argument("--topics", action="store_true", help="also check the phrase classifier's topics")
    ap.add_argument("--taxonomy", default=TAXONOMY)
    ap.add_argument("--max-wer", type=float, help="exit 1 if the corpus WER is above this")
    args = ap.parse_args()

    calls = load_manifest(args.out_dir)
    # Requests: (call index, party, reference text, wav bytes).
    jobs = []
    for ci, c in enumerate(calls):
        rate, chans = read_wav(os.path.join(args.out_dir, c["file"]))
        roles = [line.split(": ", 1) for line in c["script"]]
        if args.whole:
            for ch, party in enumerate(("agent", "customer")):
                ref = " ".join(text for role, text in roles if role == party)
                jobs.append((ci, party, ref, wav_bytes(chans[ch], rate)))
        else:
            pad = PAD_MS * rate // 1000
            for (role, text), (start, end) in zip(roles, c["times"]):
                ch = chans[0 if role == "agent" else 1]
                a = max(0, start * rate // 1000 - pad)
                b = min(len(ch), end * rate // 1000 + pad)
                jobs.append((ci, role, text, wav_bytes(ch[a:b], rate)))

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        hyps = list(pool.map(lambda j: transcribe(args.url, j[3]), jobs))
    elapsed = time.monotonic() - started

    per_call = [[0, 0, 0, 0, []] for _ in calls]  # errors, words, rust errors, rust words, transcripts
    for (ci, role, ref, _), hyp in zip(jobs, hyps):
        r, h = normalize(ref), normalize(hyp)
        e = edit_distance(r, h)
        rr, rh = normalize_rust(ref), normalize_rust(hyp)
        acc = per_call[ci]
        acc[0] += e
        acc[1] += len(r)
        acc[2] += edit_distance(rr, rh)
        acc[3] += len(rr)
        acc[4].append(hyp)
        if args.verbose and e:
            print(f"  {calls[ci]['id']} {role:8} {e}/{len(r)}\n    ref: {ref}\n    hyp: {hyp}")

    taxonomy = load_taxonomy(args.taxonomy) if args.topics else None
    rate, _ = read_wav(os.path.join(args.out_dir, calls[0]["file"]))
    print(f"{'call':9} {'KI':3} {'words':>5} {'errors':>6} {'WER':>6}" + ("  topics (script | transcript)" if taxonomy else ""))
    topic_bad, transcript_hits, ki_calls = [], 0, 0
    for c, (e, n, _, _, transcripts) in zip(calls, per_call):
        ki = c["ki_enabled"] and c["customer_informed"]
        line = f"{c['id']:9} {'yes' if ki else 'no':3} {n:5} {e:6} {e / n:6.3f}"
        if taxonomy:
            want = sorted(c["topics"])
            from_script, _ = classify(taxonomy, [l.split(": ", 1)[1] for l in c["script"]])
            from_hyp, _ = classify(taxonomy, transcripts)
            if sorted(from_script) != want:
                topic_bad.append(c["id"])
            hit = sorted(from_hyp) == want
            if ki:
                ki_calls += 1
                transcript_hits += hit
            line += f"  {','.join(c['topics'])}: {'ok' if sorted(from_script) == want else ','.join(from_script)} | {'ok' if hit else ','.join(from_hyp)}"
        print(line)
    e = sum(a[0] for a in per_call)
    n = sum(a[1] for a in per_call)
    re_ = sum(a[2] for a in per_call)
    rn = sum(a[3] for a in per_call)
    ki_e = sum(a[0] for a, c in zip(per_call, calls) if c["ki_enabled"] and c["customer_informed"])
    ki_n = sum(a[1] for a, c in zip(per_call, calls) if c["ki_enabled"] and c["customer_informed"])
    audio_s = sum(len(j[3]) - 44 for j in jobs) / 2 / rate
    codec = calls[0]["codec"]
    mode = "whole channels" if args.whole else "turn by turn"
    print(f"WER {e / n:.3f} ({e}/{n} words) over {len(calls)} calls, {rate} Hz {codec}, {mode}; KI calls only {ki_e / ki_n:.3f} ({ki_e}/{ki_n})")
    print(f"WER with opptak_ki::eval::normalize_words rules: {re_ / rn:.3f} ({re_}/{rn})")
    print(f"{len(jobs)} requests, {audio_s:.0f} s of audio in {elapsed:.1f} s ({audio_s / elapsed:.1f}x real time)")
    if taxonomy:
        print(f"topics: script classified as the manifest says in {len(calls) - len(topic_bad)}/{len(calls)} calls"
              + (f" (not: {', '.join(topic_bad)})" if topic_bad else "")
              + f"; transcripts of KI calls {transcript_hits}/{ki_calls}")
        if topic_bad:
            return 1
    if args.max_wer is not None and e / n > args.max_wer:
        print(f"measure.py: WER {e / n:.3f} is above --max-wer {args.max_wer}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
