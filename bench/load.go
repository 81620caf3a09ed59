package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// target is where one path's client sends its requests.
type target struct {
	url   string // request URL; absolute-form when sent through proxyURL
	proxy string // HTTP proxy (absolute-form requests), "" for none
	h2c   bool   // HTTP/2 prior knowledge instead of HTTP/1.1
	dial  string // for h2c: the address to connect to (e.g. the proxy), whatever the URL says
}

// newClient returns a client for t that keeps up to conns connections.
func newClient(t target, conns int) (*http.Client, error) {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		TLSClientConfig:     &tls.Config{},
	}
	if t.proxy != "" {
		u, err := url.Parse(t.proxy)
		if err != nil {
			return nil, fmt.Errorf("bench: proxy %q: %w", t.proxy, err)
		}
		tr.Proxy = http.ProxyURL(u)
	}
	if t.h2c {
		// One HTTP/2 connection multiplexes the conns concurrent streams:
		// that is how an h2 client behaves.
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
		if t.dial != "" {
			d := &net.Dialer{}
			addr := t.dial
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			}
		}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// sample is what one run of the generator measured.
type sample struct {
	lat      []time.Duration // per successful request
	errors   int
	firstErr string
	elapsed  time.Duration
}

// scheduledAt is when the open-loop generator plans request i: at a
// constant rate from start, whatever happened to earlier requests. Latency
// is measured from this time, not from when the request could be sent, so
// that a stall delays (and is charged to) every request planned during it
// (coordinated omission, as wrk2 corrects it).
func scheduledAt(start time.Time, i int, rate float64) time.Time {
	return start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
}

// do sends one GET and reads the whole response.
func do(ctx context.Context, c *http.Client, rawURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if n != bodySize {
		return fmt.Errorf("body of %d bytes, want %d", n, bodySize)
	}
	return nil
}

// openLoop sends rate requests per second for d over conns workers and
// measures each request's latency from its scheduled time.
func openLoop(ctx context.Context, c *http.Client, rawURL string, rate float64, d time.Duration, conns int) sample {
	n := int(rate * d.Seconds())
	if n < 1 {
		n = 1
	}
	start := time.Now().Add(2 * time.Millisecond)
	jobs := make(chan int, n)
	for i := range n {
		jobs <- i
	}
	close(jobs)
	return runWorkers(conns, func(lat *[]time.Duration, fail func(error)) {
		for i := range jobs {
			if ctx.Err() != nil {
				return
			}
			at := scheduledAt(start, i, rate)
			if w := time.Until(at); w > 0 {
				time.Sleep(w)
			}
			if err := do(ctx, c, rawURL); err != nil {
				fail(err)
				continue
			}
			*lat = append(*lat, time.Since(at))
		}
	}, start)
}

// closedLoop keeps conns requests in flight for d: maximum throughput.
func closedLoop(ctx context.Context, c *http.Client, rawURL string, d time.Duration, conns int) sample {
	start := time.Now()
	deadline := start.Add(d)
	return runWorkers(conns, func(lat *[]time.Duration, fail func(error)) {
		for ctx.Err() == nil {
			t := time.Now()
			if !t.Before(deadline) {
				return
			}
			if err := do(ctx, c, rawURL); err != nil {
				fail(err)
				continue
			}
			*lat = append(*lat, time.Since(t))
		}
	}, start)
}

func runWorkers(conns int, work func(lat *[]time.Duration, fail func(error)), start time.Time) sample {
	var (
		mu  sync.Mutex
		out sample
		wg  sync.WaitGroup
	)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			work(&lat, func(err error) {
				mu.Lock()
				out.errors++
				if out.firstErr == "" {
					out.firstErr = err.Error()
				}
				mu.Unlock()
			})
			mu.Lock()
			out.lat = append(out.lat, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	return out
}
