// Package ocsp is pkid's OCSP responder (RFC 6960, with the lightweight
// profile of RFC 5019 as updated by RFC 9919). It serves responses that were
// signed ahead of time and keeps them in memory; it never signs a status it
// has not read from the database.
//
// # Where answers come from
//
// A certificate has at most one stored response, with a SHA-1 CertID (the
// form RFC 5019 clients and nginx send). Issuance stores none: the first
// request about a certificate finds only its row (pending, issued or
// revoked), and the [Cache] signs the response from that row with the
// delegated responder of its issuer and stores it
// ([Store.FirstOCSPResponse]; a response stored meanwhile, another node's or
// a revocation's, wins). Revocation replaces the response in its own
// transaction, and the [Resigner] re-signs it ahead of its nextUpdate. The
// Cache holds every stored response: it loads the unexpired ones at start,
// reloads a serial when the database announces a change on the pkid_ocsp
// channel (LISTEN/NOTIFY), and every few seconds reads what changed since it
// last looked, so that a missed notification heals. The CA also installs
// what a revocation commits straight into this node's cache. A serial the
// cache does not hold is read from the database once (and its first response
// signed, if it has none); serials that are unknown are remembered for about
// a second, and serials that cannot be pkid's (pkid's are 17 bytes beginning
// 0x70) are unknown without a read.
//
// A request with a SHA-256 CertID (RFC 9919) is answered with a response
// signed on first demand by the delegated responder from the status parsed
// out of the stored SHA-1 response, with the same thisUpdate and nextUpdate,
// and kept with it: it never says more, or anything fresher, than the stored
// one. SHA-384 and SHA-512 CertIDs are answered unauthorized; MD5 and unknown
// algorithms are malformed requests.
//
// # Answers
//
//   - good or revoked: the response for the serial, when the CertID's issuer
//     name hash and key hash both match one of the issuing CAs and the
//     serial's response is that CA's; HTTP 200 with RFC 5019 §6.2 caching
//     headers (max-age up to nextUpdate, Last-Modified = thisUpdate,
//     Expires = nextUpdate, ETag) and 304 for a matching If-None-Match.
//   - unauthorized (30 03 0a 01 06), HTTP 200: a serial pkid did not issue
//     (never good: BR 4.9.9), another CA's CertID, a certificate whose
//     response was dropped after both it and the certificate expired (RFC
//     5019 §2.2.3), or a hash algorithm pkid does not sign for.
//   - malformedRequest (30 03 0a 01 01), HTTP 400 as Boulder did (nginx
//     accepts any status with an OCSP body): anything that is not exactly
//     one DER OCSPRequest with exactly one Request (x/crypto would silently
//     answer the first of several: SECURITY.md O-13), bad base64 or
//     escapes in the GET form, an empty body; HTTP 413 for a body over
//     10,000 bytes and 405 for methods other than GET, HEAD and POST, both
//     with the same body.
//   - tryLater (30 03 0a 01 03), HTTP 503: the database could not be read
//     for a serial the cache does not hold, or the only response there is
//     is past its nextUpdate (which is logged: the re-signing job is
//     failing), or the first response could not be signed or stored. pkid
//     never answers good for a serial without a certificate row.
//
// Every answer, errors included, has Content-Type application/ocsp-response
// exactly (nginx refuses anything else); errors carry Cache-Control
// max-age=0, no-cache. The Content-Type of a POST is not checked: RFC 6960
// A.1.1 names it, but refusing a client over it would protect nothing.
//
// # Nonces and signed requests
//
// Responses are pre-signed, so they carry no nonce. A request's nonce
// extension (RFC 8954) is ignored whatever its length, as RFC 5019 §2.2.1
// and RFC 9919 ask of a responder that does not support nonces: the client
// gets the most complete response there is and decides (openssl prints
// "WARNING: no nonce in response"). Signed requests are answered as if they
// were not signed (RFC 5019 §2.1.2: responders may ignore the signature);
// the requestor name and the signature are dropped before parsing.
package ocsp
