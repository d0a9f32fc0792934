package pki

import (
	"errors"
	"fmt"
	"time"
)

// Kind names a class of refusal. It becomes the last part of the problem
// document's type URI, so its values are part of pkid's interface.
type Kind string

// Kinds of malformed requests.
const (
	KindMalformed             Kind = "malformed"
	KindBadCSR                Kind = "badCSR"
	KindBadPublicKey          Kind = "badPublicKey"
	KindBadSignatureAlgorithm Kind = "badSignatureAlgorithm"
	KindBadRevocationReason   Kind = "badRevocationReason"
)

// Kinds of policy refusals.
const (
	KindNotEnterprise      Kind = "unauthorized"
	KindAccountSuspended   Kind = "accountSuspended"
	KindRejectedIdentifier Kind = "rejectedIdentifier"
	KindQuotaExceeded      Kind = "quotaExceeded"
	KindForbidden          Kind = "forbidden"
)

// Kinds of state conflicts.
const (
	KindCertificateRevoked Kind = "certificateRevoked"
	KindCertificateExpired Kind = "certificateExpired"
	KindAlreadyReplaced    Kind = "alreadyReplaced"
	KindNotYetValid        Kind = "certificateNotYetValid"
	KindAlreadyExists      Kind = "alreadyExists"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrNotFound: no such object, or it belongs to another account. The two
	// cases are deliberately one error so that they cannot be told apart.
	ErrNotFound = errors.New("not found")
	// ErrUnauthenticated: the credential is missing, malformed, forged,
	// expired or revoked.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUnavailable: a dependency (database, key store) cannot be reached.
	// pkid fails closed on it.
	ErrUnavailable = errors.New("a dependency is unavailable")
	// ErrSerialCollision: the serial drawn for a new certificate exists
	// already. Never expected with 128 random bits; it means the RNG is broken.
	ErrSerialCollision = errors.New("serial number already used")
)

// RequestError reports a request that is malformed: bad JSON, a bad CSR, a
// weak key. Detail says what is wrong in words a client can act on; it never
// echoes the offending bytes.
type RequestError struct {
	Kind   Kind
	Detail string
}

func (e *RequestError) Error() string { return string(e.Kind) + ": " + e.Detail }

// PolicyError reports a well-formed request that policy forbids: the account
// is not on the Enterprise plan or is suspended, a name is not allowed, a cap
// is reached.
type PolicyError struct {
	Kind   Kind
	Title  string // a short sentence for humans, stable per Kind
	Detail string
}

func (e *PolicyError) Error() string { return string(e.Kind) + ": " + e.Detail }

// ConflictError reports a request that the object's current state forbids,
// such as renewing a revoked certificate.
type ConflictError struct {
	Kind   Kind
	Detail string
}

func (e *ConflictError) Error() string { return string(e.Kind) + ": " + e.Detail }

// RateLimitError reports a request refused because a rate limit or quota was
// hit; it may be retried after RetryAfter.
type RateLimitError struct {
	Detail     string
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limited: %s (retry after %s)", e.Detail, e.RetryAfter)
}

// Malformed is shorthand for a RequestError of kind malformed.
func Malformed(format string, args ...any) error {
	return &RequestError{Kind: KindMalformed, Detail: fmt.Sprintf(format, args...)}
}
