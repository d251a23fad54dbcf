#!/usr/bin/env bash
# The messages path's throughput against kcat's raw Kafka rate on the same
# broker and the same records (BENCHMARKS.md, issue 17).
#
#   benches/messages-baseline.sh [CONVERSATIONS_LIST] [MESSAGES_PER_CONVERSATION]
#   e.g. benches/messages-baseline.sh 2000,10000 10
#
# 1. `opptak loadgen --conversations` produces whole conversations (a start,
#    the sealed messages, an end) to a fresh messages topic, then runs the
#    messages role in the same process on that backlog (PostgreSQL metadata
#    in a fresh database, local blob files) until every conversation is
#    written; the last size's records are dumped to a file.
# 2. kcat produces the dumped records to a fresh topic of as many partitions
#    as fast as it can, then consumes them: the raw produce and consume rates
#    of the same records.
set -euo pipefail
cd "$(dirname "$0")/.."
CONVERSATIONS=${1:-2000}
MESSAGES=${2:-10}
# shellcheck source=benches/bench-env.sh
source benches/bench-env.sh
# The KEK the chat systems seal their texts under, shared with opptak.
"$bin" keys telephony-init --out "$work/chat-keyring.json" >/dev/null
export OPPTAK__KEYS__TELEPHONY_KEYRING="$work/chat-keyring.json"
# bus.partitions (12 unless overridden): the loadgen's topic has as many.
partitions=${OPPTAK__BUS__PARTITIONS:-12}

echo "## $(date -u +%FT%TZ) $(uptime)"
echo "## opptak loadgen: $CONVERSATIONS conversations x $MESSAGES messages"
"$bin" loadgen --conversations "$CONVERSATIONS" --messages-per-conversation "$MESSAGES" --dump "$work/messages.bin"
echo "## $(date -u +%FT%TZ) $(uptime)"

benches/kcat-rates.sh "$work/messages.bin" "$partitions" "kcat-messages-$(date +%s)"
echo "## $(date -u +%FT%TZ) $(uptime)"
psql -q "$OPPTAK_TEST_POSTGRES" -c "DROP DATABASE $db"
