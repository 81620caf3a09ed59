package local

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !waitUntil(context.Background(), timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

func TestProcessRestartsWithBackoff(t *testing.T) {
	dir := t.TempDir()
	p := &Process{Name: "t/crash", Argv: []string{"/bin/sh", "-c", "echo started; exit 3"}, LogPath: filepath.Join(dir, "crash.log"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	must(t, p.Start(context.Background()))
	// Wait for the third run's output, not just the restart count: the count
	// moves when a restart is scheduled, before the process runs again.
	eventually(t, 10*time.Second, "two restarts", func() bool {
		b, _ := os.ReadFile(p.LogPath)
		return p.State().Restarts >= 2 && strings.Count(string(b), "started") >= 3
	})
	p.Stop()
	st := p.State()
	if st.PID != 0 || !strings.Contains(st.LastExit, "exit status 3") {
		t.Fatalf("state after stop = %+v", st)
	}
	log, err := os.ReadFile(p.LogPath)
	must(t, err)
	if strings.Count(string(log), "started") < 3 || !strings.Contains(string(log), "restarting in") {
		t.Fatalf("log does not show the restarts:\n%s", log)
	}
}

func TestProcessStopsGracefullyThenKills(t *testing.T) {
	dir := t.TempDir()
	// Ignores SIGTERM: Stop must fall back to SIGKILL after Grace.
	p := &Process{Name: "t/stubborn", Argv: []string{"/bin/sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"},
		LogPath: filepath.Join(dir, "s.log"), Grace: 300 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	must(t, p.Start(context.Background()))
	eventually(t, 5*time.Second, "the process to start", func() bool {
		b, _ := os.ReadFile(p.LogPath)
		return strings.Contains(string(b), "up")
	})
	start := time.Now()
	p.Stop()
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("stopped after %s, before the grace period: SIGTERM was not ignored?", el)
	}
	if p.State().Restarts != 0 {
		t.Fatalf("a stopped process was restarted: %+v", p.State())
	}
}

func TestPortsAreDistinctAndFree(t *testing.T) {
	ps := NewPorts()
	seen := map[int]bool{}
	for range 50 {
		p, err := ps.Alloc()
		must(t, err)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	err = CheckFree(l.Addr().String(), "--control-addr")
	if err == nil || !strings.Contains(err.Error(), "--control-addr") || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("CheckFree on a held port = %v; want an error naming the address and flag", err)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	if Running(dir) {
		t.Fatal("Running before any lock")
	}
	l, err := AcquireLock(dir)
	must(t, err)
	if !Running(dir) {
		t.Fatal("not Running while locked")
	}
	if _, err := AcquireLock(dir); err == nil || !strings.Contains(err.Error(), "weft down") {
		t.Fatalf("second lock = %v; want ErrLocked", err)
	}
	if _, err := ReadMesh(dir); err == nil {
		t.Fatal("ReadMesh without mesh.json succeeded")
	}
	must(t, WriteMesh(dir, &Mesh{PID: 42, Components: []Component{{Name: "control"}}}))
	m, err := ReadMesh(dir)
	must(t, err)
	if m.PID != 42 || len(m.Components) != 1 {
		t.Fatalf("ReadMesh = %+v", m)
	}
	must(t, l.Release())
	if _, err := ReadMesh(dir); err == nil || !strings.Contains(err.Error(), "no mesh is running") {
		t.Fatalf("ReadMesh after release = %v", err)
	}
}

func TestPodGrace(t *testing.T) {
	g := func(n int64) *int64 { return &n }
	for _, tc := range []struct {
		in   *int64
		want time.Duration
	}{{nil, 10 * time.Second}, {g(30), 30 * time.Second}, {g(0), time.Millisecond}} {
		spec := &corev1.PodSpec{TerminationGracePeriodSeconds: tc.in}
		if got := podGrace(spec, 10*time.Second); got != tc.want {
			t.Errorf("podGrace(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
