#!/bin/sh
# One-shot set-up of the archive bucket (the `minio-init` service of
# compose.yaml; idempotent, so it runs on every `docker compose up`):
#   1. the bucket opptak-archive with Object Lock enabled (which turns on
#      versioning): opptak writes every archive object in COMPLIANCE mode
#      with its own retain-until (docs/archive-store.md), and a bucket
#      without the lock would make that a silent no-op;
#   2. opptak's own user (the s3_access_key / s3_secret_key secrets) with a
#      policy limited to that bucket (opptak-policy.json): no bucket
#      creation, no governance bypass, no other bucket. opptak never holds
#      the root credentials.
set -eu

BUCKET=opptak-archive
ENDPOINT=${MINIO_ENDPOINT:-http://minio:9000}
S=${SECRETS_DIR:-/run/secrets}
POLICY=${MINIO_POLICY_FILE:-/etc/minio/opptak-policy.json}

read_secret() {
  [ -r "$S/$1" ] || { echo "minio-init: secret $1 missing ($S/$1)" >&2; exit 1; }
  tr -d '\n' <"$S/$1"
}

root_user=$(read_secret minio_root_user)
root_password=$(read_secret minio_root_password)
access_key=$(read_secret s3_access_key)
secret_key=$(read_secret s3_secret_key)

# The alias through the environment: credentials never appear in argv.
# (init-secrets.sh makes URL-safe hex credentials.)
export "MC_HOST_archive=${ENDPOINT%%://*}://$root_user:$root_password@${ENDPOINT#*://}"

mc --quiet mb --ignore-existing --with-lock "archive/$BUCKET"
# A bucket made earlier without the lock cannot be fixed in place: refuse.
if ! mc --quiet --json retention info --default "archive/$BUCKET" 2>/dev/null | grep -q '"enabled": *"Enabled"'; then
  mc --quiet --json retention info --default "archive/$BUCKET" >&2 || true
  echo "minio-init: bucket $BUCKET has no Object Lock; delete it (it is empty at first start) and retry" >&2
  exit 1
fi
mc --quiet admin policy create archive opptak-archive "$POLICY"
# `user add` for an existing user updates its secret (a rotated secret key).
printf '%s\n%s\n' "$access_key" "$secret_key" | mc --quiet admin user add archive >/dev/null
mc --quiet admin policy attach archive opptak-archive --user "$access_key" 2>/dev/null ||
  mc --quiet admin user info archive "$access_key" | grep -q 'opptak-archive' ||
  { echo "minio-init: cannot attach policy opptak-archive to $access_key" >&2; exit 1; }
echo "minio-init: bucket $BUCKET (Object Lock) and user $access_key ready"
