// Command pkid-edge is an mTLS reverse proxy for the API edge: it verifies
// client certificates against pkid's CA and checks their revocation with
// pkid's OCSP responder and CRL before forwarding a request upstream.
//
// This build does not have the proxy yet; it arrives with its issue. It says
// so instead of pretending.
package main

import (
	"fmt"
	"os"
)

const usage = `pkid-edge: mTLS reverse proxy that enforces pkid certificates and revocation

Planned usage (not in this build yet):
  pkid-edge --listen ADDR --upstream URL --ca FILE --cert FILE --key FILE --ocsp URL --crl URL

Until then, use nginx with ssl_verify_client (see the README).
`

func main() {
	fmt.Fprint(os.Stderr, usage)
	if len(os.Args) > 1 && (os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help") {
		os.Exit(0)
	}
	os.Exit(2)
}
