package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	httppb "github.com/linkerd/linkerd2-proxy-api/go/http_types"
	netpb "github.com/linkerd/linkerd2-proxy-api/go/net"
	tappb "github.com/linkerd/linkerd2-proxy-api/go/tap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/control"
	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/viz"
	"github.com/weft-mesh/weft/internal/viz/stats"
)

// fakeProxy serves a proxy's /metrics from the real metrics package. Its
// traffic happens "between" scrapes: every second scrape runs play first, so
// each two-scrape measurement sees exactly that traffic once.
type fakeProxy struct {
	reg  *metrics.Registry
	in   *metrics.HTTP
	out  *metrics.HTTP
	tcp  *metrics.TCP
	addr string

	mu      sync.Mutex
	scrapes int
	play    func(p *fakeProxy)
}

func newFakeProxy(t *testing.T, ns, dep, pod string, play func(p *fakeProxy)) *fakeProxy {
	t.Helper()
	reg := metrics.NewRegistry()
	pm := metrics.NewProxy(reg)
	common := metrics.L("namespace", ns, "pod", pod, "deployment", dep)
	p := &fakeProxy{
		reg:  reg,
		in:   pm.HTTP(metrics.L("direction", "inbound").Merge(common)),
		out:  pm.HTTP(metrics.L("direction", "outbound").Merge(common)),
		tcp:  pm.TCP(metrics.L("direction", "inbound").Merge(common).With("peer", "src")),
		play: play,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		p.mu.Lock()
		p.scrapes++
		if p.scrapes%2 == 0 && p.play != nil {
			p.play(p)
		}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		reg.WriteText(w)
	}))
	t.Cleanup(srv.Close)
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func serveN(t *metrics.Target, n, status int, d time.Duration) {
	for range n {
		t.Request()
		t.Latency(status, d)
		t.Response(status, metrics.NoGRPCStatus)
	}
}

func vizPod(ns, dep, hash, suffix, adminAddr string) *corev1.Pod {
	p := api.New(api.KindPod).(*corev1.Pod)
	p.Namespace, p.Name = ns, dep+"-"+hash+"-"+suffix
	p.Labels = map[string]string{"app": dep, "pod-template-hash": hash}
	if adminAddr != "" {
		p.Annotations = map[string]string{"weft.io/admin-addr": adminAddr, "linkerd.io/proxy-version": "dev"}
	}
	p.Spec.Containers = []corev1.Container{{Name: dep, Image: dep}}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = "127.0.0.1"
	return p
}

// vizMesh stores a faces namespace where api calls web: in the window web
// answers 100 requests (10 of them 500s) with known latencies.
func vizMesh(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	const auth = "web.faces.svc.cluster.local:80"
	web := newFakeProxy(t, "faces", "web", "web-abc12-aaaaa", func(p *fakeProxy) {
		in := p.in.Target(auth, metrics.Labels{})
		serveN(in, 60, 200, 15*time.Millisecond)
		serveN(in, 10, 500, 250*time.Millisecond)
		serveN(in, 30, 200, 45*time.Millisecond)
		p.tcp.Open()
		p.tcp.Open()
		p.tcp.Close(5000, 2500)
	})
	apiProxy := newFakeProxy(t, "faces", "api", "api-def34-bbbbb", func(p *fakeProxy) {
		out := p.out.Target(auth, metrics.L("dst_deployment", "web", "dst_namespace", "faces", "dst_pod", "web-abc12-aaaaa"))
		serveN(out, 60, 200, 15*time.Millisecond)
		serveN(out, 10, 500, 250*time.Millisecond)
		serveN(out, 30, 200, 45*time.Millisecond)
	})
	// Traffic before the measurement must not count.
	serveN(web.in.Target(auth, metrics.Labels{}), 1000, 500, time.Second)
	st := openStore(t, dir)
	if err := st.Apply(context.Background(),
		vizPod("faces", "web", "abc12", "aaaaa", web.addr),
		vizPod("faces", "api", "def34", "bbbbb", apiProxy.addr),
		vizPod("faces", "db", "99999", "ccccc", ""),
	); err != nil {
		t.Fatal(err)
	}
	return dir
}

// cells splits a table into rows of cells.
func cells(out string) [][]string {
	var rows [][]string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, strings.Fields(l))
	}
	return rows
}

func checkTable(t *testing.T, name, out string, want [][]string) {
	t.Helper()
	got := cells(out)
	if len(got) != len(want) {
		t.Fatalf("%s: got\n%s\nwant %d lines", name, out, len(want))
	}
	for i := range want {
		if strings.Join(got[i], " ") != strings.Join(want[i], " ") {
			t.Errorf("%s line %d = %q, want %q\n%s", name, i, strings.Join(got[i], " "), strings.Join(want[i], " "), out)
		}
	}
}

func TestVizStat(t *testing.T) {
	dir := vizMesh(t)
	r := weft(t, dir, "", "viz", "stat", "deploy", "-n", "faces", "--window", "500ms", "-o", "wide")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	// 100 responses in 0.5 s; p50 in (10,20] at 50/60, p95/p99 in (200,300].
	checkTable(t, "stat deploy", r.out, [][]string{
		{"NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN", "READ_BYTES/SEC", "WRITE_BYTES/SEC"},
		// api serves nothing; its proxy's inbound listener has no connections.
		{"api", "1/1", "-", "-", "-", "-", "-", "0", "0.0B/s", "0.0B/s"},
		{"db", "0/1", "-", "-", "-", "-", "-", "-", "-", "-"},
		{"web", "1/1", "90.00%", "200.0rps", "18ms", "250ms", "290ms", "1", "10000.0B/s", "5000.0B/s"},
	})
	if !strings.Contains(r.out, "NAME   MESHED") {
		t.Errorf("columns are not kubectl-spaced:\n%s", r.out)
	}

	r = weft(t, dir, "", "viz", "stat", "deploy", "-n", "faces", "--from", "deploy/api", "--window", "300ms")
	checkTable(t, "stat --from", r.out, [][]string{
		{"NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN"},
		{"web", "1/1", "90.00%", "333.3rps", "18ms", "250ms", "290ms", "-"},
	})

	r = weft(t, dir, "", "viz", "stat", "po", "-A", "--to", "deploy/web", "--to-namespace", "faces", "--window", "250ms", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(r.out), &rows); err != nil {
		t.Fatalf("json: %v\n%s", err, r.out)
	}
	if len(rows) != 1 || rows[0]["name"] != "api-def34-bbbbb" || rows[0]["success"] != 0.9 || rows[0]["rps"] != 400.0 || rows[0]["meshed"] != "1/1" || rows[0]["kind"] != "pod" {
		t.Errorf("stat po --to json = %v", rows)
	}

	r = weft(t, dir, "", "viz", "stat", "ns", "--window", "250ms")
	checkTable(t, "stat ns", r.out, [][]string{
		{"NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN"},
		// Four measurements so far, each leaving one more connection open.
		{"faces", "2/3", "90.00%", "400.0rps", "18ms", "250ms", "290ms", "4"},
	})
}

func TestVizRoutesEdges(t *testing.T) {
	dir := vizMesh(t)
	r := weft(t, dir, "", "viz", "routes", "deploy/web", "-n", "faces", "--window", "500ms")
	checkTable(t, "routes", r.out, [][]string{
		{"ROUTE", "SERVICE", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99"},
		{"[DEFAULT]", "web", "90.00%", "200.0rps", "18ms", "250ms", "290ms"},
	})
	r = weft(t, dir, "", "viz", "routes", "deploy/api", "-n", "faces", "--to", "deploy/web", "-o", "wide", "--window", "500ms")
	checkTable(t, "routes --to wide", r.out, [][]string{
		{"ROUTE", "SERVICE", "EFFECTIVE_SUCCESS", "EFFECTIVE_RPS", "ACTUAL_SUCCESS", "ACTUAL_RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99"},
		{"[DEFAULT]", "web", "90.00%", "200.0rps", "90.00%", "200.0rps", "18ms", "250ms", "290ms"},
	})
	r = weft(t, dir, "", "viz", "edges", "deploy", "-n", "faces", "-o", "wide", "--window", "200ms")
	checkTable(t, "edges", r.out, [][]string{
		{"SRC", "DST", "SRC_NS", "DST_NS", "SECURED", "CLIENT_ID", "SERVER_ID"},
		{"api", "web", "faces", "faces", "×", "-", "-"},
	})
}

func TestVizErrors(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"viz", "stat", "svc"}, 1, `unknown resource type "svc"`},
		{[]string{"viz", "stat", "deploy", "-o", "yaml"}, 1, `unknown output format "yaml"`},
		{[]string{"viz", "stat", "deploy", "--from", "web"}, 1, "want TYPE/NAME"},
		{[]string{"viz", "stat", "deploy", "--window", "100ms"}, 1, "no meshed pods in the state directory"},
		{[]string{"viz", "top", "deploy/web"}, 1, "no pods for deploy/web in namespace default"},
		{[]string{"viz", "tap", "au/web:80"}, 1, "tap a deployment, pod or namespace"},
		{[]string{"viz", "edges", "ns"}, 1, "edges are between deployments or pods"},
		{[]string{"diagnostics", "proxy-metrics", "deploy/web"}, 1, "no pods for deploy/web in namespace default"},
		{[]string{"diagnostics", "endpoints", "web"}, 1, "no mesh is running"},
	} {
		r := weft(t, empty, "", tc.args...)
		if r.code != tc.code || !strings.Contains(r.err, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.err, tc.code, tc.want)
		}
	}
}

func TestVizTap(t *testing.T) {
	dir := vizMesh(t)
	// The simulated proxies serve no tap: a clear error, exit code 2.
	for _, cmd := range []string{"tap", "top"} {
		r := weft(t, dir, "", "viz", cmd, "deploy/web", "-n", "faces")
		if r.code != 2 || !strings.Contains(r.err, "tap is unavailable") {
			t.Errorf("viz %s without tap: exit %d, %q", cmd, r.code, r.err)
		}
	}

	// A pod whose proxy serves tap.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	tappb.RegisterTapServer(srv, &scriptedTap{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	pod := vizPod("faces", "smiley", "aaa11", "zzzzz", "127.0.0.1:1")
	pod.Annotations["weft.io/tap-addr"] = ln.Addr().String()
	if err := openStore(t, dir).Apply(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	r := weft(t, dir, "", "viz", "tap", "deploy/smiley", "-n", "faces", "--path", "/smiley", "--limit", "2")
	if r.code != 0 {
		t.Fatalf("tap: exit %d: %s", r.code, r.err)
	}
	want := "" +
		"req id=0:1 proxy=in src=127.0.0.1:40000 dst=127.0.0.1:4143 tls=false :method=GET :authority=smiley:80 :path=/smiley\n" +
		"rsp id=0:1 proxy=in src=127.0.0.1:40000 dst=127.0.0.1:4143 tls=false :status=200 latency=3000µs\n" +
		"end id=0:1 proxy=in src=127.0.0.1:40000 dst=127.0.0.1:4143 tls=false duration=500µs response-length=10B\n" +
		"req id=0:2 proxy=in src=127.0.0.1:40000 dst=127.0.0.1:4143 tls=false :method=GET :authority=smiley:80 :path=/smiley\n" +
		"rsp id=0:2 proxy=in src=127.0.0.1:40000 dst=127.0.0.1:4143 tls=false :status=500 latency=7000µs\n" +
		"end id=0:2 proxy=in src=127.0.0.1:40000 dst=127.0.0.1:4143 tls=false duration=500µs response-length=10B\n"
	if r.out != want {
		t.Errorf("tap output:\n%s\nwant:\n%s", r.out, want)
	}
	r = weft(t, dir, "", "viz", "top", "deploy/smiley", "-n", "faces", "--limit", "2")
	checkTable(t, "top", r.out, [][]string{
		{"Source", "Destination", "Method", "Path", "Count", "Best", "Worst", "Last", "Success", "Rate"},
		{"127.0.0.1", "smiley-aaa11-zzzzz", "GET", "/smiley", "2", "3ms", "7ms", "7ms", "50.00%"},
	})
}

// scriptedTap is a proxy's tap server: each Observe gets requests to
// /smiley (first 200 in 3 ms, then 500 in 7 ms, ...) up to the limit.
type scriptedTap struct {
	tappb.UnimplementedTapServer
}

func (scriptedTap) Observe(req *tappb.ObserveRequest, stream grpc.ServerStreamingServer[tappb.TapEvent]) error {
	src := &netpb.TcpAddress{Ip: &netpb.IPAddress{Ip: &netpb.IPAddress_Ipv4{Ipv4: 0x7f000001}}, Port: 40000}
	dst := &netpb.TcpAddress{Ip: &netpb.IPAddress{Ip: &netpb.IPAddress_Ipv4{Ipv4: 0x7f000001}}, Port: 4143}
	send := func(h *tappb.TapEvent_Http) error {
		return stream.Send(&tappb.TapEvent{Source: src, Destination: dst, ProxyDirection: tappb.TapEvent_INBOUND, Event: &tappb.TapEvent_Http_{Http: h}})
	}
	for i := uint32(1); req.GetLimit() == 0 || i <= req.GetLimit(); i++ {
		id := &tappb.TapEvent_Http_StreamId{Stream: uint64(i)}
		status, latency := uint32(200), 3*time.Millisecond
		if i%2 == 0 {
			status, latency = 500, 7*time.Millisecond
		}
		for _, h := range []*tappb.TapEvent_Http{
			{Event: &tappb.TapEvent_Http_RequestInit_{RequestInit: &tappb.TapEvent_Http_RequestInit{Id: id, Authority: "smiley:80", Path: "/smiley",
				Method: &httppb.HttpMethod{Type: &httppb.HttpMethod_Registered_{Registered: httppb.HttpMethod_GET}}}}},
			{Event: &tappb.TapEvent_Http_ResponseInit_{ResponseInit: &tappb.TapEvent_Http_ResponseInit{Id: id, HttpStatus: status, SinceRequestInit: durationpb.New(latency)}}},
			{Event: &tappb.TapEvent_Http_ResponseEnd_{ResponseEnd: &tappb.TapEvent_Http_ResponseEnd{Id: id, SinceResponseInit: durationpb.New(500 * time.Microsecond), ResponseBytes: 10}}},
		} {
			if err := send(h); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestDiagnosticsProxyMetrics(t *testing.T) {
	dir := vizMesh(t)
	r := weft(t, dir, "", "diagnostics", "proxy-metrics", "-n", "faces", "deploy/web")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	if !strings.HasPrefix(r.out, "#\n# POD web-abc12-aaaaa (1 of 1)\n#\n# HELP request_total") {
		t.Errorf("output does not start with the pod header and the metrics:\n%.300s", r.out)
	}
	if !strings.Contains(r.out, `response_total{direction="inbound",namespace="faces",pod="web-abc12-aaaaa",deployment="web",authority="web.faces.svc.cluster.local:80",status_code="500",classification="failure"} 1000`) {
		t.Errorf("raw metrics missing the inbound failures:\n%s", r.out)
	}
	r = weft(t, dir, "", "diagnostics", "proxy-metrics", "-n", "faces", "po/db-99999-ccccc")
	if r.code != 1 || !strings.Contains(r.out, "no proxy admin address") {
		t.Errorf("unmeshed pod: exit %d, out %q, err %q", r.code, r.out, r.err)
	}
}

func TestDiagnosticsEndpoints(t *testing.T) {
	mem := store.NewMemory()
	svc := api.New(api.KindService).(*corev1.Service)
	svc.Namespace, svc.Name = "faces", "web"
	svc.Spec.Selector = map[string]string{"app": "web"}
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}}
	pod := vizPod("faces", "web", "abc12", "aaaaa", "127.0.0.1:1")
	slice := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
	slice.Namespace, slice.Name = "faces", "web-"+pod.Name
	slice.Labels = map[string]string{"kubernetes.io/service-name": "web"}
	slice.AddressType = discoveryv1.AddressTypeIPv4
	ready, name, port := true, "http", int32(4143)
	slice.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "faces", Name: pod.Name}}}
	slice.Ports = []discoveryv1.EndpointPort{{Name: &name, Port: &port}}
	if err := mem.Apply(context.Background(), svc, pod, slice); err != nil {
		t.Fatal(err)
	}
	p, err := control.Listen(control.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Store: mem,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	r := weft(t, t.TempDir(), "", "diagnostics", "endpoints", "--control-addr", p.Addr().String(), "web.faces.svc.cluster.local:80")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	checkTable(t, "endpoints", r.out, [][]string{
		{"NAMESPACE", "IP", "PORT", "POD", "SERVICE"},
		{"faces", "127.0.0.1", "4143", "web-abc12-aaaaa", "web"},
	})
	r = weft(t, t.TempDir(), "", "diagnostics", "endpoints", "--control-addr", p.Addr().String(), "nothing.faces.svc.cluster.local:80")
	if r.code != 0 || r.out != "" || !strings.Contains(r.err, "No endpoints found.") {
		t.Errorf("unknown authority: exit %d out %q err %q", r.code, r.out, r.err)
	}
}

// TestVizStatFromAPI checks the commands read a running viz API
// (--viz-addr) instead of measuring themselves.
func TestVizStatFromAPI(t *testing.T) {
	dir := vizMesh(t)
	st := openStore(t, dir)
	c := &viz.Collector{
		Pods:     func(ctx context.Context) ([]stats.Pod, error) { return viz.PodsFromStore(ctx, st) },
		Window:   time.Minute,
		Interval: 50 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- viz.Serve(ctx, ln, c, dir, nil) }()
	t.Cleanup(func() { cancel(); <-done })

	// Every second scrape of web adds 100 responses, 10 of them failures:
	// the success rate is exact whenever the window holds any.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := weft(t, dir, "", "viz", "stat", "deploy/web", "-n", "faces", "--viz-addr", ln.Addr().String())
		rows := cells(r.out)
		if r.code == 0 && len(rows) == 2 && rows[1][2] == "90.00%" {
			if rows[1][0] != "web" || rows[1][1] != "1/1" || !strings.HasSuffix(rows[1][3], "rps") || rows[1][3] == "0.0rps" {
				t.Errorf("stat from the API:\n%s", r.out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the viz API never showed web's success rate; last: exit %d\n%s%s", r.code, r.out, r.err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := weft(t, dir, "", "viz", "edges", "deploy", "-n", "faces", "--viz-addr", ln.Addr().String())
	checkTable(t, "edges from the API", r.out, [][]string{
		{"SRC", "DST", "SRC_NS", "DST_NS", "SECURED"},
		{"api", "web", "faces", "faces", "×"},
	})
	r = weft(t, dir, "", "viz", "stat", "deploy", "--viz-addr", ln.Addr().String(), "--window", "soon")
	if r.code == 0 {
		t.Errorf("a bad window was accepted")
	}
}
