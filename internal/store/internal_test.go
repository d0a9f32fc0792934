package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pkid/pkid/internal/pki"
)

func TestMapErr(t *testing.T) {
	pgErr := func(code, constraint string) error {
		return fmt.Errorf("exec: %w", &pgconn.PgError{Code: code, ConstraintName: constraint, Message: "m"})
	}
	unknown := errors.New("cannot encode")
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"no rows", fmt.Errorf("scan: %w", pgx.ErrNoRows), pki.ErrNotFound},
		{"duplicate serial", pgErr(codeUniqueViolation, "certificates_pkey"), pki.ErrSerialCollision},
		{"duplicate issuer serial", pgErr(codeUniqueViolation, "certificates_issuer_id_serial_key"), pki.ErrSerialCollision},
		{"duplicate username", pgErr(codeUniqueViolation, "administrators_username_key"), pki.ErrAlreadyExists},
		{"missing parent row", pgErr(codeForeignKeyViolation, "tokens_account_id_fkey"), pki.ErrNotFound},
		{"not a uuid", pgErr(codeInvalidText, ""), pki.ErrNotFound},
		{"connection failure", pgErr("08006", ""), pki.ErrUnavailable},
		{"admin shutdown", pgErr(codeAdminShutdown, ""), pki.ErrUnavailable},
		{"starting up", pgErr(codeCannotConnectNow, ""), pki.ErrUnavailable},
		{"too many connections", pgErr(codeTooManyConnections, ""), pki.ErrUnavailable},
		{"read-only standby", pgErr(codeReadOnlyTransaction, ""), pki.ErrUnavailable},
		{"connection lost", fmt.Errorf("receive: %w", io.ErrUnexpectedEOF), pki.ErrUnavailable},
		{"deadline", fmt.Errorf("acquire: %w", context.DeadlineExceeded), pki.ErrUnavailable},
		{"cancelled", fmt.Errorf("acquire: %w", context.Canceled), context.Canceled},
		{"check violation is a bug, not the client's", pgErr("23514", "certificates_check"), nil},
		{"unrecognised", unknown, unknown},
		{"pki error from a transaction", pki.ErrKeyBlocked, pki.ErrKeyBlocked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mapErr(tt.err)
			if tt.want == nil {
				for _, s := range []error{pki.ErrNotFound, pki.ErrUnavailable, pki.ErrAlreadyExists, pki.ErrSerialCollision} {
					if errors.Is(got, s) {
						t.Fatalf("mapErr = %v, mapped to %v", got, s)
					}
				}
				return
			}
			if !errors.Is(got, tt.want) {
				t.Fatalf("mapErr = %v, want %v", got, tt.want)
			}
			if again := mapErr(got); again != got {
				t.Errorf("mapping twice changed %v to %v", got, again)
			}
		})
	}
	if mapErr(nil) != nil {
		t.Error("mapErr(nil) != nil")
	}
	var re *pki.RequestError
	if !errors.As(mapErr(pgErr(codeUntranslatable, "")), &re) || re.Kind != pki.KindMalformed {
		t.Error("NUL in text is not a malformed request")
	}
}

func TestCursorRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		at     time.Time
		serial pki.Serial
	}{
		{"now", time.Now().Truncate(time.Microsecond), pki.MustNewSerial()},
		{"epoch", time.Unix(0, 0), "1"},
		{"far future", time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), "7fffffffffffffffffffffffffffffffffffffff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := encodeCursor(tt.at, tt.serial)
			at, serial, err := decodeCursor(c)
			if err != nil || !at.Equal(tt.at) || serial != tt.serial {
				t.Fatalf("decodeCursor(encodeCursor(%v, %s)) = %v, %s, %v", tt.at, tt.serial, at, serial, err)
			}
		})
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(time.Now(), pki.MustNewSerial()))
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, s string) {
		at, serial, err := decodeCursor(s)
		if err != nil {
			var re *pki.RequestError
			if !errors.As(err, &re) || re.Kind != pki.KindMalformed {
				t.Fatalf("decodeCursor(%q) = %v, want a malformed RequestError", s, err)
			}
			return
		}
		if encodeCursor(at, serial) != s {
			t.Fatalf("decodeCursor accepted %q, which encodes back differently", s)
		}
	})
}

func TestReplaceEscapedNUL(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a":"\u0000"}`, `{"a":"\ufffd"}`},
		{`{"a":"x\u0000y\u0000"}`, `{"a":"x\ufffdy\ufffd"}`},
		{`{"a":"\\u0000"}`, `{"a":"\\u0000"}`},       // a backslash, then the text u0000
		{`{"a":"\\\u0000"}`, `{"a":"\\\ufffd"}`},     // a backslash, then NUL
		{`{"a":"\u00001"}`, `{"a":"\ufffd1"}`},       // NUL then "1"
		{`{"a":"\n\"\u0001"}`, `{"a":"\n\"\u0001"}`}, // other escapes untouched
		{`{}`, `{}`},
	}
	for _, tt := range tests {
		if got := string(replaceEscapedNUL([]byte(tt.in))); got != tt.want {
			t.Errorf("replaceEscapedNUL(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestValidUUID(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"0b6c3f0e-51a4-4b1e-9d36-2f6c3e1d2a4b", true},
		{"0B6C3F0E-51A4-4B1E-9D36-2F6C3E1D2A4B", true},
		{"0b6c3f0e51a44b1e9d362f6c3e1d2a4b", false},
		{"0b6c3f0e-51a4-4b1e-9d36-2f6c3e1d2a4", false},
		{"0b6c3f0e-51a4-4b1e-9d36_2f6c3e1d2a4b", false},
		{"0b6c3f0e-51a4-4b1e-9d36-2f6c3e1d2a4g", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := validUUID(tt.in); got != tt.want {
			t.Errorf("validUUID(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
