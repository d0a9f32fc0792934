#!/bin/bash
# pkid-entrypoint: the entry point of pkid's container image (Dockerfile).
#
#   pkid-entrypoint up            pkid migrate, pkid init, then exec pkid serve (the default)
#   pkid-entrypoint healthcheck   exits 0 when GET /readyz answers 200 (HEALTHCHECK)
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

case "${1:-up}" in
  up)
    pkid migrate
    pkid init
    exec pkid serve
    ;;
  healthcheck)
    readyz
    ;;
  *)
    exec pkid "$@"
    ;;
esac
