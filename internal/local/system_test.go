package local

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/store"
)

func TestSystemComponentsArgv(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rl        *RateLimitConfig
		dash      *DashboardConfig
		wantKinds []string
		wantArgs  [][]string // per component, in order, each a run of argv
	}{
		{name: "none", wantKinds: nil},
		{name: "empty addresses", rl: &RateLimitConfig{}, dash: &DashboardConfig{}, wantKinds: nil},
		{
			name: "both", rl: &RateLimitConfig{Addr: "127.0.0.1:18081"}, dash: &DashboardConfig{Addr: "127.0.0.1:18750"},
			wantKinds: []string{KindRateLimit, KindDashboard},
			wantArgs:  [][]string{{"ratelimit", "--addr", "127.0.0.1:18081"}, {"viz", "dashboard", "--addr", "127.0.0.1:18750", "--show", "url"}},
		},
		{
			name: "redis", rl: &RateLimitConfig{Addr: "127.0.0.1:18081", Redis: "127.0.0.1:6379"},
			wantKinds: []string{KindRateLimit},
			wantArgs:  [][]string{{"--redis", "127.0.0.1:6379"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := New(Config{StateDir: dir, Store: store.NewMemory(), Exe: "/bin/weft", RateLimit: tc.rl, Dashboard: tc.dash})
			comps, err := s.systemComponents()
			must(t, err)
			var kinds []string
			for i, c := range comps {
				kinds = append(kinds, c.kind)
				argv := c.proc.Argv
				if argv[0] != "/bin/weft" || !slices.Equal(argv[1:3], []string{"--state-dir", dir}) {
					t.Errorf("%s argv %q: want /bin/weft --state-dir %s ...", c.kind, argv, dir)
				}
				if i < len(tc.wantArgs) && !strings.Contains(strings.Join(argv, " "), strings.Join(tc.wantArgs[i], " ")) {
					t.Errorf("%s argv %q lacks %q", c.kind, argv, tc.wantArgs[i])
				}
				if want := filepath.Join(dir, LogDir, "weft", c.kind, c.kind+".log"); c.proc.LogPath != want {
					t.Errorf("%s logs to %s, want %s", c.kind, c.proc.LogPath, want)
				}
			}
			if !slices.Equal(kinds, tc.wantKinds) {
				t.Fatalf("components %v, want %v", kinds, tc.wantKinds)
			}
			if tc.rl != nil && tc.rl.Addr != "" {
				// The configuration directory exists, empty, for users'
				// files; the service is told to read it.
				cfg := filepath.Join(dir, "ratelimit")
				if fi, err := os.Stat(cfg); err != nil || !fi.IsDir() {
					t.Fatalf("no configuration directory %s: %v", cfg, err)
				}
				if !strings.Contains(strings.Join(comps[0].proc.Argv, " "), "--config "+cfg) {
					t.Errorf("argv %q lacks --config %s", comps[0].proc.Argv, cfg)
				}
				if comps[0].addrs["grpc"] != tc.rl.Addr || comps[0].addrs["admin"] == "" {
					t.Errorf("addresses %v", comps[0].addrs)
				}
			}
		})
	}
}

// TestSystemComponentRestarts runs a stand-in for weft that never becomes
// ready: it shows in the snapshot, unready, and is restarted when killed.
func TestSystemComponentRestarts(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "fake-weft")
	must(t, os.WriteFile(exe, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755))
	s := New(Config{StateDir: dir, Store: store.NewMemory(), Exe: exe, Grace: time.Second, Dashboard: &DashboardConfig{Addr: "127.0.0.1:1"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must(t, s.startSystem(ctx))
	defer s.stopSystem()
	pid := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		snap := s.systemSnapshot()
		if len(snap) != 1 || snap[0].Kind != KindDashboard || snap[0].Ready {
			t.Fatalf("snapshot %+v: want one unready dashboard", snap)
		}
		return snap[0].Processes[0].PID
	}
	deadline := time.Now().Add(10 * time.Second)
	for pid() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the dashboard process did not start")
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	first := pid()
	must(t, syscall.Kill(first, syscall.SIGKILL))
	for p := pid(); p == 0 || p == first; p = pid() {
		if time.Now().After(deadline) {
			t.Fatal("the dashboard process was not restarted")
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	s.mu.Lock()
	snap := s.systemSnapshot()
	s.mu.Unlock()
	if snap[0].Restarts != 1 || !strings.Contains(snap[0].Processes[0].LastExit, "killed") {
		t.Errorf("after a crash: %+v", snap[0])
	}
}
