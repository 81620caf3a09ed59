package ratelimit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/weft-mesh/weft/internal/metrics"
)

// Rules is a compiled set of domain configurations: what the service
// matches descriptors against. It is immutable, so a reload swaps it whole.
type Rules struct {
	domains map[string]*node
	sources map[string]string // domain -> source, for errors and logs
}

// Domains lists the configured domains, sorted.
func (r *Rules) Domains() []string {
	out := make([]string, 0, len(r.domains))
	for d := range r.domains {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// node is one level of a domain's descriptor tree.
type node struct {
	children  map[entry]*node // exact key+value, and key-only under value ""
	wildcards []wildcard      // "prefix*" values, in configuration order
	limit     *rule           // nil: no limit here (whitelisted if a leaf)
	value     string          // the configured value (for shared wildcard counters)
	share     bool
}

type wildcard struct {
	key, prefix string
	n           *node
}

// rule is a configured limit with what it needs at request time.
type rule struct {
	name            string
	unit            Unit
	requestsPerUnit uint32
	unlimited       bool
	replaces        []string
	shadow          bool
	detailed        bool // label metrics with the request's values
	valueToMetric   bool
	domain          string
	metricKey       string // e.g. generic_key_checkout.x-user
	stats           *ruleStats
}

// Compile checks a set of configurations together (one file per domain)
// and builds the matching trees. reg receives the per-rule metrics; nil
// means none.
func Compile(configs []*Config, st *Stats) (*Rules, error) {
	r := &Rules{domains: make(map[string]*node, len(configs)), sources: make(map[string]string, len(configs))}
	for _, c := range configs {
		if prev, dup := r.sources[c.Domain]; dup {
			return nil, fmt.Errorf("ratelimit: config %s: domain %q is already configured in %s: each domain goes in one file", c.Source, c.Domain, prev)
		}
		r.sources[c.Domain] = c.Source
		r.domains[c.Domain] = build(c.Domain, "", c.Descriptors, st)
	}
	return r, nil
}

func build(domain, prefix string, ds []DescriptorConfig, st *Stats) *node {
	n := &node{children: make(map[entry]*node, len(ds))}
	for i := range ds {
		d := &ds[i]
		key := d.Key
		if d.Value != "" {
			key += "_" + d.Value
		}
		if prefix != "" {
			key = prefix + "." + key
		}
		child := build(domain, key, d.Descriptors, st)
		child.value, child.share = d.Value, d.ShareThreshold
		if rl := d.RateLimit; rl != nil {
			child.limit = &rule{
				name: rl.Name, unit: rl.Unit, requestsPerUnit: rl.RequestsPerUnit, unlimited: rl.Unlimited,
				replaces: rl.Replaces, shadow: d.ShadowMode, detailed: d.DetailedMetric, valueToMetric: d.ValueToMetric,
				domain: domain, metricKey: key,
			}
			if st != nil {
				child.limit.stats = st.forRule(domain, key)
			}
		}
		if v, ok := strings.CutSuffix(d.Value, "*"); ok {
			n.wildcards = append(n.wildcards, wildcard{key: d.Key, prefix: v, n: child})
			continue
		}
		n.children[entry{d.Key, d.Value}] = child
	}
	return n
}

// match finds the rule for a descriptor: the configuration matches only at
// the descriptor's own depth, an exact key+value beats a wildcard value,
// which beats a key-only node. shared reports, per entry, the wildcard
// value to count under when the matched node shares its counter.
func (r *Rules) match(domain string, es []Entry) (*rule, []string) {
	n := r.domains[domain]
	if n == nil || len(es) == 0 {
		return nil, nil
	}
	var shared []string
	for i, e := range es {
		next := n.children[entry{e.Key, e.Value}]
		if next == nil {
			for _, w := range n.wildcards {
				if w.key == e.Key && strings.HasPrefix(e.Value, w.prefix) {
					next = w.n
					break
				}
			}
		}
		if next == nil {
			next = n.children[entry{e.Key, ""}]
		}
		if next == nil {
			return nil, nil
		}
		if next.share {
			if shared == nil {
				shared = make([]string, len(es))
			}
			shared[i] = next.value
		}
		if i == len(es)-1 {
			return next.limit, shared
		}
		n = next
	}
	return nil, nil
}

// Stats are the service's metrics, per domain and descriptor, named as
// envoyproxy/ratelimit names its stats.
type Stats struct {
	reg                                        *metrics.Registry
	totalHits, overLimit, nearLimit, withinLim *metrics.CounterVec
	shadowMode                                 *metrics.CounterVec
	requests, errors                           *metrics.CounterVec
	configLoads                                *metrics.CounterVec
	domainNotFound                             *metrics.CounterVec

	// The request results' series, kept to spare the hot path a lookup.
	reqOK, reqOver, reqErr *metrics.Counter
}

var (
	resultSuccess = metrics.L("result", "success")
	resultError   = metrics.L("result", "error")
)

// NewStats registers the service's metrics in reg.
func NewStats(reg *metrics.Registry) *Stats {
	s := &Stats{
		reg:            reg,
		totalHits:      reg.NewCounter("ratelimit_total_hits_total", "Hits counted against a descriptor's limit."),
		overLimit:      reg.NewCounter("ratelimit_over_limit_total", "Hits over a descriptor's limit."),
		nearLimit:      reg.NewCounter("ratelimit_near_limit_total", "Hits above 80% of a descriptor's limit but within it."),
		withinLim:      reg.NewCounter("ratelimit_within_limit_total", "Hits within a descriptor's limit."),
		shadowMode:     reg.NewCounter("ratelimit_shadow_mode_total", "Hits over a shadow-mode limit, answered OK."),
		requests:       reg.NewCounter("ratelimit_requests_total", "ShouldRateLimit calls by result (ok, over_limit, error)."),
		errors:         reg.NewCounter("ratelimit_errors_total", "ShouldRateLimit calls that failed, by reason."),
		configLoads:    reg.NewCounter("ratelimit_config_loads_total", "Configuration loads by result (success, error)."),
		domainNotFound: reg.NewCounter("ratelimit_domain_not_found_total", "Requests for a domain no configuration names."),
	}
	s.reqOK = s.requests.With(metrics.L("result", "ok"))
	s.reqOver = s.requests.With(metrics.L("result", "over_limit"))
	s.reqErr = s.requests.With(metrics.L("result", "error"))
	return s
}

// ruleStats are one rule's series, looked up once at compile time.
type ruleStats struct {
	totalHits, overLimit, nearLimit, within, shadow *metrics.Counter
}

func (s *Stats) forRule(domain, key string) *ruleStats {
	l := metrics.L("domain", domain, "descriptor", key)
	return &ruleStats{
		totalHits: s.totalHits.With(l), overLimit: s.overLimit.With(l), nearLimit: s.nearLimit.With(l),
		within: s.withinLim.With(l), shadow: s.shadowMode.With(l),
	}
}
