package main

import (
	"testing"
	"time"
)

// TestStatCPU: utime and stime are read after the command name, whatever
// that name holds.
func TestStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
		ok         bool
	}{
		{"plain", "4242 (pkid) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 25 0 0 20 0 9 0", 1750 * time.Millisecond, true},
		{"spaces and parentheses in the name", "7 (a b) c)) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0", 70 * time.Millisecond, true},
		{"truncated", "7 (pkid) S 1 7", 0, false},
		{"no name", "garbage", 0, false},
		{"not numbers", "7 (pkid) S 1 7 7 0 -1 0 0 0 0 0 x y 0 0", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := statCPU([]byte(tc.stat))
			if got != tc.want || ok != tc.ok {
				t.Errorf("statCPU(%q) = %v, %v; want %v, %v", tc.stat, got, ok, tc.want, tc.ok)
			}
		})
	}
}
