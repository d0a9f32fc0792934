#!/usr/bin/env bash
# compose-secrets.sh: makes the two secrets docker-compose.yml mounts, once:
#
#   var/secrets/pkid_key_passphrase   protects the CA private keys at rest
#   var/secrets/postgres_password     the password of the database user pkid
#   var/secrets/edge.crt, edge.key    a self-signed demo server certificate for
#                                     pkid-edge (for production, use a certificate
#                                     your clients already trust)
#
# Each is 32 random bytes, base64. An existing file is never replaced: the
# passphrase is what decrypts the CA keys already in the database, and losing
# it loses the CA. Keep a copy somewhere safe (a password manager, a vault).
#
# var/secrets is mode 0700, so other users of this machine cannot read the
# files; the files themselves are 0644 because compose bind-mounts them with
# their host owner and mode, and pkid runs as uid 10001 inside its container.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=var/secrets
mkdir -p "$dir"
chmod 700 "$dir"
for name in pkid_key_passphrase postgres_password; do
  f=$dir/$name
  if [ -s "$f" ]; then
    echo "kept $f"
    continue
  fi
  head -c 32 /dev/urandom | base64 | tr -d '\n' >"$f.tmp"
  chmod 644 "$f.tmp"
  mv "$f.tmp" "$f"
  echo "made $f"
done

if [ -s "$dir/edge.crt" ] && [ -s "$dir/edge.key" ]; then
  echo "kept $dir/edge.crt"
else
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$dir/edge.key" -out "$dir/edge.crt" 2>/dev/null
  chmod 644 "$dir/edge.key" "$dir/edge.crt"
  echo "made $dir/edge.crt (self-signed, for the demo)"
fi
