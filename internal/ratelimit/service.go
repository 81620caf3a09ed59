package ratelimit

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weft-mesh/weft/internal/metrics"
)

// Entry is one key/value of a descriptor.
type Entry struct{ Key, Value string }

// Service answers ShouldRateLimit from the current Rules and a Counter.
type Service struct {
	rlsv3.UnimplementedRateLimitServiceServer

	rules   atomic.Pointer[Rules]
	counter Counter
	now     func() time.Time
	prefix  string
	shadow  bool
	headers bool
	strict  bool
	stats   *Stats
	log     *slog.Logger

	unknownMu sync.Mutex
	unknown   map[string]bool // domains already warned about
}

// ServiceOptions configures a Service.
type ServiceOptions struct {
	// Counter stores the counters; nil means NewMemory(Now).
	Counter Counter
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// KeyPrefix starts every counter key (to share a Redis).
	KeyPrefix string
	// ShadowMode answers OK to everything while still counting, as
	// envoyproxy/ratelimit's SHADOW_MODE does.
	ShadowMode bool
	// ResponseHeaders adds RateLimit-Limit, RateLimit-Remaining and
	// RateLimit-Reset (of the limit closest to running out) to every
	// answer's response_headers_to_add, as envoyproxy/ratelimit's
	// LIMIT_RESPONSE_HEADERS_ENABLED does; the ingress sends them with
	// its 429.
	ResponseHeaders bool
	// StrictDomains answers a request for a domain no configuration names
	// with NOT_FOUND instead of OK (envoyproxy/ratelimit's behaviour).
	// The caller then fails open or closed as for any error.
	StrictDomains bool
	// Stats receives metrics; nil means a private registry.
	Stats  *Stats
	Logger *slog.Logger
}

// NewService returns a Service with no configuration: it answers
// FAILED_PRECONDITION until SetRules.
func NewService(o ServiceOptions) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Counter == nil {
		o.Counter = NewMemory(o.Now)
	}
	if o.Stats == nil {
		o.Stats = NewStats(metrics.NewRegistry())
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Service{counter: o.Counter, now: o.Now, prefix: o.KeyPrefix, shadow: o.ShadowMode, headers: o.ResponseHeaders, strict: o.StrictDomains, stats: o.Stats, log: o.Logger, unknown: map[string]bool{}}
}

// SetRules swaps in a new configuration; requests in flight finish with
// the one they started with.
func (s *Service) SetRules(r *Rules) { s.rules.Store(r) }

// Rules returns the current configuration, nil before the first.
func (s *Service) Rules() *Rules { return s.rules.Load() }

// Stats returns the service's metrics.
func (s *Service) Stats() *Stats { return s.stats }

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	rlsv3.RegisterRateLimitServiceServer(g, s)
}

// nearLimitRatio is where "near limit" starts, as in envoyproxy/ratelimit.
const nearLimitRatio = 0.8

// ShouldRateLimit implements the RLS v3 RPC. Every descriptor is counted;
// the answer is OVER_LIMIT if any descriptor is over its limit (and not in
// shadow mode). Descriptors no rule matches are OK and not counted.
func (s *Service) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	resp, err := s.shouldRateLimit(ctx, req)
	if err != nil {
		s.stats.reqErr.Inc()
		return nil, err
	}
	if resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT {
		s.stats.reqOver.Inc()
	} else {
		s.stats.reqOK.Inc()
	}
	return resp, nil
}

func (s *Service) shouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	domain := req.GetDomain()
	if domain == "" {
		s.stats.errors.With(metrics.L("reason", "empty_domain")).Inc()
		return nil, status.Error(codes.InvalidArgument, "ratelimit: the request's domain is empty: set the RateLimitService domain")
	}
	descs := req.GetDescriptors()
	if len(descs) == 0 {
		s.stats.errors.With(metrics.L("reason", "no_descriptors")).Inc()
		return nil, status.Error(codes.InvalidArgument, "ratelimit: the request has no descriptors")
	}
	for i, d := range descs {
		if len(d.GetEntries()) == 0 {
			s.stats.errors.With(metrics.L("reason", "empty_descriptor")).Inc()
			return nil, status.Errorf(codes.InvalidArgument, "ratelimit: descriptor %d has no entries", i)
		}
	}
	rules := s.rules.Load()
	if rules == nil {
		s.stats.errors.With(metrics.L("reason", "no_config")).Inc()
		return nil, status.Error(codes.FailedPrecondition, errNoConfig.Error())
	}
	if rules.domains[domain] == nil {
		// envoyproxy/ratelimit answers OK for a domain it does not know;
		// so do we, but say so once, since it usually means the
		// RateLimitService's domain and the config's disagree.
		s.stats.domainNotFound.With(metrics.L("domain", domain)).Inc()
		if s.strict {
			return nil, status.Errorf(codes.NotFound, "ratelimit: unknown domain %q: configured domains are %q", domain, rules.Domains())
		}
		s.warnUnknown(domain, rules)
	}

	now := s.now()
	resp := &rlsv3.RateLimitResponse{
		OverallCode: rlsv3.RateLimitResponse_OK,
		Statuses:    make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(descs)),
	}

	// Match every descriptor first: a limit another matched limit replaces
	// is not counted.
	type check struct {
		r      *rule
		shared []string
		es     []Entry
	}
	checks := make([]check, len(descs))
	var replaced map[string]bool
	for i, d := range descs {
		es := entries(d)
		checks[i].es = es
		if o := d.GetLimit(); o != nil {
			// A limit override from the client: the client's numbers, never
			// shadowed (as envoyproxy/ratelimit does).
			checks[i].r = &rule{requestsPerUnit: o.GetRequestsPerUnit(), unit: Unit(o.GetUnit()), domain: domain}
			continue
		}
		r, shared := rules.match(domain, es)
		checks[i].r, checks[i].shared = r, shared
		if r != nil {
			for _, name := range r.replaces {
				if replaced == nil {
					replaced = map[string]bool{}
				}
				replaced[name] = true
			}
		}
	}

	hits := make([]Hit, 0, len(descs))
	idx := make([]int, 0, len(descs)) // hits[j] belongs to descs[idx[j]]
	addends := make([]uint64, len(descs))
	for i, c := range checks {
		r := c.r
		if r != nil && r.name != "" && replaced[r.name] {
			checks[i].r, r = nil, nil
		}
		switch {
		case r == nil:
			resp.Statuses[i] = &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
			continue
		case r.unlimited:
			resp.Statuses[i] = &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK, LimitRemaining: math.MaxUint32}
			continue
		}
		secs := unitSeconds(r.unit)
		if secs == 0 {
			s.stats.errors.With(metrics.L("reason", "bad_unit")).Inc()
			return nil, status.Errorf(codes.InvalidArgument, "ratelimit: descriptor %d: limit override has unknown unit %v", i, r.unit)
		}
		addend, refund := hitsAddend(req, descs[i])
		addends[i] = addend
		start := now.Unix() / secs * secs
		hits = append(hits, Hit{Key: s.key(domain, c.es, c.shared, start), N: addend, Refund: refund, End: time.Unix(start+secs, 0)})
		idx = append(idx, i)
	}

	after := make([]uint64, len(hits))
	if err := s.counter.Add(ctx, hits, after); err != nil {
		s.stats.errors.With(metrics.L("reason", "counter")).Inc()
		// The caller gave up, or the store is unreachable: either way the
		// caller decides (fail open, or failure_mode_deny).
		code := codes.Unavailable
		if ctx.Err() != nil {
			code = status.FromContextError(ctx.Err()).Code()
		}
		return nil, status.Error(code, err.Error())
	}

	for j, i := range idx {
		c := checks[i]
		r := c.r
		st := &rlsv3.RateLimitResponse_DescriptorStatus{
			Code:               rlsv3.RateLimitResponse_OK,
			CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{Name: r.name, RequestsPerUnit: r.requestsPerUnit, Unit: r.unit},
			DurationUntilReset: durationpb.New(hits[j].End.Sub(now)),
		}
		resp.Statuses[i] = st
		n, limit := after[j], uint64(r.requestsPerUnit)
		if n < limit {
			st.LimitRemaining = uint32(limit - n)
		}
		over := !hits[j].Refund && n > limit
		if over {
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		if hits[j].Refund {
			continue
		}
		rs := r.stats
		if rs != nil && (r.detailed || r.valueToMetric) {
			rs = s.stats.forRule(domain, metricKey(r, c.es))
		}
		if rs != nil {
			record(rs, n-min(n, addends[i]), n, limit, addends[i], over && (r.shadow || s.shadow))
		}
		if over && (r.shadow || s.shadow) {
			st.Code = rlsv3.RateLimitResponse_OK
		}
		if st.Code == rlsv3.RateLimitResponse_OVER_LIMIT {
			resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
		}
	}
	if s.headers {
		resp.ResponseHeadersToAdd = limitHeaders(resp.Statuses)
	}
	return resp, nil
}

// limitHeaders describes the limit with the least remaining.
func limitHeaders(sts []*rlsv3.RateLimitResponse_DescriptorStatus) []*corev3.HeaderValue {
	var least *rlsv3.RateLimitResponse_DescriptorStatus
	for _, st := range sts {
		if st.GetCurrentLimit() != nil && (least == nil || st.GetLimitRemaining() < least.GetLimitRemaining()) {
			least = st
		}
	}
	if least == nil {
		return nil
	}
	reset := least.GetDurationUntilReset().AsDuration()
	return []*corev3.HeaderValue{
		{Key: "RateLimit-Limit", Value: strconv.FormatUint(uint64(least.GetCurrentLimit().GetRequestsPerUnit()), 10)},
		{Key: "RateLimit-Remaining", Value: strconv.FormatUint(uint64(least.GetLimitRemaining()), 10)},
		// Whole seconds, rounded up: "0" would invite an immediate retry.
		{Key: "RateLimit-Reset", Value: strconv.FormatInt(int64((reset+time.Second-1)/time.Second), 10)},
	}
}

// hitsAddend is how much a descriptor counts: its own hits_addend when set
// (0 then only reads), else the request's, where 0 means 1.
func hitsAddend(req *rlsv3.RateLimitRequest, d *ratelimitv3.RateLimitDescriptor) (uint64, bool) {
	if h := d.GetHitsAddend(); h != nil {
		return h.GetValue(), d.GetIsNegativeHits()
	}
	return uint64(max(1, req.GetHitsAddend())), d.GetIsNegativeHits()
}

// record counts a descriptor's hits in its metrics, as envoyproxy/ratelimit
// does: hits past the limit are over, hits past 80% of it near.
func record(rs *ruleStats, before, after, limit, addend uint64, shadow bool) {
	rs.totalHits.Add(addend)
	near := uint64(math.Floor(float64(limit) * nearLimitRatio))
	switch {
	case after > limit:
		if before >= limit {
			rs.overLimit.Add(addend)
		} else {
			rs.overLimit.Add(after - limit)
			rs.nearLimit.Add(limit - max(near, before))
			rs.within.Add(limit - before)
		}
		if shadow {
			rs.shadow.Add(min(addend, after-limit))
		}
	case after > near:
		rs.within.Add(addend)
		rs.nearLimit.Add(after - max(near, before))
	default:
		rs.within.Add(addend)
	}
}

// key is the counter's name: prefix, domain, each entry's key and value,
// and the window start, joined by '_' as envoyproxy/ratelimit names them.
func (s *Service) key(domain string, es []Entry, shared []string, start int64) string {
	var b strings.Builder
	n := len(s.prefix) + len(domain) + 21
	for _, e := range es {
		n += len(e.Key) + len(e.Value) + 2
	}
	b.Grow(n)
	b.WriteString(s.prefix)
	b.WriteString(domain)
	b.WriteByte('_')
	for i, e := range es {
		b.WriteString(e.Key)
		b.WriteByte('_')
		if shared != nil && shared[i] != "" {
			b.WriteString(shared[i])
		} else {
			b.WriteString(e.Value)
		}
		b.WriteByte('_')
	}
	b.WriteString(strconv.FormatInt(start, 10))
	return b.String()
}

// metricKey is the descriptor label with the request's values, for
// detailed_metric and value_to_metric rules.
func metricKey(r *rule, es []Entry) string {
	if !r.detailed {
		// value_to_metric: the configured path, with the last entry's
		// value where the rule has none.
		last := es[len(es)-1]
		if strings.HasSuffix(r.metricKey, "_"+last.Value) {
			return r.metricKey
		}
		return r.metricKey + "_" + last.Value
	}
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(e.Key)
		b.WriteByte('_')
		b.WriteString(e.Value)
	}
	return b.String()
}

func entries(d *ratelimitv3.RateLimitDescriptor) []Entry {
	es := make([]Entry, len(d.GetEntries()))
	for i, e := range d.GetEntries() {
		es[i] = Entry{Key: e.GetKey(), Value: e.GetValue()}
	}
	return es
}

func (s *Service) warnUnknown(domain string, rules *Rules) {
	s.unknownMu.Lock()
	defer s.unknownMu.Unlock()
	if s.unknown[domain] || len(s.unknown) > 100 {
		return
	}
	s.unknown[domain] = true
	s.log.Warn("ratelimit: request for a domain no configuration names; answering OK", "domain", domain, "configured", rules.Domains())
}
