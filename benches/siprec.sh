#!/usr/bin/env bash
# SIPREC: concurrent real-time calls per siprec core (BENCHMARKS.md).
#
#   benches/siprec.sh [CALLS_LIST] [SECONDS]
#   e.g. benches/siprec.sh 500,1000,2000 40
#
# `opptak loadgen --siprec` runs a siprec role in-process on Kafka (a fresh
# topic per size) and plays CALLS concurrent SIPREC sessions against it:
# INVITE, SECONDS of RTP on two G.711 streams at 20 ms, BYE. Then, per size,
# the Kafka-producer path (`opptak loadgen --baseline`) at the same call
# count as the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-500,1000,2000}
SECONDS_PER_RUN=${2:-40}
# shellcheck source=benches/bench-env.sh
source benches/bench-env.sh

echo "## $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" loadgen --siprec --calls "$CALLS" --seconds "$SECONDS_PER_RUN" --producer-baseline
psql -q "$OPPTAK_TEST_POSTGRES" -c "DROP DATABASE $db"
