package retry

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/metrics"
)

func is5xx(status, _ int) bool { return status >= 500 }

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// failing answers every request with 500 and counts attempts.
type failing struct{ n atomic.Int64 }

func (f *failing) RoundTrip(r *http.Request) (*http.Response, error) {
	f.n.Add(1)
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: 500, Body: io.NopCloser(strings.NewReader("boom")), Header: http.Header{}, Request: r}, nil
}

func newRoutes() (*metrics.Registry, *metrics.Route) {
	reg := metrics.NewRegistry()
	return reg, metrics.NewRoutes(reg, metrics.L("direction", "outbound")).Route("smiley.faces.svc.cluster.local:80", "get")
}

func TestBudgetCapsRetriesUnderTotalFailure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ratio     float64
		minPerSec float64
		ttl       time.Duration
		requests  int
		over      time.Duration
	}{
		{"linkerd defaults", 0.2, 10, 10 * time.Second, 1000, time.Second},
		{"no reserve", 0.5, 0, 10 * time.Second, 400, 2 * time.Second},
		{"reserve only", 0, 10, 5 * time.Second, 200, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{t: time.Unix(5000, 0)}
			b := NewBudget(tc.ratio, tc.minPerSec, tc.ttl, clk.now)
			_, m := newRoutes()
			f := &failing{}
			rt := Layer(func(*http.Request) (*Policy, *metrics.Route) {
				return &Policy{Limit: -1, Budget: b, Retryable: is5xx}, m
			})(f)
			step := tc.over / time.Duration(tc.requests)
			for range tc.requests {
				req, _ := http.NewRequest("GET", "http://smiley/", nil)
				resp, err := rt.RoundTrip(req)
				if err != nil || resp.StatusCode != 500 {
					t.Fatalf("got %v %v, want the last 500", resp, err)
				}
				resp.Body.Close()
				clk.t = clk.t.Add(step)
			}
			retries := int(f.n.Load()) - tc.requests
			want := int(tc.ratio*float64(tc.requests) + tc.minPerSec*tc.ttl.Seconds())
			if retries < want-1 || retries > want {
				t.Fatalf("%d retries for %d failing requests, want ratio x requests + min x ttl = %d", retries, tc.requests, want)
			}
			if got := m.Retries.Value(); got != uint64(retries) {
				t.Errorf("retry_requests_total = %d, want %d", got, retries)
			}
			// Without a limit each request retries until the budget says no.
			if got := m.Overflows.Value(); got != uint64(tc.requests) {
				t.Errorf("retry_overflow_total = %d, want one per request (%d)", got, tc.requests)
			}
		})
	}
}

func TestBudgetRefillsAfterTTL(t *testing.T) {
	clk := &clock{t: time.Unix(5000, 0)}
	b := NewBudget(0, 1, 10*time.Second, clk.now) // reserve of 10
	n := 0
	for b.Withdraw() {
		n++
	}
	if n != 10 {
		t.Fatalf("reserve allowed %d retries, want 10", n)
	}
	clk.t = clk.t.Add(11 * time.Second)
	if !b.Withdraw() {
		t.Fatal("budget not restored after its ttl")
	}
}

func TestLimit(t *testing.T) {
	_, m := newRoutes()
	f := &failing{}
	rt := Layer(func(*http.Request) (*Policy, *metrics.Route) { return &Policy{Limit: 2, Retryable: is5xx}, m })(f)
	req, _ := http.NewRequest("GET", "http://smiley/", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil || resp.StatusCode != 500 {
		t.Fatal(resp, err)
	}
	if f.n.Load() != 3 || m.LimitExceeded.Value() != 1 || m.Retries.Value() != 2 {
		t.Fatalf("attempts %d, limit exceeded %d, retries %d; want 3, 1, 2", f.n.Load(), m.LimitExceeded.Value(), m.Retries.Value())
	}
}

// bodyServer fails the first attempt of every request after reading its
// body, and reports the bodies it saw.
func bodyServer(t *testing.T, failFirst int) (*httptest.Server, *[][]byte) {
	var bodies [][]byte
	var attempts atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, b)
		if int(attempts.Add(1)) <= failFirst {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	return s, &bodies
}

func TestBodies(t *testing.T) {
	for _, tc := range []struct {
		name         string
		size         int
		knownLength  bool
		wantAttempts int
	}{
		{"empty", 0, true, 2},
		{"1KiB chunked", 1 << 10, false, 2},
		{"64KiB exactly", 64 << 10, true, 2},
		{"65KiB with length", 65 << 10, true, 1},
		{"65KiB chunked", 65 << 10, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, bodies := bodyServer(t, 1)
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			_, m := newRoutes()
			rt := Layer(func(*http.Request) (*Policy, *metrics.Route) { return &Policy{Limit: 1, Retryable: is5xx}, m })(tr)
			payload := make([]byte, tc.size)
			rand.Read(payload)
			var body io.Reader = bytes.NewReader(payload)
			if !tc.knownLength {
				body = io.MultiReader(body) // hides the length
			}
			req, _ := http.NewRequest("POST", s.URL, body)
			if !tc.knownLength {
				req.ContentLength = -1
			}
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if len(*bodies) != tc.wantAttempts {
				t.Fatalf("%d attempts, want %d", len(*bodies), tc.wantAttempts)
			}
			for i, b := range *bodies {
				if !bytes.Equal(b, payload) {
					t.Fatalf("attempt %d carried %d bytes, want the %d sent", i, len(b), len(payload))
				}
			}
			if wantStatus := map[bool]int{true: 200, false: 503}[tc.wantAttempts == 2]; resp.StatusCode != wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, wantStatus)
			}
			if tc.wantAttempts == 2 && m.RetrySuccesses.Value() != 1 {
				t.Fatalf("retry_successes_total = %d, want 1", m.RetrySuccesses.Value())
			}
		})
	}
}

// partialReader fails after reading part of the body (a reset mid-upload):
// the retry must replay what was read and continue with the rest.
type partial struct {
	next http.RoundTripper
	n    int
}

func (p *partial) RoundTrip(r *http.Request) (*http.Response, error) {
	p.n++
	if p.n == 1 {
		io.CopyN(io.Discard, r.Body, 100)
		return nil, io.ErrUnexpectedEOF
	}
	return p.next.RoundTrip(r)
}

func TestReplayAfterPartialRead(t *testing.T) {
	s, bodies := bodyServer(t, 0)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	rt := Layer(func(*http.Request) (*Policy, *metrics.Route) { return &Policy{Limit: 1, Retryable: is5xx}, nil })(&partial{next: tr})
	payload := bytes.Repeat([]byte("0123456789"), 1000)
	req, _ := http.NewRequest("POST", s.URL, io.MultiReader(bytes.NewReader(payload)))
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(*bodies) != 1 || !bytes.Equal((*bodies)[0], payload) {
		t.Fatalf("the retry carried %d bytes, want %d", len((*bodies)[0]), len(payload))
	}
}

func TestPerTryTimeout(t *testing.T) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-r.Context().Done() // the first attempt hangs
			return
		}
		w.Write([]byte("ok"))
	}))
	defer s.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	rt := Layer(func(*http.Request) (*Policy, *metrics.Route) {
		return &Policy{Limit: 1, Retryable: is5xx, Timeout: 100 * time.Millisecond}, nil
	})(tr)
	req, _ := http.NewRequest("GET", s.URL, nil)
	start := time.Now()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if el := time.Since(start); resp.StatusCode != 200 || el < 100*time.Millisecond || el > time.Second {
		t.Fatalf("status %d after %v, want 200 after the 100ms per-try timeout", resp.StatusCode, el)
	}
}

// BenchmarkRetryLayerSuccess measures what the retry layer adds to a
// request that succeeds at once (a budget deposit, no body).
func BenchmarkRetryLayerSuccess(b *testing.B) {
	ok := roundTripOK{}
	budget := NewBudget(DefaultRatio, DefaultMinPerSec, DefaultTTL, nil)
	p := &Policy{Limit: -1, Budget: budget, Retryable: is5xx}
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", ok},
		{"retry", Layer(func(*http.Request) (*Policy, *metrics.Route) { return p, nil })(ok)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", "http://smiley/", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, _ := bc.rt.RoundTrip(req)
				resp.Body.Close()
			}
		})
	}
}

func BenchmarkRetryLayerSuccessWithBody(b *testing.B) {
	ok := roundTripOK{}
	p := &Policy{Limit: -1, Budget: NewBudget(DefaultRatio, DefaultMinPerSec, DefaultTTL, nil), Retryable: is5xx}
	rt := Layer(func(*http.Request) (*Policy, *metrics.Route) { return p, nil })(ok)
	payload := make([]byte, 1<<10)
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("POST", "http://smiley/", bytes.NewReader(payload))
		resp, _ := rt.RoundTrip(req)
		resp.Body.Close()
	}
}

type roundTripOK struct{}

var okResp = http.Response{StatusCode: 200, Header: http.Header{}}

func (roundTripOK) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	resp := okResp
	resp.Body = http.NoBody
	return &resp, nil
}
