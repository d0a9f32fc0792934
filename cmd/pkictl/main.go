// Command pkictl is the customer's client for pkid: it makes a key pair
// locally, submits a CSR, and renews and revokes certificates.
//
// This build does not have those commands yet; they arrive with renewal and
// the edge (see the project's issues). It says so instead of pretending.
package main

import (
	"fmt"
	"os"
)

const usage = `pkictl: the customer's client for the pkid certificate authority

Planned commands (not in this build yet):
  pkictl enroll --server URL --token T --cn NAME [--key-type ec|rsa] --out DIR
  pkictl renew  --dir DIR [--force] [--watch]
  pkictl revoke --dir DIR --reason REASON
  pkictl status --dir DIR

Until then, use the REST API directly: see the README ("Your first certificate").
`

func main() {
	fmt.Fprint(os.Stderr, usage)
	if len(os.Args) > 1 && (os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help") {
		os.Exit(0)
	}
	os.Exit(2)
}
