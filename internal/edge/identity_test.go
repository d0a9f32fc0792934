package edge

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

func rawName(t *testing.T, rdns ...[]pkix.AttributeTypeAndValue) []byte {
	t.Helper()
	var seq pkix.RDNSequence
	for _, r := range rdns {
		seq = append(seq, r)
	}
	der, err := asn1.Marshal(seq)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func atv(oid asn1.ObjectIdentifier, v any) pkix.AttributeTypeAndValue {
	return pkix.AttributeTypeAndValue{Type: oid, Value: v}
}

var (
	oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidO  = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidC  = asn1.ObjectIdentifier{2, 5, 4, 6}
)

// utf8Value is a UTF8String, the encoding pkid uses for names.
func utf8Value(s string) asn1.RawValue {
	return asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(s)}
}

func TestSubjectString(t *testing.T) {
	cases := []struct {
		name string
		raw  func(t *testing.T) []byte
		want string
	}{
		{"order reversed", func(t *testing.T) []byte {
			return rawName(t, []pkix.AttributeTypeAndValue{atv(oidC, "DE")}, []pkix.AttributeTypeAndValue{atv(oidO, "Acme")},
				[]pkix.AttributeTypeAndValue{atv(oidCN, "client")})
		}, "CN=client,O=Acme,C=DE"},
		{"special characters escaped", func(t *testing.T) []byte {
			return rawName(t, []pkix.AttributeTypeAndValue{atv(oidO, utf8Value(`A,B+C"D\E<F>G;H`))})
		}, `O=A\,B\+C\"D\\E\<F\>G\;H`},
		{"leading and trailing space, leading #", func(t *testing.T) []byte {
			return rawName(t, []pkix.AttributeTypeAndValue{atv(oidCN, utf8Value(" x ")), atv(oidOU, utf8Value("#1"))})
		}, `OU=\#1+CN=\ x\ `}, // DER sorts a SET OF
		{"control characters as hex", func(t *testing.T) []byte {
			return rawName(t, []pkix.AttributeTypeAndValue{atv(oidCN, utf8Value("a\r\nX-Client-Account: evil\x00"))})
		}, `CN=a\0D\0AX-Client-Account: evil\00`},
		{"non-ASCII as UTF-8 hex", func(t *testing.T) []byte {
			return rawName(t, []pkix.AttributeTypeAndValue{atv(oidO, utf8Value("Zürich"))})
		}, `O=Z\C3\BCrich`},
		{"unknown attribute as hex DER", func(t *testing.T) []byte {
			return rawName(t, []pkix.AttributeTypeAndValue{atv(asn1.ObjectIdentifier{1, 2, 3, 4}, "x")})
		}, "1.2.3.4=#130178"},
		{"invalid UTF-8 as hex DER", func(t *testing.T) []byte {
			return rawName(t, []pkix.AttributeTypeAndValue{atv(oidCN, utf8Value("\xff"))})
		}, "CN=#0c01ff"},
		{"BMPString", func(t *testing.T) []byte {
			return rawName(t, []pkix.AttributeTypeAndValue{atv(oidCN, asn1.RawValue{Tag: asn1.TagBMPString, Bytes: []byte{0, 'h', 0, 'i'}})})
		}, "CN=hi"},
		{"empty name", func(t *testing.T) []byte { return rawName(t) }, ""},
		{"not a name", func(*testing.T) []byte { return []byte{0x04, 0x01, 0x00} }, "#040100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := SubjectString(tc.raw(t))
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if !httpguts.ValidHeaderFieldValue(got) {
				t.Fatalf("%q is not a valid header value", got)
			}
		})
	}
}

func TestIdentityOf(t *testing.T) {
	uri := func(t *testing.T, s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	cases := []struct {
		name    string
		uris    []string
		serial  *big.Int
		account string
		err     error
	}{
		{"pkid's form", []string{AccountURIPrefix + account}, big.NewInt(0x0abc), account, nil},
		{"beside another URI", []string{"spiffe://example.org/x", AccountURIPrefix + account}, big.NewInt(1), account, nil},
		{"none", nil, big.NewInt(1), "", ErrNoAccount},
		{"two", []string{AccountURIPrefix + "a", AccountURIPrefix + "b"}, big.NewInt(1), "", ErrNoAccount},
		{"empty id", []string{AccountURIPrefix}, big.NewInt(1), "", ErrNoAccount},
		{"id with a separator", []string{AccountURIPrefix + "a:b"}, big.NewInt(1), "", ErrNoAccount},
		{"id too long", []string{AccountURIPrefix + strings.Repeat("a", 65)}, big.NewInt(1), "", ErrNoAccount},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &x509.Certificate{SerialNumber: tc.serial, RawSubject: rawName(t, []pkix.AttributeTypeAndValue{atv(oidCN, "x")})}
			for _, u := range tc.uris {
				c.URIs = append(c.URIs, uri(t, u))
			}
			id, err := IdentityOf(c)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err == nil && (id.Account != tc.account || id.Serial.String() != tc.serial.Text(16) || id.Subject != "CN=x") {
				t.Fatalf("%+v", id)
			}
		})
	}
}

// TestIdentityOfPkidCertificate: the identity of a certificate made the way
// pkid's issuance makes them (see internal/issuance/client.go).
func TestIdentityOfPkidCertificate(t *testing.T) {
	now := time.Now()
	inter := newRoot(t, "Test Root", now).intermediate(t, "Test Intermediate", now)
	c := inter.leaf(t, account, now, "").leaf
	id, err := IdentityOf(c)
	if err != nil {
		t.Fatal(err)
	}
	if id.Account != account || id.Subject != `CN=payments-client,O=Acme\, Inc.` || id.Serial.String() != c.SerialNumber.Text(16) {
		t.Fatalf("%+v", id)
	}
}
