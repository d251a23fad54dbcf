#!/usr/bin/env bash
# The recording path secured against plaintext, in one run (BENCHMARKS.md):
# `opptak loadgen` (real-time calls through Kafka into an in-process recorder,
# PostgreSQL metadata, local blob files) once against the plaintext broker and
# cluster, once against the secured ones of deploy/local/services.sh (Kafka on
# SASL_SSL with SCRAM-SHA-512 and a client certificate; PostgreSQL with
# sslmode=verify-full and SCRAM), alternating ROUNDS times. Besides loadgen's
# table it prints each broker's CPU over its runs.
#
#   benches/tls.sh [CALLS_LIST] [SECONDS] [CHUNK_MS] [ROUNDS]
#   e.g. benches/tls.sh 1000,2000,3000 20 100 2
#
# The secured run authenticates as the broker's super user (admin): loadgen
# creates and deletes a topic set per run, which no role principal may.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-1000,2000,3000}
SECONDS_PER_RUN=${2:-20}
CHUNK_MS=${3:-100}
ROUNDS=${4:-1}
work=$(mktemp -d /tmp/opptak-bench-tls.XXXXXX)

deploy/local/services.sh start >/dev/null
eval "$(deploy/local/services.sh env)"
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/opptak
services=${OPPTAK_SERVICES_DIR:-$HOME/.cache/opptak-services}
tls_pw=$OPPTAK_TEST_SECRETS_DIR/pg-opptak_tls.password

stamp=$(date +%s)
plain_db="bench_plain_$stamp"
tls_db="bench_tls_$stamp"
psql -q "$OPPTAK_TEST_POSTGRES" -c "CREATE DATABASE $plain_db"
PGPASSWORD=$(<"$tls_pw") psql -q "$OPPTAK_TEST_POSTGRES_TLS" -c "CREATE DATABASE $tls_db"
cleanup() {
  psql -q "$OPPTAK_TEST_POSTGRES" -c "DROP DATABASE IF EXISTS $plain_db WITH (FORCE)" || true
  PGPASSWORD=$(<"$tls_pw") psql -q "$OPPTAK_TEST_POSTGRES_TLS" -c "DROP DATABASE IF EXISTS $tls_db WITH (FORCE)" || true
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=benches/server-cpu.sh
source benches/server-cpu.sh

run() { # name broker-pid-file env...: one loadgen run, then the broker's CPU over it
  local name=$1 pidfile=$2
  shift 2
  local pid t0 c0 t1 c1
  pid=$(<"$pidfile")
  t0=$(date +%s.%N)
  c0=$(cpu_ticks "$pid")
  echo
  echo "### $name"
  echo
  env "$@" OPPTAK__KEYS__KEYRING="$work/keyring-$name.json" OPPTAK__STORAGE__BLOBS="file://$work/blobs-$name" \
    OPPTAK_LOG="${OPPTAK_LOG:-warn}" \
    "$bin" loadgen --calls "$CALLS" --seconds "$SECONDS_PER_RUN" --chunk-ms "$CHUNK_MS" --baseline
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$pid")
  cores_over broker "$c0" "$c1" "$t0" "$t1"
}

plain=(
  OPPTAK__BUS__URL="kafka://$OPPTAK_TEST_KAFKA"
  OPPTAK__STORAGE__METADATA="${OPPTAK_TEST_POSTGRES%/*}/$plain_db"
)
secured=(
  OPPTAK__BUS__URL="kafka://$OPPTAK_TEST_KAFKA_SECURE"
  OPPTAK__BUS__TLS__ENABLED=true
  OPPTAK__BUS__TLS__CA_FILE="$OPPTAK_TEST_TLS_DIR/ca.pem"
  OPPTAK__BUS__TLS__CERT_FILE="$OPPTAK_TEST_TLS_DIR/client.pem"
  OPPTAK__BUS__TLS__KEY_FILE="$OPPTAK_TEST_TLS_DIR/client.key"
  OPPTAK__BUS__SASL__MECHANISM=SCRAM-SHA-512
  OPPTAK__BUS__SASL__USERNAME=admin
  OPPTAK__BUS__SASL__PASSWORD_FILE="$OPPTAK_TEST_SECRETS_DIR/kafka-admin.password"
  OPPTAK__STORAGE__METADATA="$(sed "s|/opptak?|/$tls_db?|" <<<"$OPPTAK_TEST_POSTGRES_TLS")"
  OPPTAK__STORAGE__METADATA_PASSWORD_FILE="$tls_pw"
)

echo "## opptak loadgen, plaintext and secured: $CALLS calls, ${SECONDS_PER_RUN}s, ${CHUNK_MS} ms chunks, $ROUNDS round(s)"
for ((round = 1; round <= ROUNDS; round++)); do
  run "plaintext-$round" "$services/kafka/kafka.pid" "${plain[@]}"
  run "sasl_ssl-$round" "$services/kafka-secure/kafka.pid" "${secured[@]}"
done
