// Package metrics is a small Prometheus registry: counters, gauges and
// histograms written in the Prometheus text exposition format (0.0.4).
//
// It is built for the proxy's hot path. A series is identified by a rendered,
// immutable label set (Labels) and interned once: callers look a series up
// when they learn its labels (per target, per status code) and keep the
// pointer, so recording is a single atomic add with no map access and no
// allocation.
package metrics

import (
	"bufio"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Labels is an immutable, rendered label set such as
// `direction="outbound",authority="web:80"`. The zero value is the empty set.
// Labels are compared as strings, so build them in a consistent order.
type Labels struct{ s string }

// L builds a label set from name/value pairs, in the order given. An odd
// trailing name is ignored. Values are escaped as the text format requires.
func L(kv ...string) Labels { return Labels{}.With(kv...) }

// With returns l extended with the name/value pairs kv.
func (l Labels) With(kv ...string) Labels {
	if len(kv) < 2 {
		return l
	}
	var b strings.Builder
	b.WriteString(l.s)
	for i := 0; i+1 < len(kv); i += 2 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteString(`="`)
		escape(&b, kv[i+1])
		b.WriteByte('"')
	}
	return Labels{b.String()}
}

// Merge returns l followed by o.
func (l Labels) Merge(o Labels) Labels {
	switch {
	case o.s == "":
		return l
	case l.s == "":
		return o
	}
	return Labels{l.s + "," + o.s}
}

// String returns the rendered labels without braces.
func (l Labels) String() string { return l.s }

func escape(b *strings.Builder, v string) {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
}

// Registry holds metric families and writes them out. It is safe for
// concurrent use; the zero value is not usable, call NewRegistry.
type Registry struct {
	mu   sync.Mutex
	fams []family
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

type family interface {
	write(w *bufio.Writer)
}

func (r *Registry) add(f family) {
	r.mu.Lock()
	r.fams = append(r.fams, f)
	r.mu.Unlock()
}

// WriteText writes every family in the Prometheus text format, families in
// registration order and series sorted by labels.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := slices.Clone(r.fams)
	r.mu.Unlock()
	bw := bufio.NewWriterSize(w, 32<<10)
	for _, f := range fams {
		f.write(bw)
	}
	return bw.Flush()
}

// vec interns series of one family by their rendered labels.
type vec[T any] struct {
	mu     sync.RWMutex
	series map[string]*T
	mk     func() *T
}

func (v *vec[T]) with(l Labels) *T {
	v.mu.RLock()
	s, ok := v.series[l.s]
	v.mu.RUnlock()
	if ok {
		return s
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.series[l.s]; ok {
		return s
	}
	if v.series == nil {
		v.series = make(map[string]*T)
	}
	s = v.mk()
	v.series[l.s] = s
	return s
}

// sorted returns the series sorted by label string.
func (v *vec[T]) sorted() ([]string, []*T) {
	v.mu.RLock()
	keys := make([]string, 0, len(v.series))
	for k := range v.series {
		keys = append(keys, k)
	}
	v.mu.RUnlock()
	slices.Sort(keys)
	out := make([]*T, len(keys))
	v.mu.RLock()
	for i, k := range keys {
		out[i] = v.series[k]
	}
	v.mu.RUnlock()
	return keys, out
}

func header(w *bufio.Writer, name, help, typ string) {
	w.WriteString("# HELP ")
	w.WriteString(name)
	w.WriteByte(' ')
	w.WriteString(help)
	w.WriteString("\n# TYPE ")
	w.WriteString(name)
	w.WriteByte(' ')
	w.WriteString(typ)
	w.WriteByte('\n')
}

func sample(w *bufio.Writer, name, labels, extra string, v string) {
	w.WriteString(name)
	if labels != "" || extra != "" {
		w.WriteByte('{')
		w.WriteString(labels)
		if labels != "" && extra != "" {
			w.WriteByte(',')
		}
		w.WriteString(extra)
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(v)
	w.WriteByte('\n')
}

// Counter is a monotonically increasing series.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// CounterVec is a counter family.
type CounterVec struct {
	name, help string
	vec[Counter]
}

// NewCounter registers a counter family. The name should end in _total.
func (r *Registry) NewCounter(name, help string) *CounterVec {
	c := &CounterVec{name: name, help: help}
	c.mk = func() *Counter { return new(Counter) }
	r.add(c)
	return c
}

// With returns the series for l, creating it on first use. Keep the result:
// the lookup takes a lock and hashes the labels.
func (c *CounterVec) With(l Labels) *Counter { return c.with(l) }

func (c *CounterVec) write(w *bufio.Writer) {
	keys, ss := c.sorted()
	if len(keys) == 0 {
		return
	}
	header(w, c.name, c.help, "counter")
	var buf [24]byte
	for i, k := range keys {
		sample(w, c.name, k, "", string(strconv.AppendUint(buf[:0], ss[i].Value(), 10)))
	}
}

// Gauge is a series that goes up and down.
type Gauge struct{ v atomic.Int64 }

// Inc adds one.
func (g *Gauge) Inc() { g.v.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.v.Add(-1) }

// Set sets the value.
func (g *Gauge) Set(n int64) { g.v.Store(n) }

// Value returns the current value.
func (g *Gauge) Value() int64 { return g.v.Load() }

// GaugeVec is a gauge family.
type GaugeVec struct {
	name, help string
	vec[Gauge]
}

// NewGauge registers a gauge family.
func (r *Registry) NewGauge(name, help string) *GaugeVec {
	g := &GaugeVec{name: name, help: help}
	g.mk = func() *Gauge { return new(Gauge) }
	r.add(g)
	return g
}

// With returns the series for l, creating it on first use.
func (g *GaugeVec) With(l Labels) *Gauge { return g.with(l) }

func (g *GaugeVec) write(w *bufio.Writer) {
	keys, ss := g.sorted()
	if len(keys) == 0 {
		return
	}
	header(w, g.name, g.help, "gauge")
	var buf [24]byte
	for i, k := range keys {
		sample(w, g.name, k, "", string(strconv.AppendInt(buf[:0], ss[i].Value(), 10)))
	}
}

// Histogram counts observations into fixed buckets.
type Histogram struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket, not cumulative; last is +Inf
	sum    atomic.Uint64   // float64 bits
	count  atomic.Uint64
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v) // first bound >= v: le semantics
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	h.count.Add(1)
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// HistogramVec is a histogram family with shared bucket bounds.
type HistogramVec struct {
	name, help string
	les        []string
	vec[Histogram]
}

// NewHistogram registers a histogram family with the given upper bounds,
// ascending, without +Inf (added implicitly).
func (r *Registry) NewHistogram(name, help string, bounds []float64) *HistogramVec {
	bounds = slices.Clone(bounds)
	h := &HistogramVec{name: name, help: help}
	for _, b := range bounds {
		h.les = append(h.les, `le="`+strconv.FormatFloat(b, 'g', -1, 64)+`"`)
	}
	h.les = append(h.les, `le="+Inf"`)
	h.mk = func() *Histogram {
		return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
	}
	r.add(h)
	return h
}

// With returns the series for l, creating it on first use.
func (h *HistogramVec) With(l Labels) *Histogram { return h.with(l) }

func (h *HistogramVec) write(w *bufio.Writer) {
	keys, ss := h.sorted()
	if len(keys) == 0 {
		return
	}
	header(w, h.name, h.help, "histogram")
	var buf [32]byte
	for i, k := range keys {
		s := ss[i]
		var cum uint64
		for j := range s.counts {
			cum += s.counts[j].Load()
			sample(w, h.name+"_bucket", k, h.les[j], string(strconv.AppendUint(buf[:0], cum, 10)))
		}
		sum := math.Float64frombits(s.sum.Load())
		sample(w, h.name+"_sum", k, "", string(strconv.AppendFloat(buf[:0], sum, 'g', -1, 64)))
		sample(w, h.name+"_count", k, "", string(strconv.AppendUint(buf[:0], cum, 10)))
	}
}
