// Package edge is pkid-edge's verification and proxy: an mTLS reverse proxy
// that lets a request reach the upstream only when the client certificate
// chains to pkid's CA, names an account, and is not revoked.
//
// # What a connection goes through
//
// The TLS handshake (1.2 or 1.3) asks for a client certificate. In
// tls.Config.VerifyConnection, which Go also calls for resumed sessions, the
// edge
//
//  1. verifies the presented chain against the roots of the --ca bundle
//     (intermediates from the bundle and from the client), for clientAuth, at
//     the edge's clock;
//  2. reads the account from the leaf's single urn:pkid:account:<id> URI SAN;
//  3. checks the leaf's revocation (see below).
//
// Any failure aborts the handshake with a bad_certificate alert: a revoked,
// unknown or unverifiable certificate never gets to send a request. Every
// request is checked again against the revocation cache, so that a
// certificate revoked while its keep-alive connection is open is refused
// with 403 from its next request once the edge learns of the revocation (503
// when no fresh answer can be had: fail closed).
//
// # Revocation
//
// OCSP comes first: a POST to the responder, whose answer must be signed by
// the leaf's issuer or by a responder certificate that issuer certified for
// id-kp-OCSPSigning (valid now), must carry exactly one SingleResponse whose
// CertID matches the issuer's name and key hashes and the leaf's serial
// (x/crypto's ParseResponseForCert looks at the serial only; SECURITY.md
// O-22), and must be current (thisUpdate no later than now plus the allowed
// clock skew, nextUpdate in the future). Answers are cached per certificate
// until the soonest of nextUpdate, the HTTP max-age and the edge's own cap
// (Config.OCSPCacheMax), with at most one request per certificate in flight;
// an answer in its last quarter is refreshed in the background on use, so a
// busy certificate never waits for the responder. A revocation is final: a
// revoked answer is kept until the certificate expires.
//
// When OCSP cannot answer (unreachable, an HTTP error, tryLater or
// internalError, a response that fails verification), the edge uses the CRL;
// while the responder keeps failing, the CRL answers first and the responder
// is probed in the background, so handshakes do not wait for it. The edge
// fetches the CRL at start-up and keeps it fresh in the background with
// conditional GETs, refreshing at least halfway to its nextUpdate. A CRL is
// used only when its signature verifies under the leaf's issuer, its number
// never goes down, it is complete for end-entity certificates (no delta or
// indirect CRL, no onlySomeReasons, no onlyContainsCACerts, a distribution
// point that matches the certificate's) and it has no unknown critical
// extension.
//
// Besides --crl, the edge follows the CRL distribution points of verified
// client certificates that are on --crl's origin (scheme and host), up to
// eight CRLs in all: after pkid's intermediate rollover (`pkid ca rotate`)
// the new intermediate's certificates name its own CRL, /crl/{generation},
// while /crl stays the previous intermediate's. Such a CRL is fetched when
// the first certificate naming it is checked, and kept fresh like --crl's;
// if OCSP fails before it arrives, that certificate is refused (fail
// closed). A distribution point elsewhere is never fetched.
//
// If neither OCSP nor the CRL gives an answer that is fresh (the last OCSP
// answer or the CRL is past its nextUpdate by more than Config.Grace), the
// edge fails closed. "revoked" wins over "good" whenever two sources are
// consulted. An OCSP "unknown" status or an "unauthorized" error (the CA
// does not know the certificate) is a refusal, not a reason to ask the CRL:
// pkid records every certificate before signing it, so a certificate its
// responder does not know is not one of its own.
package edge
