package tap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	tappb "github.com/linkerd/linkerd2-proxy-api/go/tap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/internal/metrics"
)

const testTimeout = 20 * time.Second

// serve runs t's gRPC server on 127.0.0.1:0 and returns a client.
func serve(tb testing.TB, t *Tapper) tappb.TapClient {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- t.Serve(ctx, ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cc.Close()
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return tappb.NewTapClient(cc)
}

// tappedRT is a minimal data path: it reports each exchange to the tap as
// the proxy's inbound does.
type tappedRT struct {
	t    *Tapper
	next http.RoundTripper
}

func (r tappedRT) RoundTrip(req *http.Request) (*http.Response, error) {
	x := r.t.Request(req, Meta{Direction: Inbound, Dst: "127.0.0.1:4143", TLS: metrics.NoTLSLabels(metrics.NoTLSFromRemote)})
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		x.Fail(http.StatusBadGateway)
		return nil, err
	}
	x.Response(resp)
	return resp, nil
}

func backendURL(tb testing.TB) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	}))
	tb.Cleanup(s.Close)
	return s.URL
}

func do(tb testing.TB, c *http.Client, method, u string) {
	tb.Helper()
	req, _ := http.NewRequest(method, u, nil)
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, u, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func waitActive(tb testing.TB, t *Tapper, n int) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for t.Active() != n {
		if time.Now().After(deadline) {
			tb.Fatalf("taps active = %d, want %d", t.Active(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNoTapCostsNothing: without an Observe stream the hook allocates
// nothing and builds no event.
func TestNoTapCostsNothing(t *testing.T) {
	tp := New(Config{})
	req := httptest.NewRequest("GET", "http://smiley/x", nil)
	m := Meta{Direction: Outbound, Dst: "127.0.0.1:1", DstLabels: metrics.L("dst_pod", "p"), TLS: metrics.TLSLabels("server_id", "x")}
	resp := &http.Response{StatusCode: 200, Body: http.NoBody}
	allocs := testing.AllocsPerRun(1000, func() {
		x := tp.Request(req, m)
		x.Response(resp)
	})
	if allocs != 0 {
		t.Errorf("Request+Response without taps: %v allocations, want 0", allocs)
	}
	var nilTap *Tapper
	if x := nilTap.Request(req, m); x != nil {
		t.Errorf("a nil Tapper tapped a request")
	}
	if tp.Built() != 0 {
		t.Errorf("built %d exchanges without taps", tp.Built())
	}
}

// TestSlowConsumerDrops: a client that never reads gets drops; the data
// path never waits for it.
func TestSlowConsumerDrops(t *testing.T) {
	tp := New(Config{Buffer: 8, MaxRPS: 1e9})
	client := serve(t, tp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := client.Observe(ctx, &tappb.ObserveRequest{}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, tp, 1)
	hc := &http.Client{Transport: tappedRT{tp, http.DefaultTransport}, Timeout: testTimeout}
	u := backendURL(t)
	// Enough events to fill the gRPC flow-control windows (64 KiB) and the
	// stream's buffer many times over.
	const n = 3000
	for i := range n {
		do(t, hc, "GET", fmt.Sprintf("%s/%d", u, i))
	}
	if tp.Built() != n {
		t.Errorf("built %d exchanges, want %d", tp.Built(), n)
	}
	if tp.Dropped() == 0 {
		t.Errorf("no event dropped for a client that never reads")
	}
}

// TestRateLimit: a stream taps at most MaxRPS requests per second.
func TestRateLimit(t *testing.T) {
	tp := New(Config{MaxRPS: 5})
	client := serve(t, tp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.Observe(ctx, &tappb.ObserveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, tp, 1)
	hc := &http.Client{Transport: tappedRT{tp, http.DefaultTransport}, Timeout: testTimeout}
	u := backendURL(t)
	start := time.Now()
	for range 50 {
		do(t, hc, "GET", u+"/r")
	}
	elapsed := time.Since(start)
	// Burst of 5, then 5 per second.
	max := 5 + int(elapsed.Seconds()*5) + 1
	if b := int(tp.Built()); b < 5 || b > max {
		t.Errorf("tapped %d of 50 requests in %v, want 5..%d", b, elapsed, max)
	}
	if tp.Dropped() == 0 {
		t.Errorf("rate-limited requests were not counted as dropped")
	}
	for range 3 * tp.Built() {
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("Recv: %v", err)
		}
	}
}

func TestObserveErrors(t *testing.T) {
	tp := New(Config{MaxTaps: 1})
	client := serve(t, tp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bad, err := client.Observe(ctx, &tappb.ObserveRequest{Match: &tappb.ObserveRequest_Match{}})
	if err == nil {
		_, err = bad.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty match: %v, want InvalidArgument", err)
	}
	first, err := client.Observe(ctx, &tappb.ObserveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, tp, 1)
	second, err := client.Observe(ctx, &tappb.ObserveRequest{})
	if err == nil {
		_, err = second.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("tap beyond MaxTaps: %v, want ResourceExhausted", err)
	}
	_ = first
}

// TestLimitEndsStream: the stream ends once limit requests have ended, with
// all their events.
func TestLimitEndsStream(t *testing.T) {
	tp := New(Config{})
	client := serve(t, tp)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	stream, err := client.Observe(ctx, &tappb.ObserveRequest{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, tp, 1)
	hc := &http.Client{Transport: tappedRT{tp, http.DefaultTransport}, Timeout: testTimeout}
	u := backendURL(t)
	for range 3 {
		do(t, hc, "GET", u+"/l")
	}
	var evs []*tappb.TapEvent
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		evs = append(evs, ev)
	}
	if len(evs) != 6 {
		t.Fatalf("got %d events, want 6 (req, rsp, end for 2 requests)", len(evs))
	}
	end := evs[5].GetHttp().GetResponseEnd()
	if end == nil || end.GetId().GetStream() != 2 || end.GetResponseBytes() != uint64(len("hello /l")) {
		t.Errorf("last event = %v, want the end of stream 2 with %d bytes", evs[5], len("hello /l"))
	}
	if tp.Active() != 0 {
		t.Errorf("the tap is still active after its limit")
	}
}

// TestEndOfStream: ResponseEnd carries the gRPC status from the trailers,
// or a reset code when the body breaks off.
func TestEndOfStream(t *testing.T) {
	tp := New(Config{})
	client := serve(t, tp)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	stream, err := client.Observe(ctx, &tappb.ObserveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, tp, 1)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/grpc":
			w.Header().Set("Trailer", "Grpc-Status")
			io.WriteString(w, "msg")
			w.Header().Set("Grpc-Status", "14")
		case "/abort":
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
	}))
	defer s.Close()
	hc := &http.Client{Transport: tappedRT{tp, http.DefaultTransport}, Timeout: testTimeout}
	for _, path := range []string{"/grpc", "/abort"} {
		resp, err := hc.Get(s.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var ends []*tappb.TapEvent_Http_ResponseEnd
	for len(ends) < 2 {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if e := ev.GetHttp().GetResponseEnd(); e != nil {
			ends = append(ends, e)
		}
	}
	if g, ok := ends[0].GetEos().GetEnd().(*tappb.Eos_GrpcStatusCode); !ok || g.GrpcStatusCode != 14 || ends[0].GetResponseBytes() != 3 {
		t.Errorf("gRPC end = %v, want grpc status 14 after 3 bytes", ends[0])
	}
	if _, ok := ends[1].GetEos().GetEnd().(*tappb.Eos_ResetErrorCode); !ok || ends[1].GetResponseBytes() != uint64(len("partial")) {
		t.Errorf("aborted end = %v, want a reset after %d bytes", ends[1], len("partial"))
	}
}

// BenchmarkRequest measures the hook on the data path: with nobody tapping
// (the common case) and with a stream tapping every request whose client
// never reads (the worst case: events built, then dropped).
func BenchmarkRequest(b *testing.B) {
	req := httptest.NewRequest("GET", "http://smiley/x", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	m := Meta{Direction: Outbound, Dst: "127.0.0.1:4143", DstLabels: metrics.L("dst_deployment", "smiley", "dst_pod", "smiley-1"),
		TLS: metrics.TLSLabels("server_id", "smiley.faces.serviceaccount.identity.weft.cluster.local")}
	resp := &http.Response{StatusCode: 200, Body: http.NoBody} // no body: Response leaves it as is
	run := func(b *testing.B, tp *Tapper) {
		b.ReportAllocs()
		for b.Loop() {
			x := tp.Request(req, m)
			x.Response(resp)
		}
	}
	b.Run("no-tap", func(b *testing.B) { run(b, New(Config{})) })
	b.Run("tapped-dropping", func(b *testing.B) {
		tp := New(Config{Buffer: 1, MaxRPS: 1e12})
		w := newWatcher(tp, matchAll, false, 0)
		tp.add(w)
		run(b, tp)
	})
}
