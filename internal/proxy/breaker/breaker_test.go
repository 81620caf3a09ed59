package breaker

import (
	"testing"
	"time"
)

func TestBreakerTripsBacksOffRecovers(t *testing.T) {
	now := time.Unix(1000, 0)
	b := New(Config{MaxFailures: 7, MinPenalty: time.Second, MaxPenalty: 4 * time.Second, JitterRatio: 0.5, Rand: func() float64 { return 1 }})
	// Six failures and a success: the run restarts.
	for range 6 {
		b.Record(true, now)
	}
	b.Record(false, now)
	for range 6 {
		b.Record(true, now)
	}
	if b.State() != Closed {
		t.Fatal("tripped before 7 consecutive failures")
	}
	b.Record(true, now)
	if b.State() != Open {
		t.Fatal("not tripped after 7 consecutive failures")
	}
	// Penalties: 1s, 2s, 4s, 4s (capped) times 1+jitter (1.5 with Rand = 1).
	for i, want := range []time.Duration{1500 * time.Millisecond, 3 * time.Second, 6 * time.Second, 6 * time.Second} {
		if got := b.Until().Sub(now); got != want {
			t.Fatalf("trip %d: penalty %v, want %v", i+1, got, want)
		}
		if b.Acquire(now.Add(want - time.Millisecond)) {
			t.Fatalf("trip %d: admitted a request before the penalty ended", i+1)
		}
		now = now.Add(want)
		if !b.Ready(now) || !b.Acquire(now) {
			t.Fatalf("trip %d: no probe admitted when the penalty ended", i+1)
		}
		if b.State() != Probation || b.Acquire(now) || b.Ready(now) {
			t.Fatalf("trip %d: more than one probe admitted", i+1)
		}
		b.Record(true, now) // the probe fails: trip again, longer
		if b.State() != Open {
			t.Fatalf("trip %d: a failed probe did not re-trip", i+1)
		}
	}
	now = b.Until()
	if !b.Acquire(now) {
		t.Fatal("no probe")
	}
	b.Record(false, now)
	if b.State() != Closed || !b.Acquire(now) {
		t.Fatal("a good probe did not close the breaker")
	}
	// The backoff restarts from the minimum after recovery.
	for range 7 {
		b.Record(true, now)
	}
	if got := b.Until().Sub(now); got != 1500*time.Millisecond {
		t.Fatalf("penalty after recovery %v, want 1.5s", got)
	}
}

func TestIsFailure(t *testing.T) {
	for _, c := range []struct {
		status, grpc int
		want         bool
	}{
		{200, -1, false}, {404, -1, false}, {500, -1, true}, {503, -1, true},
		{200, 0, false}, {200, 4, true}, {200, 7, true}, {200, 13, true}, {200, 14, true}, {200, 15, true},
		{200, 5, false}, {200, 8, false}, {200, 1, false},
	} {
		if got := IsFailure(c.status, c.grpc); got != c.want {
			t.Errorf("IsFailure(%d, %d) = %v, want %v", c.status, c.grpc, got, c.want)
		}
	}
}
