package store

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pkid/pkid/internal/pki"
)

// SQLSTATE codes that the store maps to pki errors.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeInvalidText         = "22P02" // e.g. "abc" where a uuid belongs
	codeUntranslatable      = "22021" // NUL or invalid UTF-8 in text
	codeAdminShutdown       = "57P01"
	codeCrashShutdown       = "57P02"
	codeCannotConnectNow    = "57P03"
	codeTooManyConnections  = "53300"
	codeReadOnlyTransaction = "25006" // a standby after failover
	codeInvalidCatalogName  = "3D000" // database does not exist
	codeDuplicateDatabase   = "42P04"
)

// certificatesPKey is the primary key of certificates: a unique violation on
// it is a serial collision, which means the serial generator is broken.
const (
	certificatesPKey          = "certificates_pkey"
	certificatesIssuerSerialU = "certificates_issuer_id_serial_key"
)

// dbError is a driver error translated into pkid's vocabulary. It unwraps to
// both the pki sentinel (for errors.Is above the store) and the driver error
// (for the log line), and is never translated twice.
type dbError struct {
	kind  error
	cause error
}

func (e *dbError) Error() string   { return "store: " + e.kind.Error() + ": " + e.cause.Error() }
func (e *dbError) Unwrap() []error { return []error{e.kind, e.cause} }

// mapErr translates a pgx, pgconn or context error into a pki error. Errors
// it does not recognise (pki errors returned from inside a transaction, bugs
// such as an unencodable argument) come back unchanged.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var done *dbError
	if errors.As(err, &done) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return pki.ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == codeUniqueViolation &&
			(pgErr.ConstraintName == certificatesPKey || pgErr.ConstraintName == certificatesIssuerSerialU):
			return &dbError{pki.ErrSerialCollision, err}
		case pgErr.Code == codeUniqueViolation:
			return &dbError{pki.ErrAlreadyExists, err}
		case pgErr.Code == codeForeignKeyViolation:
			// The row referred to (an account, an issuer, a certificate
			// renewed from) does not exist.
			return &dbError{pki.ErrNotFound, err}
		case pgErr.Code == codeInvalidText:
			return &dbError{pki.ErrNotFound, err}
		case pgErr.Code == codeUntranslatable:
			return pki.Malformed("text contains a character that cannot be stored (NUL or invalid UTF-8)")
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == codeAdminShutdown, pgErr.Code == codeCrashShutdown,
			pgErr.Code == codeCannotConnectNow, pgErr.Code == codeTooManyConnections,
			pgErr.Code == codeReadOnlyTransaction, pgErr.Code == codeInvalidCatalogName:
			return &dbError{pki.ErrUnavailable, err}
		}
		return err
	}
	// A caller that went away is not an outage; its own error tells the
	// caller's caller what happened.
	if errors.Is(err, context.Canceled) {
		return err
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &connectErr) ||
		errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return &dbError{pki.ErrUnavailable, err}
	}
	return err
}

// validUUID reports whether s is a UUID in its canonical text form (any case),
// so that ids from URLs that cannot exist are answered without a round trip.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
