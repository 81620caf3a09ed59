package main

import (
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestPct(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 100 * time.Millisecond}, {99, 198 * time.Millisecond}, {100, 200 * time.Millisecond}, {0, time.Millisecond}} {
		if got := pct(d, tc.p); got != tc.want {
			t.Errorf("pct(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if pct(nil, 99) != 0 {
		t.Error("pct of nothing is not 0")
	}
}

// TestObjects: the namespace has what the benchmark promises, with every
// pod address distinct and every slice endpoint naming its pod.
func TestObjects(t *testing.T) {
	objs := objects(250, 100)
	count := map[string]int{}
	ips := map[string]bool{}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Pod:
			count["pod"]++
			if ips[o.Status.PodIP] {
				t.Errorf("pod IP %s used twice", o.Status.PodIP)
			}
			ips[o.Status.PodIP] = true
		case *discoveryv1.EndpointSlice:
			count["slice"]++
			for _, ep := range o.Endpoints {
				if ep.TargetRef == nil || !ips[ep.Addresses[0]] {
					t.Errorf("slice %s endpoint %v names no pod written before it", o.Name, ep.Addresses)
				}
			}
		case *corev1.Service:
			count["service"]++
		case *corev1.ServiceAccount:
			count["sa"]++
		case *corev1.Namespace:
			count["ns"]++
		}
	}
	want := map[string]int{"pod": 250, "slice": 3, "service": 3, "sa": 3, "ns": 1}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d %s, want %d", count[k], k, n)
		}
	}
	// The timed changes add endpoints without pods, each new.
	es := slice(0, 100, 300)
	seen := map[string]bool{}
	for _, ep := range es.Endpoints {
		if _, err := netip.ParseAddr(ep.Addresses[0]); err != nil {
			t.Fatal(err)
		}
		if seen[ep.Addresses[0]] {
			t.Fatalf("address %s twice in one slice", ep.Addresses[0])
		}
		seen[ep.Addresses[0]] = true
	}
}
