# Sourced by the baseline benchmarks (benches/kcat-baseline.sh,
# benches/messages-baseline.sh): the services started, a release build, a
# fresh PostgreSQL database and a work directory (removed on exit), and the
# OPPTAK__ variables that point `opptak` at them. Sets $work, $bin and $db.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=$(mktemp -d /tmp/opptak-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

deploy/local/services.sh start >/dev/null
eval "$(deploy/local/services.sh env)"
cargo build --release --quiet --bin opptak
bin=${CARGO_TARGET_DIR:-target}/release/opptak

db="bench_$(date +%s)"
psql -q "$OPPTAK_TEST_POSTGRES" -c "CREATE DATABASE $db"
export OPPTAK__BUS__URL="kafka://$OPPTAK_TEST_KAFKA"
export OPPTAK__BUS__TOPIC_PREFIX="bench-$(date +%s)."
export OPPTAK__STORAGE__METADATA="${OPPTAK_TEST_POSTGRES%/*}/$db"
export OPPTAK__STORAGE__BLOBS="file://$work/blobs"
export OPPTAK__STORAGE__ARCHIVE="file://$work/archive"
export OPPTAK__KEYS__KEYRING="$work/keyring.json"
export OPPTAK_LOG=${OPPTAK_LOG:-warn}
