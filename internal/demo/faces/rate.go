package faces

import "time"

// rateWindowSecs is the width of the sliding window MAX_RATE is checked
// against: ten one-second buckets.
const rateWindowSecs = 10

// rateWindow counts requests in one-second buckets over the last
// rateWindowSecs seconds. It is not safe for concurrent use; Server guards
// it with its mutex.
type rateWindow struct {
	counts [rateWindowSecs]int
	stamps [rateWindowSecs]int64 // the Unix second each bucket holds
}

// add counts one request at now.
func (w *rateWindow) add(now time.Time) {
	sec := now.Unix()
	i := bucketIndex(sec)
	if w.stamps[i] != sec {
		w.stamps[i] = sec
		w.counts[i] = 0
	}
	w.counts[i]++
}

// rate is the number of requests in the window ending at now, divided by
// the window's width in seconds.
func (w *rateWindow) rate(now time.Time) float64 {
	sec := now.Unix()
	total := 0
	for i := range w.counts {
		if age := sec - w.stamps[i]; age >= 0 && age < rateWindowSecs {
			total += w.counts[i]
		}
	}
	return float64(total) / rateWindowSecs
}

func bucketIndex(sec int64) int {
	i := sec % rateWindowSecs
	if i < 0 {
		i += rateWindowSecs
	}
	return int(i)
}
