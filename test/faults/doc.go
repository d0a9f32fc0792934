// Package faults holds pkid's fault tests: what the CA promises when things
// break, checked by breaking them. Each test keeps a client-side log of
// every answer it received and compares it with the database afterwards: no
// certificate a client received is missing or different, no serial appears
// twice, no 2xx was given without a committed row, and every pending row has
// an OCSP answer and a documented way out.
//
//   - TestPostgresStopped: Postgres (a private cluster, internal/testpg)
//     stopped and killed under a running `pkid serve`: OCSP and the CRL keep
//     answering from memory, writes answer 503, and pkid recovers without a
//     restart.
//   - TestKillPkidDuringIssuance: SIGKILL of `pkid serve` under issuance
//     load, then a restart.
//   - TestAuditFailure: a trigger that makes audit inserts fail.
//   - TestRevocationVisibleOnOtherNode: two nodes on one database; the time
//     from a revocation on one to `revoked` on the other's responder.
//   - TestThreeNodes: three `pkid serve` processes on one database with
//     issuance, revocation, OCSP and CRL load spread over them: unique
//     serials, every received certificate in the database, CRL numbers that
//     only grow, every responder revoked within 1 s of a revocation.
//   - TestStartupRefusals and TestCAExpiryWarning: a wrong passphrase and
//     expired CA certificates stop `pkid serve` and fail /readyz; ones about
//     to expire are logged and exported as metrics.
//
// `make test-faults` runs only this package; `make test` includes it. The
// tests that stop Postgres skip, saying so, when the PostgreSQL server
// binaries are not installed; the rest use the shared test server
// (internal/testdb) because they stop nothing. The pkid processes are built
// and run through internal/testbin.
package faults
