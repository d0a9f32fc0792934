#!/usr/bin/env bash
# fuzz.sh [FUZZTIME]: `make fuzz`. Runs every Go fuzz target in the module for
# FUZZTIME (default 10s) each, one after the other.
#
# `go test -fuzz` accepts one target in one package per run, so the targets are
# found first: packages whose test files declare `func Fuzz...` are asked for
# their fuzz targets with `go test -list`, which compiles the tests and so sees
# exactly the targets go test would run. A tree with no fuzz target passes and
# says so. A failing input is kept by go test under the package's
# testdata/fuzz/<Target>/, where plain `go test` replays it from then on:
# commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${1:-10s}

# Packages with test files that mention a fuzz target; -list then confirms.
# Each step runs on its own so that a package that does not build fails the
# run instead of looking like a package without targets.
listing=$(go list -f '{{.ImportPath}} {{.Dir}}{{range .TestGoFiles}} {{.}}{{end}}{{range .XTestGoFiles}} {{.}}{{end}}' ./...)
candidates=()
while read -r pkg dir files; do
  [ -n "${files:-}" ] || continue
  for f in $files; do
    if grep -q '^func Fuzz[A-Z0-9_]' "$dir/$f"; then
      candidates+=("$pkg")
      break
    fi
  done
done <<<"$listing"

targets=()
for pkg in "${candidates[@]}"; do
  names=$(go test -list '^Fuzz' -run '^$' "$pkg")
  while read -r name; do
    [[ $name == Fuzz* ]] && targets+=("$pkg $name")
  done <<<"$names"
done

if [ "${#targets[@]}" -eq 0 ]; then
  echo "fuzz: no fuzz targets in the module"
  exit 0
fi

echo "fuzz: ${#targets[@]} target(s), $fuzztime each"
failed=()
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "=== $pkg $name"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"; then
    failed+=("$pkg $name")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} target(s) failed:"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
echo "fuzz: all ${#targets[@]} target(s) ran $fuzztime without a failure"
