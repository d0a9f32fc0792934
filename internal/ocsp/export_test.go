package ocsp

import (
	"crypto"

	"github.com/pkid/pkid/internal/pki"
)

// ParsedRequest is what parseRequest reads from a request, for the tests of
// package ocsp_test.
type ParsedRequest struct {
	Hash              crypto.Hash
	NameHash, KeyHash []byte
	Serial            []byte // INTEGER content octets
}

// ParseRequest exposes parseRequest to the fuzz test, which checks it
// against x/crypto's ParseRequest.
func ParseRequest(der []byte) (ParsedRequest, error) {
	q, err := parseRequest(der)
	return ParsedRequest{Hash: q.hash, NameHash: q.nameHash, KeyHash: q.keyHash, Serial: q.serial}, err
}

// InstallStored exposes installStored, the install of what a load, a
// catch-up or a notification read from the database.
func (c *Cache) InstallStored(r *pki.OCSPResponse) bool { return c.installStored(r) }
