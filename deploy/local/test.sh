#!/usr/bin/env bash
# The full test suite: starts what the tests need (Kafka, PostgreSQL, and
# the local cluster) with deploy/local/services.sh, then runs every test
# against the real services.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/../.."

deploy/local/services.sh start
eval "$(deploy/local/services.sh env)"
# The local cluster (three brokers, a PostgreSQL primary and its standby)
# for tests/it/cluster.rs, which then must not skip.
deploy/local/services.sh cluster
eval "$(deploy/local/services.sh cluster-env)"
export OPPTAK_REQUIRE_CLUSTER=1
# Jaeger v2, the OTLP receiver of tests/it/otel.rs (built once; ~4-5 min cold).
deploy/local/jaeger.sh >/dev/null
# Tests that need a service fail (instead of skipping) when it is missing.
export OPPTAK_REQUIRE_SERVICES=1

# Each test creates its own database (`<name>_<12 hex>`); drop those of
# earlier runs.
for db in $(psql -qtA "$OPPTAK_TEST_POSTGRES" -c \
  "SELECT datname FROM pg_database WHERE datname ~ '^([a-z0-9_]+_[0-9a-f]{12}|(fifty|dl|crash|bench|store)_[0-9a-f_]+)$'"); do
  # One in use belongs to a run or benchmark going on beside this one: kept.
  psql -q "$OPPTAK_TEST_POSTGRES" -c "DROP DATABASE IF EXISTS $db" 2>/dev/null || echo "kept $db (in use)"
done
# ... and on the TLS-only cluster (tests/it/security.rs), as its SCRAM user.
export PGPASSWORD
PGPASSWORD=$(<"$OPPTAK_TEST_SECRETS_DIR/pg-opptak_tls.password")
for db in $(psql -qtA "$OPPTAK_TEST_POSTGRES_TLS" -c \
  "SELECT datname FROM pg_database WHERE datname ~ '^(sec|bench)_[a-z0-9_]+$'"); do
  psql -q "$OPPTAK_TEST_POSTGRES_TLS" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
done
unset PGPASSWORD

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --all-targets "$@"
# The deploy files (compose, Helm chart, Dockerfiles) without a container engine.
deploy/validate.sh --opptak-bin cargo
# Coverage-guided fuzzing of the encryption-format decoders (nightly, its own
# target dir): OPPTAK_FUZZ_SECONDS per target, default 30; 0 skips.
fuzz/run.sh "${OPPTAK_FUZZ_SECONDS:-30}"
# The first quick-start command must keep working too.
cargo run --quiet -- demo --data-dir "${TMPDIR:-/tmp}/opptak-ci-demo"
