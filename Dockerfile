# syntax=docker/dockerfile:1
#
# pkid's container image: the three binaries on a slim Debian, run as a
# non-root user. See docker-compose.yml for running it with PostgreSQL.
#
#   docker build -t pkid .
#   docker run --rm pkid --help          (any pkid subcommand)

# ---- build: static binaries (no cgo), reproducible paths
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o /out/ ./cmd/...

# ---- runtime: bash is needed by the entry point (migrate, init, serve; the
# health check). The binaries are static, so the base only has to be small and
# patched.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin pkid
COPY --from=build /out/ /usr/local/bin/
COPY --chmod=0755 scripts/docker-entrypoint.sh /usr/local/bin/pkid-entrypoint
USER 10001:10001
ENV PKID_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["pkid-entrypoint", "healthcheck"]
ENTRYPOINT ["pkid-entrypoint"]
CMD ["up"]
