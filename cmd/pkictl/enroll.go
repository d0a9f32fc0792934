package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/pkid/pkid/internal/client"
)

const enrollHelp = `pkictl enroll: make a key on this machine and get a first certificate for it

Usage:
  pkictl enroll --server URL --token T --cn NAME --out DIR [options]

Makes a private key (ECDSA P-256, or RSA 3072 with --key-type rsa), writes it
to DIR/key.pem (mode 0600; it is never sent anywhere), sends pkid a CSR for it
with the account token, checks the certificate pkid returns and writes:

  DIR/key.pem      the private key (PKCS#8)
  DIR/cert.pem     the certificate
  DIR/chain.pem    the issuing intermediate then the root
  DIR/root.pem     the root: the only trust anchor later commands use
  DIR/pkictl.json  pkid's URLs and the serial, for renew, revoke and status

The certificate is written only if it chains to the trusted root, is valid
now, is for client authentication and certifies the key just made.

Trusting the root:
  --root-fingerprint HEX  the root's SHA-256 fingerprint, as "pkid init"
                          printed it (colons allowed). pkictl fetches
                          URL/ca/root.pem, refuses it unless it has exactly
                          this fingerprint, and only then makes a key and
                          sends the token; the chain pkid returns must end in
                          that root. Recommended; with it, --server may be
                          pkid's own TLS listener.
  without it              the root is fetched once from URL/ca/root.pem,
                          written to DIR/root.pem and its fingerprint printed:
                          verify it with your platform's administrators. Over
                          https the server's certificate must then be one this
                          system trusts (or use pkid's plain-HTTP URL).
  Either way pkictl never fetches the root again: later commands trust
  DIR/root.pem alone.

Options:
  --server URL            pkid's base URL (PKICTL_SERVER)
  --token T               the account token (better: PKICTL_TOKEN)
  --cn NAME               the certificate's subject common name
  --dns NAME              a DNS name for the subjectAltName; repeat, or
                          separate with commas
  --key-type ec|rsa       the key type (default ec)
  --validity-days N       ask for N days (default: pkid's policy; capped by it)
  --out DIR               the certificate directory, made (0700) if missing;
                          defaults to PKICTL_DIR. It must not hold a key or
                          certificate already.
  --tls-server URL        pkid's TLS listener (https://...), remembered for
                          "pkictl renew"; defaults to --server when that is
                          https
  --root-fingerprint HEX  see above

Examples:
  export PKICTL_TOKEN=eyJhbGciOiJFUzI1NiIs...
  pkictl enroll --server http://pkid.internal:8080 \
      --tls-server https://pkid.internal:8443 \
      --cn billing.acme.example --dns billing.acme.example \
      --root-fingerprint 3f0c...e9a1 --out /etc/acme/billing-client

  pkictl enroll --server https://pkid.internal:8443 --cn worker-7 \
      --key-type rsa --validity-days 30 --out ./worker-7

Exit codes: 0 enrolled, 1 refused by pkid or the answer did not verify,
2 usage error.
`

func runEnroll(ctx context.Context, e *env, args []string) int {
	return finish(e, "enroll", enrollHelp, enroll(ctx, e, args))
}

func enroll(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	var (
		server    = fs.String("server", "", "")
		tlsServer = fs.String("tls-server", "", "")
		token     = fs.String("token", "", "")
		cn        = fs.String("cn", "", "")
		keyType   = fs.String("key-type", "ec", "")
		days      = fs.Int("validity-days", 0, "")
		out       = fs.String("out", "", "")
		rootFP    = fs.String("root-fingerprint", "", "")
		dns       listFlag
	)
	fs.Var(&dns, "dns", "")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if *out == "" {
		*out = e.getenv("PKICTL_DIR")
	}
	switch {
	case *server == "":
		return usagef("--server is required: pkid's base URL")
	case *token == "":
		return usagef("--token (or PKICTL_TOKEN) is required: an account token from your administrator")
	case *cn == "":
		return usagef("--cn is required: the certificate's common name")
	case *out == "":
		return usagef("--out is required: the directory to write the key and certificate to")
	case *days < 0:
		return usagef("--validity-days must be positive")
	}
	kt, err := client.ParseKeyType(*keyType)
	if err != nil {
		return usagef("--key-type %q: use ec or rsa", *keyType)
	}
	var pin []byte
	if *rootFP != "" {
		if pin, err = client.ParseFingerprint(*rootFP); err != nil {
			return usagef("--root-fingerprint: a SHA-256 fingerprint is 64 hexadecimal digits, colons allowed")
		}
	}
	su, err := client.ParseServerURL(*server)
	if err != nil {
		return usagef("--server: %v", err)
	}
	if *tlsServer == "" && su.Scheme == "https" {
		*tlsServer = su.String()
	}
	if *tlsServer != "" {
		tu, err := client.ParseServerURL(*tlsServer)
		if err != nil || tu.Scheme != "https" {
			return usagef("--tls-server must be an https:// URL: pkid's TLS listener")
		}
		*tlsServer = tu.String()
	}

	// The root first, before a key exists: with a pin it is checked now,
	// without one it is trusted on first use and shown to the user below.
	root, err := client.FetchRoot(ctx, su.String(), pin)
	if err != nil {
		return err
	}
	c, err := client.New(su.String(), client.HTTPClient(client.SystemRootsWith(root), nil), *token)
	if err != nil {
		return err
	}
	b, err := client.Enroll(ctx, c, client.EnrollRequest{
		Dir: *out, CommonName: *cn, DNSNames: dns, KeyType: kt, ValidityDays: *days, Root: root,
		State: client.State{Server: su.String(), TLSServer: *tlsServer},
		Now:   e.now,
	})
	if err != nil {
		return err
	}
	w := e.stdout
	fmt.Fprintf(w, "enrolled: serial %s\n", b.Serial())
	fmt.Fprintf(w, "  subject:   %s\n", b.Leaf.Subject)
	if len(b.Leaf.DNSNames) > 0 {
		fmt.Fprintf(w, "  dns names: %v\n", b.Leaf.DNSNames)
	}
	fmt.Fprintf(w, "  account:   %s\n", orDash(b.State.AccountID))
	fmt.Fprintf(w, "  not after: %s (%s)\n", stamp(b.Leaf.NotAfter), formatLeft(b.Leaf.NotAfter.Sub(e.now())))
	fmt.Fprintf(w, "  renew at:  %s (\"pkictl renew --dir %s\")\n", stamp(client.DueAt(b.Leaf)), *out)
	for _, f := range []string{client.KeyFile, client.CertFile, client.ChainFile, client.RootFile} {
		fmt.Fprintf(w, "  wrote:     %s\n", filepath.Join(*out, f))
	}
	if pin == nil {
		fmt.Fprintf(w, "\nThe root certificate was fetched from %s/ca/root.pem and written to %s.\n",
			su, filepath.Join(*out, client.RootFile))
		fmt.Fprintf(w, "Its SHA-256 fingerprint is:\n\n    %s\n\n", client.Fingerprint(b.Root))
		fmt.Fprintf(w, "Verify this fingerprint with your platform's administrators (\"pkid init\" printed it)\n"+
			"before you rely on this certificate. pkictl trusts this root alone from now on and\n"+
			"never fetches it again; next time, pin it up front with --root-fingerprint.\n")
	} else {
		fmt.Fprintf(w, "  root:      sha256 %s (pinned)\n", client.Fingerprint(b.Root))
	}
	return nil
}
