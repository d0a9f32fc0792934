package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/pkid/pkid/internal/client"
	"github.com/pkid/pkid/internal/pki"
)

const statusHelp = `pkictl status: show the certificate in a directory and its revocation status

Usage:
  pkictl status --dir DIR [--offline]

Prints the serial, subject, validity, when renewal is due, whether the
certificate chains to root.pem, and its OCSP status, asked of the responder
named in the certificate. The OCSP answer is believed only if it is signed by
the issuing CA or by a responder certificate that CA made for OCSP signing,
names this certificate's issuer (not just its serial), and is fresh.

Options:
  --dir DIR    the certificate directory (PKICTL_DIR)
  --offline    skip the OCSP check

Examples:
  pkictl status --dir /etc/acme/billing-client
  pkictl status --dir ./worker-7 --offline

Exit codes: 0 valid (and, unless --offline, OCSP says good), 1 the status
could not be established (OCSP unreachable or its answer did not verify, the
chain does not verify, unusable files), 2 usage error, 4 expired, revoked, or
unknown to the responder.
`

func runStatus(ctx context.Context, e *env, args []string) int {
	code, err := status(ctx, e, args)
	if err != nil {
		return finish(e, "status", statusHelp, err)
	}
	return code
}

func status(ctx context.Context, e *env, args []string) (int, error) {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	dir := fs.String("dir", "", "")
	offline := fs.Bool("offline", false, "")
	if err := parse(e, fs, args); err != nil {
		return 0, err
	}
	if *dir == "" {
		return 0, usagef("--dir is required: the certificate directory")
	}
	b, err := client.Load(*dir)
	if err != nil {
		return 0, err
	}
	now := e.now()
	w := e.stdout
	leaf := b.Leaf
	fmt.Fprintf(w, "serial:      %s\n", b.Serial())
	fmt.Fprintf(w, "subject:     %s\n", leaf.Subject)
	if len(leaf.DNSNames) > 0 {
		fmt.Fprintf(w, "dns names:   %v\n", leaf.DNSNames)
	}
	fmt.Fprintf(w, "issuer:      %s\n", leaf.Issuer)
	fmt.Fprintf(w, "not before:  %s\n", stamp(leaf.NotBefore))
	fmt.Fprintf(w, "not after:   %s (%s)\n", stamp(leaf.NotAfter), formatLeft(leaf.NotAfter.Sub(now)))
	due := client.DueAt(leaf)
	if now.Before(due) {
		fmt.Fprintf(w, "renewal due: %s\n", stamp(due))
	} else {
		fmt.Fprintf(w, "renewal due: now (since %s)\n", stamp(due))
	}
	fmt.Fprintf(w, "key:         %s\n", client.TypeOf(b.Key.Public()))
	if b.State.AccountID != "" {
		fmt.Fprintf(w, "account:     %s\n", b.State.AccountID)
	}

	code := exitOK
	expired := !now.Before(leaf.NotAfter)
	verifyAt := now
	if expired {
		// Say whether the chain is sound apart from the expiry.
		verifyAt = leaf.NotAfter.Add(-time.Second)
		code = exitNotGood
	}
	issuer, verr := b.Verify(verifyAt)
	if verr != nil {
		fmt.Fprintf(w, "chain:       DOES NOT VERIFY: %v\n", verr)
		return exitFailed, nil
	}
	fmt.Fprintf(w, "chain:       ok, to root sha256 %s\n", client.Fingerprint(b.Root))
	if expired {
		fmt.Fprintf(w, "status:      expired\n")
	}
	if *offline {
		return code, nil
	}

	hc := client.HTTPClient(client.SystemRootsWith(b.Root), nil)
	defer hc.CloseIdleConnections()
	st, err := client.CheckOCSP(ctx, hc, leaf, issuer, now)
	if err != nil {
		fmt.Fprintf(w, "ocsp:        UNAVAILABLE: %s\n", strings.TrimPrefix(err.Error(), client.ErrOCSP.Error()+": "))
		if code == exitOK {
			code = exitFailed
		}
		return code, nil
	}
	switch st.Status {
	case "good":
		fmt.Fprintf(w, "ocsp:        good (this update %s, next update %s) from %s\n", stamp(st.ThisUpdate), stamp(st.NextUpdate), st.URL)
	case "revoked":
		fmt.Fprintf(w, "ocsp:        REVOKED at %s, reason %s (from %s)\n", stamp(st.RevokedAt), pki.RevocationReason(st.Reason), st.URL)
		code = exitNotGood
	default:
		fmt.Fprintf(w, "ocsp:        UNKNOWN to the responder %s\n", st.URL)
		code = exitNotGood
	}
	return code, nil
}
