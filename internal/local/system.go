package local

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

// RateLimitConfig runs 'weft ratelimit' as a system component.
type RateLimitConfig struct {
	// Addr is its gRPC address (the ingress is pointed at it).
	Addr string
	// ConfigDir holds envoyproxy/ratelimit YAML files; it is created
	// (empty) if missing, and the service watches it.
	ConfigDir string
	// Redis, when set, keeps the counters in Redis at host:port.
	Redis string
}

// DashboardConfig runs 'weft viz dashboard' as a system component.
type DashboardConfig struct {
	// Addr is where the dashboard and the viz API are served.
	Addr string
}

// Kinds of the system components in mesh.json.
const (
	KindControl   = "control"
	KindRateLimit = "ratelimit"
	KindDashboard = "dashboard"
)

// systemComponent is a mesh-wide process other than the control plane:
// the rate limit service or the dashboard. Like the control plane it is a
// supervised child process (restarted when it exits, logging to
// D/logs/weft/<name>/<name>.log), shown by 'weft status'.
type systemComponent struct {
	kind  string
	proc  *Process
	addrs map[string]string
	// ready is what check said last.
	ready atomic.Bool
	check func(ctx context.Context) bool
}

// systemLog is where a system component's output goes.
func (s *Supervisor) systemLog(name string) string {
	return filepath.Join(s.cfg.StateDir, LogDir, "weft", name, name+".log")
}

// reservePort keeps the allocator from handing out a flag-given port.
func (s *Supervisor) reservePort(addr string) {
	if _, p, err := net.SplitHostPort(addr); err == nil {
		if n, err := strconv.Atoi(p); err == nil && n > 0 {
			s.ports.Reserve(n)
		}
	}
}

// systemComponents returns the configured system components, not started.
func (s *Supervisor) systemComponents() ([]*systemComponent, error) {
	var out []*systemComponent
	if rl := s.cfg.RateLimit; rl != nil && rl.Addr != "" {
		s.reservePort(rl.Addr)
		dir := rl.ConfigDir
		if dir == "" {
			dir = filepath.Join(s.cfg.StateDir, "ratelimit")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("local: rate limit configuration directory: %w", err)
		}
		adminPort, err := s.ports.Alloc()
		if err != nil {
			return nil, err
		}
		admin := loopback(adminPort)
		argv := []string{s.cfg.Exe, "--state-dir", s.cfg.StateDir, "ratelimit", "--addr", rl.Addr, "--admin-addr", admin, "--config", dir}
		if rl.Redis != "" {
			argv = append(argv, "--redis", rl.Redis)
		}
		out = append(out, &systemComponent{
			kind:  KindRateLimit,
			proc:  s.process("weft/ratelimit", argv, s.baseEnv(), s.systemLog("ratelimit")),
			addrs: map[string]string{"grpc": rl.Addr, "admin": admin, "config": dir},
			// Ready once its configuration is loaded (and Redis answers).
			check: func(ctx context.Context) bool { return httpOK(ctx, "http://"+admin+"/ready") },
		})
	}
	if d := s.cfg.Dashboard; d != nil && d.Addr != "" {
		s.reservePort(d.Addr)
		argv := []string{s.cfg.Exe, "--state-dir", s.cfg.StateDir, "viz", "dashboard", "--addr", d.Addr, "--show", "url"}
		out = append(out, &systemComponent{
			kind:  KindDashboard,
			proc:  s.process("weft/dashboard", argv, s.baseEnv(), s.systemLog("dashboard")),
			addrs: map[string]string{"url": "http://" + d.Addr + "/"},
			check: func(ctx context.Context) bool { return httpOK(ctx, "http://"+d.Addr+"/api/v1/info") },
		})
	}
	return out, nil
}

// startSystem starts the system components and keeps their readiness up
// to date until ctx ends. They do not hold up the workloads: proxies and
// the ingress survive a rate limit service that is not there yet (the
// ingress fails open).
func (s *Supervisor) startSystem(ctx context.Context) error {
	comps, err := s.systemComponents()
	if err != nil {
		return err
	}
	for _, c := range comps {
		if err := c.proc.Start(context.Background()); err != nil {
			return err
		}
		s.mu.Lock()
		s.system = append(s.system, c)
		s.mu.Unlock()
		go s.watchSystem(ctx, c)
	}
	return nil
}

// watchSystem polls c's readiness: often until it is ready, then every
// second.
func (s *Supervisor) watchSystem(ctx context.Context, c *systemComponent) {
	for {
		ok := c.proc.State().PID != 0 && c.check(ctx)
		if c.ready.Swap(ok) != ok {
			s.Kick()
		}
		wait := time.Second
		if !ok {
			wait = 200 * time.Millisecond
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// stopSystem stops the system components (before the control plane).
func (s *Supervisor) stopSystem() {
	s.mu.Lock()
	comps := s.system
	s.mu.Unlock()
	for _, c := range comps {
		c.proc.Stop()
	}
}

// systemSnapshot describes the system components for mesh.json; the
// caller holds s.mu.
func (s *Supervisor) systemSnapshot() []Component {
	var out []Component
	for _, c := range s.system {
		st := c.proc.State()
		addrs := make(map[string]string, len(c.addrs))
		for k, v := range c.addrs {
			addrs[k] = v
		}
		out = append(out, Component{
			Name: c.kind, Namespace: "weft", Kind: c.kind, Ready: c.ready.Load(), Restarts: st.Restarts,
			Addresses: addrs,
			Processes: []ProcessInfo{{Name: c.kind, PID: st.PID, Restarts: st.Restarts, Log: c.proc.LogPath, LastExit: st.LastExit}},
		})
	}
	return out
}
