package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report is the harness's result; it is also the JSON output.
type report struct {
	Command      string             `json:"command"`
	Started      time.Time          `json:"started"`
	Machine      machine            `json:"machine"`
	LoadAvgStart string             `json:"loadAvgStart"`
	LoadAvgEnd   string             `json:"loadAvgEnd"`
	Conns        int                `json:"connections"`
	RoundSeconds float64            `json:"roundSeconds"`
	Rounds       int                `json:"rounds"`
	ServerPID    int                `json:"serverPID"`
	Skipped      map[string]string  `json:"skipped,omitempty"`
	MeshTLS      string             `json:"meshTLS,omitempty"` // how the mesh path's proxies talked, from the client sidecar's metrics
	Paths        []pathReport       `json:"paths"`
	Fixed        []result           `json:"fixedRate"`
	Max          []result           `json:"maxThroughput,omitempty"`
	Ratios       map[string]float64 `json:"ratios,omitempty"`
}

type machine struct {
	NProc    int    `json:"nproc"`
	CPU      string `json:"cpu"`
	MemTotal string `json:"memTotal"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
}

type pathReport struct {
	Name  string       `json:"name"`
	Note  string       `json:"note"`
	Procs []procReport `json:"processes,omitempty"`
}

type procReport struct {
	Name      string `json:"name"`
	PID       int    `json:"pid"`
	IdleRSSKB int    `json:"idleRSSKB"`
	PeakRSSKB int    `json:"peakRSSKB"`
	// Anonymous (heap, stacks) part of RSS, idle and after the run; the
	// rest is mapped binary and libraries.
	IdleAnonKB int `json:"idleAnonKB"`
	EndAnonKB  int `json:"endAnonKB"`
	// LoadRSSKB is the largest VmRSS read at the end of an open-loop
	// segment at 1,000 req/s: the RSS a proxy settles at under that
	// load. VmHWM (PeakRSSKB) also counts start-up, which 'weft proxy'
	// gives back once its listeners are bound (proxy.TrimExecutable).
	LoadRSSKB int `json:"loadRSSKB"`
}

// result is one path at one rate (or at maximum throughput), all rounds
// together.
type result struct {
	Path       string             `json:"path"`
	Rate       float64            `json:"rate,omitempty"`
	Baseline   string             `json:"baseline,omitempty"`
	Requests   int                `json:"requests"`
	Errors     int                `json:"errors"`
	FirstError string             `json:"firstError,omitempty"`
	Throughput float64            `json:"throughput"`        // requests/s achieved
	LatencyUS  map[string]float64 `json:"latencyUS"`         // p50 ... max
	AddedUS    map[string]float64 `json:"addedUS,omitempty"` // over the baseline, same rounds
	CPUPer1000 float64            `json:"cpuSecondsPer1000"` // of the path's proxy processes
}

func (r *report) addProc(pathName string, p proc, field string, kb int) {
	i := slices.IndexFunc(r.Paths, func(pr pathReport) bool { return pr.Name == pathName })
	if i < 0 {
		r.Paths = append(r.Paths, pathReport{Name: pathName})
		i = len(r.Paths) - 1
	}
	pr := &r.Paths[i]
	j := slices.IndexFunc(pr.Procs, func(x procReport) bool { return x.PID == p.PID })
	if j < 0 {
		pr.Procs = append(pr.Procs, procReport{Name: p.Name, PID: p.PID})
		j = len(pr.Procs) - 1
	}
	switch field {
	case "idleRSSKB":
		pr.Procs[j].IdleRSSKB = kb
	case "peakRSSKB":
		pr.Procs[j].PeakRSSKB = kb
	case "idleAnonKB":
		pr.Procs[j].IdleAnonKB = kb
	case "endAnonKB":
		pr.Procs[j].EndAnonKB = kb
	case "loadRSSKB":
		pr.Procs[j].LoadRSSKB = max(pr.Procs[j].LoadRSSKB, kb)
	}
}

// accumulator gathers the rounds of each (kind, rate, path).
type accumulator struct {
	m map[string]*accEntry
}

type accEntry struct {
	rounds   []map[string]float64 // each round's percentiles, in round order
	lat      []time.Duration
	errors   int
	firstErr string
	elapsed  time.Duration
	cpu      float64
}

func newAccumulator() *accumulator { return &accumulator{m: map[string]*accEntry{}} }

func accKey(kind string, rate float64, path string) string {
	return kind + "|" + strconv.FormatFloat(rate, 'f', -1, 64) + "|" + path
}

func (a *accumulator) add(kind string, rate float64, path string, s sample, cpu float64) {
	k := accKey(kind, rate, path)
	e := a.m[k]
	if e == nil {
		e = &accEntry{}
		a.m[k] = e
	}
	e.rounds = append(e.rounds, summarize(s.lat))
	e.lat = append(e.lat, s.lat...)
	e.errors += s.errors
	if e.firstErr == "" {
		e.firstErr = s.firstErr
	}
	e.elapsed += s.elapsed
	e.cpu += cpu
}

// addedOver is the latency a path adds over its baseline: for each
// percentile, the median over rounds of (path - baseline) within the same
// round. Pairing by round cancels drift that lasts longer than a round
// (another process's build); the median drops rounds that one stall hit.
func addedOver(path, base []map[string]float64) map[string]float64 {
	n := min(len(path), len(base))
	if n == 0 {
		return nil
	}
	out := make(map[string]float64, len(quantiles))
	d := make([]float64, n)
	for _, q := range quantiles {
		for i := range n {
			d[i] = path[i][q.name] - base[i][q.name]
		}
		out[q.name] = median(d)
	}
	return out
}

// median of v (reordered in place); the mean of the middle two for an
// even count.
func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// baselineOf is the path a path's added latency is measured against.
func baselineOf(name string) string {
	if name == "weft-1hop-h2c" {
		return "direct-h2c"
	}
	return "direct"
}

func (a *accumulator) result(kind string, rate float64, p *path) (result, bool) {
	e := a.m[accKey(kind, rate, p.name)]
	if e == nil {
		return result{}, false
	}
	r := result{Path: p.name, Rate: rate, Requests: len(e.lat), Errors: e.errors, FirstError: e.firstErr,
		LatencyUS: summarize(e.lat)}
	if e.elapsed > 0 {
		r.Throughput = float64(len(e.lat)) / e.elapsed.Seconds()
	}
	if len(p.procs) > 0 && len(e.lat) > 0 {
		r.CPUPer1000 = e.cpu / float64(len(e.lat)) * 1000
	}
	if !strings.HasPrefix(p.name, "direct") {
		if b := a.m[accKey(kind, rate, baselineOf(p.name))]; b != nil {
			r.Baseline = baselineOf(p.name)
			r.AddedUS = addedOver(e.rounds, b.rounds)
		}
	}
	return r, true
}

func (a *accumulator) fill(rep *report, order []*path, o options) {
	rep.RoundSeconds, rep.Rounds = o.round.Seconds(), o.rounds
	var paths []pathReport
	for _, p := range order {
		pr := pathReport{Name: p.name, Note: p.note}
		if i := slices.IndexFunc(rep.Paths, func(x pathReport) bool { return x.Name == p.name }); i >= 0 {
			pr.Procs = rep.Paths[i].Procs
		}
		paths = append(paths, pr)
	}
	rep.Paths = paths
	for _, rate := range o.rates {
		for _, p := range order {
			if r, ok := a.result("rate", rate, p); ok {
				rep.Fixed = append(rep.Fixed, r)
			}
		}
	}
	for _, p := range order {
		if r, ok := a.result("max", 0, p); ok {
			rep.Max = append(rep.Max, r)
		}
	}
	rep.Ratios = ratios(rep)
}

// ratios are the comparisons issue 8's targets are stated in.
func ratios(rep *report) map[string]float64 {
	out := map[string]float64{}
	find := func(rs []result, path string, rate float64) *result {
		for i := range rs {
			if rs[i].Path == path && rs[i].Rate == rate {
				return &rs[i]
			}
		}
		return nil
	}
	div := func(key string, a, b float64) {
		if b > 0 && a >= 0 {
			out[key] = a / b
		}
	}
	for _, peer := range []string{"haproxy", "nginx", "caddy"} {
		w, h := find(rep.Fixed, "weft-1hop", 1000), find(rep.Fixed, peer, 1000)
		if w != nil && h != nil && h.AddedUS != nil && w.AddedUS != nil {
			div("weft-1hop/"+peer+" added p99 @1000", w.AddedUS["p99"], h.AddedUS["p99"])
			div("weft-1hop/"+peer+" added p99.9 @1000", w.AddedUS["p99.9"], h.AddedUS["p99.9"])
		}
		m := find(rep.Fixed, "weft-mesh", 1000)
		if m != nil && h != nil && h.AddedUS != nil && m.AddedUS != nil {
			div("weft-mesh/"+peer+" added p99 @1000", m.AddedUS["p99"], h.AddedUS["p99"])
		}
		wm, hm := find(rep.Max, "weft-1hop", 0), find(rep.Max, peer, 0)
		if wm != nil && hm != nil {
			div("weft-1hop/"+peer+" max throughput", wm.Throughput, hm.Throughput)
		}
	}
	return out
}

// waitPath polls a path until it answers 200 with the full body: the mesh
// needs a moment after 'weft up' returns for discovery to reach proxies.
func waitPath(ctx context.Context, c *http.Client, url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := do(ctx, c, url)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func machineInfo() machine {
	m := machine{NProc: runtime.NumCPU(), Go: runtime.Version()}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				m.MemTotal = strings.TrimSpace(v)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(raw))
	}
	return m
}

func us(v float64) string {
	if v >= 10000 || v <= -10000 {
		return fmt.Sprintf("%.1f ms", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// writeMarkdown prints the report as Markdown tables (latencies in µs).
func writeMarkdown(w io.Writer, r *report) {
	fmt.Fprintf(w, "Machine: %d x %s, %s RAM, Linux %s, %s. Load average at start %s, at end %s.\n\n",
		r.Machine.NProc, r.Machine.CPU, r.Machine.MemTotal, r.Machine.Kernel, r.Machine.Go, r.LoadAvgStart, r.LoadAvgEnd)
	fmt.Fprintf(w, "%d connections, 1 KiB responses, %d rounds of %.1fs per path and rate, paths interleaved. "+
		"Latency columns pool every round; \"added\" columns are the median over rounds of (path - direct) in the same round.\n\n", r.Conns, r.Rounds, r.RoundSeconds)
	rates := []float64{}
	for _, x := range r.Fixed {
		if !slices.Contains(rates, x.Rate) {
			rates = append(rates, x.Rate)
		}
	}
	for _, rate := range rates {
		fmt.Fprintf(w, "#### Open loop, %.0f req/s (latency in µs, from the scheduled send time)\n\n", rate)
		fmt.Fprintln(w, "| path | p50 | p90 | p99 | p99.9 | max | added p50 | added p90 | added p99 | added p99.9 | added max | req/s | errors | proxy CPU s / 1k req |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, x := range r.Fixed {
			if x.Rate != rate {
				continue
			}
			fmt.Fprintf(w, "| %s |", x.Path)
			for _, q := range quantiles {
				fmt.Fprintf(w, " %s |", us(x.LatencyUS[q.name]))
			}
			for _, q := range quantiles {
				if x.AddedUS == nil {
					fmt.Fprint(w, " - |")
				} else {
					fmt.Fprintf(w, " %s |", us(x.AddedUS[q.name]))
				}
			}
			fmt.Fprintf(w, " %.0f | %d | %s |\n", x.Throughput, x.Errors, cpuCell(x))
		}
		fmt.Fprintln(w)
	}
	if len(r.Max) > 0 {
		fmt.Fprintln(w, "#### Closed loop, maximum throughput")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| path | req/s | vs direct | p50 µs | p99 µs | errors | proxy CPU s / 1k req |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
		var direct float64
		for _, x := range r.Max {
			if x.Path == "direct" {
				direct = x.Throughput
			}
		}
		for _, x := range r.Max {
			vs := "-"
			if direct > 0 {
				vs = fmt.Sprintf("%.2f", x.Throughput/direct)
			}
			fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %d | %s |\n", x.Path, x.Throughput, vs, us(x.LatencyUS["p50"]), us(x.LatencyUS["p99"]), x.Errors, cpuCell(x))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "#### Proxy processes (RSS: idle before load; at 1,000 req/s = the largest VmRSS at the end of those segments; VmHWM = the kernel's peak, start-up included)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| path | process | idle RSS MB | RSS at 1,000 req/s MB | VmHWM MB | anonymous RSS MB, idle / after |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|")
	for _, p := range r.Paths {
		for _, pr := range p.Procs {
			fmt.Fprintf(w, "| %s | %s | %.1f | %.1f | %.1f | %.1f / %.1f |\n", p.Name, pr.Name, float64(pr.IdleRSSKB)/1024, float64(pr.LoadRSSKB)/1024,
				float64(pr.PeakRSSKB)/1024, float64(pr.IdleAnonKB)/1024, float64(pr.EndAnonKB)/1024)
		}
	}
	fmt.Fprintln(w)
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "#### Ratios")
		fmt.Fprintln(w)
		keys := make([]string, 0, len(r.Ratios))
		for k := range r.Ratios {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "- %s: %.2f\n", k, r.Ratios[k])
		}
		fmt.Fprintln(w)
	}
	for _, p := range r.Paths {
		fmt.Fprintf(w, "- `%s`: %s\n", p.Name, p.Note)
	}
	if r.MeshTLS != "" {
		fmt.Fprintf(w, "- between the mesh path's proxies (client sidecar's request_total): %s\n", r.MeshTLS)
	}
	for k, v := range r.Skipped {
		fmt.Fprintf(w, "- skipped `%s`: %s\n", k, v)
	}
}

func cpuCell(x result) string {
	if x.CPUPer1000 == 0 && x.Path != "" && strings.HasPrefix(x.Path, "direct") {
		return "-"
	}
	return fmt.Sprintf("%.3f", x.CPUPer1000)
}
