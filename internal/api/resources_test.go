package api

import (
	"bytes"
	"encoding/pem"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// TestPEMString checks pemString against encoding/pem for every length
// around the line boundaries.
func TestPEMString(t *testing.T) {
	for n := range 300 {
		der := bytes.Repeat([]byte{0xfb, 0x00, 0x3e, 0x7f, 0xff}, n/5+1)[:n]
		for i := range der {
			der[i] ^= byte(i * 7)
		}
		want := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		if got := pemString("CERTIFICATE", der); got != want {
			t.Fatalf("%d bytes: got\n%s\nwant\n%s", n, got, want)
		}
	}
}

// TestCertificateViewUnsigned: a record that was never signed (a pending
// row) shows an empty certificate and fingerprint, not an empty PEM block.
func TestCertificateViewUnsigned(t *testing.T) {
	now := time.Now()
	c := &pki.Certificate{Serial: pki.MustNewSerial(), State: pki.StatePending, NotBefore: now, NotAfter: now.Add(time.Hour)}
	if v := certificateView(c, "chain", now); v.Certificate != "" || v.FingerprintSHA256 != "" {
		t.Errorf("certificate %q, fingerprint %q; want both empty", v.Certificate, v.FingerprintSHA256)
	}
}
