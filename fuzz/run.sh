#!/usr/bin/env bash
# Fuzzes the decoders of the encryption formats (fuzz/fuzz_targets/*.rs) for
# a bounded time: each target runs against a temporary copy of its committed
# corpus (fuzz/corpus/<target>), so the clone stays clean. Any crash, panic,
# timeout or out-of-memory fails the script; the input is kept in
# fuzz/artifacts/<target>/ (ignored by git) and printed as base64.
#
#   fuzz/run.sh [seconds per target] [target ...]
#
# Seconds default to $OPPTAK_FUZZ_SECONDS, else 30 (0 skips); targets default
# to all. Needs the nightly toolchain. Installs cargo-fuzz (pinned) into
# $OPPTAK_TOOLS_DIR (~/.cache/opptak-ci/tools) on first use and builds into
# $OPPTAK_FUZZ_TARGET_DIR (~/.cache/opptak-ci/fuzz-target), both outside the
# clone so later runs reuse them. $OPPTAK_FUZZ_SANITIZER: address (default) or none.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds="${1:-${OPPTAK_FUZZ_SECONDS:-30}}"
if [ $# -gt 0 ]; then shift; fi
tools="${OPPTAK_TOOLS_DIR:-$HOME/.cache/opptak-ci/tools}"
target_dir="${OPPTAK_FUZZ_TARGET_DIR:-$HOME/.cache/opptak-ci/fuzz-target}"
sanitizer="${OPPTAK_FUZZ_SANITIZER:-address}"

if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "fuzz/run.sh: seconds must be a whole number, not '$seconds'" >&2
  exit 2
fi
if [ "$seconds" -eq 0 ]; then
  echo "fuzz/run.sh: 0 seconds, skipping the fuzz targets"
  exit 0
fi
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
for t in "${targets[@]}"; do
  if [ ! -f "fuzz/fuzz_targets/$t.rs" ]; then
    echo "fuzz/run.sh: no fuzz target '$t' (fuzz/fuzz_targets/$t.rs)" >&2
    exit 2
  fi
done

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: needs the nightly toolchain: rustup toolchain install nightly --profile minimal" >&2
  exit 1
fi
export PATH="$tools/bin:$PATH"
if [ "$(cargo-fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "fuzz/run.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet --root "$tools"
fi

cargo fmt --manifest-path fuzz/Cargo.toml --check
opts=(--fuzz-dir fuzz --target-dir "$target_dir" --sanitizer "$sanitizer")
echo "fuzz/run.sh: building ${targets[*]} (nightly, $sanitizer sanitizer) in $target_dir"
for t in "${targets[@]}"; do
  cargo +nightly fuzz build "${opts[@]}" "$t"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/opptak-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t"
  if [ -d "fuzz/corpus/$t" ]; then cp -R "fuzz/corpus/$t/." "$work/corpus/$t/"; fi
  seeds=$(find "$work/corpus/$t" -type f | wc -l)
  log="$work/$t.log"
  touch "$work/$t.start"
  echo "fuzz/run.sh: $t for ${seconds}s from $seeds corpus inputs"
  # -timeout: one input running 10 s is a hang, and fails like a crash.
  if cargo +nightly fuzz run "${opts[@]}" "$t" "$work/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -n 1 || true)
    echo "fuzz/run.sh: $t ok: ${runs:-?} inputs (${rate:-?}/s), $cov"
  else
    failed+=("$t")
    # From the panic or sanitizer report on (progress lines before it are noise).
    first=$(grep -n -m 1 -E 'panicked at|==[0-9]+==ERROR|ERROR: libFuzzer|^SUMMARY' "$log" | cut -d: -f1 || true)
    echo "fuzz/run.sh: $t FAILED:" >&2
    tail -n "+${first:-1}" "$log" | head -n 200 >&2 || true
    find "fuzz/artifacts/$t" -type f -newer "$work/$t.start" 2>/dev/null | while read -r a; do
      echo "fuzz/run.sh: failing input $a ($(wc -c <"$a") bytes), base64:" >&2
      base64 -w0 "$a" >&2
      echo >&2
    done || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz/run.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz/run.sh: all fuzz targets passed (${seconds}s each)"
