// Package auth decides who is calling pkid. It hashes and checks
// administrators' passwords (argon2id), keeps the ES256 keys that sign pkid's
// own JWTs, mints and parses those tokens with a pinned set of parser options,
// and checks each presented token against its database record on every
// request, so that revoking a token or suspending an account takes effect at
// once.
//
// Every refusal is, or wraps, pki.ErrUnauthenticated, with a reason meant for
// logs; a database outage stays pki.ErrUnavailable so that callers fail
// closed with 503 rather than 401. The package never writes HTTP responses:
// its middleware hands errors to a function the api package supplies.
package auth
