package ratelimit

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// clock is a manual clock: time moves only when the test says.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustNew[K comparable](t *testing.T, r Rate, maxKeys int, now func() time.Time) *Limiter[K] {
	t.Helper()
	l, err := New[K](r, maxKeys, now)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		bad  bool
	}{
		{in: "30/1m", want: Rate{30, time.Minute}},
		{in: " 5/10s ", want: Rate{5, 10 * time.Second}},
		{in: "1/24h", want: Rate{1, 24 * time.Hour}},
		{in: "off", want: Rate{}},
		{in: "", bad: true},
		{in: "30", bad: true},
		{in: "0/1m", bad: true},
		{in: "-1/1m", bad: true},
		{in: "x/1m", bad: true},
		{in: "30/1", bad: true},
		{in: "30/500ms", bad: true},
		{in: "30/25h", bad: true},
		{in: "2000000/1m", bad: true},
		{in: "30/1m/2", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRate(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParseRate(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if back, err := ParseRate(got.String()); err != nil || back != got {
				t.Errorf("String() %q does not parse back: %v, %v", got.String(), back, err)
			}
		})
	}
}

// TestBudget: a fresh key has Limit events at once; then Check refuses with
// the time to the next event, which comes back after exactly that long; a
// key that stops comes back to its whole budget after Period.
func TestBudget(t *testing.T) {
	c := newClock()
	l := mustNew[string](t, Rate{Limit: 3, Period: 3 * time.Second}, 10, c.Now)

	for i := range 3 {
		if wait, ok := l.Check("a"); !ok {
			t.Fatalf("event %d refused (wait %s) within the budget", i+1, wait)
		}
		if exhausted := l.Spend("a"); exhausted != (i == 2) {
			t.Errorf("event %d: exhausted = %v", i+1, exhausted)
		}
	}
	wait, ok := l.Check("a")
	if ok || wait != time.Second {
		t.Fatalf("after the budget: Check = %s, %v; want 1s, refused", wait, ok)
	}
	if _, ok := l.Check("b"); !ok {
		t.Fatal("another key is refused")
	}

	// Spending while refused does not push the wait past one interval,
	// and does not report a second exhaustion.
	for range 100 {
		if l.Spend("a") {
			t.Fatal("a refused key reported exhausted again")
		}
	}
	if wait, _ := l.Check("a"); wait != time.Second {
		t.Fatalf("after spending while refused: wait %s, want 1s", wait)
	}

	c.Advance(999 * time.Millisecond)
	if wait, ok := l.Check("a"); ok || wait != time.Millisecond {
		t.Fatalf("1ms early: Check = %s, %v", wait, ok)
	}
	c.Advance(time.Millisecond)
	if _, ok := l.Check("a"); !ok {
		t.Fatal("refused after the wait it gave")
	}
	if !l.Spend("a") {
		t.Error("spending the one event earned back did not report exhaustion")
	}
	if _, ok := l.Check("a"); ok {
		t.Fatal("a second event allowed after one interval")
	}

	// After a whole period the whole budget is back.
	c.Advance(3 * time.Second)
	for i := range 3 {
		if _, ok := l.Check("a"); !ok {
			t.Fatalf("after a period, event %d refused", i+1)
		}
		l.Spend("a")
	}
	if _, ok := l.Check("a"); ok {
		t.Fatal("budget larger than Limit after a period")
	}
}

// TestCheckRemembersNothing: checking keys, even millions of them, costs no
// memory; only spending does.
func TestCheckRemembersNothing(t *testing.T) {
	l := mustNew[int](t, Rate{Limit: 1, Period: time.Minute}, 100, newClock().Now)
	for i := range 10_000 {
		l.Check(i)
	}
	if n := l.Len(); n != 0 {
		t.Fatalf("Check remembered %d keys", n)
	}
}

// TestMemoryBound: however many keys are spent from, the limiter remembers
// at most maxKeys; whole budgets are forgotten first, so that keys still in
// debt survive a flood of new keys while any whole budget is left to drop.
func TestMemoryBound(t *testing.T) {
	c := newClock()
	const maxKeys = 64
	l := mustNew[int](t, Rate{Limit: 2, Period: time.Minute}, maxKeys, c.Now)
	for i := range 100 * maxKeys {
		l.Spend(i)
		if n := l.Len(); n > maxKeys {
			t.Fatalf("after %d keys the limiter remembers %d, more than %d", i+1, n, maxKeys)
		}
	}

	// Fill with keys whose budgets are whole again, then one key in debt:
	// new keys push out only the whole ones.
	l = mustNew[int](t, Rate{Limit: 2, Period: time.Minute}, maxKeys, c.Now)
	for i := range maxKeys - 1 {
		l.Spend(i)
	}
	c.Advance(time.Minute)
	l.Spend(-1)
	l.Spend(-1)
	for i := range maxKeys - 1 {
		l.Spend(1000 + i)
		if _, ok := l.Check(-1); ok {
			t.Fatalf("after %d new keys the key in debt was forgotten, with whole budgets still to drop", i+1)
		}
	}
	if n := l.Len(); n != maxKeys {
		t.Fatalf("remembers %d keys, want %d", n, maxKeys)
	}
}

// TestIPv6Sweep: a client stepping through the addresses of its IPv6 /64,
// keyed as the server keys them (by Prefix in internal/clientip, here the
// /64 directly), is one key: it neither escapes the limit nor fills memory.
func TestIPv6Sweep(t *testing.T) {
	c := newClock()
	l := mustNew[netip.Prefix](t, Rate{Limit: 5, Period: time.Minute}, 1000, c.Now)
	base := netip.MustParseAddr("2001:db8:1:2::")
	refused := 0
	for i := range 10_000 {
		a := netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2:%x:%x::1", i>>16, i&0xffff))
		key, _ := a.Prefix(64)
		if key.Addr() != base {
			t.Fatalf("%s keyed as %s", a, key)
		}
		if _, ok := l.Check(key); !ok {
			refused++
			continue
		}
		l.Spend(key)
	}
	if refused != 10_000-5 {
		t.Errorf("%d of 10000 refused, want all but 5", refused)
	}
	if n := l.Len(); n != 1 {
		t.Errorf("limiter remembers %d keys for one /64", n)
	}
}

func TestOff(t *testing.T) {
	l, err := New[string](Rate{}, 10, nil)
	if err != nil || l != nil {
		t.Fatalf("New(off) = %v, %v; want nil, nil", l, err)
	}
	for range 1000 {
		l.Spend("a")
	}
	if _, ok := l.Check("a"); !ok || l.Len() != 0 {
		t.Fatal("the nil Limiter limits")
	}
	if _, err := New[string](Rate{Limit: 1, Period: time.Minute}, 0, nil); err == nil {
		t.Error("New accepted maxKeys 0")
	}
}

// TestConcurrent: the limiter is safe for concurrent use (run with -race)
// and keeps its memory bound under concurrent insertions.
func TestConcurrent(t *testing.T) {
	c := newClock()
	l := mustNew[int](t, Rate{Limit: 50, Period: time.Minute}, 8, c.Now)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				l.Check(i % 16)
				l.Spend((i + g) % 16)
			}
		})
	}
	wg.Wait()
	if n := l.Len(); n > 8 {
		t.Fatalf("remembers %d keys, more than 8", n)
	}
}
