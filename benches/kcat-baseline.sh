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
# shellcheck source=benches/bench-env.sh
source benches/bench-env.sh

echo "## opptak loadgen: $CALLS calls, ${SECONDS_PER_RUN}s, ${CHUNK_MS} ms chunks"
"$bin" loadgen --calls "$CALLS" --seconds "$SECONDS_PER_RUN" --chunk-ms "$CHUNK_MS" --baseline --dump "$work/messages.bin"

benches/kcat-rates.sh "$work/messages.bin" 12 "kcat-baseline-$(date +%s)"
psql -q "$OPPTAK_TEST_POSTGRES" -c "DROP DATABASE $db"
