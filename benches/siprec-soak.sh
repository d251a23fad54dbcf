#!/usr/bin/env bash
# SIPREC soak (issue 19): CALLS concurrent calls with churn for SECONDS,
# memory and file descriptors sampled, every call's recording checked
# (BENCHMARKS.md, "SIPREC soak: 30 minutes at 500 calls with churn").
#
#   benches/siprec-soak.sh [CALLS] [SECONDS] [CALL_SECONDS] [WARMUP_SECONDS] [LOADGEN OPTIONS...]
#   e.g. benches/siprec-soak.sh 500 1800 20-120 300 --rtp-first-port 61000
#
# (RTP ports from 61000: above the ephemeral range and the test suite's
# random RTP ranges, so a test run beside the soak does not collide.)
#
# `opptak loadgen --siprec --churn` runs a siprec role in-process on Kafka
# (a fresh topic) and keeps CALLS call slots busy: each plays a call of a
# random length in CALL_SECONDS (seeded; the seed is printed, pass
# SOAK_SEED to repeat it), BYEs it and starts the next with a new Call-ID.
# The samples go to $SOAK_CSV (default: siprec-soak-<time>.csv here).
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-500}
SOAK_SECONDS=${2:-1800}
CALL_SECONDS=${3:-20-120}
WARMUP=${4:-300}
CSV=${SOAK_CSV:-$PWD/siprec-soak-$(date -u +%Y%m%dT%H%M%SZ).csv}
# shellcheck source=benches/bench-env.sh
source benches/bench-env.sh

seed=()
if [ -n "${SOAK_SEED:-}" ]; then seed=(--seed "$SOAK_SEED"); fi
echo "## $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" loadgen --siprec --churn --calls "$CALLS" --seconds "$SOAK_SECONDS" \
  --call-seconds "$CALL_SECONDS" --warmup-seconds "$WARMUP" --samples-csv "$CSV" "${seed[@]}" "${@:5}"
echo "samples: $CSV"
psql -q "$OPPTAK_TEST_POSTGRES" -c "DROP DATABASE $db"
