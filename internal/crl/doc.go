// Package crl publishes pkid's certificate revocation lists: a job that signs
// a full CRL per issuer (RFC 5280 §5), a cache that holds the newest CRL of
// each issuer in memory, and the handler that serves them.
//
// # Signing
//
// A [Job] signs the CRL of one issuer: at start when there is none or it is
// due, within a few seconds of a revocation (the CA calls [Job.Nudge] once
// the revocation has committed; nudges within [JobConfig.Debounce] make one
// CRL), and at least every [JobConfig.Interval] otherwise. A CRL is never
// signed inside a revocation request (Boulder's crl-updater, not Vault's
// inline rebuild).
//
// Each CRL is made in one database transaction that holds an advisory lock
// on the issuer, so nodes sharing a database take turns: read the previous
// CRL, draw the next number from a sequence (so numbers strictly increase
// across nodes and restarts: RFC 5280 §5.2.3, SECURITY.md L-08), read the
// revoked certificates, lint and sign (issuance.Issuer.SignCRL), store the
// CRL with its audit event, announce it (NOTIFY pkid_crl) and commit. A
// certificate row counts from the moment it is written, pending or issued:
// a certificate may exist for it. thisUpdate never goes back, and an entry
// leaves the CRL only after a CRL issued after its certificate's expiry
// listed it (RFC 5280 §3.3, SECURITY.md L-07; see [Job.Generate]).
//
// # Serving
//
// A [Cache] loads the newest CRL of each issuer it serves at start, reloads
// one when the database announces it (LISTEN pkid_crl on a connection of
// its own, reconnected with backoff), checks every few seconds in case a
// notification was missed, and takes what this node's job signs directly.
// It keeps what it has while the database is down.
//
// The [Handler] serves GET /crl (the issuing intermediate's CRL, DER,
// application/pkix-crl), GET /crl.pem (the same, PEM "X509 CRL"),
// GET /ca/root.crl (the root's CRL, DER) and, after [Handler.ByGeneration],
// GET /crl/{generation}[.pem] (the CRL of each live intermediate, after
// `pkid ca rotate`: each intermediate has its own job) from the cache, with a strong ETag
// (a hash of the body), Last-Modified (thisUpdate) and Cache-Control:
// public, max-age of at most 60 seconds and never beyond nextUpdate, because
// a revocation must reach relying parties within seconds; If-None-Match and
// If-Modified-Since get 304. (Two nodes may sign CRLs within one second,
// with the same thisUpdate: the second of them answers If-Modified-Since
// with the CRL, since the date cannot tell the two apart.) It never serves a CRL past its nextUpdate:
// OpenSSL rejects every certificate once the CRL it holds has expired, so
// an expired CRL is an outage that looks like a success. It answers 503
// instead, as it does before the first CRL exists.
package crl
