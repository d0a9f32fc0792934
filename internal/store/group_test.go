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

// TestGroupBatches holds the first batch in flush while more calls queue:
// they form the next batch, led by one of them, and every call gets the
// answer its own row was given, whoever led its batch.
func TestGroupBatches(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	g := &group[int]{what: "test", flush: func(_ context.Context, batch []*groupCall[int]) {
		mu.Lock()
		sizes = append(sizes, len(batch))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release
		}
		for _, c := range batch {
			if c.in%2 == 1 {
				c.err = fmt.Errorf("row %d refused", c.in)
			}
		}
	}}
	const queued = 10
	errs := make([]error, queued+1)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = g.do(context.Background(), 0) })
	// Wait until the first call is in flush, then queue the others behind it.
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
	for i := 1; i <= queued; i++ {
		wg.Go(func() { errs[i] = g.do(context.Background(), i) })
	}
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == queued })
	close(release)
	waitGroup(t, &wg)

	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != queued {
		t.Errorf("batch sizes %v, want [1 %d]", sizes, queued)
	}
	for i, err := range errs {
		if want := i%2 == 1; (err != nil) != want || (want && !strings.Contains(err.Error(), fmt.Sprintf("row %d ", i))) {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if g.busy || len(g.queue) != 0 {
		t.Errorf("group left busy (%v) or with a queue (%d)", g.busy, len(g.queue))
	}
}

// TestGroupBatchBound: no batch holds more than maxGroupBatch calls; the
// rest are written by the next leader.
func TestGroupBatchBound(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	g := &group[int]{what: "test", flush: func(_ context.Context, batch []*groupCall[int]) {
		mu.Lock()
		sizes = append(sizes, len(batch))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release
		}
	}}
	var wg sync.WaitGroup
	wg.Go(func() { _ = g.do(context.Background(), 0) })
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
	const queued = maxGroupBatch + 5
	for i := range queued {
		wg.Go(func() { _ = g.do(context.Background(), i) })
	}
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == queued })
	close(release)
	waitGroup(t, &wg)
	if want := []int{1, maxGroupBatch, 5}; fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Errorf("batch sizes %v, want %v", sizes, want)
	}
}

// TestGroupFlushPanics: a panic in flush reaches the leader, every other call
// of its batch fails with an error that says so, and the group is not left
// busy: the next call is written.
func TestGroupFlushPanics(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	batches := 0
	g := &group[int]{what: "test", flush: func(_ context.Context, batch []*groupCall[int]) {
		mu.Lock()
		batches++
		n := batches
		mu.Unlock()
		switch n {
		case 1:
			<-release
		case 2:
			panic("flush broke")
		}
	}}
	var wg sync.WaitGroup
	wg.Go(func() { _ = g.do(context.Background(), 0) })
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return batches == 1 })
	// Three calls queue; whichever of them leads the second batch panics.
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
			if err := g.do(context.Background(), i); err != nil && strings.Contains(err.Error(), "panic: flush broke") {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == 3 })
	close(release)
	waitGroup(t, &wg)
	if panics != 1 || failed != 2 {
		t.Errorf("%d leaders panicked and %d calls failed, want 1 and 2", panics, failed)
	}
	done := make(chan error, 1)
	go func() { done <- g.do(context.Background(), 4) }()
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
