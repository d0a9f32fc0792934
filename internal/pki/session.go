package pki

import "time"

// Session is an administrator's signed-in session of the admin web page, as
// stored. The session id itself lives only in the browser's cookie; pkid
// keeps its SHA-256, so that reading the table does not hand out sessions.
type Session struct {
	IDHash     []byte // SHA-256 of the session id
	AdminID    string
	Username   string // the administrator's, read with the session
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time // the absolute end, whatever the activity
	RemoteAddr string
	UserAgent  string
}

// AccountFilter selects accounts for listing, newest first. Zero fields do
// not filter.
type AccountFilter struct {
	// Text matches accounts whose name contains it, ignoring case, or whose
	// id it is.
	Text   string
	Plan   Plan
	Status AccountStatus
	Offset int
	Limit  int
}
