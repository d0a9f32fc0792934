# pkid: build, run, test, lint, fuzz and benchmark.
#
#   make build    go build -o bin/ ./cmd/...   (pkid, pkictl, pkid-edge, ...)
#   make run      a development pkid on 127.0.0.1:8080 (scripts/run-dev.sh)
#   make test     go test -race, make lint, then ../shared/contract-smoke.sh when present
#   make lint     gofmt, go vet, staticcheck (pinned; installed into bin/tools)
#   make fuzz     every Fuzz target in the tree for FUZZTIME (default 10s) each
#   make bench    Go benchmarks, issuance end to end, OCSP under wrk, one node against three; raw output in bench/out/
#   make vuln     govulncheck (pinned); warns instead of failing when its database is unreachable
#   make openapi  validates api/openapi.yaml with Redocly CLI (pinned, from npm; needs npx)
#   make clean    removes bin/ and bench/out/ (never var/: it holds the dev CA's passphrase)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
.DELETE_ON_ERROR:

GO ?= go
TOOLS := $(CURDIR)/bin/tools

# Pinned tool versions: a new staticcheck release may add checks, and CI must
# not turn red on its own. Bump deliberately.
STATICCHECK_VERSION := v0.8.2
GOVULNCHECK_VERSION := v1.9.0
REDOCLY_VERSION := 2.77.0
# Versioned paths, so that a bump installs the new release beside the old.
STATICCHECK := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)/staticcheck
GOVULNCHECK := $(TOOLS)/govulncheck-$(GOVULNCHECK_VERSION)/govulncheck

FUZZTIME ?= 10s
SMOKE ?= ../shared/contract-smoke.sh

.PHONY: build run test unit test-faults smoke lint fuzz bench vuln openapi clean screenshots

build:
	$(GO) build -o bin/ ./cmd/...

run:
	scripts/run-dev.sh

# The steps run in this order, each only if the one before passed.
test:
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory smoke

# -timeout: go test's default of 10 minutes a package is near what internal/app
# needs under -race on a loaded 2-core machine.
unit:
	$(GO) test -race -count=1 -timeout 20m ./...

# The fault tests alone (test/faults; `unit` runs them too): Postgres stopped
# and killed under pkid (a private cluster; skipped, saying so, without the
# PostgreSQL server binaries), pkid killed during issuance, a failing audit
# insert, two and three nodes, expired CA certificates. -v shows the
# measured figures.
test-faults:
	$(GO) test -race -count=1 -v ./test/faults

# The contract's black-box check lives outside the repository (shared/ beside
# the checkout); a checkout without it skips the step and says so.
smoke:
	@if [ -f "$(SMOKE)" ]; then \
		echo "contract smoke test: $(SMOKE)"; \
		bash "$(SMOKE)"; \
	else \
		echo "contract smoke test: skipped, $(SMOKE) is not there"; \
	fi

# Go files under version control or about to be, without bin/, var/ and
# testdata/ (which may hold deliberately odd sources).
GOFILES = $(shell find . \( -path ./.git -o -path ./bin -o -path ./var -o -path ./bench/out \
	-o -name testdata -o -name node_modules \) -prune -o -name '*.go' -print)

lint: $(STATICCHECK)
	@files='$(GOFILES)'; \
	unformatted=$$( [ -z "$$files" ] || gofmt -l $$files ); \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt would change these files (run gofmt -w):"; echo "$$unformatted"; exit 1; \
	fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(GOVULNCHECK):
	GOBIN=$(dir $@) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

fuzz:
	scripts/fuzz.sh $(FUZZTIME)

bench:
	scripts/bench.sh

vuln: $(GOVULNCHECK)
	scripts/vulncheck.sh $(GOVULNCHECK)

# Structure and references of the API description; style warnings do not fail.
openapi:
	npx --yes @redocly/cli@$(REDOCLY_VERSION) lint --format=stylish api/openapi.yaml

clean:
	rm -rf bin bench/out

# docs/screenshots/*.png: the admin web page as the browser test
# (internal/web TestBrowser) walks through it in Debian's Chromium.
screenshots:
	@test -x /usr/bin/chromium || { echo "screenshots: /usr/bin/chromium is missing (apt-get install chromium)"; exit 1; }
	rm -f docs/screenshots/*.png
	PKID_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run '^TestBrowser$$' ./internal/web
	@ls docs/screenshots/*.png
