// Package web holds the admin web page's HTML templates and static assets
// (one style sheet, one small script), embedded so that the binary serves the
// page with no files on disk and no network: nothing is loaded from a CDN.
// The handlers that use them live in internal/web.
package web

import "embed"

// FS holds templates/*.html (html/template sources: layout.html and one file
// per page) and static/* (served under /admin/static/).
//
//go:embed templates static
var FS embed.FS
