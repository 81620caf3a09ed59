// Package tap is the proxy's live request tap: the
// io.linkerd.proxy.tap.Tap/Observe server (linkerd2-proxy-api) and the hook
// the data path calls for every HTTP exchange.
//
// A tap must never slow the data path. With no Observe stream open the hook
// costs one atomic load and builds nothing. With streams open, each matching
// exchange's events are queued on every matching stream's bounded buffer
// without blocking; when a client reads too slowly its events are dropped,
// never queued without bound, and each stream taps at most MaxRPS requests
// per second.
package tap

import (
	"log/slog"
	"sync"
	"sync/atomic"

	tappb "github.com/linkerd/linkerd2-proxy-api/go/tap"
)

// Direction says which side of the proxy saw an exchange.
type Direction = tappb.TapEvent_ProxyDirection

// The directions.
const (
	Inbound  = tappb.TapEvent_INBOUND
	Outbound = tappb.TapEvent_OUTBOUND
)

// Config configures a Tapper.
type Config struct {
	// Labels describe this workload (namespace, pod, deployment,
	// serviceaccount): the destination of inbound exchanges and the source
	// of outbound ones.
	Labels map[string]string
	// MaxTaps bounds the concurrent Observe streams; zero means 16.
	MaxTaps int
	// Buffer is how many events each stream queues for a slow client
	// before dropping; zero means 512.
	Buffer int
	// MaxRPS bounds the requests each stream taps per second (Linkerd's
	// tap --max-rps); zero means 100.
	MaxRPS float64
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Tapper is the proxy's tap: it serves Observe (see Server) and is the
// hook the inbound and outbound sides call (see Request). A nil *Tapper
// taps nothing.
type Tapper struct {
	tappb.UnimplementedTapServer

	cfg Config
	log *slog.Logger

	// active is nil while nobody taps: the data path's only cost.
	active atomic.Pointer[[]*watcher]
	mu     sync.Mutex // serializes changes to active

	streams atomic.Uint64 // stream ids (the counter of StreamId.stream)
	built   atomic.Uint64 // exchanges built (tests, and proof of zero cost)
	dropped atomic.Uint64 // events dropped for slow clients or the rate limit
}

// New returns a Tapper; it does no I/O.
func New(cfg Config) *Tapper {
	if cfg.MaxTaps <= 0 {
		cfg.MaxTaps = 16
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 512
	}
	if cfg.MaxRPS <= 0 {
		cfg.MaxRPS = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Tapper{cfg: cfg, log: cfg.Logger.With("component", "tap")}
}

// Built returns how many exchanges have been tapped (events built).
func (t *Tapper) Built() uint64 { return t.built.Load() }

// Dropped returns how many events or requests were dropped because a tap
// client read too slowly or its rate limit was reached.
func (t *Tapper) Dropped() uint64 { return t.dropped.Load() }

// Active returns the number of open Observe streams still tapping.
func (t *Tapper) Active() int {
	if ws := t.active.Load(); ws != nil {
		return len(*ws)
	}
	return 0
}

// add registers w; false when MaxTaps streams are already open.
func (t *Tapper) add(w *watcher) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cur []*watcher
	if p := t.active.Load(); p != nil {
		cur = *p
	}
	if len(cur) >= t.cfg.MaxTaps {
		return false
	}
	next := append(append(make([]*watcher, 0, len(cur)+1), cur...), w)
	t.active.Store(&next)
	return true
}

// remove unregisters w (no new exchanges match it); idempotent.
func (t *Tapper) remove(w *watcher) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.active.Load()
	if p == nil {
		return
	}
	next := make([]*watcher, 0, len(*p))
	for _, o := range *p {
		if o != w {
			next = append(next, o)
		}
	}
	if len(next) == 0 {
		t.active.Store(nil)
		return
	}
	t.active.Store(&next)
}
