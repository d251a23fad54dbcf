#!/usr/bin/env bash
# Scale-out of the recording path: throughput of 1, 2 and 3 recorder processes
# in one consumer group, the broker and PostgreSQL on the same machine
# (BENCHMARKS.md, "Scale-out: 1, 2 and 3 recorder processes").
#
#   benches/scale.sh [CALLS_LIST] [SECONDS] [CHUNK_MS] [RECORDER_COUNTS]
#   e.g. benches/scale.sh 1000,2000,3000,4000 20 100 "1 2 3"
#
# For each R in RECORDER_COUNTS: a fresh topic prefix, consumer group, database
# and blob directory; R `opptak run --roles recorder` processes (release build,
# same config, telemetry on 127.0.0.1:1950x); then for each size in CALLS_LIST
# `opptak loadgen --external-recorders` plays that many concurrent real-time
# stereo G.711 calls into the shared telephony topic (produce only; the
# generator runs no recorder). A size is SUSTAINED when, read from the
# recorders' /metrics (deltas over the size, summed over the processes):
#   - sum of opptak_chunks_total{outcome="accepted"} = chunks sent,
#   - sum of opptak_consumer_lag is 0 within DRAIN_S (20) s after the load
#     (librdkafka reports lag every 5 s),
#   - p99 of the merged opptak_end_to_end_latency_seconds histogram <= 1 s
#     (1 s is a bucket bound, so this test is exact; p50/p99 are interpolated
#     inside their bucket and only as fine as the buckets 0.25/0.5/1/2.5 s),
#   - the generator never fell more than 500 ms behind real time.
# Sizes of one R stop at the first size not sustained. CPU (cores = CPU seconds
# / wall seconds over the load and drain) per recorder, for the generator, the
# broker (kafka.pid) and all PostgreSQL processes, and the 1-minute load
# average (other work on the machine shows there) are printed per size.
# PostgreSQL CPU counts only the postgres processes alive at both ends.
# If the broker disappears during a size (a loadgen error), the size is retried
# once. Environment: SCALE_PARTITIONS (12), SCALE_P99_S (1.0).
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-1000,2000,3000,4000}
SECONDS_PER_RUN=${2:-20}
CHUNK_MS=${3:-100}
RECORDERS=${4:-1 2 3}
PARTITIONS=${SCALE_PARTITIONS:-12}
P99_S=${SCALE_P99_S:-1.0}
DRAIN_S=20
work=$(mktemp -d /tmp/opptak-scale.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

deploy/local/services.sh start >/dev/null
eval "$(deploy/local/services.sh env)"
[ -n "${SCALE_NO_BUILD:-}" ] || cargo build --release --quiet --bin opptak
bin=${CARGO_TARGET_DIR:-target}/release/opptak
svc=${OPPTAK_SERVICES_DIR:-$HOME/.cache/opptak-services}
export OPPTAK__BUS__URL="kafka://$OPPTAK_TEST_KAFKA"
export OPPTAK__BUS__PARTITIONS=$PARTITIONS
export OPPTAK_LOG=${OPPTAK_LOG:-warn}

# CPU ticks of the recorders, the broker and PostgreSQL, and the load average,
# as one line: "rec1 rec2 ... | broker | postgres | loadavg".
snapshot_cpu() {
  python3 - "$svc/kafka/kafka.pid" "${pids[@]}" <<'PY'
import os, sys
def ticks(pid):
    try:
        rest = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except Exception:
        return 0
kafka = open(sys.argv[1]).read().strip() if os.path.exists(sys.argv[1]) else "0"
pg = []
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            if open(f"/proc/{d}/comm").read().strip() == "postgres":
                pg.append(f"{d}:{ticks(d)}")
        except Exception:
            pass
print(" ".join(str(ticks(p)) for p in sys.argv[2:]), "|", ticks(kafka), "|", ",".join(pg) or "0:0", "|",
      open("/proc/loadavg").read().split()[0])
PY
}

# Concatenated /metrics of every recorder, each line prefixed with its index.
scrape() {
  local i=0
  for port in "${ports[@]}"; do
    curl -fsS "http://127.0.0.1:$port/metrics" | sed "s/^/$i /" || true
    i=$((i + 1))
  done
}

# accepted-chunks lag-sum, from a scrape on stdin.
counts() {
  python3 -c '
import sys
acc = lag = 0.0
for l in sys.stdin:
    parts = l.split()
    if len(parts) != 3 or parts[1].startswith("#"): continue
    name, v = parts[1], float(parts[2])
    if name.startswith("opptak_chunks_total{") and "accepted" in name: acc += v
    elif name.startswith("opptak_consumer_lag{"): lag += v
print(int(acc), int(lag))'
}

printf '| recorders | calls | chunks sent | accepted | lag after | p50 ms | p99 ms | recorder cores (each) | generator cores | broker cores | PostgreSQL cores | load avg (1 min, after) | sustained |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|\n'
for R in $RECORDERS; do
  stamp="$(date +%s)-r$R"
  db="scale_${stamp//-/_}"
  psql -q "$OPPTAK_TEST_POSTGRES" -c "CREATE DATABASE $db"
  export OPPTAK__BUS__TOPIC_PREFIX="scale-$stamp."
  export OPPTAK__RECORDER__GROUP="scale-$stamp"
  export OPPTAK__STORAGE__METADATA="${OPPTAK_TEST_POSTGRES%/*}/$db"
  export OPPTAK__STORAGE__BLOBS="file://$work/$stamp/blobs"
  export OPPTAK__KEYS__KEYRING="$work/$stamp/keyring.json"
  mkdir -p "$work/$stamp"
  # Creates the topics (R partitions at least) and the keyring before any
  # recorder subscribes: one call for one second.
  "$bin" loadgen --external-recorders --calls 1 --seconds 1 --chunk-ms "$CHUNK_MS" >/dev/null
  pids=()
  ports=()
  for i in $(seq 1 "$R"); do
    port=$((19500 + i))
    OPPTAK__TELEMETRY__LISTEN="127.0.0.1:$port" "$bin" run --roles recorder >"$work/$stamp/rec$i.log" 2>&1 &
    pids+=($!)
    ports+=("$port")
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 120); do
      curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
      sleep 0.5
    done
  done
  sleep 8 # the group's rebalance settles; the warm-up call drains
  IFS=, read -ra sizes <<<"$CALLS"
  for n in "${sizes[@]}"; do
    for attempt in 1 2; do
      scrape >"$work/m0"
      read -r acc0 _ < <(counts <"$work/m0")
      cpu0=$(snapshot_cpu)
      t0=$(date +%s.%N)
      if ! out=$("$bin" loadgen --external-recorders --calls "$n" --seconds "$SECONDS_PER_RUN" --chunk-ms "$CHUNK_MS" 2>"$work/gen.err"); then
        echo "loadgen failed (attempt $attempt): $(tail -3 "$work/gen.err")" >&2
        sleep 15
        continue
      fi
      row=$(grep -E "^\| $n \|" <<<"$out")
      sent=$(awk -F'|' '{gsub(/ /,"",$4); print $4}' <<<"$row")
      gen_cores=$(awk -F'|' '{gsub(/ /,"",$6); print $6}' <<<"$row")
      gen_lag=$(awk -F'|' '{gsub(/ /,"",$7); print $7}' <<<"$row")
      # Drain: all chunks accepted and committed (lag 0), or DRAIN_S passed.
      deadline=$(($(date +%s) + DRAIN_S))
      while :; do
        scrape >"$work/m1"
        read -r acc1 lag1 < <(counts <"$work/m1")
        if [ $((acc1 - acc0)) -ge "$sent" ] && [ "$lag1" -eq 0 ]; then break; fi
        [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 1
      done
      t1=$(date +%s.%N)
      cpu1=$(snapshot_cpu)
      result=$(python3 - "$work/m0" "$work/m1" "$cpu0" "$cpu1" "$t0" "$t1" "$R" "$n" "$sent" "$acc0" "$acc1" "$lag1" "$gen_cores" "$gen_lag" "$P99_S" <<'PY'
import re, sys
m0, m1, c0, c1 = sys.argv[1:5]
t0, t1 = float(sys.argv[5]), float(sys.argv[6])
R, n, sent, acc0, acc1, lag = (int(v) for v in sys.argv[7:13])
gen_cores, gen_lag, p99_max = float(sys.argv[13]), float(sys.argv[14]), float(sys.argv[15])
def buckets(path):
    b = {}
    for l in open(path):
        m = re.match(r'\d+ opptak_end_to_end_latency_seconds_bucket\{le="([^"]+)"\} (\S+)', l)
        if m:
            le = float("inf") if m[1] == "+Inf" else float(m[1])
            b[le] = b.get(le, 0.0) + float(m[2])
    return b
b0, b1 = buckets(m0), buckets(m1)
cum = sorted((le, b1[le] - b0.get(le, 0.0)) for le in b1)
total = cum[-1][1] if cum else 0.0
def q(p):
    if total <= 0: return float("nan")
    target, prev_le, prev_c = p * total, 0.0, 0.0
    for le, c in cum:
        if c >= target:
            if le == float("inf"): return prev_le
            return prev_le + (le - prev_le) * (target - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return float("nan")
within = dict(cum).get(p99_max, 0.0)
wall = t1 - t0
def parse(s):
    r, k, p, la = [x.strip() for x in s.split("|")]
    return [int(v) for v in r.split()], int(k), dict(x.split(":") for x in p.split(",")), la
r0, k0, pg0, _ = parse(c0)
r1, k1, pg1, la = parse(c1)
cores = lambda a, b: (b - a) / 100 / wall
# PostgreSQL: the processes alive at both ends (the recorders' connections
# persist; short-lived backends of other work on the machine are left out).
p0, p1 = 0, sum(int(pg1[k]) - int(pg0[k]) for k in pg1 if k in pg0)
rec = "/".join(f"{cores(a, b):.2f}" for a, b in zip(r0, r1))
accepted = acc1 - acc0
ok = accepted == sent and lag == 0 and total > 0 and within >= 0.99 * total and gen_lag < 500
why = [] if ok else [w for w, bad in [("chunks", accepted != sent), ("lag", lag != 0),
       ("p99", total <= 0 or within < 0.99 * total), ("generator", gen_lag >= 500)] if bad]
print(f"| {R} | {n} | {sent:,} | {accepted:,} | {lag} | {q(0.5)*1000:.0f} | {q(0.99)*1000:.0f} | {rec} | "
      f"{gen_cores:.2f} | {cores(k0, k1):.2f} | {cores(p0, p1):.2f} | {la} | "
      f"{'yes' if ok else 'no (' + ', '.join(why) + ')'} |")
PY
)
      echo "$result"
      break
    done
    [[ "${result:-}" == *"| yes |" ]] || break
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  for t in telephony recordings deadletter; do
    deploy/local/services.sh topics --delete --topic "${OPPTAK__BUS__TOPIC_PREFIX}opptak.$t.v1" >/dev/null 2>&1 || true
  done
  psql -q "$OPPTAK_TEST_POSTGRES" -c "DROP DATABASE $db WITH (FORCE)" || true
done
