#!/usr/bin/env bash
# run-dev.sh: `make run`. A development pkid on this machine, from nothing:
#
#   1. PostgreSQL: DATABASE_URL when set; otherwise the server on 127.0.0.1:5432
#      when one answers; otherwise a private cluster under ./var/pg, made from
#      the system's PostgreSQL binaries on a free port, trust auth on
#      127.0.0.1 only, kept running between runs.
#   2. go build -o bin/ ./cmd/pkid
#   3. PKID_KEY_PASSPHRASE when set; otherwise a development passphrase made
#      once and kept in ./var/dev-passphrase (mode 0600).
#   4. pkid migrate, pkid init, the administrator "admin" (its random password
#      printed on the first run only), then exec pkid serve.
#
# Every step is idempotent: a second run reuses the cluster, the passphrase,
# the CA and the administrator. Works as root (PostgreSQL then runs as the
# user postgres, which initdb requires) and as a normal user. ./var/dev.env
# gets the settings, for running other pkid commands by hand:
#
#   . var/dev.env && bin/pkid admin token --username admin
#
# PKID_DEV_PG=private skips the server on 127.0.0.1:5432 and always uses the
# private cluster (a database of your own, apart from other projects').
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=$ROOT/var

say() { printf '==> %s\n' "$*"; }
die() {
  printf 'run-dev: %s\n' "$*" >&2
  exit 1
}

mkdir -p "$VAR"
chmod 700 "$VAR"

# ---------------------------------------------------------------- PostgreSQL

# as_pg runs a PostgreSQL server program as the user that owns the private
# cluster: postgres when we are root (initdb and postgres refuse to run as
# root), ourselves otherwise.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pg_bindir finds the server binaries: on PATH, else the newest of Debian's
# /usr/lib/postgresql/*/bin.
pg_bindir() {
  local d
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    d=$(dirname "$(readlink -f "$(command -v initdb)")")
  else
    d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  for b in initdb pg_ctl postgres; do
    [ -x "$d/$b" ] || return 1
  done
  printf '%s\n' "$d"
}

# answers HOST PORT: is a PostgreSQL server accepting connections there?
answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$1" -p "$2" -t 3
  else
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
  fi
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# private_cluster starts (creating it on the first run) the cluster in
# ./var/pg and sets PG_PORT.
private_cluster() {
  local bindir pgdir=$VAR/pg data port
  bindir=$(pg_bindir) || die "no PostgreSQL answers on 127.0.0.1:5432 and no PostgreSQL server binaries were found
(initdb, pg_ctl, postgres on PATH or in /usr/lib/postgresql/*/bin).
Install them (Debian: apt-get install postgresql), or set DATABASE_URL to a server you have."
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root, and there is no user postgres to run the private PostgreSQL cluster as
(initdb refuses root). Create one (useradd --system postgres) or run make run as a normal user."
    # The server runs as postgres: it must reach its data directory.
    runuser -u postgres -- test -x "$VAR" 2>/dev/null || chmod 711 "$VAR"
    runuser -u postgres -- test -x "$VAR" ||
      die "the user postgres cannot reach $VAR (a parent directory is closed to it); run make run as a normal user or from a checkout elsewhere"
  fi
  mkdir -p "$pgdir"
  chmod 700 "$pgdir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$pgdir"; fi
  data=$pgdir/data

  if [ ! -f "$data/PG_VERSION" ]; then
    say "creating a private PostgreSQL cluster in $data ($bindir)"
    rm -rf "$data"
    # trust auth, but the only door is 127.0.0.1 (pg_hba.conf below, no Unix socket).
    (cd "$pgdir" && as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale) >"$pgdir/initdb.log" 2>&1 ||
      die "initdb failed; see $pgdir/initdb.log: $(tail -3 "$pgdir/initdb.log")"
    as_pg sh -c "printf '%s\n' '# pkid development cluster: 127.0.0.1 only, no password (run-dev.sh)' \
      'host all all 127.0.0.1/32 trust' > '$data/pg_hba.conf'"
  fi

  # Already running (a previous make run)? Reuse it on its port.
  if (cd "$pgdir" && as_pg "$bindir/pg_ctl" -D "$data" status) >/dev/null 2>&1; then
    port=$(sed -n 4p "$data/postmaster.pid")
    if [ -n "$port" ] && answers 127.0.0.1 "$port"; then
      PG_PORT=$port
      say "private PostgreSQL cluster already running on 127.0.0.1:$PG_PORT"
      return 0
    fi
    die "the private cluster in $data runs but does not answer on 127.0.0.1:${port:-?}; stop it with: $(pg_stop_hint "$bindir" "$data")"
  fi

  # The port of the last run when it is still free, else a free one.
  port=$(cat "$pgdir/port" 2>/dev/null || true)
  if ! [[ $port =~ ^[0-9]+$ ]] || ! port_free "$port"; then
    port=""
    for p in $(seq 54320 54399); do
      if port_free "$p"; then
        port=$p
        break
      fi
    done
    [ -n "$port" ] || die "no free port in 54320-54399 for the private PostgreSQL cluster"
  fi
  say "starting the private PostgreSQL cluster on 127.0.0.1:$port (log: $pgdir/postgres.log)"
  # No Unix socket (unix_socket_directories=''): its path could be too long
  # under a deep checkout, and TCP on 127.0.0.1 is the only door wanted.
  if ! (cd "$pgdir" && as_pg "$bindir/pg_ctl" -D "$data" -l "$pgdir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=''" start) >"$pgdir/pg_ctl.log" 2>&1; then
    die "pg_ctl start failed; see $pgdir/postgres.log: $(tail -3 "$pgdir/postgres.log" 2>/dev/null)"
  fi
  echo "$port" >"$pgdir/port"
  PG_PORT=$port
}

pg_stop_hint() {
  if [ "$(id -u)" = 0 ]; then
    printf 'runuser -u postgres -- %s/pg_ctl -D %s stop' "$1" "$2"
  else
    printf '%s/pg_ctl -D %s stop' "$1" "$2"
  fi
}

if [ -n "${DATABASE_URL:-}" ]; then
  say "using DATABASE_URL from the environment"
elif [ "${PKID_DEV_PG:-auto}" != private ] && answers 127.0.0.1 5432; then
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/pkid?sslmode=disable"
  say "using the PostgreSQL server on 127.0.0.1:5432 (database pkid)"
else
  [ "${PKID_DEV_PG:-auto}" = private ] || say "no PostgreSQL answers on 127.0.0.1:5432"
  private_cluster
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/pkid?sslmode=disable"
  say "the cluster keeps running after pkid stops; stop it with: $(pg_stop_hint "$(pg_bindir)" "$VAR/pg/data")"
fi

# ---------------------------------------------------------------- build

say "building pkid"
mkdir -p bin
if ! go build -o bin/ ./cmd/pkid; then
  die "go build ./cmd/pkid failed (see above): pkid cannot start until cmd/pkid and the packages it uses build"
fi
PKID=$ROOT/bin/pkid

# ---------------------------------------------------------------- settings

export PKID_HTTP_ADDR=${PKID_HTTP_ADDR:-127.0.0.1:8080}
if [ -z "${PKID_PUBLIC_URL:-}" ]; then
  # The URL written into certificates must be one clients can reach: a
  # wildcard listen address becomes 127.0.0.1.
  host=${PKID_HTTP_ADDR%:*}
  case $host in "" | 0.0.0.0 | "[::]") host=127.0.0.1 ;; esac
  export PKID_PUBLIC_URL="http://$host:${PKID_HTTP_ADDR##*:}"
fi
# Development: expiry-notice webhooks may be plain http to localhost (a
# receiver on this machine); production refuses them.
export PKID_WEBHOOK_ALLOW_HTTP_LOCALHOST=${PKID_WEBHOOK_ALLOW_HTTP_LOCALHOST:-true}

passfile=$VAR/dev-passphrase
if [ -z "${PKID_KEY_PASSPHRASE:-}" ]; then
  if [ ! -s "$passfile" ]; then
    # 32 random bytes, base64: printable, one line, 256 bits. Written under
    # umask 077 so that it is never readable by others, not even briefly.
    (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n' >"$passfile.tmp")
    mv "$passfile.tmp" "$passfile"
    say "made a development key passphrase in $passfile"
  fi
  chmod 600 "$passfile"
  PKID_KEY_PASSPHRASE=$(cat "$passfile")
  export PKID_KEY_PASSPHRASE
  cat >&2 <<EOF

WARNING: the CA keys are protected by the DEVELOPMENT passphrase in $passfile,
WARNING: kept on disk beside the checkout. This is for development only: for any
WARNING: CA whose certificates matter, set PKID_KEY_PASSPHRASE from a secret store.

EOF
fi

# For running pkid commands by hand with the same settings, from sh or bash.
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
{
  echo "# written by scripts/run-dev.sh: . var/dev.env"
  echo "export DATABASE_URL=$(sq "$DATABASE_URL")"
  echo "export PKID_HTTP_ADDR=$(sq "$PKID_HTTP_ADDR")"
  echo "export PKID_PUBLIC_URL=$(sq "$PKID_PUBLIC_URL")"
  echo "export PKID_WEBHOOK_ALLOW_HTTP_LOCALHOST=$(sq "$PKID_WEBHOOK_ALLOW_HTTP_LOCALHOST")"
  if [ -s "$passfile" ] && [ "$PKID_KEY_PASSPHRASE" = "$(cat "$passfile")" ]; then
    echo "export PKID_KEY_PASSPHRASE=\"\$(cat $(sq "$passfile"))\""
  else
    echo "# PKID_KEY_PASSPHRASE came from your environment: export it yourself"
  fi
} >"$VAR/dev.env"

# ---------------------------------------------------------------- pkid

step() {
  local what=$1
  shift
  say "$what"
  "$@" || die "$what failed (exit status $?): see the messages above"
}

step "pkid migrate" "$PKID" migrate
step "pkid init" "$PKID" init

say "pkid admin create-user --username admin"
password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
set +e
created=$(printf '%s\n' "$password" | "$PKID" admin create-user --username admin 2>&1)
rc=$?
set -e
if [ "$rc" -eq 0 ]; then
  [ -z "$created" ] || printf '%s\n' "$created"
  cat <<EOF

  Administrator "admin" created. Its password, shown this once:

      $password

EOF
elif printf '%s' "$created" | grep -qi 'exist'; then
  echo "admin exists; password was printed on first run"
else
  printf '%s\n' "$created" >&2
  die "pkid admin create-user failed (exit status $rc)"
fi
unset password

cat <<EOF

  pkid is starting on $PKID_PUBLIC_URL (listening on $PKID_HTTP_ADDR)

  Admin web page:   $PKID_PUBLIC_URL/admin/   (user admin)
  Admin API token:  . var/dev.env && bin/pkid admin token --username admin
  Public CA chain:  curl $PKID_PUBLIC_URL/ca/chain.pem
  API description:  $PKID_PUBLIC_URL/openapi.yaml
$(if [ "$PKID_KEY_PASSPHRASE" = "$(cat "$passfile" 2>/dev/null)" ]; then
    printf '\n  CA keys under the development passphrase in var/dev-passphrase: development only.\n'
  fi)

EOF

port=${PKID_HTTP_ADDR##*:}
if ! port_free "$port"; then
  say "warning: something already listens on port $port; pkid serve will fail to bind. Set PKID_HTTP_ADDR to another address."
fi
exec "$PKID" serve
