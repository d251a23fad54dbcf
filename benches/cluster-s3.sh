#!/usr/bin/env bash
# The recording path on the distributed engines against the single-node
# default, in one run (BENCHMARKS.md, issue 20): `opptak loadgen`
# (real-time calls through Kafka into an in-process recorder) alternately
#   single:  the one broker of deploy/local/services.sh, PostgreSQL, the
#            hot store in local files (the figure of the sections above);
#   cluster: the three brokers of `services.sh cluster` (topics with three
#            replicas, min.insync.replicas 2), the cluster's PostgreSQL
#            primary with its synchronous standby (a multi-host URL,
#            target_session_attrs=read-write), the hot store in an S3 bucket
#            of the services' MinIO.
# Everything runs on this machine: the cluster's three brokers and the
# standby share the same 2 cores, so the cluster figure is a lower bound of
# what separate hosts give. Besides loadgen's table it prints the CPU of
# the brokers (and MinIO) over each run.
#
#   benches/cluster-s3.sh [CALLS_LIST] [SECONDS] [CHUNK_MS] [ROUNDS]
#   e.g. benches/cluster-s3.sh 500,1000,2000 20 100 2
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-500,1000,2000}
SECONDS_PER_RUN=${2:-20}
CHUNK_MS=${3:-100}
ROUNDS=${4:-1}
work=$(mktemp -d /tmp/opptak-bench-cluster.XXXXXX)

deploy/local/services.sh start >/dev/null
deploy/local/services.sh cluster >/dev/null
eval "$(deploy/local/services.sh env)"
eval "$(deploy/local/services.sh cluster-env)"
cargo build --release --quiet --bin opptak
bin=${CARGO_TARGET_DIR:-target}/release/opptak
services=${OPPTAK_SERVICES_DIR:-$HOME/.cache/opptak-services}

stamp=$(date +%s)
db="bench_$stamp"
primary=${OPPTAK_TEST_POSTGRES_PRIMARY%/*}
standby=${OPPTAK_TEST_POSTGRES_STANDBY%/*}
psql -q "$OPPTAK_TEST_POSTGRES" -c "CREATE DATABASE $db"
psql -q "$OPPTAK_TEST_POSTGRES_PRIMARY" -c "CREATE DATABASE $db"
bucket="opptak-bench-$stamp"
cleanup() {
  psql -q "$OPPTAK_TEST_POSTGRES" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  psql -q "$OPPTAK_TEST_POSTGRES_PRIMARY" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$work"
}
trap cleanup EXIT

# The bucket (no versioning, no Object Lock: a hot store), with a SigV4
# PUT of the standard library's making: no S3 client to install.
python3 - "$OPPTAK_TEST_S3_ENDPOINT" "$bucket" "$OPPTAK_TEST_S3_ACCESS_KEY" "$OPPTAK_TEST_S3_SECRET_KEY" <<'EOF'
import datetime, hashlib, hmac, sys, urllib.parse, urllib.request
endpoint, bucket, ak, sk = sys.argv[1:]
host = urllib.parse.urlparse(endpoint).netloc
now = datetime.datetime.now(datetime.timezone.utc)
amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
empty = hashlib.sha256(b"").hexdigest()
headers = f"host:{host}\nx-amz-content-sha256:{empty}\nx-amz-date:{amz}\n"
signed = "host;x-amz-content-sha256;x-amz-date"
request = f"PUT\n/{bucket}\n\n{headers}\n{signed}\n{empty}"
scope = f"{day}/us-east-1/s3/aws4_request"
to_sign = f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
key = ("AWS4" + sk).encode()
for part in (day, "us-east-1", "s3", "aws4_request"):
    key = hmac.new(key, part.encode(), hashlib.sha256).digest()
sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
req = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT", headers={
    "x-amz-date": amz, "x-amz-content-sha256": empty,
    "Authorization": f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={signed}, Signature={sig}"})
urllib.request.urlopen(req).read()
EOF

# shellcheck source=benches/server-cpu.sh
source benches/server-cpu.sh

pids_of() { # pid files...: the running pids among them
  local f
  for f in "$@"; do [[ -r $f ]] && cat "$f"; done
}

run() { # name "pids" env...: one loadgen run, then the servers' CPU over it
  local name=$1 pids=$2
  shift 2
  local t0 c0 t1 c1
  # shellcheck disable=SC2086 # a list of pids
  t0=$(date +%s.%N) c0=$(cpu_ticks $pids)
  echo
  echo "### $name"
  echo
  env "$@" OPPTAK__KEYS__KEYRING="$work/keyring-$name.json" OPPTAK__STORAGE__ARCHIVE="file://$work/archive-$name" \
    OPPTAK_LOG="${OPPTAK_LOG:-warn}" \
    "$bin" loadgen --calls "$CALLS" --seconds "$SECONDS_PER_RUN" --chunk-ms "$CHUNK_MS" --baseline
  # shellcheck disable=SC2086
  t1=$(date +%s.%N) c1=$(cpu_ticks $pids)
  cores_over "servers (brokers, and MinIO in the cluster runs)" "$c0" "$c1" "$t0" "$t1"
}

single=(
  OPPTAK__BUS__URL="kafka://$OPPTAK_TEST_KAFKA"
  OPPTAK__STORAGE__METADATA="${OPPTAK_TEST_POSTGRES%/*}/$db"
  OPPTAK__STORAGE__BLOBS="file://$work/blobs"
)
cluster=(
  OPPTAK__BUS__URL="kafka://$OPPTAK_TEST_KAFKA_CLUSTER"
  OPPTAK__STORAGE__METADATA="${primary},${standby#postgres://*@}/$db?target_session_attrs=read-write"
  OPPTAK__STORAGE__BLOBS="s3://$bucket/hot?endpoint=$OPPTAK_TEST_S3_ENDPOINT&region=us-east-1"
  OPPTAK_S3_ACCESS_KEY="$OPPTAK_TEST_S3_ACCESS_KEY"
  OPPTAK_S3_SECRET_KEY="$OPPTAK_TEST_S3_SECRET_KEY"
)
single_pids=$(pids_of "$services/kafka/kafka.pid")
cluster_pids=$(pids_of "$OPPTAK_TEST_CLUSTER_DIR"/kafka-*/kafka.pid "$services/minio/minio.pid")

echo "## opptak loadgen, single node and cluster + S3: $CALLS calls, ${SECONDS_PER_RUN}s, ${CHUNK_MS} ms chunks, $ROUNDS round(s)"
echo "single: ${single[*]:0:3}"
echo "cluster: ${cluster[*]:0:3}"
for ((round = 1; round <= ROUNDS; round++)); do
  run "single-$round" "$single_pids" "${single[@]}"
  run "cluster-s3-$round" "$cluster_pids" "${cluster[@]}"
done
