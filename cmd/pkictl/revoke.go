package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/pkid/pkid/internal/client"
	"github.com/pkid/pkid/internal/pki"
)

var revokeHelp = `pkictl revoke: revoke the certificate in a directory

Usage:
  pkictl revoke --dir DIR --reason REASON --token T [--serial HEX] [--server URL]

Asks pkid to revoke the certificate (or another of the account's
certificates, by --serial) and prints the status pkid reports. Revocation
needs the account token: a stolen certificate must not be able to keep its
owner from revoking it, nor revoke what it does not own. OCSP and pkid-edge
refuse the certificate within seconds. Revoking a revoked certificate succeeds
and changes nothing, except that keyCompromise replaces another reason.

Options:
  --dir DIR        the certificate directory (PKICTL_DIR)
  --reason REASON  one of: ` + reasonList() + `
                   (keyCompromise if the private key may have leaked: pkid
                   then also revokes every other certificate for the key and
                   refuses to certify it again)
  --token T        the account token (better: PKICTL_TOKEN)
  --serial HEX     revoke this serial instead of cert.pem's (for example the
                   certificate a renewal replaced)
  --server URL     pkid's base URL (default: remembered at enrolment)

Examples:
  pkictl revoke --dir /etc/acme/billing-client --reason keyCompromise
  pkictl revoke --dir ./worker-7 --reason superseded --serial 70a1b2...

Exit codes: 0 revoked, 1 refused by pkid (its problem title and detail are
printed) or failed, 2 usage error.
`

func reasonList() string {
	var names []string
	for _, r := range pki.SubscriberReasons {
		names = append(names, r.String())
	}
	return strings.Join(names, ", ")
}

func runRevoke(ctx context.Context, e *env, args []string) int {
	return finish(e, "revoke", revokeHelp, revoke(ctx, e, args))
}

func revoke(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	var (
		dir    = fs.String("dir", "", "")
		reason = fs.String("reason", "", "")
		token  = fs.String("token", "", "")
		serial = fs.String("serial", "", "")
		server = fs.String("server", "", "")
	)
	if err := parse(e, fs, args); err != nil {
		return err
	}
	switch {
	case *dir == "":
		return usagef("--dir is required: the certificate directory")
	case *reason == "":
		return usagef("--reason is required: one of %s", reasonList())
	case *token == "":
		return usagef("--token (or PKICTL_TOKEN) is required: revocation needs the account token")
	}
	if _, err := pki.ParseRevocationReason(*reason, false); err != nil {
		return usagef("--reason %q: use one of %s", *reason, reasonList())
	}
	if *serial != "" {
		s, err := pki.ParseSerial(*serial)
		if err != nil {
			return usagef("--serial %q is not a serial number (hexadecimal)", *serial)
		}
		*serial = string(s)
	}
	b, err := client.Load(*dir)
	if err != nil {
		return err
	}
	if *serial == "" {
		*serial = b.Serial()
	}
	base := *server
	if base == "" {
		base = b.State.Server
	}
	if base == "" {
		base = b.State.TLSServer
	}
	if base == "" {
		return usagef("--server is required: %s does not remember pkid's URL", *dir)
	}
	hc := client.HTTPClient(client.SystemRootsWith(b.Root), nil)
	defer hc.CloseIdleConnections()
	c, err := client.New(base, hc, *token)
	if err != nil {
		return usageError{err.Error()}
	}
	got, err := c.Revoke(ctx, *serial, *reason)
	if err != nil {
		return err
	}
	if got.Serial != *serial || !pki.Status(got.Status).Valid() {
		return fmt.Errorf("pkid's answer is not about serial %s, or has an unknown status", *serial)
	}
	fmt.Fprintf(e.stdout, "serial %s: %s", *serial, got.Status)
	if _, err := pki.ParseRevocationReason(got.RevocationReason, true); err == nil && got.RevocationReason != "" {
		fmt.Fprintf(e.stdout, " (%s)", got.RevocationReason)
	}
	if got.RevokedAt != nil {
		fmt.Fprintf(e.stdout, " at %s", stamp(*got.RevokedAt))
	}
	fmt.Fprintln(e.stdout)
	if got.Status != string(pki.StatusRevoked) {
		return fmt.Errorf("pkid reports serial %s as %s, not revoked", *serial, got.Status)
	}
	return nil
}
