package api

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// certificateJSON is the certificate object of CONTRACT.md.
type certificateJSON struct {
	Serial            string     `json:"serial"`
	Status            pki.Status `json:"status"`
	Certificate       string     `json:"certificate"`
	Chain             string     `json:"chain"`
	NotBefore         time.Time  `json:"not_before"`
	NotAfter          time.Time  `json:"not_after"`
	FingerprintSHA256 string     `json:"fingerprint_sha256"`
	AccountID         string     `json:"account_id"`
	CommonName        string     `json:"common_name"`
	SPKISHA256        string     `json:"spki_sha256"`
	IssuerID          string     `json:"issuer_id"`
	CreatedAt         time.Time  `json:"created_at"`
	RevokedAt         *time.Time `json:"revoked_at,omitempty"`
	RevocationReason  string     `json:"revocation_reason,omitempty"`
	RenewedFrom       string     `json:"renewed_from,omitempty"`
}

// certificateView is c as the API shows it. A record that was never signed
// (a pending row that a crash left behind, which only an administrator's
// revocation ever returns) has no certificate and no fingerprint: both are
// empty strings, never an empty PEM block.
func certificateView(c *pki.Certificate, chainPEM string, now time.Time) certificateJSON {
	var certPEM string
	if len(c.DER) > 0 {
		certPEM = pemString("CERTIFICATE", c.DER)
	}
	v := certificateJSON{
		Serial:            c.Serial.String(),
		Status:            c.StatusAt(now),
		Certificate:       certPEM,
		Chain:             chainPEM,
		NotBefore:         c.NotBefore.UTC(),
		NotAfter:          c.NotAfter.UTC(),
		FingerprintSHA256: hex.EncodeToString(c.FingerprintSHA256),
		AccountID:         c.AccountID,
		CommonName:        c.SubjectCN,
		SPKISHA256:        hex.EncodeToString(c.SPKISHA256),
		IssuerID:          c.IssuerID,
		CreatedAt:         c.CreatedAt.UTC(),
	}
	if c.RevokedAt != nil {
		t := c.RevokedAt.UTC()
		v.RevokedAt = &t
	}
	if c.RevocationReason != nil {
		v.RevocationReason = c.RevocationReason.String()
	}
	if c.RenewedFrom != nil {
		v.RenewedFrom = c.RenewedFrom.String()
	}
	return v
}

// pemString returns what pem.EncodeToMemory returns for a block of type typ
// holding der, without headers, as a string built in one allocation: every
// certificate response carries one, and encoding/pem's writer chain costs
// several allocations and a copy more.
func pemString(typ string, der []byte) string {
	const lineLen = 64 // encoding/pem's line length: 48 bytes of der a line
	begin, end := "-----BEGIN "+typ+"-----\n", "-----END "+typ+"-----\n"
	n := base64.StdEncoding.EncodedLen(len(der))
	var sb strings.Builder
	sb.Grow(len(begin) + n + (n+lineLen-1)/lineLen + len(end))
	sb.WriteString(begin)
	var line [lineLen]byte
	for len(der) > 0 {
		chunk := der[:min(len(der), lineLen/4*3)]
		der = der[len(chunk):]
		base64.StdEncoding.Encode(line[:], chunk)
		sb.Write(line[:base64.StdEncoding.EncodedLen(len(chunk))])
		sb.WriteByte('\n')
	}
	sb.WriteString(end)
	return sb.String()
}

// accountJSON is the account object of CONTRACT.md.
type accountJSON struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Plan      pki.Plan          `json:"plan"`
	Status    pki.AccountStatus `json:"status"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

func accountView(a *pki.Account) accountJSON {
	return accountJSON{ID: a.ID, Name: a.Name, Plan: a.Plan, Status: a.Status,
		CreatedAt: a.CreatedAt.UTC(), UpdatedAt: a.UpdatedAt.UTC()}
}

// tokenJSON describes a token. Token (the JWT) is set only in the answer to
// minting: it is never stored and cannot be shown again.
type tokenJSON struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Token     string     `json:"token,omitempty"`
	AccountID string     `json:"account_id"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func tokenView(t *pki.Token, jwt string) tokenJSON {
	return tokenJSON{ID: t.ID, Name: t.Name, Token: jwt, AccountID: t.AccountID, CreatedBy: t.CreatedBy,
		CreatedAt: t.CreatedAt.UTC(), ExpiresAt: t.ExpiresAt.UTC(), RevokedAt: t.RevokedAt}
}

// auditJSON is one audit event, with its link in the hash chain (lowercase
// hex SHA-256) once the linker has reached it.
type auditJSON struct {
	ID          int64          `json:"id"`
	OccurredAt  time.Time      `json:"occurred_at"`
	Actor       string         `json:"actor"`
	Action      string         `json:"action"`
	Outcome     string         `json:"outcome"`
	AccountID   string         `json:"account_id,omitempty"`
	Serial      string         `json:"serial,omitempty"`
	RequestID   string         `json:"request_id,omitempty"`
	Detail      map[string]any `json:"detail,omitempty"`
	ContentHash string         `json:"content_hash,omitempty"`
	ChainHash   string         `json:"chain_hash,omitempty"`
}

func auditView(e pki.AuditEvent) auditJSON {
	return auditJSON{ID: e.ID, OccurredAt: e.OccurredAt.UTC(), Actor: e.Actor, Action: e.Action, Outcome: e.Outcome,
		AccountID: e.AccountID, Serial: e.Serial.String(), RequestID: e.RequestID, Detail: e.Detail,
		ContentHash: hex.EncodeToString(e.ContentHash), ChainHash: hex.EncodeToString(e.ChainHash)}
}

// chainJSON is the head of the audit trail's hash chain: the last event id
// it covers and the chain hash there (0 and "" before the first link), and
// how many committed events above it are not linked yet.
type chainJSON struct {
	HeadID         int64  `json:"head_id"`
	HeadHash       string `json:"head_hash"`
	UnlinkedEvents int64  `json:"unlinked_events"`
}

func chainView(h pki.AuditChainHead) chainJSON {
	return chainJSON{HeadID: h.ID, HeadHash: hex.EncodeToString(h.Hash), UnlinkedEvents: h.Unlinked}
}
