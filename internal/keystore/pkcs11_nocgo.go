//go:build !cgo

package keystore

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"errors"
)

// Supported reports whether this build can use a PKCS#11 module (it needs
// cgo to load one).
const Supported = false

// errNoCgo: a PKCS#11 module is a C library, which a static (CGO_ENABLED=0)
// build cannot load.
var errNoCgo = errors.New("keystore: this pkid was built without cgo (CGO_ENABLED=0) and cannot load a PKCS#11 module; build it with cgo to use an HSM")

type token struct{}

func openToken(string, string, []byte) (*token, error) { return nil, errNoCgo }

func (*token) name() string { return "" }
func (*token) close() error { return errNoCgo }
func (*token) generate(elliptic.Curve, string) (crypto.Signer, string, error) {
	return nil, "", errNoCgo
}
func (*token) open(string) (crypto.Signer, error) { return nil, errNoCgo }
func (*token) sealingSecret(bool) ([]byte, error) { return nil, errNoCgo }
func (*token) check(context.Context) error        { return errNoCgo }

func (*token) protection(string) (Protection, error) { return Protection{}, errNoCgo }
