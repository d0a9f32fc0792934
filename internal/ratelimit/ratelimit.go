// Package ratelimit counts events per key (a client address, say) in memory
// and says when a key has used up its budget. It uses the generic cell rate
// algorithm (GCRA): one timestamp per key, the "theoretical arrival time"
// of its next event, which is all a token bucket needs when buckets refill
// at a constant rate. A key whose timestamp has passed has its whole budget
// back and is indistinguishable from one never seen, so it can be forgotten
// at any time; that is what keeps memory bounded.
//
// The counts are this process's own: they are not shared with other nodes
// and are lost on restart (docs/DESIGN.md says why that is the right place
// for the limits that use it).
package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rate is a budget of Limit events per Period: all of them at once (a
// burst), or spread out, one more becoming available every Period/Limit.
// The zero Rate is "off": no limit.
type Rate struct {
	Limit  int
	Period time.Duration
}

// Off reports whether r is no limit at all.
func (r Rate) Off() bool { return r.Limit == 0 }

func (r Rate) String() string {
	if r.Off() {
		return "off"
	}
	return strconv.Itoa(r.Limit) + "/" + r.Period.String()
}

// interval is the time it takes to earn back one event.
func (r Rate) interval() time.Duration { return r.Period / time.Duration(r.Limit) }

// maxLimit keeps Period/Limit a useful interval and a budget a number
// people mean.
const maxLimit = 1_000_000

// ParseRate parses "LIMIT/PERIOD" ("30/1m": 30 at once, then one every two
// seconds) or "off". PERIOD is a Go duration from 1s to 24h.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "off" {
		return Rate{}, nil
	}
	n, p, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("ratelimit: %q is not LIMIT/PERIOD (such as 30/1m) or off", s)
	}
	limit, err := strconv.Atoi(n)
	if err != nil || limit < 1 || limit > maxLimit {
		return Rate{}, fmt.Errorf("ratelimit: %q: the limit must be a whole number from 1 to %d", s, maxLimit)
	}
	period, err := time.ParseDuration(p)
	if err != nil || period < time.Second || period > 24*time.Hour {
		return Rate{}, fmt.Errorf("ratelimit: %q: the period must be a duration from 1s to 24h", s)
	}
	return Rate{Limit: limit, Period: period}, nil
}

// evictionSample is how many entries an insertion into a full Limiter
// looks at to find one to forget.
const evictionSample = 8

// Limiter holds a budget per key. Check asks whether a key has any budget
// left, Spend takes one event from it; keeping the two apart lets a caller
// charge only for outcomes it learns afterwards (a failed authentication),
// while refusing before doing any work once the budget is gone.
//
// It remembers at most maxKeys keys. Inserting into a full Limiter forgets a
// key whose budget is whole again if it finds one among a few it samples,
// else the sampled key closest to a whole budget: a client with that many
// addresses at once can escape a per-address limit anyway, and the memory
// stays bounded whatever it sends.
type Limiter[K comparable] struct {
	interval  int64 // nanoseconds to earn back one event
	tolerance int64 // how far ahead of now the arrival time may be and still allow an event
	maxKeys   int
	now       func() time.Time

	mu  sync.Mutex
	tat map[K]int64 // theoretical arrival time of each key's next event, Unix nanoseconds
}

// New returns a Limiter with rate per key, remembering at most maxKeys keys
// (at least 1), reading the time from now (time.Now when nil). A rate that
// is Off gives nil, a Limiter that allows everything.
func New[K comparable](rate Rate, maxKeys int, now func() time.Time) (*Limiter[K], error) {
	if rate.Off() {
		return nil, nil
	}
	if rate.Limit < 1 || rate.Period <= 0 || rate.interval() <= 0 {
		return nil, errors.New("ratelimit: the rate must have a positive limit and a period of at least one nanosecond per event")
	}
	if maxKeys < 1 {
		return nil, errors.New("ratelimit: a limiter must be able to remember at least one key")
	}
	if now == nil {
		now = time.Now
	}
	iv := int64(rate.interval())
	return &Limiter[K]{
		interval:  iv,
		tolerance: int64(rate.Period) - iv,
		maxKeys:   maxKeys,
		now:       now,
		tat:       make(map[K]int64),
	}, nil
}

// Check reports whether key has budget left for one event. When it has
// not, wait is how long until it has (more than zero). Check spends
// nothing and remembers nothing: a key never spent from costs no memory.
// A nil Limiter allows everything.
func (l *Limiter[K]) Check(key K) (wait time.Duration, ok bool) {
	if l == nil {
		return 0, true
	}
	now := l.now().UnixNano()
	l.mu.Lock()
	tat, seen := l.tat[key]
	l.mu.Unlock()
	if !seen {
		return 0, true
	}
	if over := tat - now - l.tolerance; over > 0 {
		return time.Duration(over), false
	}
	return 0, true
}

// Spend takes one event from key's budget, whether or not any was left,
// and reports whether key has none left now but had some before: true once
// per exhaustion, for a caller that logs when a client starts being
// refused. The debt never grows past one whole budget, so a client that
// keeps trying while refused waits no longer than one interval after it
// stops.
func (l *Limiter[K]) Spend(key K) (exhausted bool) {
	if l == nil {
		return false
	}
	now := l.now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	tat, seen := l.tat[key]
	if !seen && len(l.tat) >= l.maxKeys {
		l.evict(now)
	}
	tat = max(tat, now)
	hadBudget := tat-now <= l.tolerance
	tat = min(tat+l.interval, now+l.tolerance+l.interval)
	l.tat[key] = tat
	return hadBudget && tat-now > l.tolerance
}

// evict forgets one key to make room, looking at a few: the first whose
// budget is whole again, else the one closest to it. Map iteration starts
// at a random place, so the sample is a fresh one each time. Called with
// mu held and the map non-empty.
func (l *Limiter[K]) evict(now int64) {
	var victim K
	oldest, n := int64(0), 0
	for k, tat := range l.tat {
		if tat <= now {
			delete(l.tat, k)
			return
		}
		if n == 0 || tat < oldest {
			victim, oldest = k, tat
		}
		if n++; n == evictionSample {
			break
		}
	}
	delete(l.tat, victim)
}

// Len returns how many keys the limiter remembers (for a metric).
func (l *Limiter[K]) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tat)
}
