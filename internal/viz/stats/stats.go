// Package stats computes Linkerd viz's golden metrics from proxy scrapes:
// success rate, requests per second, latency quantiles and open connections,
// per resource, per edge and per route. It is pure: it takes two scrapes of
// each proxy and returns rows, so its numbers can be checked exactly.
//
// The math follows Linkerd's viz metrics API (stat_summary.go,
// top_routes.go): SR = Σincrease(response_total{classification="success"}) /
// Σincrease(response_total); RPS = Σincrease(response_total) / seconds;
// latency quantiles as Prometheus' histogram_quantile over the summed bucket
// increases of response_latency_ms; TCP_CONN = Σtcp_open_connections.
package stats

import (
	"math"
	"sort"
	"strings"
	"time"

	"github.com/weft-mesh/weft/internal/viz/promtext"
)

// Pod is a meshed (or not) workload replica, as the store shows it.
type Pod struct {
	Namespace      string `json:"namespace"`
	Name           string `json:"name"`
	Deployment     string `json:"deployment,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
	Status         string `json:"status,omitempty"`
	Meshed         bool   `json:"meshed"`
	// AdminAddr is the proxy's admin server (host:port), scraped for /metrics.
	AdminAddr string `json:"adminAddr,omitempty"`
	// TapAddr is the proxy's tap gRPC server, when it has one.
	TapAddr string `json:"tapAddr,omitempty"`
}

// Scrape is one read of a pod's proxy /metrics.
type Scrape struct {
	Pod     Pod
	Time    time.Time
	Samples []promtext.Sample
}

// Delta is what one proxy did between two scrapes: counter increases and the
// latest gauge values.
type Delta struct {
	Pod     Pod
	Seconds float64
	// Increase holds counters (names ending _total, _bucket, _count, _sum)
	// with their increase over the interval as Value.
	Increase []promtext.Sample
	// Gauges holds every other series with its latest value.
	Gauges []promtext.Sample
}

// IsCounter tells counters from gauges by name, as Linkerd's families are
// named.
func IsCounter(name string) bool {
	for _, suf := range []string{"_total", "_bucket", "_count", "_sum"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return false
}

// Used reports whether viz reads the series family name; the collector keeps
// only these.
func Used(name string) bool {
	switch name {
	case "request_total", "response_total", "response_latency_ms_bucket",
		"tcp_open_connections", "tcp_read_bytes_total", "tcp_write_bytes_total",
		"route_response_total", "route_response_latency_ms_bucket",
		"route_actual_response_total", "route_actual_response_latency_ms_bucket":
		return true
	}
	return false
}

// NewDelta computes what happened between old and cur, two scrapes of the
// same proxy. A series missing from old started during the interval and
// counts from zero (proxies create series at their first event); a counter
// that went down was reset and counts from zero too, as Prometheus does.
func NewDelta(old, cur Scrape) Delta {
	d := Delta{Pod: cur.Pod, Seconds: cur.Time.Sub(old.Time).Seconds()}
	prev := make(map[string]float64, len(old.Samples))
	for _, s := range old.Samples {
		if IsCounter(s.Name) {
			prev[s.Key()] = s.Value
		}
	}
	for _, s := range cur.Samples {
		if !IsCounter(s.Name) {
			d.Gauges = append(d.Gauges, s)
			continue
		}
		inc := s.Value
		if p, ok := prev[s.Key()]; ok && p <= s.Value {
			inc = s.Value - p
		}
		s.Value = inc
		d.Increase = append(d.Increase, s)
	}
	return d
}

// Quantile is Prometheus' histogram_quantile over cumulative buckets given as
// upper bound -> count (one of them +Inf). It returns NaN when there are no
// observations. A quantile falling in the +Inf bucket returns the highest
// finite bound; within a bucket the value is interpolated linearly, the
// first bucket starting at 0.
func Quantile(q float64, buckets map[float64]float64) float64 {
	if len(buckets) < 2 || math.IsNaN(q) {
		return math.NaN()
	}
	bounds := make([]float64, 0, len(buckets))
	for le := range buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if !math.IsInf(bounds[len(bounds)-1], 1) {
		return math.NaN()
	}
	// Cumulative counts must not decrease; summing increases of different
	// series can make them, so enforce it as Prometheus does.
	counts := make([]float64, len(bounds))
	for i, le := range bounds {
		counts[i] = buckets[le]
		if i > 0 && counts[i] < counts[i-1] {
			counts[i] = counts[i-1]
		}
	}
	total := counts[len(counts)-1]
	if total == 0 {
		return math.NaN()
	}
	switch {
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(1)
	}
	rank := q * total
	b := sort.Search(len(counts)-1, func(i int) bool { return counts[i] >= rank })
	if b == len(bounds)-1 {
		return bounds[len(bounds)-2]
	}
	if b == 0 && bounds[0] <= 0 {
		return bounds[0]
	}
	start, end := 0.0, bounds[b]
	prevCount := 0.0
	if b > 0 {
		start = bounds[b-1]
		prevCount = counts[b-1]
	}
	count := counts[b] - prevCount
	if count == 0 {
		return end
	}
	return start + (end-start)*(rank-prevCount)/count
}

// Stats are the golden metrics of one row. Pointers are nil when there is
// nothing to show ("-" in the CLI).
type Stats struct {
	Requests     float64  `json:"requests"`
	Successes    float64  `json:"successes"`
	SuccessRate  *float64 `json:"successRate,omitempty"`
	RPS          *float64 `json:"rps,omitempty"`
	LatencyP50   *float64 `json:"latencyMsP50,omitempty"`
	LatencyP95   *float64 `json:"latencyMsP95,omitempty"`
	LatencyP99   *float64 `json:"latencyMsP99,omitempty"`
	TCPConn      *float64 `json:"tcpConnections,omitempty"`
	ReadBytesPS  *float64 `json:"readBytesPerSec,omitempty"`
	WriteBytesPS *float64 `json:"writeBytesPerSec,omitempty"`
}

// acc accumulates the series of one row before Stats are derived.
type acc struct {
	seen      bool // a response series matched, even with no increase
	requests  float64
	successes float64
	rps       float64
	buckets   map[float64]float64

	tcpSeen           bool
	tcpConn           float64
	readBPS, writeBPS float64
}

func (a *acc) addResponse(s promtext.Sample, seconds float64) {
	a.seen = true
	a.requests += s.Value
	if s.Labels["classification"] == "success" {
		a.successes += s.Value
	}
	if seconds > 0 {
		a.rps += s.Value / seconds
	}
}

func (a *acc) addBucket(s promtext.Sample) {
	le, err := parseLE(s.Labels["le"])
	if err != nil {
		return
	}
	if a.buckets == nil {
		a.buckets = map[float64]float64{}
	}
	a.buckets[le] += s.Value
}

func (a *acc) stats() Stats {
	var st Stats
	if !a.seen && !a.tcpSeen {
		return st
	}
	st.Requests, st.Successes = a.requests, a.successes
	if a.seen {
		st.RPS = ptr(a.rps)
	}
	if a.requests > 0 {
		st.SuccessRate = ptr(a.successes / a.requests)
	}
	for _, p := range []struct {
		q   float64
		dst **float64
	}{{0.5, &st.LatencyP50}, {0.95, &st.LatencyP95}, {0.99, &st.LatencyP99}} {
		if v := Quantile(p.q, a.buckets); !math.IsNaN(v) {
			*p.dst = ptr(v)
		}
	}
	if a.tcpSeen {
		st.TCPConn = ptr(a.tcpConn)
		st.ReadBytesPS = ptr(a.readBPS)
		st.WriteBytesPS = ptr(a.writeBPS)
	}
	return st
}

func ptr(v float64) *float64 { return &v }

func parseLE(s string) (float64, error) {
	return promtext.ParseValue(s)
}
