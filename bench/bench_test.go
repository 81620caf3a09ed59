package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// The harness runs its own executable as the upstream server; in
	// tests that executable is this test binary.
	if os.Getenv(serveEnv) == "1" {
		if err := runServer(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", ms(7), 99.9, 7 * time.Millisecond},
		{"median of 4 is the 2nd (nearest rank)", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p51 of 4 is the 3rd", ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 1..100 is the max", hundred, 99.9, 100 * time.Millisecond},
		{"p90 of 1..100", hundred, 90, 90 * time.Millisecond},
		{"max", hundred, 100, 100 * time.Millisecond},
		{"tiny p is the min", hundred, 0.001, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeDoesNotReorderInput(t *testing.T) {
	lat := ms(5, 1, 3)
	s := summarize(lat)
	if s["p50"] != 3000 || s["max"] != 5000 {
		t.Errorf("summarize = %v, want p50 3000 µs and max 5000 µs", s)
	}
	if lat[0] != 5*time.Millisecond {
		t.Errorf("summarize sorted its input: %v", lat)
	}
}

func TestScheduledAt(t *testing.T) {
	start := time.Unix(1000, 0)
	tests := []struct {
		i    int
		rate float64
		want time.Duration
	}{
		{0, 1000, 0},
		{1, 1000, time.Millisecond},
		{999, 1000, 999 * time.Millisecond},
		{3, 200, 15 * time.Millisecond},
		{1, 3, 333333333 * time.Nanosecond},
	}
	for _, tt := range tests {
		if got := scheduledAt(start, tt.i, tt.rate).Sub(start); got != tt.want {
			t.Errorf("scheduledAt(i=%d, rate=%v) = start+%v, want start+%v", tt.i, tt.rate, got, tt.want)
		}
	}
}

// TestOpenLoopChargesStalls checks the coordinated-omission correction:
// when the server stalls once for 300 ms, every request scheduled during
// the stall waits, and an open-loop run must count that wait, where a
// closed-loop run sees a single slow request.
func TestOpenLoopChargesStalls(t *testing.T) {
	const stall = 300 * time.Millisecond
	run := func(loop func(c *http.Client, url string) sample) sample {
		var n atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 20 {
				time.Sleep(stall)
			}
			w.Write(body)
		}))
		defer srv.Close()
		c, err := newClient(target{url: srv.URL}, 1)
		if err != nil {
			t.Fatal(err)
		}
		return loop(c, srv.URL)
	}
	slow := func(s sample, over time.Duration) int {
		k := 0
		for _, l := range s.lat {
			if l >= over {
				k++
			}
		}
		return k
	}
	open := run(func(c *http.Client, url string) sample {
		return openLoop(context.Background(), c, url, 200, time.Second, 1)
	})
	if open.errors != 0 {
		t.Fatalf("open loop: %d errors, first: %s", open.errors, open.firstErr)
	}
	// Requests scheduled in the first 200 ms of the 300 ms stall (5 ms
	// apart) are all at least 100 ms late: about 40 of them.
	if k := slow(open, 100*time.Millisecond); k < 30 {
		t.Errorf("open loop counted %d requests >= 100 ms, want >= 30 (the stall must be charged to requests scheduled during it)", k)
	}
	closed := run(func(c *http.Client, url string) sample {
		return closedLoop(context.Background(), c, url, 600*time.Millisecond, 1)
	})
	// The closed loop sees the stall once, on the request that hit it. A
	// loaded machine (CI, 2 cores) can delay another request or two past
	// 100 ms on its own, so allow a few of those, far from the ~40 the
	// open loop must charge.
	if k := slow(closed, stall); k < 1 {
		t.Errorf("closed loop counted %d requests >= %v, want the stalled one", k, stall)
	}
	if k := slow(closed, 100*time.Millisecond); k > 5 {
		t.Errorf("closed loop counted %d requests >= 100 ms, want at most 5 (only the stalled one, plus scheduling noise)", k)
	}
}

func TestAddedOver(t *testing.T) {
	round := func(v float64) map[string]float64 {
		m := map[string]float64{}
		for _, q := range quantiles {
			m[q.name] = v
		}
		return m
	}
	tests := []struct {
		name       string
		path, base []float64
		want       float64
	}{
		// Drift moves both alike: the difference stays 10.
		{"drift cancels", []float64{110, 510, 1010}, []float64{100, 500, 1000}, 10},
		// One round hit by a stall on the path only: the median ignores it.
		{"one stall ignored", []float64{110, 9000, 110}, []float64{100, 100, 100}, 10},
		{"even count averages the middle two", []float64{110, 120, 130, 140}, []float64{100, 100, 100, 100}, 25},
		{"a faster path is negative", []float64{90}, []float64{100}, -10},
		{"extra path rounds are ignored", []float64{110, 500}, []float64{100}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p, b []map[string]float64
			for _, v := range tt.path {
				p = append(p, round(v))
			}
			for _, v := range tt.base {
				b = append(b, round(v))
			}
			got := addedOver(p, b)
			for _, q := range quantiles {
				if got[q.name] != tt.want {
					t.Errorf("%s = %v, want %v", q.name, got[q.name], tt.want)
				}
			}
		})
	}
	if addedOver(nil, []map[string]float64{round(1)}) != nil {
		t.Error("no path rounds: want nil")
	}
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		line string
		want float64
		ok   bool
	}{
		{"123 (weft) S 1 123 123 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0", 3.0, true},
		{"9 (a b) (c)) R 1 9 9 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0", 0.1, true},
		{"9 (x) R 1 2", 0, false},
		{"no parenthesis", 0, false},
		{"9 (x) R 1 9 9 0 -1 0 0 0 0 0 q 3 0", 0, false},
	}
	for _, tt := range tests {
		got, err := parseStatCPU([]byte(tt.line))
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("parseStatCPU(%q) = %v, %v; want %v (ok %v)", tt.line, got, err, tt.want, tt.ok)
		}
	}
}

func TestProcOfSelf(t *testing.T) {
	pid := os.Getpid()
	if _, err := procCPU(pid); err != nil {
		t.Fatal(err)
	}
	kb, err := procStatusKB(pid, "VmHWM")
	if err != nil || kb <= 0 {
		t.Fatalf("VmHWM of self = %d, %v", kb, err)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-paths", "weft-1hop, haproxy"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.paths, ",") != "direct,weft-1hop,haproxy" || len(o.rates) != 1 || o.rates[0] != 1000 || o.rounds != 2 {
		t.Errorf("quick options = %+v", o)
	}
	for _, bad := range [][]string{{"-paths", "envoy"}, {"-rates", "0"}, {"-rates", "fast"}, {"-rounds", "0"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

// TestSmoke runs the harness for real over direct and one Weft hop (a real
// 'weft up' mesh) for about two seconds of load, and checks that the
// report is complete. Set WEFT_BENCH_WEFT to a built weft binary to skip
// building one.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a mesh")
	}
	weft := os.Getenv("WEFT_BENCH_WEFT")
	if weft == "" {
		weft = filepath.Join(t.TempDir(), "weft")
		cmd := exec.Command("go", "build", "-o", weft, "github.com/weft-mesh/weft/cmd/weft")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building weft: %v\n%s", err, out)
		}
	}
	o := options{
		paths: []string{"direct", "weft-1hop"}, rates: []float64{300},
		round: 500 * time.Millisecond, rounds: 2, maxRound: 300 * time.Millisecond,
		conns: 4, warmup: 100 * time.Millisecond, weft: weft,
	}
	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := run(ctx, o, &logs)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	if len(rep.Fixed) != 2 || len(rep.Max) != 2 {
		t.Fatalf("report has %d fixed-rate and %d max results, want 2 and 2: %+v", len(rep.Fixed), len(rep.Max), rep)
	}
	for _, r := range append(rep.Fixed, rep.Max...) {
		if r.Requests == 0 || r.Errors != 0 || r.Throughput <= 0 || r.LatencyUS["p50"] <= 0 || r.LatencyUS["max"] < r.LatencyUS["p99"] {
			t.Errorf("%s (rate %v): requests %d, errors %d (%s), throughput %v, latency %v", r.Path, r.Rate, r.Requests, r.Errors, r.FirstError, r.Throughput, r.LatencyUS)
		}
		if r.Path == "weft-1hop" && (r.AddedUS == nil || r.Baseline != "direct" || r.CPUPer1000 <= 0) {
			t.Errorf("weft-1hop: added %v over %q, cpu/1k %v", r.AddedUS, r.Baseline, r.CPUPer1000)
		}
	}
	if r := rep.Fixed[1]; r.Requests < 200 {
		t.Errorf("weft-1hop at 300 req/s for 2 x 0.5 s sent %d requests", r.Requests)
	}
	var procs int
	for _, p := range rep.Paths {
		for _, pr := range p.Procs {
			procs++
			if pr.PeakRSSKB <= 0 || pr.IdleRSSKB <= 0 || pr.PeakRSSKB < pr.IdleRSSKB {
				t.Errorf("%s/%s: idle RSS %d KiB, peak %d KiB", p.Name, pr.Name, pr.IdleRSSKB, pr.PeakRSSKB)
			}
		}
	}
	if procs != 1 {
		t.Errorf("report lists %d proxy processes, want 1 (the outbound proxy): %+v", procs, rep.Paths)
	}
	var md bytes.Buffer
	writeMarkdown(&md, rep)
	for _, want := range []string{"| weft-1hop |", "| direct |", "Load average at start", "maximum throughput"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Fixed) != 2 {
		t.Errorf("JSON round trip: %v, %d results", err, len(back.Fixed))
	}
}
