package pki

import "time"

// KeyType names a kind of subscriber key as an account policy lists it:
// the algorithm and its size or curve.
type KeyType string

// The key types pkid can certify (internal/policy accepts exactly these).
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"
	KeyRSA2048   KeyType = "rsa-2048"
	KeyRSA3072   KeyType = "rsa-3072"
	KeyRSA4096   KeyType = "rsa-4096"
)

// AccountPolicy is what one account may have certified, and how much. Every
// account has one (the database gives each new account the defaults);
// administrators change it. A change applies to requests from then on and
// never alters a certificate already issued.
type AccountPolicy struct {
	AccountID string
	// AllowedNames are the rules a certificate's common name and each of its
	// DNS names must match: "*" (any name the CA accepts), an exact DNS name,
	// or "*.suffix" (any name below suffix). Names are lower-case A-labels
	// and compared as strings. An empty list allows no common or DNS name.
	AllowedNames []string
	// AllowURISANs permits URI SANs, and only SPIFFE IDs within the
	// account's own namespace, spiffe://<trust domain>/account/<id>.
	AllowURISANs bool
	// KeyTypes are the subscriber keys the account may have certified: a
	// non-empty subset of what the CA accepts.
	KeyTypes []KeyType
	// MaxValidityDays caps a certificate's lifetime; 0 means the CA's
	// maximum, which also caps any value set here.
	MaxValidityDays int
	// MaxActiveCertificates caps the certificates that are neither expired
	// nor revoked (those listed as active) when a new one is requested; a
	// renewal, which replaces a certificate, is not refused by it. 0 means
	// no cap.
	MaxActiveCertificates int
	// MaxIssuancesPerHour caps the certificates (renewals included) created
	// in any sliding hour; 0 means no limit.
	MaxIssuancesPerHour int
	UpdatedAt           time.Time
	UpdatedBy           string // the actor of the last change; "system" for the defaults
}

// QuotaUsage is an account's use of its quotas, counted by the database
// when an issuance or renewal is requested. A quota the policy does not set
// is not counted, and counts stop just past the cap, so that counting costs
// no more than the cap allows.
type QuotaUsage struct {
	// Active counts the account's certificates, pending or issued, that are
	// neither revoked nor expired, up to MaxActiveCertificates+1.
	Active int
	// HourFullSince is zero unless the hour before Now holds at least
	// MaxIssuancesPerHour of the account's certificates; then it is when
	// the oldest of the newest MaxIssuancesPerHour of them was created. One
	// more certificate fits an hour after that.
	HourFullSince time.Time
	// Now is the database's clock, which stamps certificates' creation and
	// so is the clock of the hourly window on every node.
	Now time.Time
}
