#!/usr/bin/env bash
# Creates the secrets compose.yaml mounts, once, in deploy/compose/secrets/
# (mode 0700; git ignores it). Existing files are kept, so re-running is safe.
#
#   deploy/compose/init-secrets.sh                 # then: docker compose up -d
#   OPPTAK_BIN=target/release/opptak deploy/compose/init-secrets.sh
#
#   pg_password                      PostgreSQL password of the opptak role
#   minio_root_user, minio_root_password
#                                    MinIO's root (used only by minio-init)
#   s3_access_key, s3_secret_key     opptak's own MinIO user (archive bucket only)
#   opptak_keyring                   the key-encryption keys (opptak's keyring
#                                    format, made by `opptak keys telephony-init`)
#
# Credentials are random hex (URL-safe). The keyring is made by the opptak
# binary (OPPTAK_BIN, else `opptak` on PATH, else the image opptak:local
# through `docker run`), so its format is always the one opptak reads.
#
# Files are mode 0444 inside the 0700 directory: compose bind-mounts secret
# files with their host permissions (the uid/gid/mode fields are not applied
# outside Swarm), and the containers run as different users (postgres, minio
# and opptak); the directory keeps everyone else on the host out. The opptak
# entrypoint copies the keyring to a private tmpfs with mode 0600.
#
# Losing opptak_keyring loses every recording: back it up as the bank backs
# up key material (or use an HSM, keys.provider = "pkcs11").
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${OPPTAK_COMPOSE_SECRETS:-$HERE/secrets}

log() { printf '[init-secrets] %s\n' "$*" >&2; }
die() { printf '[init-secrets] ERROR: %s\n' "$*" >&2; exit 1; }

random_hex() { # bytes
  od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

umask 077
mkdir -p "$DIR"
chmod 0700 "$DIR"

put() { # name value
  local f=$DIR/$1
  if [[ -s $f ]]; then
    log "keeping $1"
  else
    printf '%s' "$2" >"$f.tmp"
    mv "$f.tmp" "$f"
    log "created $1"
  fi
  chmod 0444 "$f"
}

put pg_password "$(random_hex 24)"
put minio_root_user "root-$(random_hex 6)"
put minio_root_password "$(random_hex 24)"
put s3_access_key "opptak-$(random_hex 6)"
put s3_secret_key "$(random_hex 24)"

if [[ -s $DIR/opptak_keyring ]]; then
  log "keeping opptak_keyring"
else
  tmp=$(mktemp -d "$DIR/.keyring.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # `keys` opens the metadata store first: a throwaway SQLite file does.
  bin=${OPPTAK_BIN:-$(command -v opptak || true)}
  if [[ -n $bin ]]; then
    OPPTAK__STORAGE__METADATA="sqlite://$tmp/meta.db" "$bin" keys telephony-init --out "$tmp/keyring.json" >/dev/null
  elif command -v docker >/dev/null 2>&1; then
    # The image (`docker compose build` first), as the caller's uid so the
    # new file is readable here.
    docker run --rm --user "$(id -u):$(id -g)" -v "$tmp:/out" \
      -e OPPTAK__STORAGE__METADATA=sqlite:///out/meta.db \
      "${OPPTAK_IMAGE:-opptak:local}" keys telephony-init --out /out/keyring.json >/dev/null
  else
    die "no opptak binary (set OPPTAK_BIN) and no docker to run the image: cannot make the keyring"
  fi
  [[ -s $tmp/keyring.json ]] || die "the keyring was not created"
  cp "$tmp/keyring.json" "$DIR/opptak_keyring.tmp"
  mv "$DIR/opptak_keyring.tmp" "$DIR/opptak_keyring"
  chmod 0444 "$DIR/opptak_keyring"
  log "created opptak_keyring"
fi
log "secrets in $DIR"
