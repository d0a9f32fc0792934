// Package migrations holds pkid's SQL schema, numbered for golang-migrate and
// embedded into the binary so that `pkid migrate` needs no files on disk.
package migrations

import "embed"

// FS holds the *.up.sql and *.down.sql files.
//
//go:embed *.sql
var FS embed.FS
