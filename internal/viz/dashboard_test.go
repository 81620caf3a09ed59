package viz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/viz/stats"
)

// simMesh is a set of simulated proxies: each serves /metrics from the real
// metrics package and, on every scrape, first records one more round of
// its scripted traffic, so rates stay non-zero however fast the scraper is.
type simMesh struct {
	t     *testing.T
	store store.Store
	mu    sync.Mutex
	procs map[string]*simProxy // by namespace/deployment
}

type simProxy struct {
	ns, dep, pod string
	in, out      *metrics.HTTP
	tcp          *metrics.TCP
	rounds       []func()
}

func newSimMesh(t *testing.T) *simMesh {
	return &simMesh{t: t, store: store.NewMemory(), procs: map[string]*simProxy{}}
}

func (m *simMesh) add(ns, dep string) *simProxy {
	m.t.Helper()
	reg := metrics.NewRegistry()
	pm := metrics.NewProxy(reg)
	pod := dep + "-7d9f8c6b5-x" + fmt.Sprint(len(m.procs)%10) + "k2q"
	common := metrics.L("namespace", ns, "pod", pod, "deployment", dep)
	p := &simProxy{ns: ns, dep: dep, pod: pod,
		in:  pm.HTTP(metrics.L("direction", "inbound").Merge(common)),
		out: pm.HTTP(metrics.L("direction", "outbound").Merge(common)),
		tcp: pm.TCP(metrics.L("direction", "inbound").Merge(common).With("peer", "src")),
	}
	p.tcp.Open()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		for _, f := range p.rounds {
			f()
		}
		m.mu.Unlock()
		reg.WriteText(w)
	}))
	m.t.Cleanup(srv.Close)
	po := api.New(api.KindPod).(*corev1.Pod)
	po.Namespace, po.Name = ns, pod
	po.Labels = map[string]string{"app": dep, "pod-template-hash": "7d9f8c6b5"}
	po.Annotations = map[string]string{AnnotationAdminAddr: strings.TrimPrefix(srv.URL, "http://"), AnnotationProxyVersion: "dev"}
	po.Spec.Containers = []corev1.Container{{Name: dep, Image: dep}}
	po.Status.Phase = corev1.PodRunning
	if err := m.store.Apply(context.Background(), po); err != nil {
		m.t.Fatal(err)
	}
	m.procs[ns+"/"+dep] = p
	return p
}

// call scripts n requests per round from src to dst, failures of them
// answered 500, taking latency.
func (m *simMesh) call(src, dst *simProxy, n, failures int, latency time.Duration) {
	auth := dst.dep + "." + dst.ns + ".svc.cluster.local:80"
	out := src.out.Target(auth, metrics.L("dst_deployment", dst.dep, "dst_namespace", dst.ns, "dst_pod", dst.pod))
	in := dst.in.Target(auth, metrics.Labels{})
	record := func(t *metrics.Target) func() {
		return func() {
			for i := range n {
				status := 200
				if i < failures {
					status = 500
				}
				t.Request()
				t.Latency(status, latency+time.Duration(i)*latency/time.Duration(n))
				t.Response(status, metrics.NoGRPCStatus)
			}
		}
	}
	src.rounds = append(src.rounds, record(out))
	dst.rounds = append(dst.rounds, record(in))
}

// faces builds the Faces demo's shape: gui -> face -> smiley, color.
func (m *simMesh) faces() {
	gui := m.add("faces", "faces-gui")
	face := m.add("faces", "face")
	smiley := m.add("faces", "smiley")
	color := m.add("faces", "color")
	m.call(gui, face, 20, 0, 40*time.Millisecond)
	m.call(face, smiley, 20, 3, 8*time.Millisecond)
	m.call(face, color, 20, 0, 4*time.Millisecond)
}

func (m *simMesh) collector() *Collector {
	return &Collector{
		Pods:     func(ctx context.Context) ([]stats.Pod, error) { return PodsFromStore(ctx, m.store) },
		Window:   3 * time.Second,
		Interval: 200 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// serve runs the dashboard on 127.0.0.1 and returns its address.
func serve(t *testing.T, c *Collector) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, c, "/state", nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return resp.StatusCode
}

func TestAPI(t *testing.T) {
	m := newSimMesh(t)
	m.faces()
	addr := serve(t, m.collector())
	base := "http://" + addr

	// Poll until two scrapes give a delta.
	var stat struct{ Rows []stats.Row }
	deadline := time.Now().Add(10 * time.Second)
	for {
		getJSON(t, base+"/api/v1/stat?kind=deploy&namespace=faces&name=smiley", &stat)
		if len(stat.Rows) == 1 && stat.Rows[0].RPS != nil && *stat.Rows[0].RPS > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smiley never got a rate: %+v", stat.Rows)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every scrape adds 20 responses, 3 of them failures: the success rate
	// is exact whatever the timing.
	if r := stat.Rows[0]; r.SuccessRate == nil || *r.SuccessRate != 17.0/20 || r.MeshedPods != 1 || r.TotalPods != 1 {
		t.Errorf("smiley row = %+v", r)
	}

	var ov Overview
	getJSON(t, base+"/api/v1/overview?namespace=faces", &ov)
	if len(ov.Deployments) != 4 || len(ov.Edges) != 3 || len(ov.Namespaces) != 1 {
		t.Errorf("overview: %d deployments, %d edges, %d namespaces; want 4, 3, 1", len(ov.Deployments), len(ov.Edges), len(ov.Namespaces))
	}

	var routes struct{ Routes []stats.RouteRow }
	getJSON(t, base+"/api/v1/routes?resource=deploy/face&namespace=faces&to=deploy/color&to_namespace=faces", &routes)
	if len(routes.Routes) != 1 || routes.Routes[0].Service != "color" || routes.Routes[0].Effective.SuccessRate == nil || *routes.Routes[0].Effective.SuccessRate != 1 {
		t.Errorf("routes = %+v", routes.Routes)
	}

	// The Remote client reads the same API.
	rows, err := Remote{Addr: addr}.Stat(context.Background(), stats.Query{Kind: stats.Deployment, Namespace: "faces", From: &stats.Ref{Kind: stats.Deployment, Namespace: "faces", Name: "face"}}, 0)
	if err != nil || len(rows) != 2 || rows[0].Name != "color" || rows[1].Name != "smiley" {
		t.Errorf("Remote.Stat --from face = %+v, %v", rows, err)
	}
	info, err := Remote{Addr: addr}.Info(context.Background())
	if err != nil || info.StateDir != "/state" || info.Window != 3 {
		t.Errorf("Info = %+v, %v", info, err)
	}

	var e struct{ Error string }
	if code := getJSON(t, base+"/api/v1/stat?kind=svc", &e); code != http.StatusBadRequest || !strings.Contains(e.Error, "unknown resource type") {
		t.Errorf("bad kind: %d %q", code, e.Error)
	}
	if code := getJSON(t, base+"/api/v1/stat?window=soon", &e); code != http.StatusBadRequest || !strings.Contains(e.Error, "bad window") {
		t.Errorf("bad window: %d %q", code, e.Error)
	}
	if code := getJSON(t, base+"/api/v1/tap?resource=deploy/face&namespace=faces", &e); code != http.StatusNotImplemented || !strings.Contains(e.Error, "tap is unavailable") {
		t.Errorf("tap: %d %q", code, e.Error)
	}
}

// TestCollectorSurvivesDeadProxy checks a proxy that stops answering is
// reported and the others still count.
func TestCollectorSurvivesDeadProxy(t *testing.T) {
	m := newSimMesh(t)
	m.faces()
	dead := api.New(api.KindPod).(*corev1.Pod)
	dead.Namespace, dead.Name = "faces", "ghost-1-a"
	dead.Annotations = map[string]string{AnnotationAdminAddr: "127.0.0.1:1"}
	if err := m.store.Apply(context.Background(), dead); err != nil {
		t.Fatal(err)
	}
	c := m.collector()
	ctx := context.Background()
	for range 2 {
		if err := c.ScrapeOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if errs := c.Errors(); !strings.Contains(errs["faces/ghost-1-a"], "127.0.0.1:1") || len(errs) != 1 {
		t.Errorf("errors = %v", errs)
	}
	deltas, pods := c.Snapshot(0)
	if len(deltas) != 4 || len(pods) != 5 {
		t.Errorf("%d deltas over %d pods, want 4 over 5", len(deltas), len(pods))
	}
	// Only the families viz reads are kept.
	for _, d := range deltas {
		for _, s := range append(d.Increase, d.Gauges...) {
			if !stats.Used(s.Name) {
				t.Errorf("kept %s of %s", s.Name, d.Pod.Name)
			}
		}
	}
}

func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WEFT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("skipping dashboard browser test: no Chromium found (install Debian's chromium, or set WEFT_CHROMIUM)")
	return ""
}

func newTab(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

func waitJS(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("waiting for %s: %v\npage: %.2000s", what, err, html)
	}
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("WEFT_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot saved to %s", path)
}

// TestDashboardBrowser opens the dashboard in headless Chromium on
// simulated Faces proxies (plus a namespace of 100 workloads) and checks
// workloads show non-zero RPS, the topology draws every edge, and a
// workload page lists its callees.
func TestDashboardBrowser(t *testing.T) {
	ctx := newTab(t)
	m := newSimMesh(t)
	m.faces()
	var prev *simProxy
	for i := range 100 {
		p := m.add("load", fmt.Sprintf("svc-%03d", i))
		if prev != nil && i%10 != 0 {
			m.call(prev, p, 2, i%3, time.Duration(i)*time.Millisecond)
		}
		prev = p
	}
	// face's proxy serves tap.
	_, tapAddr := startTap(t)
	face := m.procs["faces/face"]
	obj, err := m.store.Get(context.Background(), api.Ref{Kind: api.KindPod, Namespace: "faces", Name: face.pod})
	if err != nil {
		t.Fatal(err)
	}
	obj.(*corev1.Pod).Annotations[AnnotationTapAddr] = tapAddr
	if err := m.store.Apply(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	base := "http://" + serve(t, m.collector())

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/workloads")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "smiley with a non-zero RPS in the workloads table", `(() => {
		const row = document.querySelector('#workloads tr[data-name="smiley"]');
		const rps = row && row.querySelector('td.rps');
		return !!rps && /^[0-9.]+rps$/.test(rps.textContent) && parseFloat(rps.textContent) > 0;
	})()`)
	for _, dep := range []string{"faces-gui", "face", "smiley", "color"} {
		waitJS(t, ctx, dep+" in the table", fmt.Sprintf(`!!document.querySelector('#workloads tr[data-name=%q]')`, dep))
	}

	// The overview of the faces namespace: table and topology.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`setNamespace('faces'); location.hash = '#/'`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the topology of faces", `document.querySelectorAll('#topology svg g.node').length === 4 &&
		document.querySelectorAll('#topology svg g.edge').length === 3`)
	waitJS(t, ctx, "success rates on the edges", `[...document.querySelectorAll('#topology g.edge text')].some(t => t.textContent.startsWith('85.00%'))`)
	screenshot(t, ctx, "dashboard.png")

	// A workload page: face calls smiley and color, and is called by the gui.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`location.hash = '#/deploy/faces/face'`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "face's outbound edges", `['smiley', 'color'].every(n => !!document.querySelector('#outbound tr[data-name="' + n + '"]')) &&
		!!document.querySelector('#inbound tr[data-name="faces-gui"]')`)
	waitJS(t, ctx, "face's routes", `document.querySelector('#routes').textContent.includes('[DEFAULT]')`)
	waitJS(t, ctx, "face's charts", `['#chart-sr', '#chart-rps', '#chart-p99'].every(s => {
		const p = document.querySelector(s + ' svg path');
		return p && (p.getAttribute('d').match(/L/g) || []).length >= 2;
	})`)
	screenshot(t, ctx, "dashboard-workload.png")

	// Live tap of face: every scripted request appears with its status.
	waitJS(t, ctx, "the tap panel", `!document.querySelector('#tap-panel').hidden && document.querySelector('#tap-note').hidden`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#tap-start"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "tapped requests", `(() => {
		const rows = [...document.querySelectorAll('#tap-rows tr')].map(r => r.textContent.replace(/\s+/g, ' ').trim());
		return rows.length === 4 && rows.filter(r => r.includes('/smiley')).length === 3 && rows.some(r => r.includes('500'));
	})()`)
	screenshot(t, ctx, "dashboard-tap-sim.png")

	// Without a tap server the panel is replaced by a note.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`location.hash = '#/deploy/faces/smiley'`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the tap note on smiley's page", `document.querySelector('h1').textContent.includes('deploy/smiley') &&
		document.querySelector('#tap-panel').hidden && !document.querySelector('#tap-note').hidden`)

	// 100 workloads: the table lists them all and keeps refreshing.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`setNamespace('load'); location.hash = '#/workloads'`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "100 workloads", `document.querySelectorAll('#workloads tbody tr').length === 100`)
	waitJS(t, ctx, "the filter", `(() => { const f = document.querySelector('#filter'); f.value = 'svc-05'; f.dispatchEvent(new Event('input')); return document.querySelectorAll('#workloads tbody tr').length === 10; })()`)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`location.hash = '#/topology'`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the big topology", `document.querySelectorAll('#topology svg g.node').length === 100 && document.querySelectorAll('#topology svg g.edge').length === 90`)
	screenshot(t, ctx, "dashboard-topology-100.png")
}
