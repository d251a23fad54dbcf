#!/usr/bin/env bash
# kcat's raw produce and consume rates for a dump of `opptak loadgen --dump`
# (BENCHMARKS.md): the records are produced to a fresh topic as fast as kcat
# can, then consumed from the beginning; the topic is deleted afterwards.
# Used by benches/kcat-baseline.sh and benches/messages-baseline.sh, with the
# services' environment (`deploy/local/services.sh env`) set.
#
#   benches/kcat-rates.sh DUMP_FILE PARTITIONS TOPIC_NAME
set -euo pipefail
cd "$(dirname "$0")/.."
dump=$1
partitions=$2
topic=$3
deploy/local/services.sh topics --create --topic "$topic" --partitions "$partitions" --replication-factor 1 >/dev/null
n=$(python3 -c "import sys; print(open(sys.argv[1],'rb').read().count(bytes.fromhex('1efe1dfd1cfc1bfb')))" "$dump")
bytes=$(stat -c %s "$dump")
echo "## kcat: $n messages, $bytes bytes, $partitions partitions"
t0=$(date +%s.%N)
kcat -P -b "$OPPTAK_TEST_KAFKA" -t "$topic" -K '\x1f' -D '\x1e\xfe\x1d\xfd\x1c\xfc\x1b\xfb' \
  -X enable.idempotence=true -X acks=all -X linger.ms=5 -l "$dump"
t1=$(date +%s.%N)
got=$(kcat -C -b "$OPPTAK_TEST_KAFKA" -t "$topic" -o beginning -e -q -f '%o\n' | wc -l)
t2=$(date +%s.%N)
python3 - "$n" "$got" "$t0" "$t1" "$t2" <<'PY'
import sys
n, got, t0, t1, t2 = int(sys.argv[1]), int(sys.argv[2]), *map(float, sys.argv[3:])
print(f"kcat produce: {n / (t1 - t0):,.0f} msg/s ({t1 - t0:.2f} s)")
print(f"kcat consume: {got / (t2 - t1):,.0f} msg/s ({t2 - t1:.2f} s, {got} messages)")
PY
deploy/local/services.sh topics --delete --topic "$topic" >/dev/null
