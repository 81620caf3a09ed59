package faces

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// hit sends one GET through ServeHTTP, for the statistical tests that need
// thousands of requests; everything else goes over real sockets.
func hit(srv *Server, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestErrorFractionStatistics(t *testing.T) {
	tests := []struct {
		fraction int
		want     float64 // upstream errors when rand(100) <= N: (N+1)%
	}{
		{0, 0}, {20, 0.21}, {50, 0.51}, {99, 1}, {100, 1},
	}
	const n = 20000
	for _, tt := range tests {
		srv := newServer(t, Config{Role: RoleSmiley, Smiley: Smileys["Grinning"], ErrorFraction: tt.fraction}, Options{Rand: seeded(42)})
		// The draws are decide's; a few hundred go through the whole
		// handler to check the reply, the rest straight to decide.
		errs := 0
		for i := range n {
			if i < 300 {
				rec := hit(srv, "/")
				switch {
				case rec.Code == http.StatusOK:
				case rec.Code == http.StatusInternalServerError && rec.Body.String() == "Error fraction triggered":
					errs++
				default:
					t.Fatalf("ERROR_FRACTION=%d: reply %d %q", tt.fraction, rec.Code, rec.Body.String())
				}
				continue
			}
			if v := srv.decide(time.Now()); v.status == http.StatusInternalServerError {
				errs++
			}
		}
		got := float64(errs) / n
		// 4 standard deviations of a binomial proportion, and a little.
		tol := 4*math.Sqrt(tt.want*(1-tt.want)/n) + 1e-9
		if math.Abs(got-tt.want) > tol {
			t.Errorf("ERROR_FRACTION=%d: error rate %.4f, want %.2f ± %.4f", tt.fraction, got, tt.want, tol)
		}
	}
}

func TestLatch(t *testing.T) {
	clock := newFakeClock()
	srv := newServer(t, Config{Role: RoleColor, Color: "#66CCEE", ErrorFraction: 100, LatchFraction: 100}, Options{Now: clock.Now})
	c := http.DefaultClient
	base := "http://" + serve(t, srv)

	r := get(t, c, "GET", base+"/", nil)
	if r.status != 599 || r.body != "Error fraction triggered and latched!" {
		t.Fatalf("first reply = %d %q, want 599 latched", r.status, r.body)
	}
	// Stop new errors so only the latch can fail requests now.
	srv.cfg.ErrorFraction = 0
	for i := range 3 {
		clock.Advance(30 * time.Second) // exactly 30 s is not idle enough
		r = get(t, c, "GET", base+"/edge/", nil)
		if r.status != 599 || r.body != "Latched into error state" {
			t.Fatalf("latched reply %d = %d %q, want 599 %q", i, r.status, r.body, "Latched into error state")
		}
	}
	// /ready and /rl never fail, latched or not.
	if r = get(t, c, "GET", base+"/ready", nil); r.status != 200 {
		t.Fatalf("/ready while latched = %d", r.status)
	}
	clock.Advance(30*time.Second + time.Millisecond)
	r = get(t, c, "GET", base+"/", nil)
	if r.status != 200 || !strings.Contains(r.body, `"color":"#66CCEE"`) {
		t.Fatalf("after 30 s idle = %d %q, want 200 with the color", r.status, r.body)
	}
}

func TestLatchFractionZeroNeverLatches(t *testing.T) {
	srv := newServer(t, Config{Role: RoleSmiley, Smiley: Smileys["Grinning"], ErrorFraction: 100}, Options{Rand: seeded(7)})
	for i := range 500 {
		if rec := hit(srv, "/"); rec.Code != 500 {
			t.Fatalf("request %d: status %d, want 500 (LATCH_FRACTION=0 never latches)", i, rec.Code)
		}
	}
}

func TestDelayBuckets(t *testing.T) {
	buckets := []int{0, 5, 10, 1500}
	var rec sleepRecorder
	srv := newServer(t, Config{Role: RoleSmiley, Smiley: Smileys["Grinning"], DelayBuckets: buckets, ErrorFraction: 50}, Options{Sleep: rec.Sleep, Rand: seeded(3)})
	const n = 8000
	for range n {
		hit(srv, "/")
	}
	// Every request sleeps once, errored or not.
	delays := rec.Delays()
	if len(delays) != n {
		t.Fatalf("%d sleeps for %d requests", len(delays), n)
	}
	counts := map[time.Duration]int{}
	for _, d := range delays {
		counts[d]++
	}
	for _, b := range buckets {
		got := float64(counts[time.Duration(b)*time.Millisecond]) / n
		if math.Abs(got-0.25) > 0.02 {
			t.Errorf("bucket %d ms chosen %.3f of the time, want 0.25", b, got)
		}
	}
	if len(counts) != len(buckets) {
		t.Errorf("delays %v include values outside the buckets %v", counts, buckets)
	}
	// /ready, /rl and HEAD never sleep.
	before := len(rec.Delays())
	hit(srv, "/ready")
	hit(srv, "/rl")
	r := httptest.NewRecorder()
	srv.ServeHTTP(r, httptest.NewRequest(http.MethodHead, "/", nil))
	if got := len(rec.Delays()); got != before {
		t.Errorf("/ready, /rl or HEAD slept (%d new sleeps)", got-before)
	}
}

func TestRealDelay(t *testing.T) {
	// One real sleep, to see the default sleeper is wired in.
	srv := newServer(t, Config{Role: RoleSmiley, Smiley: Smileys["Grinning"], DelayBuckets: []int{60}}, Options{})
	base := "http://" + serve(t, srv)
	start := time.Now()
	if r := get(t, http.DefaultClient, "GET", base+"/", nil); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if el := time.Since(start); el < 60*time.Millisecond {
		t.Errorf("request took %v, want at least the 60 ms bucket", el)
	}
}

func TestMaxRate(t *testing.T) {
	clock := newFakeClock()
	srv := newServer(t, Config{Role: RoleSmiley, Smiley: Smileys["Grinning"], MaxRate: 2, ErrorFraction: 100}, Options{Now: clock.Now})
	base := "http://" + serve(t, srv)
	c := http.DefaultClient

	// 2 RPS over a 10 s window is 20 requests; the one that brings the
	// count to 20 is already limited. Limiting is checked before the error
	// fraction, so rejected requests are 429s, not 500s.
	for i := 1; i <= 25; i++ {
		r := get(t, c, "GET", base+"/", nil)
		wantLimited := i >= 20
		if got := r.status == http.StatusTooManyRequests; got != wantLimited {
			t.Fatalf("request %d: status %d, want limited=%v", i, r.status, wantLimited)
		}
		if !wantLimited && r.status != 500 {
			t.Fatalf("request %d: status %d, want 500 (ERROR_FRACTION=100)", i, r.status)
		}
		if i == 20 {
			var body map[string]any
			if err := json.Unmarshal([]byte(r.body), &body); err != nil {
				t.Fatalf("429 body %q: %v", r.body, err)
			}
			if body["smiley"] != Smileys["Kaboom"] || body["rate"] != "2.0 RPS" {
				t.Errorf("429 body = %v", body)
			}
			if diff := cmp.Diff([]any{"Rate limited (2.0 RPS > max 2.0 RPS)"}, body["errors"]); diff != "" {
				t.Errorf("429 errors (-want +got):\n%s", diff)
			}
		}
		clock.Advance(100 * time.Millisecond)
	}
	// Rejected requests count too: 25 in the window.
	if r := get(t, c, "GET", base+"/rl", nil); !strings.Contains(r.body, `"rl":"2.5"`) {
		t.Errorf("/rl = %s, want rl 2.5", r.body)
	}
	// Once the window has slid past them, requests are served again.
	clock.Advance(10 * time.Second)
	srv.cfg.ErrorFraction = 0
	r := get(t, c, "GET", base+"/", nil)
	if r.status != 200 || !strings.Contains(r.body, `"rate":"0.1 RPS"`) {
		t.Errorf("after the window: %d %s, want 200 at 0.1 RPS", r.status, r.body)
	}
}

func TestColorRateLimited(t *testing.T) {
	srv := newServer(t, Config{Role: RoleColor, Color: "#66CCEE", MaxRate: 0.1}, Options{Now: newFakeClock().Now})
	rec := hit(srv, "/")
	if rec.Code != 429 {
		t.Fatalf("status %d, want 429", rec.Code)
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body["color"] != "#CCBB44" || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("429 = %v (%s), want color #CCBB44 as JSON", body, rec.Header().Get("Content-Type"))
	}
}

func TestCommonRules(t *testing.T) {
	srv := newServer(t, Config{Role: RoleSmiley, Smiley: Smileys["HeartEyes"], Pod: "smiley-7d-x2", UserHeader: "X-Who", ErrorFraction: 0}, Options{})
	base := "http://" + serve(t, srv)
	c := http.DefaultClient
	hdr := map[string]string{"X-Who": "alice", "User-Agent": "tester/1"}

	t.Run("main handler", func(t *testing.T) {
		r := get(t, c, "GET", base+"/center/?x=1", hdr)
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d type %q", r.status, r.header.Get("Content-Type"))
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(r.body), &body); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(r.body, `"smiley":"&#x1F60D;"`) {
			t.Errorf("body %s: smiley entity not literal", r.body)
		}
		want := map[string]any{"path": "/center/", "method": "GET", "status": float64(200), "rate": "0.0 RPS", "errors": []any{}, "smiley": "&#x1F60D;"}
		for k, v := range want {
			if diff := cmp.Diff(v, body[k]); diff != "" {
				t.Errorf("field %s (-want +got):\n%s", k, diff)
			}
		}
		if ca, _ := body["client_address"].(string); !strings.HasPrefix(ca, "127.0.0.1:") {
			t.Errorf("client_address = %v", body["client_address"])
		}
		if h, _ := body["headers"].(map[string]any); h == nil || cmp.Diff([]any{"alice"}, h["X-Who"]) != "" {
			t.Errorf("headers = %v, want the request's", body["headers"])
		}
	})
	t.Run("reply headers", func(t *testing.T) {
		for _, path := range []string{"/", "/ready", "/rl", "/anything"} {
			for _, m := range []string{"GET", "HEAD", "PUT"} {
				r := get(t, c, m, base+path, hdr)
				if r.header.Get("X-Who") != "alice" || r.header.Get("User-Agent") != "tester/1" || r.header.Get("X-Faces-Pod") != "smiley-7d-x2" {
					t.Errorf("%s %s: headers %v", m, path, r.header)
				}
			}
		}
	})
	t.Run("HEAD and 405", func(t *testing.T) {
		if r := get(t, c, "HEAD", base+"/", nil); r.status != 200 || r.body != "" {
			t.Errorf("HEAD = %d %q, want 200 empty", r.status, r.body)
		}
		for _, m := range []string{"POST", "DELETE", "PATCH"} {
			if r := get(t, c, m, base+"/ready", nil); r.status != 405 || r.body != "Method "+m+" not allowed" {
				t.Errorf("%s = %d %q, want 405", m, r.status, r.body)
			}
		}
	})
	t.Run("ready and rl", func(t *testing.T) {
		r := get(t, c, "GET", base+"/ready", nil)
		if r.status != 200 || !strings.Contains(r.body, `"ready":true`) || !strings.Contains(r.body, `"path":"/ready"`) {
			t.Errorf("/ready = %d %s", r.status, r.body)
		}
		r = get(t, c, "GET", base+"/rl", nil)
		if r.status != 200 || !strings.Contains(r.body, `"rl":"N/A"`) {
			t.Errorf("/rl without MAX_RATE = %d %s", r.status, r.body)
		}
	})
}

func TestReadyNeverErrors(t *testing.T) {
	srv := newServer(t, Config{Role: RoleFace, ErrorFraction: 100, MaxRate: 0.1, DelayBuckets: []int{100000}}, Options{})
	for range 50 {
		if rec := hit(srv, "/ready"); rec.Code != 200 {
			t.Fatalf("/ready = %d", rec.Code)
		}
	}
}

func TestNewRejectsBadRole(t *testing.T) {
	if _, err := New(Config{Role: "load"}, Options{}); err == nil {
		t.Fatal("New with role load succeeded")
	}
	if _, err := New(Config{Role: RoleGUI, DataPath: t.TempDir() + "/missing"}, Options{}); err == nil {
		t.Fatal("New with a missing DATA_PATH succeeded")
	}
}

func TestServeDrainsInFlightRequests(t *testing.T) {
	inFlight := make(chan struct{})
	release := make(chan struct{})
	sleep := func(ctx context.Context, d time.Duration) error {
		close(inFlight)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	srv := newServer(t, Config{Role: RoleSmiley, Smiley: Smileys["Grinning"], DelayBuckets: []int{1000}}, Options{Sleep: sleep})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	got := make(chan reply, 1)
	go func() {
		// Not get(): t.Fatal must not run outside the test's goroutine.
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- reply{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- reply{status: resp.StatusCode, body: string(b)}
	}()
	<-inFlight
	cancel() // shut down while the request sleeps in its delay bucket
	// New connections are refused once shutdown has begun...
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after shutdown began")
		}
		runtime.Gosched()
	}
	// ...but the request in flight is answered in full.
	close(release)
	r := <-got
	if r.status != 200 || !strings.Contains(r.body, `"smiley":"&#x1F603;"`) {
		t.Errorf("in-flight reply = %d %q, want the full 200", r.status, r.body)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil after a clean drain", err)
	}
}
