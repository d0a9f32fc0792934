// Package api holds pkid's OpenAPI description, embedded so that the binary
// serves the document it was built with (GET /openapi.yaml) and needs no file
// on disk. The Go HTTP handlers live in internal/api.
package api

import _ "embed"

// OpenAPI is api/openapi.yaml: the OpenAPI 3.1 description of pkid's HTTP
// interface, a superset of CONTRACT.md.
//
//go:embed openapi.yaml
var OpenAPI []byte
