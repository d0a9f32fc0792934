package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkEdge is the comparison of cmd edge as a Go benchmark (make bench
// runs it): per revocation setting, one op is a new mTLS connection with
// one request ("connection"), or one request on a kept-alive connection
// ("request"). The edges run in this process, so the figures include the
// client's side of each handshake; compare on with off, not with the
// figures of the load tool. Custom metrics: conns/s or req/s, and p99-ms.
func BenchmarkEdge(b *testing.B) {
	f, err := newFixture(b.TempDir(), 16)
	if err != nil {
		b.Fatal(err)
	}
	defer f.close()
	for _, revocation := range []bool{true, false} {
		name := "revocation=on"
		if !revocation {
			name = "revocation=off"
		}
		p, err := f.startEdge("", "", revocation)
		if err != nil {
			b.Fatal(err)
		}
		for i := range len(f.clients) {
			if err := connection(p.addr, f.clientConfig(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(name+"/connection", func(b *testing.B) {
			var n atomic.Int64
			parallel(b, "conns/s", func() (func() error, func()) {
				return func() error { return connection(p.addr, f.clientConfig(int(n.Add(1)))) }, func() {}
			})
		})
		b.Run(name+"/request", func(b *testing.B) {
			var n atomic.Int64
			parallel(b, "req/s", func() (func() error, func()) {
				conn, err := tls.Dial("tcp", p.addr, f.clientConfig(int(n.Add(1))))
				if err != nil {
					return func() error { return err }, func() {}
				}
				w, r := bufio.NewWriter(conn), bufio.NewReader(conn)
				return func() error { return roundTrip(w, r) }, func() { conn.Close() }
			})
		})
		if err := p.stop(); err != nil {
			b.Fatal(err)
		}
	}
}

// parallel runs op on 4×GOMAXPROCS goroutines and reports the rate and the
// p99 latency.
func parallel(b *testing.B, unit string, worker func() (op func() error, done func())) {
	b.SetParallelism(4)
	var mu sync.Mutex
	var all sample
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		op, done := worker()
		defer done()
		var s sample
		for pb.Next() {
			t := time.Now()
			if err := op(); err != nil {
				b.Error(err)
				return
			}
			s.lat = append(s.lat, time.Since(t))
		}
		mu.Lock()
		all.lat = append(all.lat, s.lat...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
	b.ReportMetric(float64(all.quantile(.99).Microseconds())/1000, "p99-ms")
	if testing.Verbose() {
		fmt.Printf("%s: %d ops in %s\n", b.Name(), b.N, elapsed)
	}
}
