package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/policy"
)

// Audit action of a policy change.
const ActionPolicyUpdated = "account.policy.updated"

// PolicyStore is what per-account policy needs from the database.
type PolicyStore interface {
	// AccountPolicy returns an account's policy, or ErrNotFound when there
	// is no such account.
	AccountPolicy(ctx context.Context, accountID string) (*pki.AccountPolicy, error)
	// IssuancePolicy returns an account's policy and its use of the
	// policy's quotas (certificates active at now), in one read.
	IssuancePolicy(ctx context.Context, accountID string, now time.Time) (*pki.AccountPolicy, *pki.QuotaUsage, error)
	// UpdateAccountPolicy lets change edit the account's policy and complete
	// ev, and saves both in one transaction; ErrNotFound when there is no
	// such account.
	UpdateAccountPolicy(ctx context.Context, accountID string, change func(*pki.AccountPolicy, *pki.AuditEvent) error, ev pki.AuditEvent) (*pki.AccountPolicy, error)
}

// accountRules is an account's policy as read for one request, with what
// the CSR check needs from it.
type accountRules struct {
	policy *pki.AccountPolicy
	limits policy.Limits // the CA's limits, with the account's URI namespace when it may hold URI SANs
}

// accountRules returns acct's policy and refuses the request when a quota
// is used up. The policy is the one that came with the account when the
// request was authenticated (acct.Policy, read in the same statement as the
// token's account), when it came and sets no quota: then the request makes
// no read for it. Otherwise (it sets a quota, or the account came from
// elsewhere, or its policy row is missing) the policy is read here with its
// quota use, in one read, and that read is what applies, so that the caps
// and the counts are of one policy. Either way the policy is read for this
// request, so a change applies from the next one; quotas are counted by the
// database, with its clock; and a missing policy row refuses.
//
// replaces is the certificate a renewal replaces, nil for an issuance: a
// renewal counts towards the hourly limit but is not refused by the cap on
// active certificates, since it replaces one (so an account at its cap can
// always renew; the old certificate stops counting when it is revoked,
// revoke_previous, or expires). Quotas are checked before the CSR is looked
// at, so that a client over its quota costs no signature verification.
func (s *Service) accountRules(ctx context.Context, acct *pki.Account, replaces *pki.Certificate) (*accountRules, error) {
	pol, usage, err := s.issuancePolicy(ctx, acct)
	if errors.Is(err, pki.ErrNotFound) {
		// Every account has a policy row (a trigger makes it): fail closed.
		return nil, fmt.Errorf("ca: account %s has no issuance policy; refusing to issue: %v", acct.ID, err)
	}
	if err != nil {
		return nil, err
	}
	if err := checkQuotas(pol, usage, replaces != nil); err != nil {
		return nil, err
	}
	r := &accountRules{policy: pol, limits: s.opts.Limits}
	r.limits.URINamespace = s.uriNamespace(pol)
	return r, nil
}

// issuancePolicy returns acct's policy and its use of the policy's quotas:
// the policy acct carries when it sets no quota (whose use is then nothing
// to count), else the policy and its use as read now.
func (s *Service) issuancePolicy(ctx context.Context, acct *pki.Account) (*pki.AccountPolicy, *pki.QuotaUsage, error) {
	if pol := acct.Policy; pol != nil && pol.MaxActiveCertificates <= 0 && pol.MaxIssuancesPerHour <= 0 {
		if pol.AccountID != acct.ID {
			// The store joins the two on this key; anything else is a bug
			// that must not apply one account's policy to another.
			return nil, nil, fmt.Errorf("ca: account %s carries the policy of account %s; refusing to issue", acct.ID, pol.AccountID)
		}
		return pol, &pki.QuotaUsage{}, nil
	}
	return s.store.IssuancePolicy(ctx, acct.ID, s.opts.Now())
}

// checkQuotas refuses a request that would take the account past a quota:
// the active-certificate cap (new certificates only) is a PolicyError of
// kind quotaExceeded (403), the hourly limit a RateLimitError (429) whose
// RetryAfter is when the oldest certificate of the full window leaves it.
// Both name the quota.
func checkQuotas(pol *pki.AccountPolicy, u *pki.QuotaUsage, renewal bool) error {
	if limit := pol.MaxActiveCertificates; limit > 0 && !renewal {
		if u.Active >= limit {
			return &pki.PolicyError{Kind: pki.KindQuotaExceeded, Title: "Quota exceeded",
				Detail: fmt.Sprintf("this account holds as many active certificates as its policy allows (max_active_certificates = %d); "+
					"revoke certificates it no longer uses, or ask the platform's administrators to raise the quota", limit)}
		}
	}
	if limit := pol.MaxIssuancesPerHour; limit > 0 && !u.HourFullSince.IsZero() {
		retry := max(u.HourFullSince.Add(time.Hour).Sub(u.Now), time.Second)
		return &pki.RateLimitError{
			Detail: fmt.Sprintf("this account has obtained %d certificates in the last hour, the most its policy allows (max_issuances_per_hour = %d); "+
				"retry in %d seconds", limit, limit, int((retry+time.Second-1)/time.Second)),
			RetryAfter: retry,
		}
	}
	return nil
}

// check applies the account's name and key rules to what a CSR (or the
// certificate being renewed) asks for. URI SANs were checked against the
// namespace already, by CheckCSR or renewalURIs.
func (r *accountRules) check(c *policy.Checked) error {
	if err := policy.CheckKeyType(r.policy, c.PublicKey); err != nil {
		return err
	}
	return policy.CheckNames(r.policy, c.CommonName, c.DNSNames)
}

// validity caps a validity already capped by the CA with the account's
// maximum.
func (r *accountRules) validity(d time.Duration) time.Duration {
	return policy.CapValidity(r.policy, d)
}

// uriNamespace returns the account's URI SAN namespace when its policy
// allows URI SANs and the deployment has a trust domain, else "".
func (s *Service) uriNamespace(pol *pki.AccountPolicy) string {
	if !pol.AllowURISANs {
		return ""
	}
	return s.URINamespace(pol.AccountID)
}

// URINamespace returns the SPIFFE ID under which an account's URI SANs
// live, spiffe://<trust domain>/account/<id>, the trust domain being the
// host of the public URL; "" when that host cannot be a trust domain.
func (s *Service) URINamespace(accountID string) string {
	td, err := policy.TrustDomain(s.opts.PublicURL)
	if err != nil {
		return ""
	}
	return policy.URINamespace(td, accountID)
}

// renewalURIs settles the URI SANs of a renewal of old. Without a new CSR
// they are old's own (pkid's urn:pkid:account URI aside), held to today's
// namespace rule: a policy that no longer allows them refuses the renewal.
// A rekey's CSR, already checked against the namespace, may name only URIs
// that old holds, as for DNS names.
func renewalURIs(old *x509.Certificate, checked *policy.Checked, rekey bool, namespace string) error {
	var held []*url.URL
	for _, u := range old.URIs {
		if !strings.HasPrefix(u.String(), issuance.AccountURIPrefix) {
			held = append(held, u)
		}
	}
	if !rekey {
		for _, u := range held {
			if err := policy.CheckURI(u, namespace); err != nil {
				return err
			}
		}
		checked.URIs = held
		return nil
	}
	for _, u := range checked.URIs {
		if !slices.ContainsFunc(held, func(h *url.URL) bool { return h.String() == u.String() }) {
			return &pki.PolicyError{Kind: pki.KindRejectedIdentifier, Title: "Name not allowed",
				Detail: fmt.Sprintf("URI SAN %q is not in the certificate being renewed", u.String())}
		}
	}
	return nil
}

// uriStrings returns the URIs as text, for the audit trail.
func uriStrings(us []*url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}

// refusal audits err when it is a refusal and returns it; any other error
// (the database is down) is returned as it is, unaudited, since nothing was
// decided.
func (s *Service) refusal(ctx context.Context, ev pki.AuditEvent, action string, err error) error {
	if isRefusal(err) {
		return s.auditRefusal(ctx, ev, action, err)
	}
	return err
}

// KeyTypes returns every key type the CA accepts: what an account policy
// may choose from.
func (s *Service) KeyTypes() []pki.KeyType { return policy.CAKeyTypes() }

// MaxValidityDays is the CA's maximum validity in whole days: the most an
// account policy's max_validity_days may say.
func (s *Service) MaxValidityDays() int {
	return int(s.maxValidity() / (24 * time.Hour))
}

func (s *Service) maxValidity() time.Duration {
	if s.opts.MaxValidity > 0 {
		return s.opts.MaxValidity
	}
	return issuance.MaxClientValidity
}

// Policy returns an account's issuance policy; ErrNotFound when there is
// no such account.
func (s *Service) Policy(ctx context.Context, accountID string) (*pki.AccountPolicy, error) {
	return s.store.AccountPolicy(ctx, accountID)
}

// SetPolicy replaces an account's issuance policy with pol (pol.AccountID
// and the Updated fields are ignored) for administrator p, and audits the
// change, with each field's old and new value, in the same transaction. The
// new policy applies to the account's requests from then on; certificates
// already issued are not changed (PolicyMisfits lists those that no longer
// fit). A policy the CA could not honour is a *pki.RequestError.
func (s *Service) SetPolicy(ctx context.Context, p pki.Principal, accountID string, pol pki.AccountPolicy, requestID string) (*pki.AccountPolicy, error) {
	if p.Kind != pki.PrincipalAdmin && p.Kind != pki.PrincipalSystem {
		return nil, &pki.PolicyError{Kind: pki.KindForbidden, Title: "Forbidden", Detail: "only administrators may change an account's policy"}
	}
	if pol.AllowedNames == nil {
		pol.AllowedNames = []string{}
	}
	if err := policy.CheckAccountPolicy(&pol, s.MaxValidityDays()); err != nil {
		return nil, err
	}
	if pol.AllowURISANs {
		if _, err := policy.TrustDomain(s.opts.PublicURL); err != nil {
			return nil, pki.Malformed("allow_uri_sans cannot be set: the host of pkid's public URL is not a SPIFFE trust domain")
		}
	}
	ev := pki.AuditEvent{Actor: p.Actor(), Action: ActionPolicyUpdated, Outcome: pki.OutcomeSuccess, AccountID: accountID, RequestID: requestID}
	return s.store.UpdateAccountPolicy(ctx, accountID, func(cur *pki.AccountPolicy, ev *pki.AuditEvent) error {
		ev.Detail = policyChanges(cur, &pol)
		cur.AllowedNames, cur.AllowURISANs, cur.KeyTypes = pol.AllowedNames, pol.AllowURISANs, pol.KeyTypes
		cur.MaxValidityDays, cur.MaxActiveCertificates, cur.MaxIssuancesPerHour = pol.MaxValidityDays, pol.MaxActiveCertificates, pol.MaxIssuancesPerHour
		return nil
	}, ev)
}

// policyChanges returns, for the audit trail, each field that next changes
// with its old and new value, named as in the admin API.
func policyChanges(cur, next *pki.AccountPolicy) map[string]any {
	out := map[string]any{}
	change := func(field string, from, to any, same bool) {
		if !same {
			out[field] = map[string]any{"from": from, "to": to}
		}
	}
	change("allowed_names", cur.AllowedNames, next.AllowedNames, slices.Equal(cur.AllowedNames, next.AllowedNames))
	change("allow_uri_sans", cur.AllowURISANs, next.AllowURISANs, cur.AllowURISANs == next.AllowURISANs)
	change("key_types", cur.KeyTypes, next.KeyTypes, slices.Equal(cur.KeyTypes, next.KeyTypes))
	change("max_validity_days", cur.MaxValidityDays, next.MaxValidityDays, cur.MaxValidityDays == next.MaxValidityDays)
	change("max_active_certificates", cur.MaxActiveCertificates, next.MaxActiveCertificates, cur.MaxActiveCertificates == next.MaxActiveCertificates)
	change("max_issuances_per_hour", cur.MaxIssuancesPerHour, next.MaxIssuancesPerHour, cur.MaxIssuancesPerHour == next.MaxIssuancesPerHour)
	return out
}

// Misfit is an active certificate that the account's policy would not
// issue today, with the reasons.
type Misfit struct {
	Certificate *pki.Certificate
	Reasons     []string
}

// maxMisfitScan bounds how many of an account's active certificates
// PolicyMisfits examines: the default cap on active certificates.
const maxMisfitScan = 1000

// PolicyMisfits returns the account's active certificates (newest first)
// that its current policy would not issue, for an administrator to decide
// what to do about them: changing a policy never changes or revokes a
// certificate. It examines at most the newest 1,000 active certificates;
// examined says how many it did, and complete whether that was all of them.
func (s *Service) PolicyMisfits(ctx context.Context, p pki.Principal, accountID string) (misfits []Misfit, examined int, complete bool, err error) {
	if p.Kind != pki.PrincipalAdmin && p.Kind != pki.PrincipalSystem {
		return nil, 0, false, pki.ErrNotFound
	}
	pol, err := s.store.AccountPolicy(ctx, accountID)
	if err != nil {
		return nil, 0, false, err
	}
	namespace := s.URINamespace(accountID)
	f := pki.CertificateFilter{AccountID: accountID, Status: pki.StatusActive, Now: s.opts.Now(), Limit: 500}
	for {
		page, next, err := s.store.Certificates(ctx, f)
		if err != nil {
			return nil, 0, false, err
		}
		for _, c := range page {
			if examined == maxMisfitScan {
				return misfits, examined, false, nil
			}
			examined++
			cert, err := x509.ParseCertificate(c.DER)
			if err != nil {
				return nil, 0, false, fmt.Errorf("ca: parsing stored certificate %s: %w", c.Serial, err)
			}
			if reasons := policy.Misfits(pol, cert, namespace, s.maxValidity()); len(reasons) > 0 {
				misfits = append(misfits, Misfit{Certificate: c, Reasons: reasons})
			}
		}
		if next == "" {
			return misfits, examined, true, nil
		}
		f.Cursor = next
	}
}
