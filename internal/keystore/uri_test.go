package keystore

import (
	"bytes"
	"strings"
	"testing"
)

func TestKeyURIRoundTrip(t *testing.T) {
	u := keyURI{Token: "pkid CA;1/2", Object: "pkid root 0a0b", ID: []byte{0, 1, 0xfe, 'a'}}
	s := u.String()
	if want := "pkcs11:token=pkid%20CA%3B1%2F2;object=pkid%20root%200a0b;id=%00%01%FE%61;type=private"; s != want {
		t.Fatalf("String() = %s, want %s", s, want)
	}
	back, err := parseKeyURI(s)
	if err != nil {
		t.Fatal(err)
	}
	if back.Token != u.Token || back.Object != u.Object || !bytes.Equal(back.ID, u.ID) {
		t.Fatalf("round trip: %+v, want %+v", back, u)
	}
}

func TestParseKeyURIRefuses(t *testing.T) {
	for name, s := range map[string]string{
		"no scheme":         "token=a;id=%01",
		"pin in query":      "pkcs11:token=a;id=%01?pin-value=1234",
		"pin in path":       "pkcs11:token=a;id=%01;pin-value=1234",
		"public key":        "pkcs11:token=a;id=%01;type=public",
		"no id":             "pkcs11:token=a;object=b",
		"no token":          "pkcs11:id=%01",
		"twice":             "pkcs11:token=a;token=b;id=%01",
		"bad escape":        "pkcs11:token=a;id=%0g",
		"truncated escape":  "pkcs11:token=a;id=%0",
		"raw space":         "pkcs11:token=a b;id=%01",
		"no value":          "pkcs11:token;id=%01",
		"unknown attribute": "pkcs11:token=a;id=%01;slot-id=3",
		"too long":          "pkcs11:token=a;id=%01;object=" + strings.Repeat("x", maxURI),
	} {
		if _, err := parseKeyURI(s); err == nil {
			t.Errorf("%s: %q parsed", name, s)
		}
	}
}
