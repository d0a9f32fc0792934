package pki

import (
	"errors"
	"time"
)

// Plan is an account's commercial plan. Only Enterprise accounts may hold
// certificates.
type Plan string

const (
	PlanEnterprise Plan = "enterprise"
	PlanStandard   Plan = "standard"
)

// Valid reports whether p is a plan pkid knows.
func (p Plan) Valid() bool { return p == PlanEnterprise || p == PlanStandard }

// AccountStatus says whether an account may use pkid at all.
type AccountStatus string

const (
	AccountActive    AccountStatus = "active"
	AccountSuspended AccountStatus = "suspended"
)

// Valid reports whether s is an account status pkid knows.
func (s AccountStatus) Valid() bool { return s == AccountActive || s == AccountSuspended }

// Account is a customer of the platform: the unit of trust and of billing.
type Account struct {
	ID        string // UUID
	Name      string
	Plan      Plan
	Status    AccountStatus
	CreatedAt time.Time
	UpdatedAt time.Time
	// Policy is the account's issuance policy, read in the same statement
	// as the rest of the account by a reader that joins it (the token check
	// that every account request makes does); nil from other readers, and
	// when the policy row is missing, an invariant broken on which issuance
	// refuses. An Account lives for one request, so Policy is as fresh as
	// Status: a change applies from the next request. It rides on the
	// account rather than on the Principal or in a value of its own because
	// it is the account's, auth passes the account on without looking at
	// it, and the use cases that apply a policy (ca's issuance and renewal)
	// take the account already. ca uses it as it is when it sets no quota
	// and otherwise reads the policy again with its quota use, in the one
	// read that it makes when Policy is nil. It is never written back.
	Policy *AccountPolicy
}

// MayHoldCertificates returns nil when the account may obtain and renew
// certificates, or the PolicyError that explains why not.
func (a Account) MayHoldCertificates() error {
	if a.Status != AccountActive {
		return &PolicyError{
			Kind:   KindAccountSuspended,
			Title:  "Account suspended",
			Detail: "this account is suspended; contact the platform's administrators",
		}
	}
	if a.Plan != PlanEnterprise {
		return &PolicyError{
			Kind:   KindNotEnterprise,
			Title:  "mTLS certificates are only available for Enterprise accounts",
			Detail: "this account is on the " + string(a.Plan) + " plan; upgrade to Enterprise to obtain client certificates",
		}
	}
	return nil
}

// CertificateState is where a certificate row is in its life in the database.
// A row is written pending, with the exact certificate-to-be linted and
// recorded, before the CA key signs; it becomes issued when the signed DER is
// stored. OCSP and CRLs treat a pending row as issued: a certificate may exist
// for it.
type CertificateState string

const (
	StatePending CertificateState = "pending"
	StateIssued  CertificateState = "issued"
)

// Status is the state of a certificate as users see it.
type Status string

const (
	StatusActive  Status = "active"
	StatusRevoked Status = "revoked"
	StatusExpired Status = "expired"
)

// Valid reports whether s is a status users may filter by.
func (s Status) Valid() bool {
	return s == StatusActive || s == StatusRevoked || s == StatusExpired
}

// Profile is the kind of certificate: pkid issues client certificates to
// accounts, and server certificates to its own TLS listener.
type Profile string

const (
	ProfileClient Profile = "client"
	ProfileServer Profile = "server"
)

// Certificate is pkid's record of one certificate it signed (or was about to).
type Certificate struct {
	Serial            Serial
	IssuerID          string
	Profile           Profile // "" means client
	AccountID         string  // "" for server certificates
	State             CertificateState
	LintDER           []byte // the certificate as linted, with a placeholder signature: the record of what was about to be signed
	DER               []byte // nil while pending
	SubjectCN         string
	SPKISHA256        []byte
	FingerprintSHA256 []byte // of DER; nil while pending
	NotBefore         time.Time
	NotAfter          time.Time
	RevokedAt         *time.Time
	RevocationReason  *RevocationReason
	RenewedFrom       *Serial
	CreatedAt         time.Time
}

// StatusAt returns the user-visible status at time now: revoked wins over
// expired, which wins over active.
func (c *Certificate) StatusAt(now time.Time) Status {
	switch {
	case c.RevokedAt != nil:
		return StatusRevoked
	case !now.Before(c.NotAfter):
		return StatusExpired
	default:
		return StatusActive
	}
}

// PrincipalKind tells account principals from administrators.
type PrincipalKind string

const (
	PrincipalAccount PrincipalKind = "account"
	PrincipalAdmin   PrincipalKind = "admin"
	PrincipalSystem  PrincipalKind = "system"
)

// Principal is who is acting: an account through one of its tokens, an
// administrator through a token or a web session, or pkid itself.
type Principal struct {
	Kind      PrincipalKind
	AccountID string // PrincipalAccount
	AdminID   string // PrincipalAdmin
	Username  string // PrincipalAdmin
	TokenID   string // the token's jti, or the web session's id
}

// Actor returns the principal as it appears in audit events, e.g.
// "account:<id>" or "admin:alice".
func (p Principal) Actor() string {
	switch p.Kind {
	case PrincipalAccount:
		return "account:" + p.AccountID
	case PrincipalAdmin:
		return "admin:" + p.Username
	default:
		return "system"
	}
}

// AuditEvent is one entry of the audit trail.
type AuditEvent struct {
	ID         int64
	OccurredAt time.Time
	Actor      string
	Action     string
	Outcome    string // "success" or "failure"
	AccountID  string // may be empty
	Serial     Serial // may be empty
	RequestID  string
	Detail     map[string]any
	// ContentHash and ChainHash are the event's link in the audit trail's
	// hash chain (SHA-256; docs/AUDIT.md), nil until the chain's linker has
	// reached it. Read-only: writers leave them nil.
	ContentHash []byte
	ChainHash   []byte
}

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// TokenKind tells account API tokens from admin API tokens. A token of one
// kind is never accepted where the other is expected.
type TokenKind string

const (
	TokenAccount TokenKind = "account"
	TokenAdmin   TokenKind = "admin"
)

// Token is pkid's record of an API token it minted. The token itself (the
// JWT) is shown once and never stored; the record, keyed by the JWT's jti, is
// what makes the token revocable.
type Token struct {
	ID        string // UUID; the JWT's jti
	Kind      TokenKind
	AccountID string // TokenAccount
	AdminID   string // TokenAdmin
	Name      string
	CreatedBy string // actor
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

// ValidAt reports whether the token may be used at time now.
func (t *Token) ValidAt(now time.Time) bool {
	return t.RevokedAt == nil && now.Before(t.ExpiresAt)
}

// Admin is an administrator of the platform.
type Admin struct {
	ID           string // UUID
	Username     string // canonical: trimmed, lower case
	PasswordHash string // argon2id, PHC string format
	CreatedAt    time.Time
}

// CertificateFilter selects certificates for listing. Zero fields do not
// filter; the fields that are set must all match. Results are ordered by
// Sort, newest first by default.
type CertificateFilter struct {
	AccountID string
	Status    Status
	Now       time.Time // the instant Status and ExpiringBefore are evaluated at
	Cursor    string    // opaque, from a previous page of the same Sort
	Limit     int

	// CommonName selects certificates whose subject common name contains
	// it, ignoring case (a prefix where the database lacks pg_trgm; see
	// migrations/000009_inventory_indexes.up.sql).
	CommonName string
	// SerialPrefix selects serials that begin with it: canonical hex (lower
	// case, no separators, no leading zeros), as pki.ParseSerial writes it.
	SerialPrefix string
	// FingerprintSHA256 and SPKISHA256, 32 bytes each, select exactly: the
	// SHA-256 of the certificate's DER, of its SubjectPublicKeyInfo.
	FingerprintSHA256 []byte
	SPKISHA256        []byte
	// ExpiringBefore selects certificates active at Now whose notAfter is
	// before it: the "expiring soon" view.
	ExpiringBefore time.Time
	Sort           CertificateSort
}

// CertificateSort is the order of a certificate listing. A cursor belongs
// to the order it was made in.
type CertificateSort string

const (
	// SortNewest lists the newest certificates first (creation time, then
	// serial, descending). It is the default.
	SortNewest CertificateSort = "created_at"
	// SortNotAfter lists the soonest-expiring certificates first (notAfter,
	// then serial, ascending).
	SortNotAfter CertificateSort = "not_after"
)

// Valid reports whether s is an order pkid lists in ("" is SortNewest).
func (s CertificateSort) Valid() bool { return s == "" || s == SortNewest || s == SortNotAfter }

// AuditFilter selects audit events, newest first (oldest first when
// Ascending is set).
type AuditFilter struct {
	AccountID string
	Limit     int
	// Actor and Action, when set, select events with exactly that actor
	// ("admin:alice") or action ("certificate.revoked"); BeforeID, when
	// positive, selects events older than that id (the next page).
	Actor    string
	Action   string
	BeforeID int64
	// Since and Until, when set, select events that occurred at or after
	// Since and before Until. AfterID, when positive, selects events newer
	// than that id: the next page of an Ascending listing.
	Since     time.Time
	Until     time.Time
	AfterID   int64
	Ascending bool
}

// AuditChainHead is the newest link of the audit trail's hash chain
// (docs/AUDIT.md): the last event id it covers and the chain hash there,
// both zero before the first link. Unlinked counts the committed events
// above it that the linker has not reached yet.
type AuditChainHead struct {
	ID       int64
	Hash     []byte
	Unlinked int64
}

// Sentinels for public keys that may not be certified.
var (
	// ErrKeyBlocked: the key was revoked for keyCompromise.
	ErrKeyBlocked = errors.New("public key is forbidden: it was reported compromised")
	// ErrKeyInUse: the key is certified for another account.
	ErrKeyInUse = errors.New("public key is bound to another account")
	// ErrAlreadyExists: a unique name (administrator username) is taken.
	ErrAlreadyExists = errors.New("already exists")
)

// IssuerKind is the role of a CA certificate in pkid's hierarchy.
type IssuerKind string

const (
	IssuerRoot         IssuerKind = "root"
	IssuerIntermediate IssuerKind = "intermediate"
	IssuerOCSP         IssuerKind = "ocsp" // delegated OCSP responder
)

// IssuerRecord is a CA certificate as stored: the certificate and its private
// key, sealed (encrypted PKCS#8) or referenced in an HSM.
type IssuerRecord struct {
	ID           string // lowercase hex SHA-256 of CertificateDER
	Kind         IssuerKind
	ParentID     string // "" for the root
	Certificate  []byte // DER
	EncryptedKey []byte // PEM "ENCRYPTED PRIVATE KEY"; nil when KeyURI is set
	KeyURI       string // PKCS#11 URI; "" when EncryptedKey is set
	Subject      string
	NotBefore    time.Time
	NotAfter     time.Time
	CreatedAt    time.Time
	RetiredAt    *time.Time
	// Generation numbers intermediates, 1 for the one `pkid init` made, one
	// more for each `pkid ca rotate`; other kinds have 1.
	Generation int
	// SupersededAt is when a newer intermediate took over issuance; nil for
	// the current intermediate and for other kinds.
	SupersededAt *time.Time
}

// TokenKeyRecord is a stored signing key for pkid's own JWTs.
type TokenKeyRecord struct {
	KID          string
	Algorithm    string // "ES256"
	EncryptedKey []byte // PEM "ENCRYPTED PRIVATE KEY"
	CreatedAt    time.Time
	RetiredAt    *time.Time
}

// OCSPResponse is a pre-signed OCSP response about one certificate, as
// stored and served. DER is a complete OCSPResponse with a SHA-1 CertID, the
// form RFC 5019 clients and nginx ask with; responses for other CertID hash
// algorithms are derived from it.
type OCSPResponse struct {
	Serial     Serial
	IssuerID   string
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
	UpdatedAt  time.Time // version: set by the database on every write
}

// CRL is a signed certificate revocation list as stored and served.
type CRL struct {
	IssuerID   string
	Number     int64
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
	Entries    int
}

// RevokedEntry is one revoked certificate as a CRL lists it.
type RevokedEntry struct {
	Serial    Serial
	RevokedAt time.Time
	Reason    RevocationReason
}

// Revocation is one change of a certificate's revocation status, to be
// applied only if the certificate is still as the caller read it (Prev*), so
// that concurrent revocations make exactly one change.
type Revocation struct {
	Serial        Serial
	PrevRevokedAt *time.Time        // nil: not revoked when read
	PrevReason    *RevocationReason // nil: not revoked when read
	RevokedAt     time.Time         // unchanged from PrevRevokedAt when only the reason changes
	Reason        RevocationReason
	Response      *OCSPResponse // the new pre-signed response saying so
	Event         AuditEvent
}

// BlockedKey puts a public key on the block list: it may never be certified
// again.
type BlockedKey struct {
	SPKISHA256 []byte
	Serial     Serial // the certificate whose revocation blocked it
	Event      AuditEvent
}
