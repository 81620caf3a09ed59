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
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy"
	"github.com/weft-mesh/weft/internal/viz/stats"
)

// TestPrometheusScrapesProxy runs a real weft proxy with traffic through its
// inbound side and a real Prometheus (Debian's prometheus package) scraping
// its admin endpoint, and asks Prometheus' query API for request_total: the
// proxy's metrics are valid for Prometheus, names and labels included.
func TestPrometheusScrapesProxy(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("skipping: no prometheus binary (apt-get install prometheus)")
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer app.Close()
	p, err := proxy.Listen(proxy.Config{
		ControlAddr:  "127.0.0.1:1", // inbound traffic needs no discovery
		OutboundAddr: "127.0.0.1:0",
		Inbound:      []proxy.InboundPort{{Listen: "127.0.0.1:0", App: strings.TrimPrefix(app.URL, "http://")}},
		AdminAddr:    "127.0.0.1:0",
		Namespace:    "faces",
		Pod:          "smiley-abc-1",
		Deployment:   "smiley",
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const n = 7
	for range n {
		resp, err := http.Get("http://" + p.InboundAddrs()[0] + "/smiley")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: weft-proxy\n  static_configs:\n  - targets: [%q]\n", p.AdminAddr())
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	type series struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	var result struct {
		Status string `json:"status"`
		Data   struct {
			Result []series `json:"result"`
		} `json:"data"`
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		result.Data.Result = nil
		resp, err := http.Get("http://" + web + "/api/v1/query?query=" + `request_total{direction="inbound"}`)
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&result)
			resp.Body.Close()
			if len(result.Data.Result) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never returned request_total (last %+v, %v); its log:\n%s", result, err, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	s := result.Data.Result[0]
	if s.Metric["namespace"] != "faces" || s.Metric["deployment"] != "smiley" || s.Metric["pod"] != "smiley-abc-1" || s.Metric["job"] != "weft-proxy" || s.Value[1] != fmt.Sprint(n) {
		t.Errorf("request_total from Prometheus = %+v, want %d requests labelled with the workload", s, n)
	}
}

// TestRealProxyStat runs requests through a real weft proxy's inbound side
// (7 answered 200, 3 answered 500) and checks the collector and the math
// read exactly that from the proxy's /metrics.
func TestRealProxyStat(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		io.WriteString(w, "ok")
	}))
	defer app.Close()
	p, err := proxy.Listen(proxy.Config{
		ControlAddr:  "127.0.0.1:1",
		OutboundAddr: "127.0.0.1:0",
		Inbound:      []proxy.InboundPort{{Listen: "127.0.0.1:0", App: strings.TrimPrefix(app.URL, "http://")}},
		AdminAddr:    "127.0.0.1:0",
		Namespace:    "faces",
		Pod:          "smiley-abc-1",
		Deployment:   "smiley",
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	pods := []stats.Pod{{Namespace: "faces", Name: "smiley-abc-1", Deployment: "smiley", Meshed: true, AdminAddr: p.AdminAddr()}}
	c := &Collector{Pods: func(context.Context) ([]stats.Pod, error) { return pods, nil }, Window: time.Minute}
	// The first scrape may race the admin server's start: poll it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := c.ScrapeOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(c.Errors()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin server never answered: %v", c.Errors())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 10 {
		path := "/ok"
		if i < 3 {
			path = "/fail"
		}
		resp, err := http.Get("http://" + p.InboundAddrs()[0] + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := c.ScrapeOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	deltas, all := c.Snapshot(0)
	rows := stats.Stat(deltas, all, stats.Query{Kind: stats.Deployment, Namespace: "faces"})
	if len(rows) != 1 {
		t.Fatalf("rows = %+v", rows)
	}
	r := rows[0]
	if r.Name != "smiley" || r.Requests != 10 || r.Successes != 7 || r.SuccessRate == nil || *r.SuccessRate != 0.7 ||
		r.LatencyP50 == nil || r.TCPConn == nil || r.MeshedPods != 1 {
		t.Errorf("stat of the real proxy = %+v", r)
	}
}
