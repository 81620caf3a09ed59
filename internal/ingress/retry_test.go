package ingress

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/api"
)

// TestRetryConditions covers the retry_on values the workshop and Envoy
// users rely on, each against an upstream whose first attempt fails in one
// way and whose second succeeds.
func TestRetryConditions(t *testing.T) {
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := calls.Add(1) == 1
		switch {
		case first && strings.HasPrefix(r.URL.Path, "/conflict"):
			w.WriteHeader(http.StatusConflict)
			return
		case first && strings.HasPrefix(r.URL.Path, "/reset"):
			// Drop the connection before any response: a reset.
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
			return
		case first && strings.HasPrefix(r.URL.Path, "/unavailable"):
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	svc := "http://" + backendAuthority(t, up)
	mapping := func(name, on string) *api.Mapping {
		return newMapping("ns", name, api.MappingSpec{Prefix: "/" + name + "/", Service: svc, Rewrite: ptr(""),
			RetryPolicy: &api.RetryPolicy{RetryOn: on, NumRetries: ptr(int32(1))}})
	}
	h := newHarness(t, false,
		newMapping("ns", "conflict", api.MappingSpec{Prefix: "/conflict/", Service: svc, Rewrite: ptr(""),
			RetryPolicy: &api.RetryPolicy{RetryOn: "retriable-4xx"}}),
		newMapping("ns", "conflict5xx", api.MappingSpec{Prefix: "/conflict5xx/", Service: svc, Rewrite: ptr(""),
			RetryPolicy: &api.RetryPolicy{RetryOn: "5xx"}}),
		mapping("reset", "reset"),
		mapping("unavailable", "gateway-error"),
	)
	for _, tc := range []struct {
		path   string
		status int
		calls  int64
	}{
		{"/conflict/", 200, 2},    // 409 is retriable-4xx
		{"/conflict5xx/", 409, 1}, // and not a 5xx
		{"/reset/", 200, 2},       // a reset before headers
		{"/unavailable/", 200, 2}, // 503 is a gateway error
	} {
		calls.Store(0)
		resp, body := h.get(tc.path, nil)
		if resp.StatusCode != tc.status || calls.Load() != tc.calls {
			t.Errorf("GET %s = %d %q after %d upstream calls, want %d after %d", tc.path, resp.StatusCode, body, calls.Load(), tc.status, tc.calls)
		}
	}
}

// TestTimeoutCoversRetries: timeout_ms bounds the whole request, retries
// included (Envoy's route timeout), and answers 504 "upstream request
// timeout".
func TestTimeoutCoversRetries(t *testing.T) {
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		// Each attempt fails after 100ms.
		select {
		case <-time.After(100 * time.Millisecond):
			w.WriteHeader(http.StatusInternalServerError)
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	h := newHarness(t, false, newMapping("ns", "slow", api.MappingSpec{Prefix: "/slow/", Service: "http://" + backendAuthority(t, up),
		TimeoutMS: ptr(int64(250)), RetryPolicy: &api.RetryPolicy{RetryOn: "5xx", NumRetries: ptr(int32(10))}}))
	start := time.Now()
	resp, body := h.get("/slow/", nil)
	el := time.Since(start)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, BodyTimeout) {
		t.Fatalf("got %d %q, want 504 %q", resp.StatusCode, body, BodyTimeout)
	}
	if el < 250*time.Millisecond || el > 900*time.Millisecond {
		t.Fatalf("answered after %v, want the 250ms route timeout", el)
	}
	if n := calls.Load(); n < 2 || n > 3 {
		t.Fatalf("%d attempts within 250ms of 100ms each, want 2 or 3", n)
	}
}

// TestRetryReplaysBodies: a request body up to 64 KiB is recorded and
// replayed on the retry; a longer one is not retried.
func TestRetryReplaysBodies(t *testing.T) {
	var calls atomic.Int64
	var bad atomic.Int64 // attempts that saw a body other than the one sent
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) != strings.Repeat("x", len(b)) || int64(len(b)) != r.ContentLength && r.ContentLength >= 0 {
			bad.Add(1)
		}
		w.Header().Set("X-Len", strconv.Itoa(len(b)))
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	h := newHarness(t, false, newMapping("ns", "post", api.MappingSpec{Prefix: "/post/", Service: "http://" + backendAuthority(t, up),
		RetryPolicy: &api.RetryPolicy{RetryOn: "5xx", NumRetries: ptr(int32(1))}}))
	for _, tc := range []struct {
		size   int
		status int
		calls  int64
	}{{1 << 10, 200, 2}, {64 << 10, 200, 2}, {65 << 10, 500, 1}} {
		calls.Store(0)
		resp, err := http.Post(h.url("/post/"), "text/plain", strings.NewReader(strings.Repeat("x", tc.size)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || calls.Load() != tc.calls || resp.Header.Get("X-Len") != strconv.Itoa(tc.size) {
			t.Errorf("POST of %d bytes: %d after %d calls (last saw %s bytes), want %d after %d", tc.size, resp.StatusCode, calls.Load(), resp.Header.Get("X-Len"), tc.status, tc.calls)
		}
	}
	if bad.Load() != 0 {
		t.Errorf("%d attempts saw a corrupted body", bad.Load())
	}
}
