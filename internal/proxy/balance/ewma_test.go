package balance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/breaker"
)

// fakeClock is a manual clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestBalancer(clk *fakeClock, seed uint64, accrual *breaker.Config) *P2C {
	r := rand.New(rand.NewPCG(seed, seed+1))
	return New(Config{Now: clk.Now, IntN: r.IntN, Accrual: accrual})
}

// drive sends n sequential requests in simulated time: each takes the
// latency of the endpoint it lands on. It returns the picks per address.
func drive(t *testing.T, b *P2C, clk *fakeClock, n int, latency map[string]time.Duration) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		node, err := b.Pick()
		if err != nil {
			t.Fatal(err)
		}
		d := latency[node.Endpoint.Addr]
		clk.Advance(d)
		node.ObserveRTT(d)
		node.Done()
		got[node.Endpoint.Addr]++
	}
	return got
}

func TestPeakEWMAPrefersFastAndShifts(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b := newTestBalancer(clk, 1, nil)
	b.Update(eps(2))
	a, c := "127.0.0.1:1000", "127.0.0.1:1001"
	lat := map[string]time.Duration{a: 2 * time.Millisecond, c: 100 * time.Millisecond}
	got := drive(t, b, clk, 1000, lat)
	if frac := float64(got[a]) / 1000; frac < 0.9 {
		t.Fatalf("fast endpoint got %.1f%% of requests (%v), want >= 90%%", 100*frac, got)
	}

	// Swap: the fast one turns slow. Within one simulated second the
	// traffic must have moved.
	lat[a], lat[c] = 100*time.Millisecond, 2*time.Millisecond
	start := clk.Now()
	var shifted time.Duration = -1
	for i := 0; i < 2000 && clk.Now().Sub(start) < 5*time.Second; i++ {
		node, err := b.Pick()
		if err != nil {
			t.Fatal(err)
		}
		d := lat[node.Endpoint.Addr]
		clk.Advance(d)
		node.ObserveRTT(d)
		node.Done()
		if node.Endpoint.Addr == c && shifted < 0 {
			shifted = clk.Now().Sub(start)
		}
	}
	if shifted < 0 || shifted > time.Second {
		t.Fatalf("traffic moved to the new fast endpoint after %v, want within 1s", shifted)
	}
	got = drive(t, b, clk, 1000, lat)
	if frac := float64(got[c]) / 1000; frac < 0.9 {
		t.Fatalf("after the swap the fast endpoint got %.1f%% (%v), want >= 90%%", 100*frac, got)
	}
}

func TestPeakEWMAInflightCounts(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b := newTestBalancer(clk, 2, nil)
	b.Update(eps(2))
	// Same RTT; requests held open on one endpoint push the next to the other.
	n1, _ := b.Pick()
	n2, _ := b.Pick()
	if n1 == n2 {
		t.Fatalf("two concurrent picks on equal endpoints chose the same one (%s)", n1.Endpoint.Addr)
	}
	if n1.Load() != float64(DefaultRTT)*2 {
		t.Fatalf("load with one in flight = %v, want 2 x default RTT", n1.Load())
	}
	n1.Done()
	n2.Done()
}

func TestPeakEWMADecaysToward(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b := newTestBalancer(clk, 3, nil)
	b.Update(eps(1))
	n, _ := b.Pick()
	n.ObserveRTT(time.Second) // peak replaces at once
	n.Done()
	if got := n.Load(); got != float64(time.Second) {
		t.Fatalf("after a 1s sample load = %v, want 1s", time.Duration(got))
	}
	clk.Advance(DefaultDecay) // one time constant: e^-1
	if got, want := n.Load(), float64(time.Second)*0.36787944; got < want*0.999 || got > want*1.001 {
		t.Fatalf("after one decay period load = %v, want %v", time.Duration(got), time.Duration(want))
	}
}

func TestAccrualRemovesTrippedEndpoints(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	acc := &breaker.Config{MaxFailures: 3, MinPenalty: time.Second, MaxPenalty: 10 * time.Second, JitterRatio: 0}
	b := newTestBalancer(clk, 4, acc)
	b.Update(eps(2))
	bad := "127.0.0.1:1000"
	// Fail every request to bad until it trips.
	for i := 0; i < 100; i++ {
		n, err := b.Pick()
		if err != nil {
			t.Fatal(err)
		}
		n.Record(n.Endpoint.Addr == bad)
		n.Done()
	}
	for range 200 {
		n, err := b.Pick()
		if err != nil {
			t.Fatal(err)
		}
		if n.Endpoint.Addr == bad {
			t.Fatal("a tripped endpoint was picked during its penalty")
		}
		n.Done()
	}
	// Trip the other one too: every endpoint failing gives ErrAllTripped.
	for range 3 {
		n, _ := b.Pick()
		n.Record(true)
		n.Done()
	}
	if _, err := b.Pick(); !errors.Is(err, ErrAllTripped) {
		t.Fatalf("Pick with all endpoints tripped = %v, want ErrAllTripped", err)
	}
	// After the penalty one probe per endpoint is admitted, not more.
	clk.Advance(2 * time.Second)
	p1, err1 := b.Pick()
	p2, err2 := b.Pick()
	if err1 != nil || err2 != nil || p1 == p2 {
		t.Fatalf("after the penalty want one probe per endpoint, got %v %v (%v, %v)", p1, p2, err1, err2)
	}
	if _, err := b.Pick(); !errors.Is(err, ErrAllTripped) {
		t.Fatalf("a third pick while both probe = %v, want ErrAllTripped", err)
	}
	p1.Record(false)
	p1.Done()
	p2.Record(true)
	p2.Done()
	for range 50 {
		n, err := b.Pick()
		if err != nil || n != p1 {
			t.Fatalf("after a good probe only the recovered endpoint serves; got %v, %v", n, err)
		}
		n.Done()
	}
}

func BenchmarkPick(b *testing.B) {
	for _, size := range []int{2, 10, 100} {
		b.Run(fmt.Sprintf("endpoints=%d", size), func(b *testing.B) {
			bal := New(Config{})
			bal.Update(eps(size))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n, err := bal.Pick()
					if err != nil {
						b.Fatal(err)
					}
					n.Done()
				}
			})
		})
	}
}

func BenchmarkPickObserve(b *testing.B) {
	bal := New(Config{Accrual: &breaker.Config{}})
	bal.Update(eps(10))
	b.ReportAllocs()
	for b.Loop() {
		n, _ := bal.Pick()
		n.ObserveRTT(time.Millisecond)
		n.Record(false)
		n.Done()
	}
}
