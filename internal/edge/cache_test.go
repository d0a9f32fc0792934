package edge

import (
	"crypto/sha256"
	"testing"
	"time"
)

// TestCacheBound: a full cache drops expired answers first, then arbitrary
// ones, and never grows past its bound.
func TestCacheBound(t *testing.T) {
	now := time.Now()
	c := newCache(10)
	key := func(i int) certKey { return sha256.Sum256([]byte{byte(i)}) }
	for i := range 10 {
		refresh := now.Add(time.Hour)
		if i < 3 {
			refresh = now.Add(-time.Second) // expired
		}
		c.put(key(i), &entry{refreshAt: refresh}, now)
	}
	c.put(key(10), &entry{refreshAt: now.Add(time.Hour)}, now)
	if n := c.len(); n != 8 {
		t.Fatalf("%d entries after evicting the 3 expired ones, want 8", n)
	}
	for i := range 3 {
		if c.get(key(i)) != nil {
			t.Fatalf("expired entry %d kept", i)
		}
	}
	for i := 11; i < 40; i++ {
		c.put(key(i), &entry{refreshAt: now.Add(time.Hour)}, now)
		if n := c.len(); n > 10 {
			t.Fatalf("%d entries in a cache of 10", n)
		}
	}
	if c.get(key(39)) == nil {
		t.Fatal("the newest entry is missing")
	}
}
