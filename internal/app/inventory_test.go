package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/api"
	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testnode"
)

// fakeCert is a certificate row written straight into the table: random
// bytes for DER, so that a test can have thousands of them, or common names
// that issuance would refuse (formula-like ones for the CSV export).
type fakeCert struct {
	serial    string
	account   string
	cn        string
	createdAt time.Time
	notAfter  time.Time
	revoked   bool
}

// copyCertificates writes rows with one COPY, issued by the current
// intermediate, and refreshes the planner's statistics. As a restore does,
// it builds the table's secondary indexes afterwards (from their own
// definitions) and, as a superuser, skips the foreign-key checks: every row
// refers to an existing account and issuer. Loading 100,000 rows takes
// seconds instead of minutes.
func copyCertificates(tb testing.TB, db *store.DB, rows []fakeCert) {
	tb.Helper()
	ctx := context.Background()
	var issuer string
	if err := db.Pool().QueryRow(ctx, "SELECT id FROM issuers WHERE kind = 'intermediate' AND retired_at IS NULL").Scan(&issuer); err != nil {
		tb.Fatal(err)
	}
	cols := []string{"serial", "issuer_id", "account_id", "state", "lint_der", "der", "fingerprint_sha256",
		"spki_sha256", "subject_cn", "not_before", "not_after", "revoked_at", "revocation_reason", "created_at"}
	copyRows := pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
		r := rows[i]
		der := randomBytes(64)
		fp, spki := sha256.Sum256(der), sha256.Sum256(randomBytes(32))
		var revokedAt, reason any
		if r.revoked {
			revokedAt, reason = r.createdAt.Add(time.Minute), int16(pki.ReasonSuperseded)
		}
		return []any{r.serial, issuer, r.account, "issued", der[:8], der, fp[:], spki[:], r.cn,
			r.createdAt.Add(-time.Hour), r.notAfter, revokedAt, reason, r.createdAt}, nil
	})
	err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
		ixRows, err := tx.Query(ctx, `SELECT i.relname, pg_get_indexdef(x.indexrelid)
			FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
			WHERE x.indrelid = 'certificates'::regclass
			  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)`)
		if err != nil {
			return err
		}
		indexes, err := pgx.CollectRows(ixRows, func(row pgx.CollectableRow) (def [2]string, err error) {
			err = row.Scan(&def[0], &def[1])
			return def, err
		})
		if err != nil {
			return err
		}
		for _, ix := range indexes {
			if _, err := tx.Exec(ctx, "DROP INDEX "+pgx.Identifier{ix[0]}.Sanitize()); err != nil {
				return err
			}
		}
		var super bool
		if err := tx.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
			return err
		}
		if super {
			if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
				return err
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"certificates"}, cols, copyRows); err != nil {
			return err
		}
		// What MarkIssued writes beside each issued row (migration 14).
		if _, err := tx.Exec(ctx, `INSERT INTO certificate_fingerprints (fingerprint_sha256, serial)
			SELECT fingerprint_sha256, serial FROM certificates WHERE fingerprint_sha256 IS NOT NULL
			ON CONFLICT DO NOTHING`); err != nil {
			return err
		}
		for _, ix := range indexes {
			if _, err := tx.Exec(ctx, ix[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("COPY certificates: %v", err)
	}
	if _, err := db.Pool().Exec(ctx, "VACUUM (ANALYZE) certificates"); err != nil {
		tb.Fatal(err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func fakeSerial() string { return string(pki.MustNewSerial()) }

// answer is an HTTP response read to its end, trailers included.
type answer struct {
	status  int
	header  http.Header
	trailer http.Header
	body    []byte
}

// get sends GET path with a bearer token and, when accept is not empty, an
// Accept header.
func get(tb testing.TB, srv *httptest.Server, path, token, accept string) answer {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer, body: body}
}

// listed is a decoded certificate listing.
type listed struct {
	Certificates []struct {
		Serial     string `json:"serial"`
		AccountID  string `json:"account_id"`
		CommonName string `json:"common_name"`
		Status     string `json:"status"`
		NotAfter   string `json:"not_after"`
	} `json:"certificates"`
	NextCursor string `json:"next_cursor"`
}

func (l listed) serials() []string {
	out := make([]string, 0, len(l.Certificates))
	for _, c := range l.Certificates {
		out = append(out, c.Serial)
	}
	return out
}

// list GETs a listing and decodes it, failing unless it is a 200.
func list(tb testing.TB, srv *httptest.Server, path, token string) listed {
	tb.Helper()
	a := get(tb, srv, path, token, "")
	if a.status != http.StatusOK {
		tb.Fatalf("GET %s: %d %s", path, a.status, a.body)
	}
	var l listed
	if err := json.Unmarshal(a.body, &l); err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	return l
}

// listAll follows next_cursor to the end of a listing.
func listAll(tb testing.TB, srv *httptest.Server, path, token string) []string {
	tb.Helper()
	var out []string
	next := ""
	for range 100 {
		p := path
		if next != "" {
			p += "&cursor=" + url.QueryEscape(next)
		}
		l := list(tb, srv, p, token)
		out = append(out, l.serials()...)
		if next = l.NextCursor; next == "" {
			return out
		}
	}
	tb.Fatalf("GET %s: more than 100 pages", path)
	return nil
}

// colonHex writes b the way openssl and browsers show fingerprints.
func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, ":")
}

// TestInventoryAPI: the account API and the admin API find certificates by
// each filter, an account only its own; malformed filters are 400 problems
// naming the parameter; the admin's CSV export holds every matching row,
// parses with encoding/csv and neutralises formula-like cells.
func TestInventoryAPI(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	acctA, tokA := n.account("Inventory A", pki.PlanEnterprise)
	acctB, tokB := n.account("Inventory B", pki.PlanEnterprise)

	// Real certificates, issued through the API.
	type issued struct {
		serial string
		cert   *x509.Certificate
	}
	issue := func(tok, cn string) issued {
		csrPEM, _ := opensslCSR(t, "/CN="+cn)
		r := n.issue(tok, csrPEM)
		if r.status != http.StatusCreated {
			t.Fatalf("issue %s: %d %s", cn, r.status, r.body)
		}
		m := r.json(t)
		return issued{serial: m["serial"].(string), cert: parseCertPEM(t, m["certificate"].(string))}
	}
	oneA, twoA, gone := issue(tokA, "inv-one.test"), issue(tokA, "inv-two.test"), issue(tokA, "inv-gone.test")
	oneB := issue(tokB, "inv-one.test")
	if r := n.do("POST", "/api/v1/certificates/"+gone.serial+"/revoke", tokA, `{"reason":"superseded"}`); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}

	// Bulk rows: 1,100 of A's, some expiring within the week, and B's
	// formula-like names for the CSV export.
	now := time.Now().UTC().Truncate(time.Microsecond)
	var bulk []fakeCert
	var expiringA []fakeCert
	for i := range 1100 {
		c := fakeCert{serial: fakeSerial(), account: acctA, cn: fmt.Sprintf("bulk-%04d.a.test", i),
			createdAt: now.Add(-time.Duration(1100-i) * time.Hour)}
		c.notAfter = c.createdAt.Add(90 * 24 * time.Hour)
		if i%100 == 0 {
			c.notAfter = now.Add(time.Hour + time.Duration(i)*time.Minute) // expires within the week
			expiringA = append(expiringA, c)
		}
		bulk = append(bulk, c)
	}
	formulas := []string{`=HYPERLINK("http://evil.test","x")`, "+1+1", "-2+3", "@SUM(A1)", "\tindented", "\rreturn",
		"comma, \"quote\"\nand newline", "'already quoted"}
	for i, cn := range formulas {
		bulk = append(bulk, fakeCert{serial: fakeSerial(), account: acctB, cn: cn,
			createdAt: now.Add(-time.Duration(i+1) * time.Minute), notAfter: now.Add(30 * 24 * time.Hour)})
	}
	copyCertificates(t, n.rawDB, bulk)
	slices.SortFunc(expiringA, func(a, b fakeCert) int { return a.notAfter.Compare(b.notAfter) })

	fpA := sha256.Sum256(oneA.cert.Raw)
	spkiA := sha256.Sum256(oneA.cert.RawSubjectPublicKeyInfo)
	week := url.QueryEscape(now.Add(7 * 24 * time.Hour).Format(time.RFC3339))
	serialsOf := func(cs []fakeCert) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.serial
		}
		return out
	}

	tests := []struct {
		name  string
		path  string
		token string
		want  []string // in order
	}{
		{"common name, an account's own", "/api/v1/certificates?common_name=inv-one", tokA, []string{oneA.serial}},
		{"common name, any case", "/api/v1/certificates?common_name=INV-ONE.TEST", tokA, []string{oneA.serial}},
		{"common name, admin sees both accounts", "/admin/api/certificates?common_name=inv-one", n.admin, []string{oneB.serial, oneA.serial}},
		{"common name, admin and account_id", "/admin/api/certificates?common_name=inv-one&account_id=" + acctB, n.admin, []string{oneB.serial}},
		{"serial prefix, upper case with colons", "/api/v1/certificates?serial_prefix=" + colonHex(oneA.cert.SerialNumber.Bytes()[:6]), tokA, []string{oneA.serial}},
		{"fingerprint, colon-separated upper case", "/api/v1/certificates?fingerprint_sha256=" + colonHex(fpA[:]), tokA, []string{oneA.serial}},
		{"fingerprint of another account's certificate", "/api/v1/certificates?fingerprint_sha256=" + hex.EncodeToString(fpA[:]), tokB, nil},
		{"public-key hash", "/api/v1/certificates?spki_sha256=" + hex.EncodeToString(spkiA[:]), tokA, []string{oneA.serial}},
		{"public-key hash, admin", "/admin/api/certificates?spki_sha256=" + hex.EncodeToString(spkiA[:]), n.admin, []string{oneA.serial}},
		{"status revoked", "/api/v1/certificates?status=revoked", tokA, []string{gone.serial}},
		{"status revoked and common name", "/api/v1/certificates?status=revoked&common_name=two", tokA, nil},
		{"expiring soon, soonest first", "/api/v1/certificates?sort=not_after&expiring_before=" + week, tokA, serialsOf(expiringA)},
		{"expiring soon, account_id of another account is ignored", "/api/v1/certificates?sort=not_after&expiring_before=" + week + "&account_id=" + acctB, tokA, serialsOf(expiringA)},
		{"expiring soon, admin, one account", "/admin/api/certificates?sort=not_after&expiring_before=" + week + "&account_id=" + acctA, n.admin, serialsOf(expiringA)},
		{"expiring soon, status active", "/api/v1/certificates?status=active&sort=not_after&expiring_before=" + week, tokA, serialsOf(expiringA)},
		{"newest first, two of them", "/api/v1/certificates?common_name=inv-&status=active", tokA, []string{twoA.serial, oneA.serial}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := list(t, n.srv, tt.path, tt.token)
			if !slices.Equal(got.serials(), tt.want) {
				t.Errorf("serials %v, want %v", got.serials(), tt.want)
			}
		})
	}

	t.Run("pages of an account's certificates, each once", func(t *testing.T) {
		for _, sort := range []string{"created_at", "not_after"} {
			got := listAll(t, n.srv, "/api/v1/certificates?limit=200&sort="+sort, tokA)
			if len(got) != 1103 || len(slices.Compact(slices.Sorted(slices.Values(got)))) != 1103 {
				t.Errorf("sort=%s: %d serials over the pages, want 1103 distinct", sort, len(got))
			}
		}
	})

	malformed := []struct {
		name, query, param string
	}{
		{"unknown status", "status=valid", "status"},
		{"common name too short", "common_name=ab", "common_name"},
		{"common name without three letters in a row", "common_name=a-b.c-d", "common_name"},
		{"common name with a control character", "common_name=abc%01def", "common_name"},
		{"serial prefix not hex", "serial_prefix=70xyz", "serial_prefix"},
		{"serial prefix all zeros", "serial_prefix=000", "serial_prefix"},
		{"serial prefix too long", "serial_prefix=" + strings.Repeat("a", 41), "serial_prefix"},
		{"fingerprint too short", "fingerprint_sha256=abcd", "fingerprint_sha256"},
		{"public-key hash not hex", "spki_sha256=" + strings.Repeat("zz", 32), "spki_sha256"},
		{"expiring_before not RFC 3339", "expiring_before=tomorrow", "expiring_before"},
		{"expiring_before and status expired", "expiring_before=" + week + "&status=expired", "expiring_before"},
		{"unknown sort", "sort=serial", "sort"},
		{"made-up cursor", "cursor=garbage", "cursor"},
		{"limit zero", "limit=0", "limit"},
		{"unknown parameter", "serial=70ab", `"serial"`},
		{"repeated parameter", "status=active&status=revoked", "status"},
	}
	for _, tt := range malformed {
		t.Run("400: "+tt.name, func(t *testing.T) {
			for _, base := range []struct{ path, token string }{{"/api/v1/certificates", tokA}, {"/admin/api/certificates", n.admin}} {
				a := get(t, n.srv, base.path+"?"+tt.query, base.token, "")
				var p api.Problem
				if a.status != http.StatusBadRequest || json.Unmarshal(a.body, &p) != nil || !strings.Contains(p.Detail, tt.param) {
					t.Errorf("%s: %d %s, want a 400 problem naming %s", base.path, a.status, a.body, tt.param)
				}
				if ct := a.header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("%s: Content-Type %q", base.path, ct)
				}
			}
		})
	}
	t.Run("400: account_id not a UUID (admin)", func(t *testing.T) {
		a := get(t, n.srv, "/admin/api/certificates?account_id=acme", n.admin, "")
		if a.status != http.StatusBadRequest || !strings.Contains(string(a.body), "account_id") {
			t.Errorf("%d %s", a.status, a.body)
		}
	})
	t.Run("400: a cursor of the other order", func(t *testing.T) {
		l := list(t, n.srv, "/api/v1/certificates?limit=1", tokA)
		a := get(t, n.srv, "/api/v1/certificates?sort=not_after&cursor="+url.QueryEscape(l.NextCursor), tokA, "")
		if a.status != http.StatusBadRequest || !strings.Contains(string(a.body), "cursor") {
			t.Errorf("%d %s", a.status, a.body)
		}
	})

	t.Run("CSV export", func(t *testing.T) {
		a := get(t, n.srv, "/admin/api/certificates", n.admin, "text/csv")
		if a.status != http.StatusOK {
			t.Fatalf("%d %s", a.status, a.body)
		}
		if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
			t.Errorf("Content-Type %q", ct)
		}
		if !strings.Contains(a.header.Get("Vary"), "Accept") {
			t.Errorf("Vary %q, want Accept", a.header.Get("Vary"))
		}
		records := readCSV(t, a.body)
		header := records[0]
		if header[0] != "serial" || header[3] != "common_name" || len(header) != 13 {
			t.Fatalf("header row %q", header)
		}
		// Everything: the four issued, the bulk rows, and the TLS listener's
		// server certificate if the node has one.
		var total int
		if err := n.rawDB.Pool().QueryRow(t.Context(), "SELECT count(*) FROM certificates WHERE state = 'issued'").Scan(&total); err != nil {
			t.Fatal(err)
		}
		if len(records)-1 != total {
			t.Errorf("%d rows, want %d", len(records)-1, total)
		}
		cells := map[string][]string{}
		for _, rec := range records[1:] {
			cells[rec[0]] = rec
		}
		for i, cn := range formulas {
			want := cn
			if strings.ContainsAny(cn[:1], "=+-@\t\r") {
				want = "'" + cn
			}
			row := cells[bulk[1100+i].serial]
			if row == nil || row[3] != want {
				t.Errorf("common name %q exported as %q, want %q", cn, row, want)
			}
		}
		if row := cells[gone.serial]; row == nil || row[1] != "revoked" || row[8] != "superseded" || row[7] == "" {
			t.Errorf("revoked certificate exported as %q", row)
		}
		fp := sha256.Sum256(oneA.cert.Raw)
		if row := cells[oneA.serial]; row == nil || row[2] != acctA || row[9] != hex.EncodeToString(fp[:]) {
			t.Errorf("issued certificate exported as %q", row)
		}
		if a.trailer.Get(api.NextCursorTrailer) != "" {
			t.Errorf("a complete export has a next cursor %q", a.trailer.Get(api.NextCursorTrailer))
		}
	})

	t.Run("CSV export, filtered and in parts", func(t *testing.T) {
		a := get(t, n.srv, "/admin/api/certificates?account_id="+acctA+"&limit=600", n.admin, "text/csv; q=1, application/json; q=0.5")
		first := readCSV(t, a.body)
		next := a.trailer.Get(api.NextCursorTrailer)
		if a.status != http.StatusOK || len(first) != 601 || next == "" {
			t.Fatalf("first part: %d, %d records, next cursor %q", a.status, len(first), next)
		}
		a = get(t, n.srv, "/admin/api/certificates?account_id="+acctA+"&cursor="+url.QueryEscape(next), n.admin, "text/csv")
		rest := readCSV(t, a.body)
		seen := map[string]bool{}
		for _, rec := range append(first[1:], rest[1:]...) {
			if rec[2] != acctA || seen[rec[0]] {
				t.Fatalf("row %q: another account's, or twice", rec)
			}
			seen[rec[0]] = true
		}
		if len(seen) != 1103 || a.trailer.Get(api.NextCursorTrailer) != "" {
			t.Errorf("%d rows over both parts, want 1103", len(seen))
		}
	})

	t.Run("CSV only when preferred, only for admins", func(t *testing.T) {
		for _, c := range []struct {
			path, token, accept, want string
		}{
			{"/admin/api/certificates", n.admin, "", "application/json"},
			{"/admin/api/certificates", n.admin, "*/*", "application/json"},
			{"/admin/api/certificates", n.admin, "application/json, text/csv;q=0.9", "application/json"},
			{"/admin/api/certificates", n.admin, "text/*", "text/csv"},
			{"/admin/api/certificates", n.admin, "text/csv, */*", "text/csv"},
			{"/api/v1/certificates", tokA, "text/csv", "application/json"},
			{"/admin/api/certificates?status=valid", n.admin, "text/csv", "application/problem+json"},
		} {
			a := get(t, n.srv, c.path, c.token, c.accept)
			if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, c.want) {
				t.Errorf("GET %s, Accept %q: %d %s, want %s", c.path, c.accept, a.status, ct, c.want)
			}
		}
	})
}

// readCSV parses an export with the standard reader, which checks that
// every record has the header's number of fields.
func readCSV(tb testing.TB, body []byte) [][]string {
	tb.Helper()
	records, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		tb.Fatalf("the export does not parse as CSV: %v", err)
	}
	if len(records) == 0 {
		tb.Fatal("the export has no header row")
	}
	return records
}

// BenchmarkInventoryAPI times searches over HTTP with 100,000 certificates
// in the table: the whole request, from the client's GET to the decoded
// answer, 50 certificates (with their PEM and chain) per page. csv_all
// exports the whole table. docs/BENCHMARKS.md has the figures.
func BenchmarkInventoryAPI(b *testing.B) {
	srv, db, admin := inventoryServer(b)
	ctx := context.Background()
	var accounts []string
	rows, err := db.Pool().Query(ctx, `INSERT INTO accounts (name, plan)
		SELECT 'Tenant ' || i, 'enterprise' FROM generate_series(1, 50) i RETURNING id::text`)
	if err != nil {
		b.Fatal(err)
	}
	if accounts, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		b.Fatal(err)
	}
	token := accountToken(b, srv, admin, accounts[0])

	// As the store's benchmark: 400 days of issuance in time order, 90-day
	// validity, half of it in five accounts, 3 % revoked, five "zebra" names.
	rng := mrand.New(mrand.NewPCG(7, 100_000))
	now := time.Now().UTC().Truncate(time.Microsecond)
	services := []string{"payments", "checkout", "ledger", "search", "auth", "billing", "gateway", "orders"}
	certs := make([]fakeCert, 100_000)
	for i := range certs {
		acct := rng.IntN(50)
		if rng.IntN(2) == 0 {
			acct = rng.IntN(5)
		}
		svc := services[rng.IntN(len(services))]
		if i%20_000 == 7 {
			svc = "zebra-relay"
		}
		c := fakeCert{serial: fakeSerial(), account: accounts[acct], revoked: rng.IntN(100) < 3,
			cn:        fmt.Sprintf("%s-%03d.prod.t%02d.example", svc, rng.IntN(1000), acct),
			createdAt: now.Add(-time.Duration(rng.Int64N(int64(400 * 24 * time.Hour))))}
		c.notAfter = c.createdAt.Add(90 * 24 * time.Hour)
		certs[i] = c
	}
	slices.SortFunc(certs, func(a, b fakeCert) int { return a.createdAt.Compare(b.createdAt) })
	copyCertificates(b, db, certs)
	week := url.QueryEscape(now.Add(7 * 24 * time.Hour).Format(time.RFC3339))
	one := certs[len(certs)/2]

	for _, c := range []struct {
		name, path, token string
	}{
		{"admin_newest", "/admin/api/certificates", admin},
		{"admin_common_name_rare", "/admin/api/certificates?common_name=zebra", admin},
		{"admin_common_name_common", "/admin/api/certificates?common_name=payments", admin},
		{"admin_serial_prefix", "/admin/api/certificates?serial_prefix=" + one.serial[:12], admin},
		{"admin_status_revoked", "/admin/api/certificates?status=revoked", admin},
		{"admin_status_expired", "/admin/api/certificates?status=expired", admin},
		{"admin_account", "/admin/api/certificates?account_id=" + accounts[42], admin},
		{"admin_expiring_7d", "/admin/api/certificates?sort=not_after&expiring_before=" + week, admin},
		{"account_expiring_7d", "/api/v1/certificates?sort=not_after&expiring_before=" + week, token},
		{"account_common_name", "/api/v1/certificates?common_name=ledger", token},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if a := get(b, srv, c.path, c.token, ""); a.status != http.StatusOK {
					b.Fatalf("%d %s", a.status, a.body)
				}
			}
		})
	}
	b.Run("csv_all", func(b *testing.B) {
		for b.Loop() {
			a := get(b, srv, "/admin/api/certificates", admin, "text/csv")
			if a.status != http.StatusOK || bytes.Count(a.body, []byte("\n")) != len(certs)+1 {
				b.Fatalf("%d, %d lines", a.status, bytes.Count(a.body, []byte("\n")))
			}
		}
		b.ReportMetric(float64(len(certs))*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

// inventoryServer is a pkid node for benchmarks (the tests' newNode needs a
// *testing.T): an initialised database, the App behind an httptest server,
// and an admin token.
func inventoryServer(tb testing.TB) (*httptest.Server, *store.DB, string) {
	tb.Helper()
	ctx := context.Background()
	db, cfg := testnode.Init(tb, []byte(testPassphrase))
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler), app.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.Close)
	srv := httptest.NewServer(a.Handler)
	tb.Cleanup(srv.Close)
	return srv, db, testnode.AdminToken(tb, a.Accounts, "bench")
}

// accountToken mints a token for an account through the admin API.
func accountToken(tb testing.TB, srv *httptest.Server, admin, accountID string) string {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/admin/api/accounts/"+accountID+"/tokens",
		strings.NewReader(`{"name":"bench","ttl_hours":2}`))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		tb.Fatalf("minting a token: %d %v", resp.StatusCode, err)
	}
	return out.Token
}
