package edge

import (
	"context"
	"crypto/x509"
	"testing"
)

// The cost of the revocation check itself, beside what it guards: a warm
// cache answers at a handshake (check) and at every request (checkKnown); a
// cold one asks the responder (here the test's, on loopback, which signs
// each answer); chain verification, which every handshake does anyway, is
// the yardstick. bench/edge measures the whole proxy.

func BenchmarkRevocation(b *testing.B) {
	h := newHarness(b)
	c := h.leaf(account)
	ctx := context.Background()
	if _, err := h.edge.checker.check(ctx, c.leaf, h.inter.cert); err != nil {
		b.Fatal(err)
	}
	b.Run("handshake check, warm cache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := h.edge.checker.check(ctx, c.leaf, h.inter.cert); err != nil {
				b.Fatal(err)
			}
		}
	})
	k := keyOf(c.leaf)
	b.Run("handshake check, cold: one OCSP exchange on loopback", func(b *testing.B) {
		for b.Loop() {
			h.edge.checker.cache.mu.Lock()
			delete(h.edge.checker.cache.m, k)
			h.edge.checker.cache.mu.Unlock()
			if a, err := h.edge.checker.check(ctx, c.leaf, h.inter.cert); err != nil || a.Source != SourceOCSP {
				b.Fatal(a, err)
			}
		}
	})
	b.Run("request check, warm cache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, known, err := h.edge.checker.checkKnown(ctx, k); !known || err != nil {
				b.Fatal(known, err)
			}
		}
	})
	t := h.edge.trust.Load()
	b.Run("chain verification (for scale)", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := t.verify([]*x509.Certificate{c.leaf, h.inter.cert}, h.clock.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
