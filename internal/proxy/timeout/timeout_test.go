package timeout

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/proxyerr"
)

func TestTimeoutsFireOnTime(t *testing.T) {
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow-headers":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/slow-body":
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer close(release)
	defer s.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()

	for _, tc := range []struct {
		name    string
		path    string
		p       Policy
		want    time.Duration
		headers bool // the timeout hits after the headers (body read fails)
	}{
		{"response", "/slow-headers", Policy{Response: 150 * time.Millisecond}, 150 * time.Millisecond, false},
		{"request", "/slow-headers", Policy{Request: 200 * time.Millisecond}, 200 * time.Millisecond, false},
		{"shorter of both", "/slow-headers", Policy{Request: 120 * time.Millisecond, Response: time.Second}, 120 * time.Millisecond, false},
		{"request covers the body", "/slow-body", Policy{Request: 200 * time.Millisecond}, 200 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := Layer(func(*http.Request) Policy { return tc.p })(tr)
			req, _ := http.NewRequest("GET", s.URL+tc.path, nil)
			start := time.Now()
			resp, err := rt.RoundTrip(req)
			if tc.headers {
				if err != nil {
					t.Fatalf("headers: %v", err)
				}
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if !errors.Is(err, ErrTimeout) && err == nil {
					t.Fatalf("body read ended with %v, want a timeout", err)
				}
			} else {
				var pe *proxyerr.Error
				if !errors.As(err, &pe) || pe.Status != http.StatusGatewayTimeout {
					t.Fatalf("got %v, %v; want a 504 proxy error", resp, err)
				}
			}
			el := time.Since(start)
			// Within scheduling noise of the configured time (generous:
			// go test runs packages in parallel on two cores), and well
			// short of the longer timeout in "shorter of both".
			if el < tc.want || el > tc.want+400*time.Millisecond {
				t.Fatalf("timed out after %v, want %v", el, tc.want)
			}
		})
	}
}

func TestNoTimeoutWhenFast(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer s.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	rt := Layer(func(*http.Request) Policy { return Policy{Response: 50 * time.Millisecond} })(tr)
	req, _ := http.NewRequest("GET", s.URL, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" || err != nil {
		t.Fatalf("body %q %v", b, err)
	}
}

func TestGRPCTimeoutAnswer(t *testing.T) {
	// The layer's 504 becomes HTTP 200 + grpc-status DEADLINE_EXCEEDED for
	// gRPC clients when the proxy writes it.
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/svc/Method", nil)
	r.ProtoMajor = 2
	r.Header.Set("Content-Type", "application/grpc")
	status, code := proxyerr.Respond(w, r, proxyerr.New(http.StatusGatewayTimeout, "proxy: request timed out", ErrTimeout))
	if status != 200 || code != 4 || w.Header().Get("Grpc-Status") != "4" {
		t.Fatalf("gRPC timeout answered %d grpc-status %d, want 200 and 4", status, code)
	}
}
