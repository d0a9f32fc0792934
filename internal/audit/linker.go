package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// Store is what a Linker needs of the database.
type Store interface {
	// LinkAudit runs fn in one transaction that holds the chain's lock,
	// which at most one linker of all the nodes holds at a time, and commits
	// when fn returns nil (rolls back otherwise). When another linker holds
	// the lock it returns false at once without calling fn.
	LinkAudit(ctx context.Context, fn func(Tx) error) (bool, error)
	// AuditChainHead returns the newest link (zero before the first) and the
	// number of committed events above it.
	AuditChainHead(ctx context.Context) (pki.AuditChainHead, error)
}

// Tx is the linker's view of the database inside LinkAudit's transaction.
// Each call is a statement of its own with a fresh snapshot (READ
// COMMITTED): it sees every transaction that ended before it began.
type Tx interface {
	// Head returns the newest link; ok is false when the chain is empty.
	Head(ctx context.Context) (l Link, ok bool, err error)
	// Records returns up to limit committed events with ids above after,
	// in id order.
	Records(ctx context.Context, after int64, limit int) ([]Record, error)
	// IDHolders names the transactions that hold a lock on the audit
	// trail's id sequence now, which every transaction takes before it is
	// given an id and keeps until it ends. It fails when the sequence hands
	// out ids in cached blocks (CACHE > 1), which would break id order.
	IDHolders(ctx context.Context) ([]string, error)
	// Running reports whether any of holders (from IDHolders) is still
	// running.
	Running(ctx context.Context, holders []string) (bool, error)
	// Append inserts links, which continue the chain from Head.
	Append(ctx context.Context, links []Link) error
}

// LinkerOptions adjust a Linker. Zero values take the defaults.
type LinkerOptions struct {
	// Interval is the pause between passes once the chain has caught up
	// (default 1s); a pass that filled its batch is followed at once.
	Interval time.Duration
	// Batch is the number of events read and linked per transaction
	// (default 1000).
	Batch int
	Log   *slog.Logger
}

// Default linker settings.
const (
	DefaultInterval = time.Second
	DefaultBatch    = 1000
)

// LinkResult says what one pass did.
type LinkResult struct {
	Linked  int  // event links appended
	Gaps    int  // gap links appended
	Busy    bool // another linker held the lock: nothing was done
	Waiting bool // stopped at a missing id that may still commit
	More    bool // the batch was full: there may be more to link now
}

// Linker appends the chain's links for committed audit events, in id
// order (see the package documentation for why this is safe with writers
// on several nodes). Every node runs one; they take turns through
// Store.LinkAudit. It is safe for concurrent use.
type Linker struct {
	store    Store
	batch    int
	interval time.Duration
	log      *slog.Logger

	pass    sync.Mutex  // one pass at a time; guards pending
	pending *pendingGap // the hole being waited on, if any

	mu     sync.Mutex // guards status and known
	status pki.AuditChainHead
	known  bool
}

// pendingGap is a hole in the ids that the linker saw below the visible id
// below, with the transactions that held the id sequence just after: once
// none of them is running, every id under below that is still missing will
// never commit.
type pendingGap struct {
	below   int64
	holders []string
}

// NewLinker returns a Linker over st.
func NewLinker(st Store, opts LinkerOptions) *Linker {
	l := &Linker{store: st, batch: opts.Batch, interval: opts.Interval, log: opts.Log}
	if l.batch <= 0 {
		l.batch = DefaultBatch
	}
	if l.interval <= 0 {
		l.interval = DefaultInterval
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return l
}

// Link runs one pass: in one transaction, it links up to a batch of
// committed events that follow the head, recording as gaps the ids below
// them that can no longer commit, and stops at the first missing id that
// still might.
func (l *Linker) Link(ctx context.Context) (LinkResult, error) {
	l.pass.Lock()
	defer l.pass.Unlock()
	var res LinkResult
	var pending *pendingGap
	ok, err := l.store.LinkAudit(ctx, func(tx Tx) error {
		res, pending = LinkResult{}, l.pending
		head, _, err := tx.Head(ctx)
		if err != nil {
			return err
		}
		// Settle the hole seen by an earlier pass before reading, so that
		// this read sees whatever its transactions committed.
		var settled int64
		if pending != nil {
			running, err := tx.Running(ctx, pending.holders)
			if err != nil {
				return err
			}
			if !running {
				settled, pending = pending.below, nil
			}
		}
		recs, err := tx.Records(ctx, head.LastID, l.batch)
		if err != nil {
			return err
		}
		links, hole, err := plan(head, recs, settled)
		if err != nil {
			return err
		}
		if hole != 0 {
			res.Waiting = true
			// A pending hole from an earlier pass still covers this one if
			// it was seen below a visible id at or above hole; otherwise
			// note who may still fill this one, now that it has been seen.
			if pending == nil || pending.below < hole {
				holders, err := tx.IDHolders(ctx)
				if err != nil {
					return err
				}
				pending = &pendingGap{below: hole, holders: holders}
			}
		}
		if len(links) > 0 {
			if err := tx.Append(ctx, links); err != nil {
				return err
			}
		}
		for _, k := range links {
			if k.Gap {
				res.Gaps++
			} else {
				res.Linked++
			}
		}
		res.More = hole == 0 && len(recs) == l.batch
		return nil
	})
	if err != nil {
		return LinkResult{}, fmt.Errorf("audit: linking: %w", err)
	}
	if !ok {
		return LinkResult{Busy: true}, nil
	}
	l.pending = pending
	return res, nil
}

// plan computes the links that continue the chain from head over recs (in
// id order, all above head). A missing id below settled is a gap for good;
// at the first missing id that is not, plan stops and returns the id of
// the record after the hole.
func plan(head Link, recs []Record, settled int64) (links []Link, hole int64, err error) {
	prev, next := head.ChainHash, head.LastID+1
	for _, r := range recs {
		if r.ID < next {
			return nil, 0, fmt.Errorf("event %d is at or below the chain head %d", r.ID, next-1)
		}
		if r.ID > next {
			if r.ID > settled {
				return links, r.ID, nil
			}
			g := Link{ID: next, LastID: r.ID - 1, Gap: true, ContentHash: GapHash(next, r.ID-1)}
			g.ChainHash = ChainHash(prev, g.ContentHash)
			links, prev = append(links, g), g.ChainHash
		}
		content, err := ContentHash(r)
		if err != nil {
			return nil, 0, err
		}
		k := Link{ID: r.ID, LastID: r.ID, ContentHash: content, ChainHash: ChainHash(prev, content)}
		links, prev, next = append(links, k), k.ChainHash, r.ID+1
	}
	return links, 0, nil
}

// Run links until ctx ends, refreshing Status at most once per Interval.
// It paces itself by what each pass found: at once after a full batch;
// after a tenth of Interval when it linked events and stopped at a missing
// id (whose transaction is usually about to end: under load there is nearly
// always one in flight at the tail); backing off from there up to Interval
// while that transaction stays open; Interval when there is nothing to do.
// Failures are logged (the first, then once a minute while they last) and
// retried.
func (l *Linker) Run(ctx context.Context) {
	short := max(l.interval/10, time.Millisecond)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var failingSince, lastLogged, refreshed time.Time
	var backoff time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		res, err := l.Link(ctx)
		if err == nil && time.Since(refreshed) >= l.interval {
			if err = l.refresh(ctx); err == nil {
				refreshed = time.Now()
			}
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			now := time.Now()
			if failingSince.IsZero() {
				failingSince = now
			}
			if now.Sub(lastLogged) >= time.Minute {
				l.log.Warn("audit chain: linking failed; will retry", "error", err, "failing_since", failingSince)
				lastLogged = now
			}
		case !failingSince.IsZero():
			l.log.Info("audit chain: linking works again", "failed_for", time.Since(failingSince).Round(time.Second))
			failingSince, lastLogged = time.Time{}, time.Time{}
		}
		next := l.interval
		switch {
		case err != nil || res.Busy:
			backoff = 0
		case res.More:
			next, backoff = 0, 0
		case res.Waiting && res.Linked+res.Gaps > 0:
			next, backoff = short, short
		case res.Waiting:
			backoff = min(max(2*backoff, short), l.interval)
			next = backoff
		default:
			backoff = 0
		}
		timer.Reset(next)
	}
}

// refresh reads the head and the lag into Status.
func (l *Linker) refresh(ctx context.Context) error {
	h, err := l.store.AuditChainHead(ctx)
	if err != nil {
		return fmt.Errorf("audit: reading the chain head: %w", err)
	}
	l.mu.Lock()
	l.status, l.known = h, true
	l.mu.Unlock()
	return nil
}

// Status returns the chain head and lag as Run last read them (at most an
// Interval ago while it runs); ok is false until Run has read them once.
func (l *Linker) Status() (head pki.AuditChainHead, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status, l.known
}

// ErrSequenceCached is returned (wrapped) by Tx.IDHolders when the audit id
// sequence hands out ids in cached blocks, so that ids are no longer given
// out in order and a missing id cannot be told from one still to come.
var ErrSequenceCached = errors.New("audit: the audit_events id sequence caches values (CACHE > 1); the chain needs CACHE 1")
