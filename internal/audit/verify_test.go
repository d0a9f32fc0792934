package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// memReader is a Reader over rows held in memory: what a snapshot of the
// two tables returns, so that Verify's logic can be tested row by row. The
// store's tests run the same checks on Postgres.
type memReader struct {
	links []Link
	recs  []Record
}

func (m *memReader) AuditLinks(_ context.Context, after int64, limit int) ([]Link, error) {
	var out []Link
	for _, k := range m.links {
		if k.ID > after && len(out) < limit {
			out = append(out, k)
		}
	}
	return out, nil
}

func (m *memReader) AuditRecords(_ context.Context, after int64, limit int) ([]Record, error) {
	var out []Record
	for _, r := range m.recs {
		if r.ID > after && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func record(id int64) Record {
	return Record{
		ID: id, OccurredAt: time.Date(2025, 1, 2, 3, 4, 5, int(id)*1000, time.UTC),
		Actor: "system", Action: "test.event", Outcome: "success",
		Detail: fmt.Appendf(nil, `{"n": %d}`, id),
	}
}

// relink recomputes the links of recs from scratch, every missing id a gap:
// what someone who rewrites the whole chain would do.
func relink(t *testing.T, recs []Record) []Link {
	t.Helper()
	links, hole, err := plan(Link{}, recs, math.MaxInt64)
	if err != nil || hole != 0 {
		t.Fatalf("plan: %v (hole %d)", err, hole)
	}
	return links
}

// trail returns events 1, 2, 3, 6, 7 (4 and 5 never committed), linked,
// and event 8, not linked yet.
func trail(t *testing.T) *memReader {
	t.Helper()
	var recs []Record
	for _, id := range []int64{1, 2, 3, 6, 7} {
		recs = append(recs, record(id))
	}
	return &memReader{links: relink(t, recs), recs: append(recs, record(8))}
}

func linkIndex(m *memReader, id int64) int {
	return slices.IndexFunc(m.links, func(k Link) bool { return k.ID == id })
}

func recIndex(m *memReader, id int64) int {
	return slices.IndexFunc(m.recs, func(r Record) bool { return r.ID == id })
}

func TestVerify(t *testing.T) {
	original := trail(t)
	head := original.links[len(original.links)-1]
	anchor := &Anchor{ID: head.LastID, Hash: head.ChainHash}
	tests := []struct {
		name    string
		tamper  func(t *testing.T, m *memReader)
		anchor  *Anchor
		breakAt int64 // 0: verifies
		reason  string
	}{
		{name: "intact", tamper: func(*testing.T, *memReader) {}},
		{name: "intact with its anchor", tamper: func(*testing.T, *memReader) {}, anchor: anchor},
		{name: "one byte of detail", breakAt: 3, reason: "altered", tamper: func(_ *testing.T, m *memReader) {
			m.recs[recIndex(m, 3)].Detail = []byte(`{"n": 4}`)
		}},
		{name: "actor", breakAt: 7, reason: "altered", tamper: func(_ *testing.T, m *memReader) {
			m.recs[recIndex(m, 7)].Actor = "admin:mallory"
		}},
		{name: "event deleted", breakAt: 2, reason: "deleted", tamper: func(_ *testing.T, m *memReader) {
			m.recs = slices.Delete(m.recs, recIndex(m, 2), recIndex(m, 2)+1)
		}},
		{name: "event and its link deleted", breakAt: 2, reason: "missing from the chain", tamper: func(_ *testing.T, m *memReader) {
			m.recs = slices.Delete(m.recs, recIndex(m, 2), recIndex(m, 2)+1)
			m.links = slices.Delete(m.links, linkIndex(m, 2), linkIndex(m, 2)+1)
		}},
		{name: "event inserted into a gap", breakAt: 5, reason: "never committed", tamper: func(_ *testing.T, m *memReader) {
			m.recs = slices.Insert(m.recs, recIndex(m, 6), record(5))
		}},
		{name: "event below the chain", breakAt: 0, reason: "outside the chain", tamper: func(_ *testing.T, m *memReader) {
			m.recs = slices.Insert(m.recs, 0, record(0))
		}},
		{name: "chain hash rewritten", breakAt: 6, reason: "does not follow", tamper: func(_ *testing.T, m *memReader) {
			m.links[linkIndex(m, 6)].ChainHash = bytes.Repeat([]byte{1}, HashSize)
		}},
		{name: "event and its link rewritten", breakAt: 7, reason: "does not follow", tamper: func(_ *testing.T, m *memReader) {
			i := recIndex(m, 6)
			m.recs[i].Actor = "admin:mallory"
			k := &m.links[linkIndex(m, 6)]
			k.ContentHash, _ = ContentHash(m.recs[i])
			k.ChainHash = ChainHash(m.links[linkIndex(m, 4)].ChainHash, k.ContentHash)
		}},
		{name: "gap link altered", breakAt: 4, reason: "gap link", tamper: func(_ *testing.T, m *memReader) {
			m.links[linkIndex(m, 4)].ContentHash = GapHash(4, 4)
		}},
		{name: "gap shrunk", breakAt: 4, reason: "gap link over ids 4 to 4 was altered", tamper: func(_ *testing.T, m *memReader) {
			k := &m.links[linkIndex(m, 4)]
			k.LastID = 4
		}},
		{name: "whole chain rewritten: verifies alone", tamper: func(t *testing.T, m *memReader) {
			m.recs[recIndex(m, 3)].Actor = "admin:mallory"
			m.links = relink(t, m.recs[:len(m.recs)-1])
		}},
		{name: "whole chain rewritten: the anchor shows it", anchor: anchor, breakAt: 7, reason: "not the anchor's", tamper: func(t *testing.T, m *memReader) {
			m.recs[recIndex(m, 3)].Actor = "admin:mallory"
			m.links = relink(t, m.recs[:len(m.recs)-1])
		}},
		{name: "tail removed: the anchor shows it", anchor: anchor, breakAt: 7, reason: "before the anchor", tamper: func(_ *testing.T, m *memReader) {
			m.recs = slices.Delete(m.recs, recIndex(m, 7), recIndex(m, 7)+1)
			m.links = m.links[:linkIndex(m, 7)]
		}},
	}
	for _, page := range []int{1, 2, 5000} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/page=%d", tt.name, page), func(t *testing.T) {
				m := &memReader{links: slices.Clone(original.links), recs: slices.Clone(original.recs)}
				tt.tamper(t, m)
				rep, err := Verify(context.Background(), m, VerifyOptions{Anchor: tt.anchor, Page: page})
				if tt.breakAt == 0 && tt.reason == "" {
					if err != nil {
						t.Fatalf("Verify: %v", err)
					}
					if rep.HeadID != 7 || rep.Unlinked != 1 || rep.Events+rep.GapIDs != 7 {
						t.Errorf("report %+v", rep)
					}
					if tt.anchor != nil && !rep.AnchorSeen {
						t.Error("anchor not reported as seen")
					}
					return
				}
				var be *BreakError
				if !errors.As(err, &be) {
					t.Fatalf("Verify error %v, want a BreakError", err)
				}
				if be.ID != tt.breakAt || !strings.Contains(be.Reason, tt.reason) {
					t.Errorf("break at %d (%s), want %d (%q)", be.ID, be.Reason, tt.breakAt, tt.reason)
				}
				if !strings.Contains(be.Error(), fmt.Sprintf("event %d:", tt.breakAt)) {
					t.Errorf("message %q does not name the event", be.Error())
				}
			})
		}
	}
	rep, err := Verify(context.Background(), original, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := Report{Events: 5, Gaps: 1, GapIDs: 2, HeadID: 7, HeadHash: head.ChainHash, Unlinked: 1}
	if fmt.Sprint(rep) != fmt.Sprint(want) {
		t.Errorf("report %+v, want %+v", rep, want)
	}
}

func TestVerifyEmpty(t *testing.T) {
	rep, err := Verify(context.Background(), &memReader{recs: []Record{record(1)}}, VerifyOptions{})
	if err != nil || rep.HeadID != 0 || rep.Events != 0 || rep.Unlinked != 1 {
		t.Errorf("Verify = %+v, %v", rep, err)
	}
	_, err = Verify(context.Background(), &memReader{}, VerifyOptions{Anchor: &Anchor{ID: 1, Hash: make([]byte, HashSize)}})
	var be *BreakError
	if !errors.As(err, &be) || be.ID != 1 {
		t.Errorf("empty chain with an anchor: %v", err)
	}
}

func TestPlan(t *testing.T) {
	recs := func(ids ...int64) []Record {
		var out []Record
		for _, id := range ids {
			out = append(out, record(id))
		}
		return out
	}
	head5 := relink(t, recs(1, 2, 3, 4, 5))
	tests := []struct {
		name     string
		head     Link
		recs     []Record
		settled  int64
		want     string // links: id, or first-last for a gap
		wantHole int64
	}{
		{name: "contiguous from the start", recs: recs(1, 2, 3), want: "1 2 3"},
		{name: "nothing to link", head: head5[4], want: ""},
		{name: "hole not settled", recs: recs(1, 2, 4, 5), want: "1 2", wantHole: 4},
		{name: "hole at the head", recs: recs(3), want: "", wantHole: 3},
		{name: "settled below the visible id", recs: recs(1, 2, 4, 5), settled: 4, want: "1 2 3-3 4 5"},
		{name: "settled only below the hole's end", recs: recs(1, 2, 4), settled: 3, want: "1 2", wantHole: 4},
		{name: "second hole past what was settled", recs: recs(1, 3, 6), settled: 3, want: "1 2-2 3", wantHole: 6},
		{name: "continues the head", head: head5[4], recs: recs(6, 9), settled: 10, want: "6 7-8 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links, hole, err := plan(tt.head, tt.recs, tt.settled)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			prev := tt.head.ChainHash
			for _, k := range links {
				if k.Gap {
					got = append(got, fmt.Sprintf("%d-%d", k.ID, k.LastID))
				} else {
					got = append(got, fmt.Sprint(k.ID))
				}
				if !bytes.Equal(k.ChainHash, ChainHash(prev, k.ContentHash)) {
					t.Errorf("link %d does not follow its predecessor", k.ID)
				}
				prev = k.ChainHash
			}
			if strings.Join(got, " ") != tt.want || hole != tt.wantHole {
				t.Errorf("links %q hole %d, want %q hole %d", strings.Join(got, " "), hole, tt.want, tt.wantHole)
			}
		})
	}
	if _, _, err := plan(head5[4], recs(5), 0); err == nil {
		t.Error("plan accepted an event at the head")
	}
}

func TestParseAnchor(t *testing.T) {
	hash := strings.Repeat("ab", HashSize)
	a, err := ParseAnchor("12:" + hash)
	if err != nil || a.ID != 12 || fmt.Sprintf("%x", a.Hash) != hash {
		t.Fatalf("ParseAnchor = %+v, %v", a, err)
	}
	for _, bad := range []string{"", "12", "0:" + hash, "-1:" + hash, "x:" + hash, "12:" + hash[:62], "12:" + hash + "00", "12:zz" + hash[2:]} {
		if _, err := ParseAnchor(bad); err == nil {
			t.Errorf("ParseAnchor(%q) succeeded", bad)
		}
	}
}
