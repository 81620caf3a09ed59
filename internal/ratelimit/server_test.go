package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var quiet = slog.New(slog.DiscardHandler)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startServer runs a Server until the test ends; it returns the server and
// a function that stops it and returns Run's error.
func startServer(t testing.TB, cfg ServerConfig) (*Server, func() error) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	cfg.AdminAddr = "127.0.0.1:0"
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var stopped bool
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() { stop() })
	return s, stop
}

func newTestClient(t testing.TB, addr string) *Client {
	t.Helper()
	// Generous: a loaded CI machine must not turn answers into timeouts.
	c, err := NewClient(addr, ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	// Write then rename, as editors and ConfigMaps do, so the watcher
	// never reads half a file.
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestServerAndClient(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "edge.yaml"), nested)
	c := newClock()
	s, stop := startServer(t, ServerConfig{ConfigPaths: []string{dir}, Builtin: map[string][]byte{"workshop": WorkshopConfig()}, Now: c.Now, ResponseHeaders: true})
	admin := "http://" + s.AdminAddr().String()
	if code, body := httpGet(t, admin+"/ready"); code != 200 {
		t.Fatalf("/ready = %d %s", code, body)
	}
	if code, _ := httpGet(t, admin+"/live"); code != 200 {
		t.Fatalf("/live = %d", code)
	}

	cl := newTestClient(t, s.Addr().String())
	ctx := context.Background()
	user := []Descriptor{{{"generic_key", "checkout"}, {"x-user", "bob"}}, {{"nope", "1"}}}
	for i, want := range []bool{false, false, true} {
		d, err := cl.Check(ctx, "edge", user)
		if err != nil {
			t.Fatal(err)
		}
		if d.Limited != want {
			t.Fatalf("call %d: limited = %v, want %v", i, d.Limited, want)
		}
		if len(d.Statuses) != 2 || d.Statuses[0].Limit.RequestsPerUnit != 2 || d.Statuses[0].Limit.Unit != units["second"] ||
			d.Statuses[0].ResetIn != 750*time.Millisecond || d.Statuses[0].Limited != want || d.Statuses[1].Limited {
			t.Fatalf("call %d: statuses %+v", i, d.Statuses)
		}
	}
	// Both domains are served: the built-in workshop rule too.
	for i := range 9 {
		d, err := cl.Check(ctx, WorkshopDomain, []Descriptor{{{"mykey", "myvalue"}}})
		if err != nil {
			t.Fatal(err)
		}
		if d.Limited != (i == 8) {
			t.Fatalf("workshop call %d: limited = %v", i, d.Limited)
		}
		want := http.Header{"Ratelimit-Limit": {"8"}, "Ratelimit-Remaining": {fmt.Sprint(max(0, 7-i))}, "Ratelimit-Reset": {"1"}}
		if !reflect.DeepEqual(d.Headers, want) {
			t.Fatalf("workshop call %d: headers %v, want %v", i, d.Headers, want)
		}
	}
	// Bad requests are gRPC errors the caller sees.
	if _, err := cl.Check(ctx, "", user); status.Code(errors.Unwrap(err)) != codes.InvalidArgument {
		t.Fatalf("empty domain: %v", err)
	}
	if _, err := cl.Check(ctx, "edge", nil); status.Code(errors.Unwrap(err)) != codes.InvalidArgument {
		t.Fatalf("no descriptors: %v", err)
	}

	_, metrics := httpGet(t, admin+"/metrics")
	for _, want := range []string{
		`ratelimit_over_limit_total{domain="edge",descriptor="generic_key_checkout.x-user"} 1`,
		`ratelimit_over_limit_total{domain="emissary",descriptor="mykey_myvalue"} 1`,
		`ratelimit_near_limit_total{domain="emissary",descriptor="mykey_myvalue"} 2`,
		`ratelimit_config_loads_total{result="success"} 1`,
		`ratelimit_errors_total{reason="empty_domain"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Graceful stop; then the client fails fast (the caller fails open or
	// closed), and finds a new server on the same address by itself.
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := cl.Check(ctx, "edge", user); err == nil {
		t.Fatal("Check succeeded with the server stopped")
	}
	s2, _ := startServer(t, ServerConfig{Addr: s.Addr().String(), ConfigPaths: []string{dir}, Now: c.Now})
	_ = s2
	waitFor(t, "the client to reconnect", func() bool {
		d, err := cl.Check(ctx, "edge", user)
		return err == nil && !d.Limited // a new server: new counters
	})
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "d.yaml")
	limit := func(n string) string {
		return "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: " + n + "}\n"
	}
	writeFile(t, file, limit("1"))
	c := newClock()
	s, _ := startServer(t, ServerConfig{ConfigPaths: []string{file}, Now: c.Now})
	cl := newTestClient(t, s.Addr().String())
	ctx := context.Background()
	remaining := func() uint32 {
		d, err := cl.Check(ctx, "d", []Descriptor{{{"k", "v"}}})
		if err != nil {
			t.Fatal(err)
		}
		return d.Statuses[0].Limit.RequestsPerUnit
	}
	if got := remaining(); got != 1 {
		t.Fatalf("limit = %d", got)
	}
	writeFile(t, file, limit("50"))
	waitFor(t, "the new limit", func() bool { return remaining() == 50 })

	// A bad edit is refused and counted; the last good config stays.
	writeFile(t, file, limit("50")+"    burst: 3\n")
	admin := "http://" + s.AdminAddr().String()
	waitFor(t, "the bad config to be refused", func() bool {
		_, m := httpGet(t, admin+"/metrics")
		return strings.Contains(m, `ratelimit_config_loads_total{result="error"} 1`)
	})
	if got := remaining(); got != 50 {
		t.Fatalf("after a bad edit the limit is %d, want the last good 50", got)
	}
	if _, err := Load([]string{file}, nil, nil); err == nil || !strings.Contains(err.Error(), file+":5: descriptors[0].burst: unknown key") {
		t.Fatalf("bad file error = %v", err)
	}
	writeFile(t, file, limit("7"))
	waitFor(t, "the fixed config", func() bool { return remaining() == 7 })
}

func TestListenErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "domain: d\ndescriptors: [{key: k, rate_limit: {unit: second}}]\n")
	tests := []struct {
		name string
		cfg  ServerConfig
		want string
	}{
		{"no config", ServerConfig{}, "no configuration"},
		{"missing file", ServerConfig{ConfigPaths: []string{filepath.Join(dir, "nope.yaml")}}, "nope.yaml: no such file"},
		{"bad file", ServerConfig{ConfigPaths: []string{dir}}, "bad.yaml:2: descriptors[0].rate_limit.requests_per_unit: required"},
	}
	for _, tc := range tests {
		tc.cfg.Addr, tc.cfg.AdminAddr, tc.cfg.Logger = "127.0.0.1:0", "127.0.0.1:0", quiet
		if _, err := Listen(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// slowRLS never answers before its caller gives up.
type slowRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
}

func (slowRLS) ShouldRateLimit(ctx context.Context, _ *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestClientTimeout(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(g, slowRLS{})
	go g.Serve(lis)
	defer g.Stop()
	p := NewPool(ClientOptions{}) // the default 20ms
	defer p.Close()
	start := time.Now()
	_, err = p.Check(context.Background(), lis.Addr().String(), "d", []Descriptor{{{"k", "v"}}})
	if status.Code(errors.Unwrap(err)) != codes.DeadlineExceeded {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Check took %v with a 20ms timeout", took)
	}
	// The pool reuses the client per address.
	a, _ := p.Client(lis.Addr().String())
	b, _ := p.Client(lis.Addr().String())
	if a != b {
		t.Fatal("two clients for one address")
	}
	p.Close()
	if _, err := p.Client("127.0.0.1:1"); err == nil {
		t.Fatal("a closed pool made a client")
	}
}

// gate is a Counter that holds every Add until released.
type gate struct {
	entered chan struct{}
	release chan struct{}
	inner   Counter
}

func (g *gate) Add(ctx context.Context, hits []Hit, after []uint64) error {
	g.entered <- struct{}{}
	<-g.release
	return g.inner.Add(ctx, hits, after)
}

func TestGracefulStop(t *testing.T) {
	c := newClock()
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{}), inner: NewMemory(c.Now)}
	s, stop := startServer(t, ServerConfig{Builtin: map[string][]byte{"w": WorkshopConfig()}, Counter: g, Now: c.Now})
	cl := newTestClient(t, s.Addr().String())
	answered := make(chan error, 1)
	go func() {
		_, err := cl.Check(context.Background(), WorkshopDomain, []Descriptor{{{"mykey", "myvalue"}}})
		answered <- err
	}()
	<-g.entered // the RPC is in flight
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// New connections are refused once the stop has begun, while the
	// in-flight RPC is still held.
	waitFor(t, "the listener to close", func() bool {
		conn, err := net.Dial("tcp", s.Addr().String())
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) with an RPC in flight", err)
	default:
	}
	close(g.release)
	if err := <-answered; err != nil {
		t.Fatalf("the in-flight RPC failed: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestReloadConfigMapSwap changes the configuration the way a Kubernetes
// ConfigMap volume does: files are symlinks through ..data, and an update
// swaps ..data to a new directory with one rename.
func TestReloadConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, n string) {
		t.Helper()
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, "rl.yaml"), "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: "+n+"}\n")
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", "3")
	if err := os.Symlink(filepath.Join("..data", "rl.yaml"), filepath.Join(dir, "rl.yaml")); err != nil {
		t.Fatal(err)
	}
	s, _ := startServer(t, ServerConfig{ConfigPaths: []string{dir}, Now: newClock().Now})
	cl := newTestClient(t, s.Addr().String())
	limit := func() uint32 {
		d, err := cl.Check(context.Background(), "d", []Descriptor{{{"k", "v"}}})
		if err != nil {
			t.Fatal(err)
		}
		return d.Statuses[0].Limit.RequestsPerUnit
	}
	if got := limit(); got != 3 {
		t.Fatalf("limit = %d, want 3", got)
	}
	version("..v2", "11")
	waitFor(t, "the swapped ConfigMap to load", func() bool { return limit() == 11 })
}
