package api

import (
	"bytes"
	"encoding/pem"
	"testing"
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
