package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// Hit is one increment of a fixed-window counter.
type Hit struct {
	// Key names the counter, window start included, so a new window is a
	// new counter.
	Key string
	// N is added (or, with Refund, taken away). 0 only reads.
	N      uint64
	Refund bool
	// End is when the window closes: the counter may be dropped after it.
	End time.Time
}

// Counter stores fixed-window counters. Add applies every hit and writes
// each counter's value after its hit into after (len(after) == len(hits)).
// It must be safe for concurrent use.
type Counter interface {
	Add(ctx context.Context, hits []Hit, after []uint64) error
}

// Memory is an in-process Counter: one replica's counters. Counters of
// closed windows are dropped as the map grows, so memory stays bounded by
// the number of counters live in the current windows.
type Memory struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [memoryShards]memoryShard
}

const memoryShards = 32

type memoryShard struct {
	mu        sync.Mutex
	m         map[string]*memoryCounter
	nextSweep int
}

type memoryCounter struct {
	n   uint64
	end int64 // unix nanoseconds
}

// minSweep is the size below which a shard is never swept.
const minSweep = 1024

// NewMemory returns an empty in-memory counter store; now is its clock
// (nil means time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	m := &Memory{now: now, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*memoryCounter)
		m.shards[i].nextSweep = minSweep
	}
	return m
}

// Add implements Counter.
func (m *Memory) Add(_ context.Context, hits []Hit, after []uint64) error {
	now := m.now().UnixNano()
	for i, h := range hits {
		s := &m.shards[maphash.String(m.seed, h.Key)%memoryShards]
		s.mu.Lock()
		c := s.m[h.Key]
		if c == nil || c.end <= now {
			if c == nil {
				if len(s.m) >= s.nextSweep {
					s.sweep(now)
				}
				c = &memoryCounter{}
				s.m[h.Key] = c
			}
			c.n, c.end = 0, h.End.UnixNano()
		}
		switch {
		case h.Refund && c.n < h.N:
			c.n = 0
		case h.Refund:
			c.n -= h.N
		default:
			c.n += h.N
		}
		after[i] = c.n
		s.mu.Unlock()
	}
	return nil
}

// sweep drops closed windows and sets when to sweep next: when the shard
// has doubled, which keeps the cost amortized constant per insert.
func (s *memoryShard) sweep(now int64) {
	for k, c := range s.m {
		if c.end <= now {
			delete(s.m, k)
		}
	}
	s.nextSweep = max(minSweep, 2*len(s.m))
}

// Len reports how many counters are held (closed windows not yet swept
// included).
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
