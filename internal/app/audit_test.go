package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/audit"
	"github.com/pkid/pkid/internal/pki"
)

// auditEvent is one event of GET /admin/api/audit, as a client reads it.
type auditEvent struct {
	ID          int64          `json:"id"`
	OccurredAt  time.Time      `json:"occurred_at"`
	Actor       string         `json:"actor"`
	Action      string         `json:"action"`
	AccountID   string         `json:"account_id"`
	Detail      map[string]any `json:"detail"`
	ContentHash string         `json:"content_hash"`
	ChainHash   string         `json:"chain_hash"`
}

type auditPage struct {
	Events []auditEvent `json:"events"`
	Chain  struct {
		HeadID         int64  `json:"head_id"`
		HeadHash       string `json:"head_hash"`
		UnlinkedEvents int64  `json:"unlinked_events"`
	} `json:"chain"`
	NextCursor string `json:"next_cursor"`
}

// auditGet sends GET /admin/api/audit?query with an Accept header.
func (n *node) auditGet(query, accept string) response {
	n.t.Helper()
	req, err := http.NewRequest("GET", n.srv.URL+"/admin/api/audit?"+query, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+n.admin)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := n.srv.Client().Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		n.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (n *node) auditPage(query string) auditPage {
	n.t.Helper()
	r := n.auditGet(query, "")
	if r.status != http.StatusOK {
		n.t.Fatalf("GET audit?%s: %d %s", query, r.status, r.body)
	}
	var p auditPage
	if err := json.Unmarshal(r.body, &p); err != nil {
		n.t.Fatalf("audit page: %v: %s", err, r.body)
	}
	return p
}

// waitLinked waits until the node's linker has linked every event.
func (n *node) waitLinked() auditPage {
	n.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p := n.auditPage("limit=1")
		if p.Chain.UnlinkedEvents == 0 && len(p.Events) == 1 && p.Chain.HeadID == p.Events[0].ID {
			return p
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("the audit chain did not catch up: %+v", p.Chain)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAuditAPI(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	acct, token := n.account("Audited", pki.PlanEnterprise)
	other, _ := n.account("Other", pki.PlanEnterprise)
	n.issue(token, goCSR(t, "audited.test")) // issued or refused: audited either way
	head := n.waitLinked()

	all := n.auditPage("limit=1000")
	if len(all.Events) < 5 || all.NextCursor != "" {
		t.Fatalf("%d events, next cursor %q", len(all.Events), all.NextCursor)
	}
	for i, e := range all.Events {
		if len(e.ContentHash) != 64 || len(e.ChainHash) != 64 {
			t.Errorf("event %d (%s) has no link: %q %q", e.ID, e.Action, e.ContentHash, e.ChainHash)
		}
		if i > 0 && e.ID >= all.Events[i-1].ID {
			t.Errorf("not newest first at %d", e.ID)
		}
	}
	if all.Events[0].ChainHash != head.Chain.HeadHash {
		t.Errorf("newest event's chain hash %s, head %s", all.Events[0].ChainHash, head.Chain.HeadHash)
	}

	created := all.Events[len(all.Events)-1].OccurredAt
	for _, e := range all.Events {
		if e.Action == "account.created" && e.AccountID == other {
			created = e.OccurredAt
		}
	}
	tests := []struct {
		name  string
		query url.Values
		check func(e auditEvent) bool
	}{
		{"account", url.Values{"account_id": {acct}}, func(e auditEvent) bool { return e.AccountID == acct }},
		{"action", url.Values{"action": {"token.minted"}}, func(e auditEvent) bool { return e.Action == "token.minted" }},
		{"actor and action", url.Values{"actor": {all.Events[0].Actor}, "action": {all.Events[0].Action}},
			func(e auditEvent) bool { return e.Actor == all.Events[0].Actor && e.Action == all.Events[0].Action }},
		{"since", url.Values{"since": {created.Format(time.RFC3339Nano)}}, func(e auditEvent) bool { return !e.OccurredAt.Before(created) }},
		{"until", url.Values{"until": {created.Format(time.RFC3339Nano)}}, func(e auditEvent) bool { return e.OccurredAt.Before(created) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := n.auditPage(tt.query.Encode())
			want := 0
			for _, e := range all.Events {
				if tt.check(e) {
					want++
				}
			}
			if len(p.Events) != want || want == 0 {
				t.Errorf("%d events, want %d (of %d)", len(p.Events), want, len(all.Events))
			}
			for _, e := range p.Events {
				if !tt.check(e) {
					t.Errorf("event %d (%s by %s at %s) does not match", e.ID, e.Action, e.Actor, e.OccurredAt)
				}
			}
		})
	}

	t.Run("pages", func(t *testing.T) {
		var ids []int64
		query := "limit=2"
		for pages := 0; ; pages++ {
			p := n.auditPage(query)
			for _, e := range p.Events {
				ids = append(ids, e.ID)
			}
			if p.NextCursor == "" {
				break
			}
			if pages > len(all.Events) {
				t.Fatal("paging does not end")
			}
			query = "limit=2&before_id=" + p.NextCursor
		}
		if len(ids) != len(all.Events) || ids[len(ids)-1] != all.Events[len(all.Events)-1].ID {
			t.Errorf("paged ids %v, want the %d events", ids, len(all.Events))
		}
	})

	t.Run("refused queries", func(t *testing.T) {
		for _, q := range []string{"limit=0", "limit=1001", "before_id=0", "before_id=x", "since=yesterday",
			"until=2025-13-01T00:00:00Z", "since=2025-02-01T00:00:00Z&until=2025-01-01T00:00:00Z",
			"actor=" + strings.Repeat("a", 201)} {
			if r := n.auditGet(q, ""); r.status != http.StatusBadRequest {
				t.Errorf("?%s: %d %s", q, r.status, r.body)
			}
		}
	})

	t.Run("JSON lines", func(t *testing.T) {
		r := n.auditGet("", "application/x-ndjson")
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
		}
		lines := ndjson(t, r.body)
		if len(lines) != len(all.Events) || lines[0].ID != all.Events[len(all.Events)-1].ID {
			t.Errorf("%d lines from %d, want %d from %d", len(lines), lines[0].ID, len(all.Events), all.Events[len(all.Events)-1].ID)
		}
		a, err := audit.ParseAnchor(r.header.Get("X-Audit-Chain-Head"))
		if err != nil || a.ID < head.Chain.HeadID {
			t.Errorf("X-Audit-Chain-Head %q: %+v %v", r.header.Get("X-Audit-Chain-Head"), a, err)
		}
		if lines := ndjson(t, n.auditGet("limit=2&account_id="+acct, "application/x-ndjson").body); len(lines) != 2 || lines[0].AccountID != acct {
			t.Errorf("limited export: %+v", lines)
		}
		for accept, wantLines := range map[string]bool{
			"*/*": false, "application/json, application/x-ndjson;q=0.5": false,
			"application/x-ndjson, */*;q=0.1": true, "application/*": false,
		} {
			r := n.auditGet("limit=1", accept)
			if got := strings.HasPrefix(r.header.Get("Content-Type"), "application/x-ndjson"); got != wantLines {
				t.Errorf("Accept %q gave %s", accept, r.header.Get("Content-Type"))
			}
		}
	})

	t.Run("JSON lines over many pages", func(t *testing.T) {
		// Enough events for three pages of the export's queries.
		_, err := n.rawDB.Pool().Exec(context.Background(), `INSERT INTO audit_events (actor, action, outcome, detail)
			SELECT 'system', 'test.bulk', 'success', jsonb_build_object('i', i) FROM generate_series(1, 2500) i`)
		if err != nil {
			t.Fatal(err)
		}
		lines := ndjson(t, n.auditGet("action=test.bulk", "application/x-ndjson").body)
		if len(lines) != 2500 {
			t.Fatalf("%d lines, want 2500", len(lines))
		}
		for i, e := range lines {
			if e.Detail["i"] != float64(i+1) || (i > 0 && e.ID != lines[i-1].ID+1) {
				t.Fatalf("line %d: %+v", i, e)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		p := n.waitLinked()
		// The linker reads the head for its metrics once a second; the
		// anchor names a recent head, not necessarily this one.
		want := []*regexp.Regexp{
			regexp.MustCompile(fmt.Sprintf(`(?m)^pkid_audit_chain_head_id %d$`, p.Chain.HeadID)),
			regexp.MustCompile(`(?m)^pkid_audit_chain_unlinked_events 0$`),
			regexp.MustCompile(`(?m)^pkid_audit_chain_anchor_info\{hash="[0-9a-f]{64}",id="[1-9][0-9]*"\} 1$`),
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			body := n.do("GET", "/metrics", "", nil).body
			var missing *regexp.Regexp
			for _, re := range want {
				if !re.Match(body) {
					missing = re
				}
			}
			if missing == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("metrics lack %s", missing)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func ndjson(t *testing.T, body []byte) []auditEvent {
	t.Helper()
	var out []auditEvent
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d: %v: %s", len(out)+1, err, sc.Bytes())
		}
		out = append(out, e)
	}
	return out
}

// Two nodes write the trail at once (accounts, tokens, issuance through
// both) while both run their linkers: the chain covers every event and
// verifies.
func TestAuditChainTwoNodes(t *testing.T) {
	t.Parallel()
	a := newNode(t)
	b := startNode(t, a.dbURL, a.rawDB, a.passph)
	var wg sync.WaitGroup
	for i, n := range []*node{a, b, a, b} {
		wg.Go(func() {
			_, token := n.account(fmt.Sprintf("Node writer %d", i), pki.PlanEnterprise)
			for j := range 5 {
				n.issue(token, goCSR(t, "w"+strconv.Itoa(i)+"-"+strconv.Itoa(j)+".test"))
			}
		})
	}
	wg.Wait()
	a.waitLinked()
	var rep audit.Report
	err := a.rawDB.AuditSnapshot(context.Background(), func(r audit.Reader) error {
		var err error
		rep, err = audit.Verify(context.Background(), r, audit.VerifyOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var events int64
	if err := a.rawDB.Pool().QueryRow(context.Background(), "SELECT count(*) FROM audit_events").Scan(&events); err != nil {
		t.Fatal(err)
	}
	if rep.Events != events || rep.Unlinked != 0 || events < 4*6 {
		t.Errorf("report %+v, %d events in the trail", rep, events)
	}
}
