package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Group commit, and group reads.
//
// Every issuance makes three statements: it reads the caller's token and
// account, writes the pending row before the signature and the issued row
// after it. Under load many requests make them at once, and most of their
// cost is per statement (and per commit) rather than per row: a round trip
// that wakes a backend, executor start-up, CHECK constraints compiled afresh
// for each statement, a WAL flush. So concurrent calls are gathered into one
// statement (and one commit): while one batch is being run the calls that
// arrive queue up, and the next batch takes them all. Nothing waits on a
// timer, so a lone call runs at once, exactly as without the group.
//
// What a caller is promised does not change: a read sees what was committed
// when its batch ran, after the call began, as its own statement would have;
// a write returns nil only after the transaction holding its row has
// committed. The rows of one batch commit or roll back together, but each
// gets its own answer; a flush function that sees the batch statement fail
// for a reason that is not the database being unreachable writes each row
// again on its own, so that one row the database refuses cannot fail the
// others.

// maxGroupBatch bounds the rows of one statement: enough to absorb the
// concurrency of a busy node, small enough to keep one statement short.
const maxGroupBatch = 64

// groupFlushTimeout bounds how long one batch may take. A batch is written on
// behalf of several requests, so it does not run under any one request's
// context: a client that hangs up must not fail the others (and a row about
// a signature is better recorded than abandoned).
const groupFlushTimeout = 30 * time.Second

// groupCall is one call waiting for its batch.
type groupCall[T any] struct {
	in   T
	err  error
	wake chan struct{} // closed when err is set, or when this caller is to lead
	lead bool          // set before wake is closed: write the next batch
}

// group gathers calls into batches that flush runs. One caller at a time,
// the leader, runs a batch; when it is done it hands the lead to the first
// caller that queued meanwhile, so no caller runs more than one batch.
type group[T any] struct {
	// what names the statement in errors.
	what string
	// flush runs a batch and sets every call's err (and its results).
	flush func(ctx context.Context, batch []*groupCall[T])

	mu    sync.Mutex
	busy  bool
	queue []*groupCall[T]
}

// do queues in and returns when its batch has committed or failed.
func (g *group[T]) do(ctx context.Context, in T) error {
	c := &groupCall[T]{in: in, wake: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	if g.busy {
		g.mu.Unlock()
		// Waiting is not bounded by ctx: the row is in a batch that another
		// caller may be writing, and whoever is woken to lead must lead.
		// The batch itself is bounded by groupFlushTimeout.
		<-c.wake
		if !c.lead {
			return c.err
		}
	} else {
		g.busy = true
		g.mu.Unlock()
	}

	// This caller leads: write what has queued, itself included.
	g.mu.Lock()
	n := min(len(g.queue), maxGroupBatch)
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()

	// Whatever happens while writing, even a panic, the batch's callers are
	// answered and the lead passes on: a group left busy would hold every
	// later call forever.
	defer func() {
		if v := recover(); v != nil {
			err := fmt.Errorf("store: %s: panic: %v", g.what, v)
			for _, o := range batch {
				o.err = err
			}
			g.handOff(batch, c)
			panic(v)
		}
		g.handOff(batch, c)
	}()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), groupFlushTimeout)
	defer cancel()
	g.flush(fctx, batch)
	return c.err
}

// handOff passes the lead to the first caller that queued while batch was
// written, or leaves the group idle, and wakes batch's other callers.
func (g *group[T]) handOff(batch []*groupCall[T], leader *groupCall[T]) {
	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		next.lead = true
		close(next.wake)
	} else {
		g.busy = false
		g.queue = nil
	}
	g.mu.Unlock()
	for _, o := range batch {
		if o != leader {
			close(o.wake)
		}
	}
}
