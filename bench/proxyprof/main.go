// Command proxyprof runs Weft's sidecar proxy (the same internal/proxy
// code as 'weft proxy', without identity) with Go's CPU and allocation
// profilers on, writing the profiles when it gets SIGTERM. The harness
// (go run ./bench -proxy-profile DIR) puts it on the one-hop paths. It
// applies weft proxy's runtime settings (proxy.DefaultRuntime, the
// executable trim), so that its CPU and RSS are comparable. 'weft proxy
// --admin-pprof' serves the same profiles over HTTP from a real sidecar.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/weft-mesh/weft/internal/proxy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	var cfg proxy.Config
	var cpuOut, allocOut string
	flag.StringVar(&cfg.ControlAddr, "control-addr", "127.0.0.1:8086", "control plane gRPC address")
	flag.StringVar(&cfg.OutboundAddr, "outbound-addr", "127.0.0.1:0", "outbound listener")
	flag.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:0", "admin server")
	flag.StringVar(&cfg.Namespace, "namespace", "default", "namespace")
	flag.StringVar(&cfg.Pod, "pod", "benchprof", "pod name")
	flag.StringVar(&cfg.Deployment, "deployment", "benchprof", "deployment name")
	flag.StringVar(&cfg.ServiceAccount, "service-account", "default", "service account")
	flag.StringVar(&cpuOut, "cpuprofile", "", "write a CPU profile here on exit")
	flag.StringVar(&allocOut, "allocprofile", "", "write an allocation profile here on exit")
	flag.BoolVar(&cfg.AdminPprof, "admin-pprof", false, "serve Go's profiles at /debug/pprof/ on the admin server")
	flag.Parse()
	// Runtime settings as weft proxy applies them; PROXYPROF_GOMAXPROCS,
	// PROXYPROF_GOGC and PROXYPROF_GOMEMLIMIT (bytes) try others without
	// touching the harness's own runtime.
	rt := proxy.DefaultRuntime
	for _, v := range []struct {
		env string
		dst any
	}{{"PROXYPROF_GOMAXPROCS", &rt.Procs}, {"PROXYPROF_GOGC", &rt.GCPercent}, {"PROXYPROF_GOMEMLIMIT", &rt.MemoryLimit}} {
		if s := os.Getenv(v.env); s != "" {
			if _, err := fmt.Sscan(s, v.dst); err != nil {
				return fmt.Errorf("proxyprof: %s=%q: %w", v.env, s, err)
			}
		}
	}
	fmt.Fprintln(os.Stderr, "proxyprof: runtime", rt.Apply())
	cfg.ShutdownGrace = 2 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("proxyprof: %w", err)
	}
	p, err := proxy.Listen(cfg)
	if err != nil {
		return fmt.Errorf("proxyprof: %w", err)
	}
	// As weft proxy does once its listeners are bound.
	if n, err := proxy.TrimExecutable(); err != nil {
		fmt.Fprintln(os.Stderr, "proxyprof: executable pages stay resident:", err)
	} else {
		fmt.Fprintln(os.Stderr, "proxyprof: trimmed", n, "bytes of executable mappings")
	}
	// The harness reads the outbound address from the first line.
	fmt.Printf("listening %s\n", p.OutboundAddr())
	if cpuOut != "" {
		f, err := os.Create(cpuOut)
		if err != nil {
			return fmt.Errorf("proxyprof: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("proxyprof: %w", err)
		}
	}
	// Write the profiles as soon as the signal comes, before the drain:
	// the harness does not wait out a long shutdown.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var profErr error
	go func() {
		<-sig
		profErr = writeProfiles(cpuOut, allocOut)
		cancel()
	}()
	runErr := p.Run(ctx)
	if profErr != nil {
		return profErr
	}
	return runErr
}

func writeProfiles(cpuOut, allocOut string) error {
	if cpuOut != "" {
		pprof.StopCPUProfile()
	}
	if allocOut == "" {
		return nil
	}
	f, err := os.Create(allocOut)
	if err != nil {
		return fmt.Errorf("proxyprof: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		return fmt.Errorf("proxyprof: %w", err)
	}
	return nil
}
