// Package client is the customer's side of pkid, the library behind pkictl:
// a typed client for the account API whose refusals are *Error values carrying
// the RFC 9457 problem pkid sent, and the local half of the certificate life
// cycle — a key made and kept on this machine, a certificate directory whose
// files are replaced atomically, a pinned root, renewal over mTLS with the
// certificate as its own credential, and an OCSP check that verifies what the
// responder says instead of believing it.
//
// The certificate directory holds:
//
//	key.pem      the private key, PKCS#8, mode 0600; it never leaves the machine
//	cert.pem     the certificate
//	chain.pem    the issuing intermediate then the root, as pkid returned them
//	root.pem     the trust anchor: pinned by fingerprint or fetched once at enrolment
//	pkictl.json  where pkid is and which serial this is (State)
//	.pkictl.lock serialises the pkictl processes that change the directory
//
// Every later operation trusts root.pem alone: the root is never fetched
// again, so a network attacker who was not there at enrolment cannot become
// the CA later (no trust on every use).
package client
