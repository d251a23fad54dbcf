#!/bin/bash
# Entrypoint of every opptak container in compose.yaml (mounted as a config,
# run by the image's bash). Compose secrets are files under /run/secrets;
# opptak reads its credentials from the environment and wants its keyring
# private (mode 0600, owned by its user), which a bind-mounted secret cannot
# promise. So, before exec'ing opptak with the container's arguments:
#   - the keyring is copied to /run/opptak (a tmpfs) with mode 0600;
#   - PGPASSWORD (sqlx reads it when the metadata URL has no password) and
#     OPPTAK_S3_ACCESS_KEY / OPPTAK_S3_SECRET_KEY are exported from their files.
# A keyring rotated on the host reaches the containers on their next start
# (`docker compose restart`), as it would with any bind mount.
#
#   entrypoint.sh run --roles recorder     # the service's command
#   entrypoint.sh --probe /readyz          # the healthcheck: 0 if GET answers 200
set -euo pipefail

# The defaults are the container's; the variables let the script be tried
# outside one.
SECRETS=${OPPTAK_SECRETS_DIR:-/run/secrets}
RUN_DIR=${OPPTAK_RUN_DIR:-/run/opptak}
EXE=${OPPTAK_EXE:-/usr/local/bin/opptak}
TELEMETRY_PORT=${OPPTAK_TELEMETRY_PORT:-9464}

die() { printf 'entrypoint: %s\n' "$*" >&2; exit 1; }

if [[ ${1:-} == --probe ]]; then
  # No curl in the image: one HTTP/1.0 request over bash's /dev/tcp.
  path=${2:-/readyz}
  exec 3<>"/dev/tcp/127.0.0.1/$TELEMETRY_PORT" || exit 1
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$path" >&3
  # /readyz asks PostgreSQL and Kafka, each within 2 s.
  IFS= read -r -t 6 status <&3 || exit 1
  [[ $status == HTTP/1.[01]\ 200* ]]
  exit
fi

secret() { # name -> the file's content without a trailing newline
  local f=$SECRETS/$1
  [[ -r $f ]] || die "secret $1 missing: $f is not readable (deploy/compose/init-secrets.sh creates it)"
  local v
  v=$(<"$f")
  [[ -n $v ]] || die "secret $1 is empty ($f)"
  printf '%s' "$v"
}

if [[ -e $SECRETS/opptak_keyring ]]; then
  [[ -r $SECRETS/opptak_keyring ]] || die "secret opptak_keyring is not readable by uid $(id -u)"
  install -m 0600 "$SECRETS/opptak_keyring" "$RUN_DIR/keyring.json"
fi
PGPASSWORD=$(secret pg_password)
OPPTAK_S3_ACCESS_KEY=$(secret s3_access_key)
OPPTAK_S3_SECRET_KEY=$(secret s3_secret_key)
export PGPASSWORD OPPTAK_S3_ACCESS_KEY OPPTAK_S3_SECRET_KEY
exec "$EXE" "$@"
