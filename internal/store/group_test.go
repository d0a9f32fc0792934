package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// heldGroup is a group whose first batch waits in flush until release is
// closed, so that the calls made meanwhile queue up behind it. It records
// every batch's size, and hands every batch, with its number (1 for the
// first), to answer when answer is set.
type heldGroup struct {
	g       *group[int]
	release chan struct{}
	mu      sync.Mutex
	sizes   []int
}

func newHeldGroup(answer func(n int, batch []*groupCall[int])) *heldGroup {
	h := &heldGroup{release: make(chan struct{})}
	h.g = &group[int]{what: "test", flush: func(_ context.Context, batch []*groupCall[int]) {
		h.mu.Lock()
		h.sizes = append(h.sizes, len(batch))
		n := len(h.sizes)
		h.mu.Unlock()
		if n == 1 {
			<-h.release
		}
		if answer != nil {
			answer(n, batch)
		}
	}}
	return h
}

// startFirst runs first, which must make one call, in wg, and returns once
// that call is in flush.
func (h *heldGroup) startFirst(t *testing.T, wg *sync.WaitGroup, first func()) {
	t.Helper()
	wg.Go(first)
	waitFor(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.sizes) == 1 })
}

// releaseWhenQueued waits until n calls queue behind the first batch, then
// lets it finish.
func (h *heldGroup) releaseWhenQueued(t *testing.T, n int) {
	t.Helper()
	waitFor(t, func() bool { h.g.mu.Lock(); defer h.g.mu.Unlock(); return len(h.g.queue) == n })
	close(h.release)
}

// TestGroupBatches holds the first batch in flush while more calls queue:
// they form the next batch, led by one of them, and every call gets the
// answer its own row was given, whoever led its batch.
func TestGroupBatches(t *testing.T) {
	h := newHeldGroup(func(_ int, batch []*groupCall[int]) {
		for _, c := range batch {
			if c.in%2 == 1 {
				c.err = fmt.Errorf("row %d refused", c.in)
			}
		}
	})
	const queued = 10
	errs := make([]error, queued+1)
	var wg sync.WaitGroup
	h.startFirst(t, &wg, func() { errs[0] = h.g.do(context.Background(), 0) })
	for i := 1; i <= queued; i++ {
		wg.Go(func() { errs[i] = h.g.do(context.Background(), i) })
	}
	h.releaseWhenQueued(t, queued)
	waitGroup(t, &wg)

	if len(h.sizes) != 2 || h.sizes[0] != 1 || h.sizes[1] != queued {
		t.Errorf("batch sizes %v, want [1 %d]", h.sizes, queued)
	}
	for i, err := range errs {
		if want := i%2 == 1; (err != nil) != want || (want && !strings.Contains(err.Error(), fmt.Sprintf("row %d ", i))) {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if h.g.busy || len(h.g.queue) != 0 {
		t.Errorf("group left busy (%v) or with a queue (%d)", h.g.busy, len(h.g.queue))
	}
}

// TestGroupBatchBound: no batch holds more than maxGroupBatch calls; the
// rest are written by the next leader.
func TestGroupBatchBound(t *testing.T) {
	h := newHeldGroup(nil)
	var wg sync.WaitGroup
	h.startFirst(t, &wg, func() { _ = h.g.do(context.Background(), 0) })
	const queued = maxGroupBatch + 5
	for i := range queued {
		wg.Go(func() { _ = h.g.do(context.Background(), i) })
	}
	h.releaseWhenQueued(t, queued)
	waitGroup(t, &wg)
	if want := []int{1, maxGroupBatch, 5}; fmt.Sprint(h.sizes) != fmt.Sprint(want) {
		t.Errorf("batch sizes %v, want %v", h.sizes, want)
	}
}

// TestGroupFlushPanics: a panic in flush reaches the leader, every other call
// of its batch fails with an error that says so, and the group is not left
// busy: the next call is written.
func TestGroupFlushPanics(t *testing.T) {
	h := newHeldGroup(func(n int, _ []*groupCall[int]) {
		if n == 2 {
			panic("flush broke")
		}
	})
	var wg sync.WaitGroup
	h.startFirst(t, &wg, func() { _ = h.g.do(context.Background(), 0) })
	// Three calls queue; whichever of them leads the second batch panics.
	var mu sync.Mutex
	var panics, failed int
	for i := 1; i <= 3; i++ {
		wg.Go(func() {
			defer func() {
				if v := recover(); v != nil {
					mu.Lock()
					panics++
					mu.Unlock()
				}
			}()
			if err := h.g.do(context.Background(), i); err != nil && strings.Contains(err.Error(), "panic: flush broke") {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	h.releaseWhenQueued(t, 3)
	waitGroup(t, &wg)
	if panics != 1 || failed != 2 {
		t.Errorf("%d leaders panicked and %d calls failed, want 1 and 2", panics, failed)
	}
	done := make(chan error, 1)
	go func() { done <- h.g.do(context.Background(), 4) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("call after the panic: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the group stayed busy after a panic in flush")
	}
}

// TestGroupIgnoresCallerCancel: the batch runs under a context of its own,
// so a caller that has given up does not fail the rows written with it.
func TestGroupIgnoresCallerCancel(t *testing.T) {
	var flushErr error
	g := &group[int]{what: "test", flush: func(ctx context.Context, batch []*groupCall[int]) {
		flushErr = ctx.Err()
		if _, ok := ctx.Deadline(); !ok {
			flushErr = errors.New("flush has no deadline")
		}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.do(ctx, 1); err != nil || flushErr != nil {
		t.Errorf("do = %v, flush context: %v; want both nil", err, flushErr)
	}
}

// waitGroup waits for wg, failing the test if its calls are still blocked
// after a few seconds (a group that never hands off or wakes its callers).
func waitGroup(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("calls still waiting for their batch")
	}
}

// waitFor polls cond until it holds, failing the test after a few seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
	}
}
