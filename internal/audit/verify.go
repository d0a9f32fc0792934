package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Reader is what Verify reads. Both methods return rows with ids above
// after, in id order, at most limit of them; after may be math.MinInt64 to
// start from the very first row, whatever its id.
type Reader interface {
	AuditLinks(ctx context.Context, after int64, limit int) ([]Link, error)
	AuditRecords(ctx context.Context, after int64, limit int) ([]Record, error)
}

// Anchor is a chain hash recorded somewhere the database's owner cannot
// rewrite (a log line, a monitoring system's copy of the head, a printout):
// the hash chain proves that nothing at or below a head changed, and an
// anchor proves which head. Verify checks that the link ending at ID has
// this chain hash.
type Anchor struct {
	ID   int64
	Hash []byte
}

// ParseAnchor reads an anchor written as "ID:HEX" (the head id and chain
// hash that `pkid audit verify`, the admin API and the metrics show).
func ParseAnchor(s string) (Anchor, error) {
	idText, hashText, ok := strings.Cut(s, ":")
	if !ok {
		return Anchor{}, fmt.Errorf("audit: anchor %q is not ID:HASH", s)
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id < 1 {
		return Anchor{}, fmt.Errorf("audit: anchor id %q is not a positive whole number", idText)
	}
	h, err := hex.DecodeString(hashText)
	if err != nil || len(h) != HashSize {
		return Anchor{}, fmt.Errorf("audit: anchor hash must be %d hex digits", 2*HashSize)
	}
	return Anchor{ID: id, Hash: h}, nil
}

// Report is what Verify found on an intact chain.
type Report struct {
	Events     int64  // events linked and verified
	Gaps       int64  // gap links (ranges of ids never committed)
	GapIDs     int64  // ids those gaps cover
	HeadID     int64  // the last id the chain covers (0: empty chain)
	HeadHash   []byte // the chain hash there (nil: empty chain)
	Unlinked   int64  // committed events above the head, not linked yet
	AnchorSeen bool   // the anchor, if one was given, matched
}

// BreakError is the first place where the chain does not hold. ID names
// the audit event (or the first id of the gap) at fault.
type BreakError struct {
	ID     int64
	Reason string
}

func (e *BreakError) Error() string {
	return fmt.Sprintf("audit chain broken at event %d: %s", e.ID, e.Reason)
}

// VerifyOptions adjust Verify.
type VerifyOptions struct {
	Anchor *Anchor // optional
	Page   int     // rows read per query; default 5000
}

// Verify walks the whole chain from id 1 and checks, for every link, that
// it starts where the previous one ended, that its content hash is that of
// the event it covers as stored now (or, for a gap, that no event exists in
// its range), and that its chain hash follows from the previous link's. It
// returns a *BreakError for the first link that fails, and counts the
// committed events above the head that are not linked yet (which is not a
// failure: the linker runs behind the writers).
func Verify(ctx context.Context, r Reader, opts VerifyOptions) (Report, error) {
	page := opts.Page
	if page <= 0 {
		page = 5000
	}
	recs := &recordCursor{r: r, after: math.MinInt64, page: page}
	var rep Report
	var prev []byte
	next := int64(1)
	after := int64(math.MinInt64)
	for {
		links, err := r.AuditLinks(ctx, after, page)
		if err != nil {
			return rep, err
		}
		if len(links) == 0 {
			break
		}
		for _, k := range links {
			if err := checkLink(ctx, recs, k, prev, next); err != nil {
				return rep, err
			}
			if a := opts.Anchor; a != nil && k.LastID == a.ID {
				if !bytes.Equal(k.ChainHash, a.Hash) {
					return rep, &BreakError{ID: a.ID, Reason: fmt.Sprintf(
						"the chain hash here is %x, not the anchor's %x: the trail was rewritten up to this point",
						k.ChainHash, a.Hash)}
				}
				rep.AnchorSeen = true
			}
			if k.Gap {
				rep.Gaps++
				rep.GapIDs += k.LastID - k.ID + 1
			} else {
				rep.Events++
			}
			prev, next = k.ChainHash, k.LastID+1
			rep.HeadID, rep.HeadHash = k.LastID, k.ChainHash
		}
		after = links[len(links)-1].ID
	}
	if a := opts.Anchor; a != nil && !rep.AnchorSeen {
		reason := fmt.Sprintf("no link ends at the anchor's id (the chain ends at %d)", rep.HeadID)
		if rep.HeadID < a.ID {
			reason = fmt.Sprintf("the chain ends at %d, before the anchor: events were removed from its end", rep.HeadID)
		}
		return rep, &BreakError{ID: a.ID, Reason: reason}
	}
	for {
		rec, err := recs.peek(ctx)
		if err != nil {
			return rep, err
		}
		if rec == nil {
			return rep, nil
		}
		rep.Unlinked++
		recs.advance()
	}
}

// checkLink checks one link k, which should start at next and follow the
// chain hash prev, against the events recs holds, consuming those it covers.
func checkLink(ctx context.Context, recs *recordCursor, k Link, prev []byte, next int64) error {
	switch {
	case k.ID > next:
		return &BreakError{ID: next, Reason: fmt.Sprintf("ids %d to %d are missing from the chain (links were removed)", next, k.ID-1)}
	case k.ID < next:
		return &BreakError{ID: k.ID, Reason: fmt.Sprintf("a link starts at %d, inside what the chain already covers (up to %d)", k.ID, next-1)}
	case k.LastID < k.ID || (!k.Gap && k.LastID != k.ID):
		return &BreakError{ID: k.ID, Reason: fmt.Sprintf("the link covers a malformed range %d to %d", k.ID, k.LastID)}
	}
	rec, err := recs.peek(ctx)
	if err != nil {
		return err
	}
	if rec != nil && rec.ID < k.ID {
		// Only possible before the first link: an event the chain cannot
		// cover (an id below 1, inserted by hand).
		return &BreakError{ID: rec.ID, Reason: "the event lies outside the chain, which starts at id 1"}
	}
	var content []byte
	if k.Gap {
		if rec != nil && rec.ID <= k.LastID {
			return &BreakError{ID: rec.ID, Reason: fmt.Sprintf(
				"the event exists inside ids %d to %d, which the chain recorded as never committed (it was inserted later)", k.ID, k.LastID)}
		}
		content = GapHash(k.ID, k.LastID)
		if !bytes.Equal(content, k.ContentHash) {
			return &BreakError{ID: k.ID, Reason: fmt.Sprintf("the gap link over ids %d to %d was altered", k.ID, k.LastID)}
		}
	} else {
		if rec == nil || rec.ID != k.ID {
			return &BreakError{ID: k.ID, Reason: "the event was deleted: the chain links it but the trail no longer has it"}
		}
		content, err = ContentHash(*rec)
		if err != nil {
			return &BreakError{ID: k.ID, Reason: err.Error()}
		}
		if !bytes.Equal(content, k.ContentHash) {
			return &BreakError{ID: k.ID, Reason: "the event was altered: its content no longer has the hash recorded when it was linked"}
		}
		recs.advance()
	}
	if !bytes.Equal(ChainHash(prev, content), k.ChainHash) {
		return &BreakError{ID: k.ID, Reason: "the chain hash does not follow from the link before it (links were rewritten)"}
	}
	return nil
}

// recordCursor pages through the events in id order.
type recordCursor struct {
	r     Reader
	after int64
	page  int
	buf   []Record
	done  bool
}

// peek returns the next event, or nil after the last.
func (c *recordCursor) peek(ctx context.Context) (*Record, error) {
	if len(c.buf) == 0 && !c.done {
		recs, err := c.r.AuditRecords(ctx, c.after, c.page)
		if err != nil {
			return nil, err
		}
		c.buf, c.done = recs, len(recs) < c.page
		if len(recs) > 0 {
			c.after = recs[len(recs)-1].ID
		}
	}
	if len(c.buf) == 0 {
		return nil, nil
	}
	return &c.buf[0], nil
}

// advance drops the event peek returned.
func (c *recordCursor) advance() { c.buf = c.buf[1:] }
