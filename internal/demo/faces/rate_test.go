package faces

import (
	"testing"
	"time"
)

func TestRateWindow(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var w rateWindow
	// 30 requests spread over 3 seconds: 3.0 requests/s over the window.
	for i := range 30 {
		w.add(base.Add(time.Duration(i) * 100 * time.Millisecond))
	}
	tests := []struct {
		at   time.Duration
		want float64
	}{
		{3 * time.Second, 3.0},
		{9 * time.Second, 3.0},  // all three buckets still inside the window
		{10 * time.Second, 2.0}, // the first second has slid out
		{12 * time.Second, 0.0},
		{13 * time.Second, 0.0},
	}
	for _, tt := range tests {
		if got := w.rate(base.Add(tt.at)); got != tt.want {
			t.Errorf("rate at +%v = %v, want %v", tt.at, got, tt.want)
		}
	}
	// A bucket slot reused ten seconds later starts from zero.
	w.add(base.Add(10 * time.Second))
	if got := w.rate(base.Add(10 * time.Second)); got != 2.1 {
		t.Errorf("rate after reuse = %v, want 2.1", got)
	}
}
