// Package retry is the proxy's retry layer: it re-sends failed requests,
// bounded per request by a limit and per service by a retry budget, and
// replays request bodies from a buffer of at most MaxBody bytes (larger
// bodies are never retried).
package retry

import (
	"sync"
	"time"
)

// Budget defaults are Linkerd's (ServiceProfile retryBudget).
const (
	DefaultRatio     = 0.2
	DefaultMinPerSec = 10
	DefaultTTL       = 10 * time.Second
)

// budgetSlots is the resolution of the budget's sliding window.
const budgetSlots = 10

// Budget bounds retries over a sliding window of TTL: at any time, the
// retries in the window may not exceed Ratio x the requests in it plus
// MinPerSec x TTL (a reserve so that low-traffic services can retry at
// all). It is safe for concurrent use.
type Budget struct {
	ratio   float64
	reserve float64
	slot    time.Duration
	now     func() time.Time

	mu          sync.Mutex
	cur         int64 // index of the current slot (time / slot)
	deposits    [budgetSlots]float64
	withdrawals [budgetSlots]float64
}

// NewBudget returns a budget; zero or negative values take the defaults
// (a zero ratio is allowed: only the reserve is spent). now nil means
// time.Now.
func NewBudget(ratio, minPerSec float64, ttl time.Duration, now func() time.Time) *Budget {
	if ratio < 0 {
		ratio = DefaultRatio
	}
	if minPerSec < 0 {
		minPerSec = DefaultMinPerSec
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	slot := ttl / budgetSlots
	if slot <= 0 {
		slot = 1
	}
	return &Budget{ratio: ratio, reserve: minPerSec * ttl.Seconds(), slot: slot, now: now}
}

// advance rotates the window to now, clearing expired slots. b.mu held.
func (b *Budget) advance() int {
	idx := b.now().UnixNano() / int64(b.slot)
	if idx > b.cur {
		n := min(idx-b.cur, budgetSlots)
		for i := int64(1); i <= n; i++ {
			s := (b.cur + i) % budgetSlots
			b.deposits[s], b.withdrawals[s] = 0, 0
		}
		b.cur = idx
	}
	return int(b.cur % budgetSlots)
}

// Deposit records one request (retries are not requests).
func (b *Budget) Deposit() {
	b.mu.Lock()
	b.deposits[b.advance()]++
	b.mu.Unlock()
}

// Withdraw takes one retry from the budget; false means the budget is spent.
func (b *Budget) Withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.advance()
	var dep, wd float64
	for i := range budgetSlots {
		dep += b.deposits[i]
		wd += b.withdrawals[i]
	}
	if b.ratio*dep+b.reserve-wd < 1 {
		return false
	}
	b.withdrawals[s]++
	return true
}
