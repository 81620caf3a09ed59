package balance

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/breaker"
	"github.com/weft-mesh/weft/internal/proxy/discovery"
)

func eps(n int) []discovery.Endpoint {
	var out []discovery.Endpoint
	for i := range n {
		out = append(out, discovery.Endpoint{Addr: fmt.Sprintf("127.0.0.1:%d", 1000+i)})
	}
	return out
}

func TestP2CEmpty(t *testing.T) {
	b := NewP2C()
	if _, err := b.Pick(); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("Pick on empty = %v, want ErrNoEndpoints", err)
	}
	b.Update(eps(2))
	b.Update(nil)
	if _, err := b.Pick(); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("Pick after emptying = %v, want ErrNoEndpoints", err)
	}
}

func TestP2CReachesAll(t *testing.T) {
	b := NewP2C()
	b.Update(eps(5))
	seen := map[string]int{}
	for range 500 {
		n, err := b.Pick()
		if err != nil {
			t.Fatal(err)
		}
		seen[n.Endpoint.Addr]++
		n.Done()
	}
	if len(seen) != 5 {
		t.Errorf("picked %d distinct endpoints, want 5: %v", len(seen), seen)
	}
}

// TestP2CAvoidsLoaded checks that a busy endpoint is never chosen over an
// idle one when there are just two.
func TestP2CAvoidsLoaded(t *testing.T) {
	b := NewP2C()
	b.Update(eps(2))
	busy, _ := b.Pick() // one request stays in flight
	for range 100 {
		n, _ := b.Pick()
		if n == busy {
			t.Fatalf("picked the endpoint with a request in flight over an idle one")
		}
		n.Done()
	}
	busy.Done()
	if busy.Inflight() != 0 {
		t.Errorf("inflight = %d after Done, want 0", busy.Inflight())
	}
}

func TestP2CUpdateKeepsLoad(t *testing.T) {
	b := NewP2C()
	b.Update(eps(2))
	n, _ := b.Pick()
	b.Update(eps(3)) // same first two, one more
	found := false
	for _, m := range *b.nodes.Load() {
		if m == n {
			found = true
		}
	}
	if !found {
		t.Errorf("an unchanged endpoint lost its node (and load) across Update")
	}
}

func BenchmarkP2CPick(b *testing.B) {
	p := NewP2C()
	p.Update(eps(10))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n, _ := p.Pick()
			n.Done()
		}
	})
}

// TestSetAccrualSameKeepsBreakers: the control plane may send the same
// failure accrual again (a re-sent policy, a reconnect); tripped endpoints
// must stay out. Different settings start the breakers afresh.
func TestSetAccrualSameKeepsBreakers(t *testing.T) {
	b := NewP2C()
	b.Update(eps(2))
	cfg := breaker.Config{MaxFailures: 1, MinPenalty: time.Minute, MaxPenalty: time.Minute}
	b.SetAccrual(&cfg)
	for _, n := range b.Nodes() {
		n.Record(true)
	}
	if _, err := b.Pick(); !errors.Is(err, ErrAllTripped) {
		t.Fatalf("Pick with both tripped = %v, want ErrAllTripped", err)
	}
	same := cfg
	b.SetAccrual(&same)
	if _, err := b.Pick(); !errors.Is(err, ErrAllTripped) {
		t.Fatalf("after the same accrual again: Pick = %v, want ErrAllTripped", err)
	}
	other := cfg
	other.MaxFailures = 5
	b.SetAccrual(&other)
	n, err := b.Pick()
	if err != nil {
		t.Fatalf("after new accrual settings: Pick = %v, want fresh breakers", err)
	}
	n.Done()
}
