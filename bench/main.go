// Command bench runs the same HTTP workload through several paths on this
// machine (direct, one Weft hop, the Weft mesh and ingress paths, and
// HAProxy, NGINX and Caddy as peers on one hop), interleaved in short
// rounds so that machine drift hits every path alike, and reports latency
// added over direct, throughput, and each proxy's CPU and memory.
//
//	go run ./bench -o results.json            # full run
//	go run ./bench -quick                     # smoke run, under a minute
//	go run ./bench -paths direct,weft-1hop,haproxy -rates 1000 -duration 3s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// allPaths is every path the harness knows, in report order.
var allPaths = []string{"direct", "weft-1hop", "weft-1hop-h2c", "weft-mesh", "weft-ingress", "haproxy", "nginx", "caddy"}

// options are the harness's flags.
type options struct {
	paths      []string
	rates      []float64
	round      time.Duration // one open-loop round of one path
	rounds     int
	maxRound   time.Duration // one closed-loop round; 0 skips the max-throughput run
	conns      int
	warmup     time.Duration
	weft       string // weft binary; built from ./cmd/weft when empty
	caddy      string
	jsonOut    string
	keep       bool
	cpuProfile string
	proxyProf  string // directory for the one-hop proxy's profiles
	quick      bool
}

func main() {
	if os.Getenv(serveEnv) == "1" {
		if err := runServer(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	rep, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	writeMarkdown(os.Stdout, rep)
	if o.jsonOut != "" {
		raw, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(raw, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	paths := fs.String("paths", strings.Join(allPaths, ","), "comma-separated paths to run; direct always runs (it is the floor)")
	rates := fs.String("rates", "200,1000,2000", "comma-separated open-loop request rates (req/s)")
	fs.DurationVar(&o.round, "duration", 3*time.Second, "length of one open-loop round of one path")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds per rate; paths take turns within each round")
	fs.DurationVar(&o.maxRound, "max-duration", 2*time.Second, "length of one closed-loop (maximum throughput) round; 0 skips it")
	fs.IntVar(&o.conns, "conns", 16, "client connections (concurrent requests)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "closed-loop warm-up of each path before measuring")
	fs.StringVar(&o.weft, "weft", "", "weft binary (default: go build ./cmd/weft)")
	fs.StringVar(&o.caddy, "caddy", "", "caddy binary (default: $PATH, then /work/.cache-bench/bin/caddy)")
	fs.StringVar(&o.jsonOut, "o", "", "write the results as JSON to this file")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, logs, state dir)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the harness's own CPU profile here (the proxies are separate processes)")
	fs.StringVar(&o.proxyProf, "proxy-profile", "", "run the one-hop paths through bench/proxyprof (internal/proxy with pprof, identity off) and write its CPU and allocation profiles into this directory")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: rate 1000 only, 2 rounds of 1s, short max-throughput run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["rates"] {
			*rates = "1000"
		}
		if !set["duration"] {
			o.round = time.Second
		}
		if !set["rounds"] {
			o.rounds = 2
		}
		if !set["max-duration"] {
			o.maxRound = 500 * time.Millisecond
		}
		if !set["warmup"] {
			o.warmup = 200 * time.Millisecond
		}
	}
	o.paths = []string{"direct"}
	known := map[string]bool{}
	for _, p := range allPaths {
		known[p] = true
	}
	for _, p := range strings.Split(*paths, ",") {
		p = strings.TrimSpace(p)
		if p == "" || p == "direct" {
			continue
		}
		if !known[p] {
			return o, fmt.Errorf("bench: -paths: unknown path %q (known: %s)", p, strings.Join(allPaths, ", "))
		}
		o.paths = append(o.paths, p)
	}
	for _, r := range strings.Split(*rates, ",") {
		if strings.TrimSpace(r) == "" {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			return o, fmt.Errorf("bench: -rates: %q is not a positive number", r)
		}
		o.rates = append(o.rates, v)
	}
	if o.rounds < 1 || o.conns < 1 || o.round <= 0 {
		return o, fmt.Errorf("bench: -rounds, -conns and -duration must be positive")
	}
	return o, nil
}

// buildWeft builds ./cmd/weft of the module the harness runs in.
func buildWeft(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "weft")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/weft-mesh/weft/cmd/weft")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("bench: building weft (pass -weft BINARY to use a built one): %w", err)
	}
	return out, nil
}

func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return strings.TrimSpace(string(raw))
	}
	return strings.Join(f[:3], " ")
}

// run sets up every path, runs the rounds and returns the report.
func run(ctx context.Context, o options, logw io.Writer) (*report, error) {
	logf := func(format string, a ...any) { fmt.Fprintf(logw, "bench: "+format+"\n", a...) }
	rep := &report{Machine: machineInfo(), Started: time.Now().UTC(), LoadAvgStart: loadAvg(),
		Command: "go run ./bench " + strings.Join(os.Args[1:], " "), Conns: o.conns, Skipped: map[string]string{}}
	logf("load average at start: %s (nproc %d)", rep.LoadAvgStart, rep.Machine.NProc)
	dir, err := os.MkdirTemp("", "weft-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, paths: map[string]*path{}, skipped: rep.Skipped, log: logf}
	defer func() {
		e.close()
		if o.keep {
			logf("kept %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	direct, srvPID, err := e.startServer(ctx)
	if err != nil {
		return nil, err
	}
	e.direct = direct
	e.paths["direct"] = &path{name: "direct", note: "client -> server", target: target{url: "http://" + direct + "/"}}
	e.paths["direct-h2c"] = &path{name: "direct-h2c", note: "client -> server, h2c", target: target{url: "http://" + direct + "/", h2c: true}}
	rep.ServerPID = srvPID

	want := map[string]bool{}
	for _, p := range o.paths {
		want[p] = true
	}
	if want["weft-1hop"] || want["weft-1hop-h2c"] || want["weft-mesh"] || want["weft-ingress"] {
		if o.weft == "" {
			logf("building weft")
			if o.weft, err = buildWeft(ctx, dir); err != nil {
				return nil, err
			}
		}
		e.weft = o.weft
		logf("starting the mesh (weft up)")
		if err := e.startMesh(ctx, want); err != nil {
			return nil, err
		}
		if o.proxyProf != "" {
			logf("starting the profiled proxy")
			if err := e.startProfiledProxy(ctx, o.proxyProf); err != nil {
				return nil, err
			}
		}
	}
	for _, peer := range []string{"haproxy", "nginx", "caddy"} {
		if !want[peer] {
			continue
		}
		cb := o.caddy
		if peer == "caddy" && cb == "" {
			if _, err := exec.LookPath("caddy"); err != nil {
				if _, err := os.Stat("/work/.cache-bench/bin/caddy"); err == nil {
					cb = "/work/.cache-bench/bin/caddy"
				}
			}
		}
		p, err := e.startPeer(peer, cb)
		if err != nil {
			logf("skipping %s: %v", peer, err)
			rep.Skipped[peer] = err.Error()
			continue
		}
		e.paths[peer] = p
	}
	// The paths that run, in report order; h2c paths compare against a
	// direct h2c client.
	var order []*path
	for _, name := range o.paths {
		p, ok := e.paths[name]
		if !ok {
			continue
		}
		if name == "weft-1hop-h2c" {
			order = append(order, e.paths["direct-h2c"])
		}
		order = append(order, p)
	}
	clients := map[string]*clientFor{}
	for _, p := range order {
		c, err := newClient(p.target, o.conns)
		if err != nil {
			return nil, err
		}
		clients[p.name] = &clientFor{c: c, p: p}
		if err := waitPath(ctx, c, p.target.url, 60*time.Second); err != nil {
			return nil, fmt.Errorf("bench: path %s does not answer (logs in %s; -keep keeps them): %w", p.name, dir, err)
		}
	}
	// Idle memory, before any load.
	for _, p := range order {
		for _, pr := range p.procs {
			if kb, err := procStatusKB(pr.PID, "VmRSS"); err == nil {
				rep.addProc(p.name, pr, "idleRSSKB", kb)
			}
			if kb, err := procStatusKB(pr.PID, "RssAnon"); err == nil {
				rep.addProc(p.name, pr, "idleAnonKB", kb)
			}
		}
	}
	logf("warming up")
	for _, p := range order {
		closedLoop(ctx, clients[p.name].c, p.target.url, o.warmup, o.conns)
	}
	acc := newAccumulator()
	segment := func(kind string, rate float64, p *path, f func() sample) {
		cpu0 := cpuOf(p.procs)
		s := f()
		cpu1 := cpuOf(p.procs)
		acc.add(kind, rate, p.name, s, cpu1-cpu0)
		if kind == "rate" && rate == 1000 {
			for _, pr := range p.procs {
				if kb, err := procStatusKB(pr.PID, "VmRSS"); err == nil {
					rep.addProc(p.name, pr, "loadRSSKB", kb)
				}
			}
		}
	}
	for _, rate := range o.rates {
		for r := range o.rounds {
			logf("rate %.0f round %d/%d (load %s)", rate, r+1, o.rounds, loadAvg())
			for i := range order {
				// Rotate who goes first so no path always follows another.
				p := order[(i+r)%len(order)]
				segment("rate", rate, p, func() sample {
					return openLoop(ctx, clients[p.name].c, p.target.url, rate, o.round, o.conns)
				})
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
			}
		}
	}
	if o.maxRound > 0 {
		for r := range o.rounds {
			logf("max throughput round %d/%d", r+1, o.rounds)
			for i := range order {
				p := order[(i+r)%len(order)]
				segment("max", 0, p, func() sample {
					return closedLoop(ctx, clients[p.name].c, p.target.url, o.maxRound, o.conns)
				})
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
			}
		}
	}
	for _, p := range order {
		for _, pr := range p.procs {
			if kb, err := procStatusKB(pr.PID, "VmHWM"); err == nil {
				rep.addProc(p.name, pr, "peakRSSKB", kb)
			}
			if kb, err := procStatusKB(pr.PID, "RssAnon"); err == nil {
				rep.addProc(p.name, pr, "endAnonKB", kb)
			}
		}
	}
	if want["weft-mesh"] {
		rep.MeshTLS = e.meshTLS(ctx)
	}
	acc.fill(rep, order, o)
	rep.LoadAvgEnd = loadAvg()
	logf("load average at end: %s", rep.LoadAvgEnd)
	return rep, nil
}

type clientFor struct {
	c *http.Client
	p *path
}

func cpuOf(procs []proc) float64 {
	var t float64
	for _, p := range procs {
		if v, err := procCPU(p.PID); err == nil {
			t += v
		}
	}
	return t
}
