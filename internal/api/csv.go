package api

import (
	"encoding/csv"
	"encoding/hex"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/pkid/pkid/internal/pki"
)

// CSV export of the certificate inventory (GET /admin/api/certificates with
// Accept: text/csv).
const (
	// csvPageRows is how many certificates each query of an export reads:
	// the listing's largest page.
	csvPageRows = 500
	// MaxCSVRows bounds one export: about 250 MB of CSV. When more
	// certificates match, the export ends after this many rows and its
	// Pkid-Next-Cursor trailer says where the next export starts.
	MaxCSVRows = 1_000_000
	// csvWriteWindow is how long writing each page may take. The server's
	// WriteTimeout bounds a whole ordinary response; an export lasts as long
	// as it has pages, so each page extends the deadline by this much.
	csvWriteWindow = 30 * time.Second
)

// NextCursorTrailer is the HTTP trailer of a CSV export that stopped at
// MaxCSVRows (or at the request's limit) while more certificates match: the
// cursor to export the rest with. It is absent when the export is complete.
const NextCursorTrailer = "Pkid-Next-Cursor"

// csvHeader names the columns of the export: the certificate object's
// fields, without the PEM certificate and chain.
var csvHeader = []string{
	"serial", "status", "account_id", "common_name", "not_before", "not_after", "created_at",
	"revoked_at", "revocation_reason", "fingerprint_sha256", "spki_sha256", "renewed_from", "issuer_id",
}

// exportCertificates streams every certificate matching f as CSV, with a
// header row, page by page through the listing's cursors, so that memory
// stays flat however many rows match. The first page is read before
// anything is written: a malformed filter or a database that is down is
// still an ordinary problem response. A failure after that cannot change
// the status any more; the connection is then aborted, so that the client
// sees a truncated transfer and never mistakes a partial file for a whole
// one. f.Limit, when set, bounds the whole export (not a page).
func (a *API) exportCertificates(w http.ResponseWriter, r *http.Request, p pki.Principal, f pki.CertificateFilter) {
	ctx := r.Context()
	budget := MaxCSVRows
	if f.Limit > 0 {
		budget = f.Limit
	}
	f.Limit = min(csvPageRows, budget)
	certs, next, err := a.certs.Certificates(ctx, p, f)
	if err != nil {
		a.fail(w, r, err)
		return
	}

	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8; header=present")
	h.Set("Content-Disposition", `attachment; filename="certificates.csv"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Trailer", NextCursorTrailer)
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	cw := csv.NewWriter(w)
	now := a.certs.Now()
	_ = cw.Write(csvHeader)
	record := make([]string, len(csvHeader))
	for {
		for _, c := range certs {
			_ = cw.Write(csvRecord(record, c, now))
		}
		budget -= len(certs)
		cw.Flush()
		if cw.Error() != nil {
			return // the client went away
		}
		if next == "" {
			return
		}
		if budget <= 0 {
			h.Set(NextCursorTrailer, next)
			return
		}
		if err := rc.SetWriteDeadline(time.Now().Add(csvWriteWindow)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return
		}
		f.Cursor, f.Limit = next, min(csvPageRows, budget)
		if certs, next, err = a.certs.Certificates(ctx, p, f); err != nil {
			if ctx.Err() == nil {
				a.log.LogAttrs(ctx, slog.LevelError, "certificate export failed after it began; aborting the response",
					slog.String("error", err.Error()), slog.String("request_id", middleware.GetReqID(ctx)))
			}
			panic(http.ErrAbortHandler)
		}
	}
}

// csvRecord fills record with c's cells and returns it.
func csvRecord(record []string, c *pki.Certificate, now time.Time) []string {
	record[0] = c.Serial.String()
	record[1] = string(c.StatusAt(now))
	record[2] = c.AccountID
	record[3] = c.SubjectCN
	record[4] = csvTime(&c.NotBefore)
	record[5] = csvTime(&c.NotAfter)
	record[6] = csvTime(&c.CreatedAt)
	record[7] = csvTime(c.RevokedAt)
	record[8] = ""
	if c.RevocationReason != nil {
		record[8] = c.RevocationReason.String()
	}
	record[9] = hex.EncodeToString(c.FingerprintSHA256)
	record[10] = hex.EncodeToString(c.SPKISHA256)
	record[11] = ""
	if c.RenewedFrom != nil {
		record[11] = c.RenewedFrom.String()
	}
	record[12] = c.IssuerID
	for i, cell := range record {
		record[i] = csvCell(cell)
	}
	return record
}

func csvTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// csvCell neutralises a cell that a spreadsheet would run as a formula
// (SECURITY.md A-06, OWASP "CSV Injection"): one that begins with =, +, -, @,
// a tab or a carriage return gets a leading apostrophe, which spreadsheets
// read as "this is text". A common name is the requester's choice, so it may
// be "=HYPERLINK(...)". Quoting (commas, quotes, newlines) is encoding/csv's.
func csvCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// prefersCSV reports whether Accept headers (RFC 9110 §12.5.1) rank
// text/csv above application/json. Each type's weight is that of the most
// specific range matching it; on equal weights, CSV wins only when it is
// named exactly and JSON is reached through a wildcard, so that "*/*" (curl,
// most libraries) and no Accept at all keep JSON.
func prefersCSV(accept []string) bool {
	csvQ, csvExact := acceptWeight(accept, "text", "csv")
	jsonQ, jsonExact := acceptWeight(accept, "application", "json")
	switch {
	case csvQ <= 0:
		return false
	case csvQ != jsonQ:
		return csvQ > jsonQ
	default:
		return csvExact && !jsonExact
	}
}

// acceptWeight returns the weight (0 to 1) that the Accept headers give the
// media type typ/sub, and whether a range named it exactly. Without any Accept
// header everything weighs 1; a type no range matches weighs 0.
func acceptWeight(accept []string, typ, sub string) (q float64, exact bool) {
	if len(accept) == 0 {
		return 1, false
	}
	best := -1 // specificity of the range that set q: 0 */*, 1 type/*, 2 type/sub
	for _, header := range accept {
		for _, rng := range strings.Split(header, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(rng))
			if err != nil {
				continue
			}
			t, s, _ := strings.Cut(mt, "/")
			spec := -1
			switch {
			case t == typ && s == sub:
				spec = 2
			case t == typ && s == "*":
				spec = 1
			case t == "*" && s == "*":
				spec = 0
			}
			if spec <= best {
				continue
			}
			w := 1.0
			if v, ok := params["q"]; ok {
				if w, err = strconv.ParseFloat(v, 64); err != nil || w < 0 || w > 1 {
					continue
				}
			}
			best, q = spec, w
		}
	}
	return q, best == 2
}
