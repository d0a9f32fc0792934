package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// sample is what one load phase measured.
type sample struct {
	ops     int
	errs    int
	elapsed time.Duration
	lat     []time.Duration
}

func (s *sample) add(o sample) {
	s.ops += o.ops
	s.errs += o.errs
	s.elapsed += o.elapsed
	s.lat = append(s.lat, o.lat...)
}

func (s *sample) rate() float64 { return float64(s.ops) / s.elapsed.Seconds() }

// quantile returns the q-quantile of the latencies (nearest rank).
func (s *sample) quantile(q float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	l := slices.Clone(s.lat)
	slices.Sort(l)
	i := int(q*float64(len(l))+0.5) - 1
	return l[max(0, min(i, len(l)-1))]
}

const request = "GET /api/v1/orders HTTP/1.1\r\nHost: localhost\r\nUser-Agent: edge-bench\r\n\r\n"

// roundTrip sends one GET on conn and reads the whole answer.
func roundTrip(w *bufio.Writer, r *bufio.Reader) error {
	if _, err := w.WriteString(request); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return err
}

// connection opens a new mTLS connection (a full handshake), makes one
// request on it and closes it: what a client that does not keep
// connections alive costs the edge.
func connection(addr string, cfg *tls.Config) error {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	return roundTrip(bufio.NewWriter(conn), bufio.NewReader(conn))
}

// connectionPhase runs conc workers making new connections for d.
func connectionPhase(f *fixture, addr string, conc int, d time.Duration) sample {
	return run(conc, d, func(worker int) (func() error, func()) {
		n := worker
		return func() error {
			n += conc
			return connection(addr, f.clientConfig(n))
		}, func() {}
	})
}

// requestPhase runs conc workers, each on one keep-alive connection, making
// requests for d.
func requestPhase(f *fixture, addr string, conc int, d time.Duration) sample {
	return run(conc, d, func(worker int) (func() error, func()) {
		var conn *tls.Conn
		var w *bufio.Writer
		var r *bufio.Reader
		return func() error {
				if conn == nil {
					c, err := tls.Dial("tcp", addr, f.clientConfig(worker))
					if err != nil {
						return err
					}
					conn, w, r = c, bufio.NewWriter(c), bufio.NewReader(c)
				}
				err := roundTrip(w, r)
				if err != nil {
					conn.Close()
					conn = nil
				}
				return err
			}, func() {
				if conn != nil {
					conn.Close()
				}
			}
	})
}

// run calls each worker's op until d has passed, then its done, and
// gathers the latencies.
func run(conc int, d time.Duration, worker func(int) (op func() error, done func())) sample {
	var mu sync.Mutex
	var total sample
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := range conc {
		op, done := worker(i)
		wg.Go(func() {
			defer done()
			var s sample
			s.lat = make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				t := time.Now()
				if err := op(); err != nil {
					s.errs++
					continue
				}
				s.lat = append(s.lat, time.Since(t))
				s.ops++
			}
			mu.Lock()
			total.ops += s.ops
			total.errs += s.errs
			total.lat = append(total.lat, s.lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	return total
}
