package ingress

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
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
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	served, err := local.OpenWithOptions(dir, local.Options{Logger: log})
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
