// Package ca holds pkid's certificate use cases: issue, get and list (renew
// and revoke join them), and the CA hierarchy's bootstrap. It is where the
// order of operations that makes a CA trustworthy lives:
//
//  1. check the account and the CSR (nothing touched yet);
//  2. build the exact to-be-signed certificate and lint it (nothing signed);
//  3. record it, pending, with an audit event, and commit;
//  4. sign it with the CA key (only now);
//  5. store the signed DER, mark it issued, audit, commit;
//  6. only then hand it out.
//
// A crash between 4 and 5 leaves a pending row that OCSP and the CRL treat as
// issued, so a certificate can never exist without a record that can revoke
// it. Every refusal is audited and made before any signature.
package ca
