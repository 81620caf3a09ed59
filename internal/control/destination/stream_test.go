package destination

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

// bigSlice is one slice with n endpoints whose readiness is ready, so that
// flipping it makes large add and remove messages.
func bigSlice(n int, ready bool) *discoveryv1.EndpointSlice {
	es := endpointSlice("big", "big", "big-0", "10.0.0.1", ready, named("http", 8080))
	es.Endpoints = nil
	for i := 0; i < n; i++ {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: fmt.Sprintf("big-with-a-rather-long-pod-name-%05d", i)},
		})
	}
	return es
}

func TestSlowConsumerIsClosed(t *testing.T) {
	// A fixed, small HTTP/2 window (which also turns off BDP window growth)
	// makes the server's Send block as soon as the client stops reading.
	h := newHarness(t, harnessOpts{
		queueCapacity: 1,
		dialOpts:      []grpc.DialOption{grpc.WithInitialWindowSize(1 << 16), grpc.WithInitialConnWindowSize(1 << 16)},
	})
	h.apply(t, service("big", "big", svcPort{name: "http", port: 80}), bigSlice(400, true))
	slow := h.get(t, "big.big", "")
	if _, err := slow.Recv(); err != nil {
		t.Fatal(err)
	}
	// A healthy stream on the same server must be unaffected.
	healthy := h.get(t, "big.big", "")
	if _, err := healthy.Recv(); err != nil {
		t.Fatal(err)
	}

	// The slow client reads nothing more while the endpoints flap. Each
	// change is several tens of KiB, so the window, the server's write
	// quota and the one-slot queue fill within a few changes.
	deadline := time.Now().Add(testTimeout)
	for ready := false; h.srv.Metrics().Overflows() == 0; ready = !ready {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the slow stream to overflow")
		}
		h.apply(t, bigSlice(400, ready))
		// Keep the healthy stream drained, as a live proxy would; its
		// messages also show each change was published (remove and
		// no_endpoints when all go unready, one add when they return).
		msgs := 1
		if !ready {
			msgs = 2
		}
		for i := 0; i < msgs; i++ {
			if _, err := healthy.Recv(); err != nil {
				t.Fatalf("healthy stream: %v", err)
			}
		}
	}
	if got := h.srv.Metrics().Overflows(); got != 1 {
		t.Errorf("Overflows() = %d, want 1 (only the slow stream)", got)
	}

	// Once the client reads again it finds the stream ended with
	// Unavailable, after whatever was already in flight.
	var err error
	for err == nil {
		_, err = slow.Recv()
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "fell behind") {
		t.Fatalf("slow stream ended with %v, want Unavailable: fell behind", err)
	}
	waitFor(t, "the slow stream to close", func() bool { g, _ := h.srv.Metrics().StreamsOpen(); return g == 1 })

	// Reconnecting gives a fresh snapshot.
	again := h.get(t, "big.big", "")
	if _, err := again.Recv(); err != nil {
		t.Fatalf("reconnected stream: %v", err)
	}
}

// flakyStore fails every List while failing is set: a store that is briefly
// unreadable (a state file being replaced, an API server restarting).
type flakyStore struct {
	store.Store
	failing atomic.Bool
}

func (f *flakyStore) List(ctx context.Context, k api.Kind, ns string) ([]api.Object, error) {
	if f.failing.Load() {
		return nil, errors.New("store unavailable")
	}
	return f.Store.List(ctx, k, ns)
}

func TestSurvivesStoreErrors(t *testing.T) {
	fs := &flakyStore{Store: store.NewMemory()}
	fs.failing.Store(true)
	h := newHarness(t, harnessOpts{store: fs})
	if h.srv.Ready() {
		t.Fatal("Ready() = true before the store was read")
	}
	waitFor(t, "a failed read", func() bool { _, failed := h.srv.Metrics().Snapshots(); return failed > 0 })
	// The server cannot publish while the store fails, so apply without
	// waiting for it.
	if err := fs.Apply(context.Background(), smileyFixture()...); err != nil {
		t.Fatal(err)
	}
	s := h.get(t, "smiley.faces", "")
	fs.failing.Store(false)
	// The stream answers once the store can be read, without a new change.
	expect(t, s, wantAdd(smileySet, wantAddr("127.0.0.1:41001", smileyLabels, true)))
	if !h.srv.Ready() {
		t.Error("Ready() = false after a snapshot")
	}

	// While the store fails the last snapshot stands; changes made meanwhile
	// arrive once it recovers.
	fs.failing.Store(true)
	_, failedBefore := h.srv.Metrics().Snapshots()
	if err := fs.Apply(context.Background(), endpointSlice("faces", "smiley", smileyPodName, "127.0.0.1", false, named("http", 41001))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "another failed read", func() bool { _, failed := h.srv.Metrics().Snapshots(); return failed > failedBefore })
	fs.failing.Store(false)
	expect(t, s, wantRemove("127.0.0.1:41001"))
	expect(t, s, wantNoEndpoints(true))
}

func TestMetricsText(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.apply(t, smileyFixture()...)
	s := h.get(t, "smiley.faces", "")
	expect(t, s, wantAdd(smileySet, wantAddr("127.0.0.1:41001", smileyLabels, true)))
	// The counter moves once Send returns, which may be just after the
	// client has the message.
	waitFor(t, "the sent update to be counted", func() bool { get, _ := h.srv.Metrics().UpdatesSent(); return get == 1 })
	var b strings.Builder
	if err := h.srv.Metrics().WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`destination_streams_open{rpc="Get"} 1`,
		`destination_streams_open{rpc="GetProfile"} 0`,
		`destination_updates_sent_total{rpc="Get"} 1`,
		`destination_stream_overflows_total{rpc="Get"} 0`,
		`# TYPE destination_snapshots_total counter`,
	} {
		if !strings.Contains(b.String(), line+"\n") {
			t.Errorf("metrics lack %q:\n%s", line, b.String())
		}
	}
}
