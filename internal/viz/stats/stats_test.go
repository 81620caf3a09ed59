package stats

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/viz/promtext"
)

// proxy simulates one proxy's metrics with the real metrics package, so the
// series names and labels are the ones a weft proxy writes.
type proxy struct {
	pod Pod
	reg *metrics.Registry
	in  *metrics.HTTP
	out *metrics.HTTP
	tcp *metrics.TCP
}

func newProxy(ns, dep, pod string) *proxy {
	reg := metrics.NewRegistry()
	pm := metrics.NewProxy(reg)
	common := metrics.L("namespace", ns, "pod", pod, "deployment", dep)
	return &proxy{
		pod: Pod{Namespace: ns, Name: pod, Deployment: dep, Meshed: true, Status: "Running", ServiceAccount: dep},
		reg: reg,
		in:  pm.HTTP(metrics.L("direction", "inbound").Merge(common)),
		out: pm.HTTP(metrics.L("direction", "outbound").Merge(common)),
		tcp: pm.TCP(metrics.L("direction", "inbound").Merge(common).With("peer", "src")),
	}
}

// serve records n responses of status with latency d on target t.
func serve(t *metrics.Target, n, status int, d time.Duration) {
	for range n {
		t.Request()
		t.Latency(status, d)
		t.Response(status, metrics.NoGRPCStatus)
	}
}

func (p *proxy) scrape(t *testing.T, at time.Time) Scrape {
	t.Helper()
	var b strings.Builder
	if err := p.reg.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	samples, err := promtext.Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("parsing the proxy's own metrics: %v\n%s", err, b.String())
	}
	return Scrape{Pod: p.pod, Time: at, Samples: samples}
}

func f(v float64) *float64 { return &v }

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name    string
		q       float64
		buckets map[float64]float64
		want    float64
	}{
		{"first bucket starts at zero", 0.5, map[float64]float64{10: 4, inf: 4}, 5},
		{"interpolated in a middle bucket", 0.5, map[float64]float64{10: 0, 20: 60, 50: 90, 300: 100, inf: 100}, 10 + 10*50.0/60},
		{"top finite bucket", 0.99, map[float64]float64{10: 0, 20: 60, 50: 90, 300: 100, inf: 100}, 50 + 250*9.0/10},
		{"in +Inf returns the last finite bound", 0.99, map[float64]float64{1: 1, 2: 1, inf: 10}, 2},
		{"no observations", 0.5, map[float64]float64{1: 0, inf: 0}, math.NaN()},
		{"no +Inf bucket", 0.5, map[float64]float64{1: 1, 2: 2}, math.NaN()},
		{"non-monotonic counts are fixed", 0.5, map[float64]float64{1: 4, 2: 2, inf: 4}, 0.5},
		{"exact bucket boundary", 0.5, map[float64]float64{1: 5, 2: 10, inf: 10}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Quantile(tc.q, tc.buckets)
			if !(math.IsNaN(tc.want) && math.IsNaN(got)) && math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestNewDelta(t *testing.T) {
	t0 := time.Unix(1000, 0)
	old := Scrape{Time: t0, Samples: []promtext.Sample{
		{Name: "request_total", Labels: map[string]string{"a": "1"}, Value: 10},
		{Name: "request_total", Labels: map[string]string{"a": "reset"}, Value: 50},
		{Name: "tcp_open_connections", Value: 9},
	}}
	cur := Scrape{Time: t0.Add(4 * time.Second), Samples: []promtext.Sample{
		{Name: "request_total", Labels: map[string]string{"a": "1"}, Value: 14},
		{Name: "request_total", Labels: map[string]string{"a": "reset"}, Value: 3},
		{Name: "request_total", Labels: map[string]string{"a": "new"}, Value: 7},
		{Name: "tcp_open_connections", Value: 2},
	}}
	d := NewDelta(old, cur)
	if d.Seconds != 4 {
		t.Errorf("Seconds = %v, want 4", d.Seconds)
	}
	want := []promtext.Sample{
		{Name: "request_total", Labels: map[string]string{"a": "1"}, Value: 4},
		{Name: "request_total", Labels: map[string]string{"a": "reset"}, Value: 3},
		{Name: "request_total", Labels: map[string]string{"a": "new"}, Value: 7},
	}
	if diff := cmp.Diff(want, d.Increase, cmpopts.IgnoreUnexported(promtext.Sample{})); diff != "" {
		t.Errorf("Increase (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]promtext.Sample{{Name: "tcp_open_connections", Value: 2}}, d.Gauges, cmpopts.IgnoreUnexported(promtext.Sample{})); diff != "" {
		t.Errorf("Gauges (-want +got):\n%s", diff)
	}
}

// world is two deployments: face (one pod) calls smiley (two pods).
// Before the window each saw a little traffic; in the 10 s window smiley's
// pods answered 100 requests, 10 of them 500s, with known latencies.
func world(t *testing.T) ([]Delta, []Pod) {
	t0 := time.Unix(5000, 0)
	face := newProxy("faces", "face", "face-abc-1")
	s1 := newProxy("faces", "smiley", "smiley-def-1")
	s2 := newProxy("faces", "smiley", "smiley-def-2")
	dst := func(pod string) metrics.Labels {
		return metrics.L("dst_deployment", "smiley", "dst_namespace", "faces", "dst_pod", pod, "dst_serviceaccount", "smiley")
	}
	const auth = "smiley.faces.svc.cluster.local:80"

	// Before the window: must not count.
	serve(face.out.Target(auth, dst("smiley-def-1")), 20, 200, time.Millisecond)
	serve(s1.in.Target(auth, metrics.Labels{}), 20, 200, time.Millisecond)
	face.tcp.Open()
	s1.tcp.Open()
	s1.tcp.Close(1000, 1000)
	old := []Scrape{face.scrape(t, t0), s1.scrape(t, t0), s2.scrape(t, t0)}

	// The window: smiley-1 60 × 15 ms OK and 10 × 250 ms 500s; smiley-2 30 × 45 ms OK.
	serve(s1.in.Target(auth, metrics.Labels{}), 60, 200, 15*time.Millisecond)
	serve(s1.in.Target(auth, metrics.Labels{}), 10, 500, 250*time.Millisecond)
	serve(s2.in.Target(auth, metrics.Labels{}), 30, 200, 45*time.Millisecond)
	serve(face.out.Target(auth, dst("smiley-def-1")), 60, 200, 15*time.Millisecond)
	serve(face.out.Target(auth, dst("smiley-def-1")), 10, 500, 250*time.Millisecond)
	serve(face.out.Target(auth, dst("smiley-def-2")), 30, 200, 45*time.Millisecond)
	s1.tcp.Open()
	s1.tcp.Close(4000, 2000)
	s2.tcp.Open()
	t1 := t0.Add(10 * time.Second)
	cur := []Scrape{face.scrape(t, t1), s1.scrape(t, t1), s2.scrape(t, t1)}

	var deltas []Delta
	for i := range old {
		deltas = append(deltas, NewDelta(old[i], cur[i]))
	}
	pods := []Pod{face.pod, s1.pod, s2.pod, {Namespace: "faces", Name: "color-x-1", Deployment: "color", Status: "Running"}}
	return deltas, pods
}

var approx = cmpopts.EquateApprox(0, 1e-9)

func TestStat(t *testing.T) {
	deltas, pods := world(t)
	smiley := Stats{
		Requests: 100, Successes: 90,
		SuccessRate: f(0.9), RPS: f(10),
		LatencyP50: f(10 + 10*50.0/60), LatencyP95: f(250), LatencyP99: f(290),
		TCPConn: f(1), ReadBytesPS: f(400), WriteBytesPS: f(200),
	}
	for _, tc := range []struct {
		name string
		q    Query
		want []Row
	}{
		{"deployments", Query{Kind: Deployment, Namespace: "faces"}, []Row{
			{Namespace: "faces", Name: "color", TotalPods: 1},
			{Namespace: "faces", Name: "face", MeshedPods: 1, TotalPods: 1, Stats: Stats{TCPConn: f(1), ReadBytesPS: f(0), WriteBytesPS: f(0)}},
			{Namespace: "faces", Name: "smiley", MeshedPods: 2, TotalPods: 2, Stats: smiley},
		}},
		{"one deployment", Query{Kind: Deployment, Name: "smiley"}, []Row{
			{Namespace: "faces", Name: "smiley", MeshedPods: 2, TotalPods: 2, Stats: smiley},
		}},
		{"other namespace is empty", Query{Kind: Deployment, Namespace: "emojivoto"}, []Row{}},
		{"pods", Query{Kind: PodKind, Name: "smiley-def-2"}, []Row{
			{Namespace: "faces", Name: "smiley-def-2", Status: "Running", MeshedPods: 1, TotalPods: 1, Stats: Stats{
				Requests: 30, Successes: 30, SuccessRate: f(1), RPS: f(3),
				LatencyP50: f(40 + 10*15.0/30), LatencyP95: f(40 + 10*28.5/30), LatencyP99: f(40 + 10*29.7/30),
				TCPConn: f(1), ReadBytesPS: f(0), WriteBytesPS: f(0),
			}},
		}},
		{"namespace", Query{Kind: Namespace}, []Row{
			{Name: "faces", MeshedPods: 3, TotalPods: 4, Stats: Stats{
				Requests: 100, Successes: 90, SuccessRate: f(0.9), RPS: f(10),
				LatencyP50: smiley.LatencyP50, LatencyP95: f(250), LatencyP99: f(290),
				TCPConn: f(2), ReadBytesPS: f(400), WriteBytesPS: f(200),
			}},
		}},
		{"authority", Query{Kind: Authority}, []Row{
			// Connections carry no authority: no TCP columns.
			{Namespace: "faces", Name: "smiley.faces.svc.cluster.local:80", Stats: Stats{
				Requests: 100, Successes: 90, SuccessRate: f(0.9), RPS: f(10),
				LatencyP50: smiley.LatencyP50, LatencyP95: f(250), LatencyP99: f(290),
			}},
		}},
		{"to smiley", Query{Kind: Deployment, Namespace: "faces", To: &Ref{Kind: Deployment, Namespace: "faces", Name: "smiley"}}, []Row{
			{Namespace: "faces", Name: "face", MeshedPods: 1, TotalPods: 1, Stats: Stats{
				Requests: 100, Successes: 90, SuccessRate: f(0.9), RPS: f(10),
				LatencyP50: smiley.LatencyP50, LatencyP95: f(250), LatencyP99: f(290),
			}},
		}},
		{"from face to pods", Query{Kind: PodKind, From: &Ref{Kind: Deployment, Namespace: "faces", Name: "face"}}, []Row{
			{Namespace: "faces", Name: "smiley-def-1", Status: "Running", MeshedPods: 1, TotalPods: 1, Stats: Stats{
				Requests: 70, Successes: 60, SuccessRate: f(60.0 / 70), RPS: f(7),
				LatencyP50: f(10 + 10*35.0/60), LatencyP95: f(200 + 100*(66.5-60)/10), LatencyP99: f(200 + 100*(69.3-60)/10),
			}},
			{Namespace: "faces", Name: "smiley-def-2", Status: "Running", MeshedPods: 1, TotalPods: 1, Stats: Stats{
				Requests: 30, Successes: 30, SuccessRate: f(1), RPS: f(3),
				LatencyP50: f(40 + 10*15.0/30), LatencyP95: f(40 + 10*28.5/30), LatencyP99: f(40 + 10*29.7/30),
			}},
		}},
		{"from a caller that sent nothing", Query{Kind: Deployment, From: &Ref{Kind: Deployment, Namespace: "faces", Name: "smiley"}}, []Row{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Stat(deltas, pods, tc.q)
			if diff := cmp.Diff(tc.want, got, approx, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Stat (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEdges(t *testing.T) {
	deltas, _ := world(t)
	got := Edges(deltas, Deployment, "faces")
	want := []Edge{{
		Src: "face", SrcNamespace: "faces", Dst: "smiley", DstNamespace: "faces",
		Stats: Stats{Requests: 100, Successes: 90, SuccessRate: f(0.9), RPS: f(10),
			LatencyP50: f(10 + 10*50.0/60), LatencyP95: f(250), LatencyP99: f(290)},
	}}
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("Edges (-want +got):\n%s", diff)
	}
	if got := Edges(deltas, Deployment, "emojivoto"); len(got) != 0 {
		t.Errorf("Edges in another namespace = %+v, want none", got)
	}
	pods := Edges(deltas, PodKind, "")
	if len(pods) != 2 || pods[0].Dst != "smiley-def-1" || pods[0].Requests != 70 || pods[1].Dst != "smiley-def-2" || pods[1].Requests != 30 {
		t.Errorf("pod edges = %+v", pods)
	}
}

func TestEdgeIdentities(t *testing.T) {
	t0 := time.Unix(0, 0)
	inc := func(labels map[string]string) promtext.Sample {
		return promtext.Sample{Name: "response_total", Labels: labels, Value: 5}
	}
	caller := Delta{Pod: Pod{Namespace: "a", Name: "c-1", Deployment: "c", ServiceAccount: "csa"}, Seconds: 5, Increase: []promtext.Sample{
		inc(map[string]string{"direction": "outbound", "namespace": "a", "deployment": "c", "dst_namespace": "b", "dst_deployment": "s",
			"tls": "true", "server_id": "ssa.b.serviceaccount.identity.linkerd.cluster.local", "classification": "success"}),
	}}
	callee := Delta{Pod: Pod{Namespace: "b", Name: "s-1", Deployment: "s", ServiceAccount: "ssa"}, Seconds: 5, Increase: []promtext.Sample{
		inc(map[string]string{"direction": "inbound", "namespace": "b", "deployment": "s", "tls": "true",
			"client_id": "csa.a.serviceaccount.identity.linkerd.cluster.local", "classification": "success"}),
		inc(map[string]string{"direction": "inbound", "namespace": "b", "deployment": "s", "tls": "true",
			"client_id": "other.a.serviceaccount.identity.linkerd.cluster.local", "classification": "success"}),
	}}
	_ = t0
	got := Edges([]Delta{caller, callee}, Deployment, "")
	if len(got) != 1 {
		t.Fatalf("edges = %+v, want one", got)
	}
	e := got[0]
	if !e.Secured || e.ClientID != "csa.a.serviceaccount.identity.linkerd.cluster.local" || e.ServerID != "ssa.b.serviceaccount.identity.linkerd.cluster.local" {
		t.Errorf("edge = %+v, want secured with both identities", e)
	}
}

func TestRoutes(t *testing.T) {
	deltas, _ := world(t)
	got := Routes(deltas, RouteQuery{Resource: Ref{Kind: Deployment, Namespace: "faces", Name: "smiley"}})
	want := []RouteRow{{Route: DefaultRoute, Service: "smiley", Authority: "smiley.faces.svc.cluster.local:80"}}
	want[0].Effective = Stats{Requests: 100, Successes: 90, SuccessRate: f(0.9), RPS: f(10),
		LatencyP50: f(10 + 10*50.0/60), LatencyP95: f(250), LatencyP99: f(290)}
	want[0].Actual = want[0].Effective
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("Routes (-want +got):\n%s", diff)
	}

	// With ServiceProfile route series, rows follow rt_route; actual counts
	// attempts.
	l := func(name, route string, class string, v float64) promtext.Sample {
		return promtext.Sample{Name: name, Value: v, Labels: map[string]string{"direction": "outbound", "namespace": "faces",
			"deployment": "face", "dst_deployment": "smiley", "dst_namespace": "faces", "rt_route": route,
			"dst": "smiley.faces.svc.cluster.local:80", "classification": class}}
	}
	d := Delta{Seconds: 10, Increase: []promtext.Sample{
		l("route_response_total", "GET /smiley", "success", 18),
		l("route_response_total", "GET /smiley", "failure", 2),
		l("route_actual_response_total", "GET /smiley", "success", 18),
		l("route_actual_response_total", "GET /smiley", "failure", 12),
		l("route_response_total", "", "success", 5),
	}}
	got = Routes([]Delta{d}, RouteQuery{Resource: Ref{Kind: Deployment, Namespace: "faces", Name: "face"}, To: &Ref{Kind: Deployment, Namespace: "faces", Name: "smiley"}})
	if len(got) != 2 || got[0].Route != "GET /smiley" || got[1].Route != DefaultRoute {
		t.Fatalf("routes = %+v", got)
	}
	r := got[0]
	if *r.Effective.SuccessRate != 0.9 || *r.Effective.RPS != 2 || *r.Actual.SuccessRate != 0.6 || *r.Actual.RPS != 3 || r.Service != "smiley" {
		t.Errorf("route = %+v %+v %+v", r, r.Effective, r.Actual)
	}
}
