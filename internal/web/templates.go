package web

import (
	"html/template"
	"io/fs"
	"path"
	"time"

	assets "github.com/pkid/pkid/web"
)

// funcs are the helpers templates may call. None of them returns
// template.HTML or another trusted type: everything a page shows is escaped
// for its context by html/template.
var funcs = template.FuncMap{
	// when formats an instant the same way everywhere: UTC, to the minute.
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	// whenPtr formats an optional instant.
	"whenPtr": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	// iso is the machine-readable form for <time datetime>.
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// short abbreviates an id or serial for narrow tables; the full value is
	// in the link's target and title.
	"short": func(s string) string {
		if len(s) <= 12 {
			return s
		}
		return s[:8] + "…" + s[len(s)-4:]
	},
	"add": func(a, b int) int { return a + b },
}

// parsePages parses every page with the layout and the shared pieces into
// a template set of its own, so that each page's "content" stays its own.
func parsePages() map[string]*template.Template {
	names, err := fs.Glob(assets.FS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		base := path.Base(name)
		if base == "layout.html" || base == "partials.html" {
			continue
		}
		t := template.Must(template.New(base).Funcs(funcs).ParseFS(assets.FS, "templates/layout.html", "templates/partials.html", name))
		pages[base] = t
	}
	return pages
}
