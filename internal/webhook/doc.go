// Package webhook sends expiry notices: when a certificate of an account
// comes within the account's notice period (N days) of its notAfter without
// having been renewed, pkid POSTs a signed JSON notice to the account's
// webhook, once per certificate, retrying with exponential backoff and
// jitter, and audits every outcome.
//
// The pieces:
//
//   - Service: the administrators' use cases (set the URL and the notice
//     period, rotate the secret, remove the webhook), with the URL checks.
//   - Job: the background job every node runs. It makes one outbox row per
//     certificate due a notice (unique per certificate, so any number of
//     nodes make one), claims a due row with SELECT ... FOR UPDATE SKIP
//     LOCKED and leases it (its due time moved past the attempt), sends with
//     no transaction open, and records the outcome and its audit event if
//     the lease is still its own.
//   - Sign and Verify: the signature, a timestamped HMAC-SHA256 over
//     "timestamp.body" in the Pkid-Signature header, as Stripe signs its
//     webhooks.
//   - the HTTP client: timeouts, no redirects, bounded reads, and a dialer
//     that refuses private and loopback addresses unless told otherwise,
//     checked on the address actually dialled (after DNS).
//
// Secrets are generated here (32 random bytes), shown once, and kept sealed
// with a sealedkey.Box derived from the CA key passphrase.
package webhook
