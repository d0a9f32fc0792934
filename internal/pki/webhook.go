package pki

import "time"

// Webhook is an account's expiry-notification endpoint as stored. The
// secrets are sealed (see internal/sealedkey Box); only the webhook package
// opens them.
type Webhook struct {
	AccountID string
	URL       string
	// SealedSecret signs every notice; SealedPrevious, until
	// PreviousExpiresAt, signs beside it after a rotation.
	SealedSecret      []byte
	SealedPrevious    []byte
	PreviousExpiresAt *time.Time
	// NotifyDays is the account's own threshold; 0 means the deployment's
	// default.
	NotifyDays      int
	CreatedAt       time.Time
	UpdatedAt       time.Time
	UpdatedBy       string
	SecretRotatedAt time.Time
}

// DeliveryState is where a webhook notice stands.
type DeliveryState string

const (
	DeliveryPending   DeliveryState = "pending"   // to be sent, or sent again after a failure
	DeliveryDelivered DeliveryState = "delivered" // the receiver answered 2xx
	DeliveryFailed    DeliveryState = "failed"    // every attempt failed
	DeliveryCancelled DeliveryState = "cancelled" // moot before it was delivered (renewed, revoked, expired, ...)
)

// EventCertificateExpiring is the kind of notice sent when a certificate
// comes within the notice period of its notAfter without being renewed.
const EventCertificateExpiring = "certificate.expiring"

// WebhookDelivery is one notice in the outbox.
type WebhookDelivery struct {
	ID            string
	Serial        Serial
	Kind          string
	AccountID     string
	State         DeliveryState
	Attempts      int
	NextAttemptAt time.Time
	LastAttemptAt *time.Time
	LastStatus    int // HTTP status of the last attempt; 0 when it got no answer
	LastError     string
	CreatedAt     time.Time
	CompletedAt   *time.Time
}

// DueDelivery is a delivery claimed for sending, with what deciding and
// sending need: the certificate's state and the account's webhook, as they
// are now.
type DueDelivery struct {
	WebhookDelivery
	NotAfter      time.Time
	SubjectCN     string
	Revoked       bool
	Renewed       bool // an issued certificate has renewed_from = this serial
	AccountActive bool
	Webhook       *Webhook // nil: the account has no webhook any more
}

// DeliveryOutcome is what became of one claimed delivery: the row's new
// state, written with its audit event while the claim's lease holds.
type DeliveryOutcome struct {
	State         DeliveryState
	Attempts      int
	NextAttemptAt time.Time // when State is pending
	AttemptedAt   *time.Time
	LastStatus    int
	LastError     string
	CompletedAt   *time.Time // when State is not pending
	Event         AuditEvent
}
