// Package breaker is failure accrual: a per-endpoint circuit breaker that
// trips after a run of consecutive failures, keeps the endpoint out of the
// balancer for a jittered exponential backoff, then lets exactly one real
// request through (probation). Success closes it; failure trips it again
// with a longer penalty. These are Linkerd's consecutive-failures semantics
// (balancer.linkerd.io/failure-accrual: consecutive).
package breaker

import (
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults are Linkerd's.
const (
	DefaultMaxFailures = 7
	DefaultMinPenalty  = time.Second
	DefaultMaxPenalty  = 60 * time.Second
	DefaultJitter      = 0.5
)

// Config configures a breaker; zero fields take the defaults.
type Config struct {
	MaxFailures uint32
	MinPenalty  time.Duration
	MaxPenalty  time.Duration
	// JitterRatio randomizes each penalty by up to this fraction of it.
	JitterRatio float64
	// Rand returns a float in [0,1); nil means math/rand/v2.Float64. Tests
	// inject it.
	Rand func() float64
}

func (c Config) withDefaults() Config {
	if c.MaxFailures == 0 {
		c.MaxFailures = DefaultMaxFailures
	}
	if c.MinPenalty <= 0 {
		c.MinPenalty = DefaultMinPenalty
	}
	if c.MaxPenalty < c.MinPenalty {
		c.MaxPenalty = max(DefaultMaxPenalty, c.MinPenalty)
	}
	if c.JitterRatio < 0 {
		c.JitterRatio = 0
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	return c
}

// States of a breaker.
const (
	Closed    int32 = iota // serving
	Open                   // tripped, waiting out the penalty
	Probation              // one request is probing
)

// Breaker is one endpoint's breaker. It is safe for concurrent use; the
// closed-state checks on the request path are a single atomic load.
type Breaker struct {
	cfg   Config
	state atomic.Int32

	mu       sync.Mutex
	failures uint32    // consecutive, while closed
	until    time.Time // end of the penalty, while open
	trips    int       // consecutive trips, for the backoff
}

// New returns a closed breaker.
func New(cfg Config) *Breaker { return &Breaker{cfg: cfg.withDefaults()} }

// State returns Closed, Open or Probation.
func (b *Breaker) State() int32 { return b.state.Load() }

// Ready reports, without side effects, whether a request could be sent now:
// closed, or open with its penalty over (a probe would be admitted).
func (b *Breaker) Ready(now time.Time) bool {
	switch b.state.Load() {
	case Closed:
		return true
	case Open:
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.state.Load() == Open && !now.Before(b.until)
	}
	return false
}

// Acquire admits one request: always when closed; when the penalty is
// over, exactly one probe (the breaker enters probation).
func (b *Breaker) Acquire(now time.Time) bool {
	if b.state.Load() == Closed {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case Closed:
		return true
	case Open:
		if now.Before(b.until) {
			return false
		}
		b.state.Store(Probation)
		return true
	}
	return false
}

// Record reports the outcome of an admitted request.
func (b *Breaker) Record(failed bool, now time.Time) {
	if !failed && b.state.Load() == Closed {
		// The common case: only touch the lock when there is a run to end.
		b.mu.Lock()
		b.failures = 0
		b.mu.Unlock()
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case Closed:
		if !failed {
			b.failures = 0
			return
		}
		b.failures++
		if b.failures >= b.cfg.MaxFailures {
			b.trip(now)
		}
	case Probation:
		if failed {
			b.trip(now)
			return
		}
		b.failures, b.trips = 0, 0
		b.state.Store(Closed)
	case Open:
		// A request admitted before the trip ended; it says nothing new.
	}
}

func (b *Breaker) trip(now time.Time) {
	p := b.cfg.MinPenalty << min(b.trips, 30)
	if p > b.cfg.MaxPenalty || p <= 0 {
		p = b.cfg.MaxPenalty
	}
	if j := b.cfg.JitterRatio; j > 0 {
		p += time.Duration(float64(p) * j * b.cfg.Rand())
	}
	b.trips++
	b.failures = 0
	b.until = now.Add(p)
	b.state.Store(Open)
}

// Until returns the end of the current penalty (zero when closed).
func (b *Breaker) Until() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state.Load() == Closed {
		return time.Time{}
	}
	return b.until
}

// grpcFailures are the gRPC statuses Linkerd's failure accrual counts:
// DEADLINE_EXCEEDED, PERMISSION_DENIED, INTERNAL, UNAVAILABLE, DATA_LOSS.
var grpcFailures = [17]bool{4: true, 7: true, 13: true, 14: true, 15: true}

// IsFailure classifies a response for failure accrual: HTTP 5xx, or one of
// the failing gRPC statuses (grpcStatus < 0 means none).
func IsFailure(status, grpcStatus int) bool {
	if grpcStatus >= 0 && grpcStatus < len(grpcFailures) {
		return grpcFailures[grpcStatus]
	}
	return status >= http.StatusInternalServerError
}
