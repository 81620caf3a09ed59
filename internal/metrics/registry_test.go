package metrics

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWriteText(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounter("request_total", "Total count of HTTP requests.")
	c.With(L("direction", "outbound", "authority", "web:80")).Add(3)
	c.With(L("direction", "inbound", "authority", `we"ird\`+"\n")).Inc()
	g := r.NewGauge("tcp_open_connections", "Open connections.")
	g.With(L("direction", "inbound")).Inc()
	g.With(L("direction", "inbound")).Inc()
	g.With(L("direction", "inbound")).Dec()
	h := r.NewHistogram("response_latency_ms", "Latency.", []float64{1, 10})
	s := h.With(L("a", "b"))
	s.Observe(0.5)
	s.Observe(1) // le="1" includes 1
	s.Observe(5)
	s.Observe(100)
	r.NewCounter("unused_total", "Never used: not written.")

	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP request_total Total count of HTTP requests.
# TYPE request_total counter
request_total{direction="inbound",authority="we\"ird\\\n"} 1
request_total{direction="outbound",authority="web:80"} 3
# HELP tcp_open_connections Open connections.
# TYPE tcp_open_connections gauge
tcp_open_connections{direction="inbound"} 1
# HELP response_latency_ms Latency.
# TYPE response_latency_ms histogram
response_latency_ms_bucket{a="b",le="1"} 2
response_latency_ms_bucket{a="b",le="10"} 3
response_latency_ms_bucket{a="b",le="+Inf"} 4
response_latency_ms_sum{a="b"} 106.5
response_latency_ms_count{a="b"} 4
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("WriteText mismatch (-want +got):\n%s", diff)
	}
}

func TestTargetClassification(t *testing.T) {
	r := NewRegistry()
	p := NewProxy(r)
	tg := p.HTTP(L("direction", "outbound")).Target("web:80", L("dst_pod", "web-1"))
	tg.Request()
	tg.Latency(200, 3*time.Millisecond)
	tg.Response(200, NoGRPCStatus)
	tg.Response(503, NoGRPCStatus)
	tg.Response(200, 14)
	tg.Response(200, 0)
	var b strings.Builder
	r.WriteText(&b)
	out := b.String()
	for _, line := range []string{
		`request_total{direction="outbound",authority="web:80",dst_pod="web-1"} 1`,
		`response_total{direction="outbound",authority="web:80",dst_pod="web-1",status_code="200",classification="success"} 1`,
		`response_total{direction="outbound",authority="web:80",dst_pod="web-1",status_code="503",classification="failure"} 1`,
		`response_total{direction="outbound",authority="web:80",dst_pod="web-1",status_code="200",grpc_status="14",classification="failure"} 1`,
		`response_total{direction="outbound",authority="web:80",dst_pod="web-1",status_code="200",grpc_status="0",classification="success"} 1`,
		`response_latency_ms_bucket{direction="outbound",authority="web:80",dst_pod="web-1",status_code="200",le="3"} 1`,
		`response_latency_ms_bucket{direction="outbound",authority="web:80",dst_pod="web-1",status_code="200",le="2"} 0`,
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("exposition lacks %q; got:\n%s", line, out)
		}
	}
}

// TestInterned checks that a target's series are shared, not re-created.
func TestInterned(t *testing.T) {
	p := NewProxy(NewRegistry())
	h := p.HTTP(L("direction", "inbound"))
	if h.Target("a", Labels{}) != h.Target("a", Labels{}) {
		t.Fatal("Target returned two different series sets for the same labels")
	}
	tg := h.Target("a", Labels{})
	tg.Response(503, NoGRPCStatus)
	tg.Latency(503, time.Millisecond)
	if n := testing.AllocsPerRun(100, func() {
		h.Target("a", Labels{}).Request()
		tg.Response(503, NoGRPCStatus)
		tg.Latency(503, time.Millisecond)
	}); n != 0 {
		t.Errorf("recording allocates %v times per request, want 0", n)
	}
}

func TestConcurrent(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounter("x_total", "x")
	h := r.NewHistogram("y", "y", LatencyBucketsMs)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				c.With(L("k", "v")).Inc()
				h.With(L("k", "v")).Observe(2)
			}
		}()
	}
	wg.Wait()
	if got := c.With(L("k", "v")).Value(); got != 8000 {
		t.Errorf("counter = %d, want 8000", got)
	}
	if got := h.With(L("k", "v")).Count(); got != 8000 {
		t.Errorf("histogram count = %d, want 8000", got)
	}
}
