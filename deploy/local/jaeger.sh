#!/usr/bin/env bash
# Builds Jaeger v2 (the OpenTelemetry Collector based all-in-one: OTLP/HTTP
# receiver, in-memory storage, query API) from its Go module once and prints
# the binary's path. tests/it/otel.rs calls it to get a real OTLP receiver for
# the trace export (crates/opptak-telemetry/src/otlp.rs); deploy/local/test.sh calls it so CI has the
# binary before the tests run.
#
#   deploy/local/jaeger.sh        # build if missing; print the path
#
# Kept in ${OPPTAK_TOOLS_DIR:-~/.cache/opptak-ci/tools}:
#   bin/jaeger-<version>   the binary (self-contained; the Go caches used
#                          to build it, under go/, are emptied afterwards)
set -euo pipefail

JAEGER_VERSION=v1.76.0
TOOLS=${OPPTAK_TOOLS_DIR:-$HOME/.cache/opptak-ci/tools}
BIN=$TOOLS/bin/jaeger-$JAEGER_VERSION

log() { printf '[jaeger] %s\n' "$*" >&2; }
die() { printf '[jaeger] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ ! -x $BIN ]]; then
  command -v go >/dev/null 2>&1 || die "go not found: jaeger is built from its Go module (install Go 1.24+)"
  go_env() { # our own caches (as deploy/validate.sh's)
    env GOPATH="$TOOLS/go" GOMODCACHE="$TOOLS/go/pkg/mod" GOCACHE="$TOOLS/go/cache" \
      CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local "$@"
  }
  log "building jaeger $JAEGER_VERSION from Go modules (once; 4-5 minutes on 2 cores)"
  mkdir -p "$TOOLS/bin"
  build=$TOOLS/build-jaeger.$$ # per process: two concurrent first runs do not collide
  rm -rf "$build"
  started=$SECONDS
  # Not `go install module@version`: jaeger's go.mod has a replace directive,
  # which go install refuses. Built as the main module from its source in the
  # module cache instead (go.sum pins every dependency; nothing is written there).
  src=$(go_env go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p') || die "cannot download github.com/jaegertracing/jaeger@$JAEGER_VERSION"
  [[ -d $src ]] || die "no source directory for jaeger $JAEGER_VERSION"
  if ! (cd "$src" && go_env GOFLAGS="-buildvcs=false -mod=readonly" go build -trimpath -ldflags "-s -w" \
    -o "$build/jaeger" ./cmd/jaeger) >"$TOOLS/jaeger-build.log" 2>&1; then
    grep -v '^go: downloading' "$TOOLS/jaeger-build.log" | tail -n 30 >&2
    die "building jaeger failed (log: $TOOLS/jaeger-build.log)"
  fi
  mv -f "$build/jaeger" "$BIN" # atomic: a concurrent run sees all or nothing
  rm -rf "$build"
  # Neither the build cache nor the module cache (~1.3 GB together) has a use
  # once the binary is kept by version: a cached tools directory stays small.
  go_env go clean -cache -modcache
  log "built $BIN in $((SECONDS - started)) s"
fi
printf '%s\n' "$BIN"
