#!/bin/bash
# pkid-entrypoint: the entry point of pkid's container image (Dockerfile).
#
#   pkid-entrypoint up            pkid migrate, pkid init, then exec pkid serve (the default)
#   pkid-entrypoint healthcheck   exits 0 when GET /readyz answers 200 (HEALTHCHECK)
#   pkid-entrypoint edge ARGS...  fetch pkid's root from $PKID_URL (checked against
#                                 $PKID_ROOT_FINGERPRINT when set), then exec
#                                 pkid-edge --ca ROOT ARGS...
#   pkid-entrypoint ARGS...       exec pkid ARGS..., e.g. admin create-user --username admin
#
# Secrets come as files (docker secrets): pkid reads PKID_KEY_PASSPHRASE_FILE
# itself; the database password is read here from PGPASSWORD_FILE into
# PGPASSWORD, which the PostgreSQL driver takes when DATABASE_URL has none, so
# that the password never has to be written into the URL.
set -euo pipefail

if [ -n "${PGPASSWORD_FILE:-}" ]; then
  if [ -z "${PGPASSWORD:-}" ]; then
    PGPASSWORD=$(<"$PGPASSWORD_FILE")
    export PGPASSWORD
  fi
  unset PGPASSWORD_FILE
fi

# readyz: a plain HTTP/1.0 GET over bash's /dev/tcp, since the slim image has
# no curl; PKID_HTTP_ADDR's port on the loopback interface.
readyz() {
  local addr=${PKID_HTTP_ADDR:-127.0.0.1:8080} status
  { exec 3<>"/dev/tcp/127.0.0.1/${addr##*:}"; } 2>/dev/null || {
    echo "nothing listens on 127.0.0.1:${addr##*:}"
    return 1
  }
  printf 'GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  IFS= read -r -t 5 status <&3 || return 1
  exec 3<&-
  [[ $status == HTTP/1.[01]\ 200* ]] && return 0
  echo "GET /readyz: ${status%$'\r'}"
  return 1
}

# fetch_root URL FILE: GET URL/ca/root.pem over /dev/tcp (host:port URLs on
# the compose network, plain HTTP) into FILE.
fetch_root() {
  local hostport=${1#http://} out=$2 line body=0
  hostport=${hostport%%/*}
  for _ in $(seq 1 60); do
    if { exec 4<>"/dev/tcp/${hostport%%:*}/${hostport##*:}"; } 2>/dev/null; then
      printf 'GET /ca/root.pem HTTP/1.0\r\nHost: %s\r\n\r\n' "$hostport" >&4
      : >"$out"
      while IFS= read -r line <&4; do
        line=${line%$'\r'}
        if [ "$body" = 1 ]; then printf '%s\n' "$line" >>"$out"; elif [ -z "$line" ]; then body=1; fi
      done
      exec 4<&-
      grep -q 'BEGIN CERTIFICATE' "$out" && return 0
    fi
    sleep 1
  done
  echo "could not fetch $1/ca/root.pem" >&2
  return 1
}

case "${1:-up}" in
  up)
    pkid migrate
    pkid init
    exec pkid serve
    ;;
  healthcheck)
    readyz
    ;;
  edge)
    shift
    root=/tmp/pkid-root.pem
    fetch_root "${PKID_URL:-http://pkid:8080}" "$root"
    fp=$(sed '/-----/d' "$root" | base64 -d | sha256sum | cut -d' ' -f1)
    if [ -n "${PKID_ROOT_FINGERPRINT:-}" ] && [ "$fp" != "${PKID_ROOT_FINGERPRINT,,}" ]; then
      echo "pkid's root has SHA-256 $fp, not the pinned $PKID_ROOT_FINGERPRINT: refusing to start" >&2
      exit 1
    fi
    echo "trusting pkid's root, SHA-256 $fp (pin it with PKID_ROOT_FINGERPRINT)" >&2
    exec pkid-edge --ca "$root" "$@"
    ;;
  *)
    exec pkid "$@"
    ;;
esac
