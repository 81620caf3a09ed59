package ingress

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store/local"
)

// TestReloadLatencyLocalStore measures how long a route change takes to be
// served, from the return of an Apply in another store instance (as `weft
// apply` in another process) on the same state directory to the first
// request routed by it, through the real file watcher.
func TestReloadLatencyLocalStore(t *testing.T) {
	// With fsnotify (the default), and with the polling fallback at the
	// interval 'weft ingress' uses (IngressPollInterval).
	t.Run("fsnotify", func(t *testing.T) { reloadLatency(t, local.Options{}) })
	t.Run("poll", func(t *testing.T) {
		reloadLatency(t, local.Options{NoFSNotify: true, PollInterval: StorePollInterval})
	})
}

func reloadLatency(t *testing.T, opts local.Options) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Logger = log
	served, err := local.OpenWithOptions(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	applier, err := local.OpenWithOptions(dir, local.Options{Logger: log, NoFollow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer applier.Close()
	backend := newBackend(t)
	svc := "http://" + backendAuthority(t, backend)
	ctx := context.Background()
	if err := applier.Apply(ctx, newListener("weft", "http", 8080, "ALL")); err != nil {
		t.Fatal(err)
	}
	in, err := New(Config{Store: served, Transport: NewTransport(nil), PortMap: map[int32]int{8080: 0}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "the ingress", func() bool { return in.Addrs()[8080] != "" })
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	url := "http://" + in.Addrs()[8080]

	const changes = 20
	var lat []time.Duration
	for i := 0; i < changes; i++ {
		path := fmt.Sprintf("/r%d/", i)
		if err := applier.Apply(ctx, newMapping("ns", fmt.Sprintf("r%d", i), api.MappingSpec{Prefix: path, Service: svc})); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		gen := in.Generation()
		var genAt, storeAt time.Duration
		for {
			if genAt == 0 && in.Generation() != gen {
				genAt = time.Since(start)
			}
			if storeAt == 0 {
				if _, err := served.Get(ctx, api.Ref{Kind: api.KindMapping, Namespace: "ns", Name: fmt.Sprintf("r%d", i)}); err == nil {
					storeAt = time.Since(start)
				}
			}
			resp, err := client.Get(url + path)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("change %d not served after 5s", i)
			}
		}
		lat = append(lat, time.Since(start))
		if time.Since(start) > 50*time.Millisecond {
			t.Logf("slow change %d: store %v gen %v served %v", i, storeAt, genAt, time.Since(start))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("apply-to-served latency over %d changes: min %v, median %v, max %v (all %v)", changes, lat[0], lat[changes/2], lat[changes-1], lat)
	if lat[changes/2] > 100*time.Millisecond {
		t.Errorf("median apply-to-served latency %v exceeds 100ms", lat[changes/2])
	}
}

// TestInFlightSurvivesRemoval: a request in flight finishes on the table
// it started with even when its Mapping, and then its Listener, go away.
func TestInFlightSurvivesRemoval(t *testing.T) {
	var arrived atomic.Int32
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	defer backend.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	m := newMapping("ns", "slow", api.MappingSpec{Prefix: "/slow/", Service: "http://" + backendAuthority(t, backend)})
	h := newHarness(t, false, m)
	second := newListener("weft", "second", 9090, "ALL")
	h.apply(second)
	waitFor(t, "9090", func() bool { return h.in.Addrs()[9090] != "" })

	type result struct {
		status int
		body   string
		err    error
	}
	start := func(url string) chan result {
		ch := make(chan result, 1)
		go func() {
			resp, err := http.Get(url)
			if err != nil {
				ch <- result{err: err}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch <- result{status: resp.StatusCode, body: string(b)}
		}()
		return ch
	}
	onMapping := start(h.url("/slow/x"))
	onListener := start("http://" + h.in.Addrs()[9090] + "/slow/y")
	waitFor(t, "both requests to reach the backend", func() bool { return arrived.Load() == 2 })
	if err := h.st.Delete(context.Background(), api.RefOf(m), api.RefOf(second)); err != nil {
		t.Fatal(err)
	}
	h.waitRoute("/slow/", "")
	waitFor(t, "9090 to be closed", func() bool { return h.in.Addrs()[9090] == "" })
	if resp, _ := h.get("/slow/z", nil); resp.StatusCode != 404 {
		t.Errorf("a new request after the removal: %d, want 404", resp.StatusCode)
	}
	close(release)
	for name, ch := range map[string]chan result{"Mapping removed": onMapping, "Listener removed": onListener} {
		if r := <-ch; r.err != nil || r.status != 200 || r.body != "done" {
			t.Errorf("%s while in flight: %d %q %v", name, r.status, r.body, r.err)
		}
	}
}
