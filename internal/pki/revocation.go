package pki

import "fmt"

// RevocationReason is an RFC 5280 §5.3.1 CRLReason code.
type RevocationReason int

// The reason codes pkid uses. Code 7 is unassigned in RFC 5280; certificateHold
// (6) and removeFromCRL (8) are never used because pkid never suspends.
const (
	ReasonUnspecified          RevocationReason = 0
	ReasonKeyCompromise        RevocationReason = 1
	ReasonCACompromise         RevocationReason = 2
	ReasonAffiliationChanged   RevocationReason = 3
	ReasonSuperseded           RevocationReason = 4
	ReasonCessationOfOperation RevocationReason = 5
	ReasonPrivilegeWithdrawn   RevocationReason = 9
)

var reasonNames = map[RevocationReason]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonCACompromise:         "cACompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
}

// String returns the RFC 5280 ASN.1 name of the reason, as the API shows it.
func (r RevocationReason) String() string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// SubscriberReasons are the reasons an account may give for its own
// certificates; administrators may also use privilegeWithdrawn.
var SubscriberReasons = []RevocationReason{
	ReasonUnspecified, ReasonKeyCompromise, ReasonAffiliationChanged,
	ReasonSuperseded, ReasonCessationOfOperation,
}

// ParseRevocationReason maps an RFC 5280 reason name to its code. admin says
// whether the caller is an administrator, who may also withdraw privilege. An
// empty name means unspecified.
func ParseRevocationReason(name string, admin bool) (RevocationReason, error) {
	if name == "" {
		return ReasonUnspecified, nil
	}
	for _, r := range SubscriberReasons {
		if reasonNames[r] == name {
			return r, nil
		}
	}
	if admin && name == reasonNames[ReasonPrivilegeWithdrawn] {
		return ReasonPrivilegeWithdrawn, nil
	}
	return 0, &RequestError{Kind: KindBadRevocationReason, Detail: fmt.Sprintf("%q is not a revocation reason pkid accepts", name)}
}
