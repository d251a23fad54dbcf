#!/usr/bin/env bash
# The recording path's throughput against kcat's raw Kafka rate on the same
# broker and the same messages (BENCHMARKS.md).
#
#   benches/kcat-baseline.sh [CALLS_LIST] [SECONDS] [CHUNK_MS]
#   e.g. benches/kcat-baseline.sh 500,1000,2000 30 100
#
# 1. `opptak loadgen` plays CALLS concurrent real-time stereo G.711 calls through
#    Kafka into an in-process recorder (PostgreSQL metadata, local blob files)
#    and reports chunk-to-durable latency and CPU; the last run's chunk messages
#    are dumped to a file.
# 2. kcat produces the dumped messages to a fresh topic as fast as it can, then
#    consumes them: the raw produce and consume rates of the same messages.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-500,1000,2000}
SECONDS_PER_RUN=${2:-30}
CHUNK_MS=${3:-100}
work=$(mktemp -d /tmp/opptak-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

deploy/local/services.sh start >/dev/null
eval "$(deploy/local/services.sh env)"
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/opptak

db="bench_$(date +%s)"
psql -q "$OPPTAK_TEST_POSTGRES" -c "CREATE DATABASE $db"
export OPPTAK__BUS__URL="kafka://$OPPTAK_TEST_KAFKA"
export OPPTAK__BUS__TOPIC_PREFIX="bench-$(date +%s)."
export OPPTAK__STORAGE__METADATA="${OPPTAK_TEST_POSTGRES%/*}/$db"
export OPPTAK__STORAGE__BLOBS="file://$work/blobs"
export OPPTAK__KEYS__KEYRING="$work/keyring.json"
export OPPTAK_LOG=${OPPTAK_LOG:-warn}

echo "## opptak loadgen: $CALLS calls, ${SECONDS_PER_RUN}s, ${CHUNK_MS} ms chunks"
"$bin" loadgen --calls "$CALLS" --seconds "$SECONDS_PER_RUN" --chunk-ms "$CHUNK_MS" --baseline --dump "$work/messages.bin"

topic="kcat-baseline-$(date +%s)"
deploy/local/services.sh topics --create --topic "$topic" --partitions 12 --replication-factor 1 >/dev/null
n=$(python3 -c "import sys; print(open(sys.argv[1],'rb').read().count(bytes.fromhex('1efe1dfd1cfc1bfb')))" "$work/messages.bin")
bytes=$(stat -c %s "$work/messages.bin")
echo "## kcat: $n messages, $bytes bytes"
t0=$(date +%s.%N)
kcat -P -b "$OPPTAK_TEST_KAFKA" -t "$topic" -K '\x1f' -D '\x1e\xfe\x1d\xfd\x1c\xfc\x1b\xfb' \
  -X enable.idempotence=true -X acks=all -X linger.ms=5 -l "$work/messages.bin"
t1=$(date +%s.%N)
got=$(kcat -C -b "$OPPTAK_TEST_KAFKA" -t "$topic" -o beginning -e -q -f '%o\n' | wc -l)
t2=$(date +%s.%N)
python3 - "$n" "$got" "$t0" "$t1" "$t2" <<'PY'
import sys
n, got, t0, t1, t2 = int(sys.argv[1]), int(sys.argv[2]), *map(float, sys.argv[3:])
print(f"kcat produce: {n / (t1 - t0):,.0f} msg/s ({t1 - t0:.2f} s)")
print(f"kcat consume: {got / (t2 - t1):,.0f} msg/s ({t2 - t1:.2f} s, {got} messages)")
PY
psql -q "$OPPTAK_TEST_POSTGRES" -c "DROP DATABASE $db"
deploy/local/services.sh topics --delete --topic "$topic" >/dev/null
