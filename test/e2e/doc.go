// Package e2e holds the end-to-end test of the customer's loop with the real
// binaries: pkid (plain HTTP and TLS listeners) on a fresh database, pkictl
// enrolling, renewing over mTLS and revoking, and pkid-edge in front of an
// upstream, admitting the certificate and then refusing it once revoked. It
// has no code of its own; `go test ./test/e2e` builds the three commands.
package e2e
