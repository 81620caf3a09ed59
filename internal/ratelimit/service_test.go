package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-mesh/weft/internal/metrics"
)

// clock is a settable clock for fixed-window tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 250_000_000)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func mustRules(t testing.TB, st *Stats, docs ...string) *Rules {
	t.Helper()
	var cs []*Config
	for i, d := range docs {
		c, err := ParseConfig(fmt.Sprintf("test%d.yaml", i), []byte(d))
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	r, err := Compile(cs, st)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newTestService(t testing.TB, c *clock, docs ...string) (*Service, *metrics.Registry) {
	reg := metrics.NewRegistry()
	st := NewStats(reg)
	s := NewService(ServiceOptions{Now: c.Now, Stats: st, Logger: quiet})
	s.SetRules(mustRules(t, st, docs...))
	return s, reg
}

// desc builds a descriptor from "k=v" pairs.
func desc(kvs ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: k, Value: v})
	}
	return d
}

func ask(t testing.TB, s *Service, domain string, ds ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	t.Helper()
	resp, err := s.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// codes summarizes a response: overall code, then each descriptor's.
func summary(r *rlsv3.RateLimitResponse) string {
	var b strings.Builder
	b.WriteString(r.GetOverallCode().String())
	for _, s := range r.GetStatuses() {
		b.WriteByte(' ')
		b.WriteString(s.GetCode().String())
	}
	return b.String()
}

const nested = `
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: remote_address
    value: 10.0.0.1
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: remote_address
    value: 10.0.0.2
  - key: generic_key
    value: checkout
    descriptors:
      - key: x-user
        rate_limit: {unit: second, requests_per_unit: 2}
      - key: x-vip
        rate_limit: {unlimited: true}
  - key: path
    value: /api/*
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: tenant
    value: shared-*
    share_threshold: true
    rate_limit: {unit: second, requests_per_unit: 2}
`

func TestMatching(t *testing.T) {
	tests := []struct {
		name  string
		calls [][]string // each call's single descriptor, asked in order
		want  []string   // each call's overall code
	}{
		{"key-only: each value has its own counter",
			[][]string{{"remote_address=1.1.1.1"}, {"remote_address=1.1.1.1"}, {"remote_address=1.1.1.1"}, {"remote_address=1.1.1.1"}, {"remote_address=2.2.2.2"}},
			[]string{"OK", "OK", "OK", "OVER_LIMIT", "OK"}},
		{"key+value beats key-only",
			[][]string{{"remote_address=10.0.0.1"}, {"remote_address=10.0.0.1"}},
			[]string{"OK", "OVER_LIMIT"}},
		{"a value with no limit is whitelisted",
			[][]string{{"remote_address=10.0.0.2"}, {"remote_address=10.0.0.2"}, {"remote_address=10.0.0.2"}, {"remote_address=10.0.0.2"}, {"remote_address=10.0.0.2"}},
			[]string{"OK", "OK", "OK", "OK", "OK"}},
		{"nested: only at the same depth",
			[][]string{{"generic_key=checkout"}, {"generic_key=checkout"}, {"generic_key=checkout"}, {"generic_key=checkout", "x-user=bob"}, {"generic_key=checkout", "x-user=bob"}, {"generic_key=checkout", "x-user=bob"}, {"generic_key=checkout", "x-user=ann"}},
			[]string{"OK", "OK", "OK", "OK", "OK", "OVER_LIMIT", "OK"}},
		{"deeper than the config: no limit",
			[][]string{{"generic_key=checkout", "x-user=bob", "extra=1"}, {"generic_key=checkout", "x-user=bob", "extra=1"}, {"generic_key=checkout", "x-user=bob", "extra=1"}},
			[]string{"OK", "OK", "OK"}},
		{"unlimited",
			[][]string{{"generic_key=checkout", "x-vip=1"}, {"generic_key=checkout", "x-vip=1"}, {"generic_key=checkout", "x-vip=1"}},
			[]string{"OK", "OK", "OK"}},
		{"unknown key: no limit",
			[][]string{{"nope=1"}, {"nope=1"}},
			[]string{"OK", "OK"}},
		{"wildcard: each value its own counter",
			[][]string{{"path=/api/a"}, {"path=/api/a"}, {"path=/api/b"}, {"path=/web"}, {"path=/web"}},
			[]string{"OK", "OVER_LIMIT", "OK", "OK", "OK"}},
		{"share_threshold: one counter for every value",
			[][]string{{"tenant=shared-a"}, {"tenant=shared-b"}, {"tenant=shared-c"}, {"tenant=other"}},
			[]string{"OK", "OK", "OVER_LIMIT", "OK"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestService(t, newClock(), nested)
			for i, call := range tc.calls {
				got := ask(t, s, "edge", desc(call...)).GetOverallCode().String()
				if got != tc.want[i] {
					t.Fatalf("call %d %v: %s, want %s", i, call, got, tc.want[i])
				}
			}
		})
	}
}

func TestStatusesAndWindows(t *testing.T) {
	c := newClock() // 0.25s into a second, and into a minute
	s, reg := newTestService(t, c, nested)
	// Two descriptors: one over after 2 calls (x-user 2/s), one that is
	// never limited. Any over makes the whole answer OVER_LIMIT.
	d1, d2 := desc("generic_key=checkout", "x-user=bob"), desc("nope=1")
	for i, want := range []string{"OK OK OK", "OK OK OK", "OVER_LIMIT OVER_LIMIT OK"} {
		r := ask(t, s, "edge", d1, d2)
		if got := summary(r); got != want {
			t.Fatalf("call %d: %s, want %s", i, got, want)
		}
		st := r.Statuses[0]
		if l := st.GetCurrentLimit(); l.GetRequestsPerUnit() != 2 || l.GetUnit() != rlsv3.RateLimitResponse_RateLimit_SECOND {
			t.Fatalf("current_limit = %v", l)
		}
		if want := uint32(max(0, 1-i)); st.GetLimitRemaining() != want {
			t.Fatalf("call %d: limit_remaining = %d, want %d", i, st.GetLimitRemaining(), want)
		}
		if got := st.GetDurationUntilReset().AsDuration(); got != 750*time.Millisecond {
			t.Fatalf("duration_until_reset = %v, want 750ms", got)
		}
		if r.Statuses[1].GetCurrentLimit() != nil {
			t.Fatalf("unmatched descriptor has a limit: %v", r.Statuses[1])
		}
	}
	// The next second is a new fixed window.
	c.Add(750 * time.Millisecond)
	if got := summary(ask(t, s, "edge", d1)); got != "OK OK" {
		t.Fatalf("new window: %s", got)
	}
	// Minutes: 3 per minute per address, whatever the seconds.
	a := desc("remote_address=9.9.9.9")
	for i := range 3 {
		if got := summary(ask(t, s, "edge", a)); got != "OK OK" {
			t.Fatalf("minute call %d: %s", i, got)
		}
		c.Add(10 * time.Second)
	}
	r := ask(t, s, "edge", a) // at second 31 of the same minute
	if got := summary(r); got != "OVER_LIMIT OVER_LIMIT" {
		t.Fatalf("4th in the minute: %s", got)
	}
	if got := r.Statuses[0].GetDurationUntilReset().AsDuration(); got != 29*time.Second {
		t.Fatalf("duration_until_reset = %v, want 29s", got)
	}
	c.Add(29 * time.Second)
	if got := summary(ask(t, s, "edge", a)); got != "OK OK" {
		t.Fatalf("next minute: %s", got)
	}

	var b strings.Builder
	reg.WriteText(&b)
	for _, want := range []string{
		`ratelimit_total_hits_total{domain="edge",descriptor="generic_key_checkout.x-user"} 4`,
		`ratelimit_within_limit_total{domain="edge",descriptor="generic_key_checkout.x-user"} 3`,
		`ratelimit_over_limit_total{domain="edge",descriptor="generic_key_checkout.x-user"} 1`,
		`ratelimit_near_limit_total{domain="edge",descriptor="generic_key_checkout.x-user"} 1`,
		`ratelimit_total_hits_total{domain="edge",descriptor="remote_address"} 5`,
		`ratelimit_requests_total{result="over_limit"} 2`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
}

func TestShadowMode(t *testing.T) {
	cfg := `
domain: d
descriptors:
  - key: k
    rate_limit: {unit: second, requests_per_unit: 1}
    shadow_mode: true
  - key: hard
    rate_limit: {unit: second, requests_per_unit: 1}
`
	s, reg := newTestService(t, newClock(), cfg)
	for i := range 3 {
		r := ask(t, s, "d", desc("k=v"))
		if got := summary(r); got != "OK OK" {
			t.Fatalf("shadow call %d: %s", i, got)
		}
		// It still counts.
		if want := uint32(max(0, 0-i)); r.Statuses[0].GetLimitRemaining() != want {
			t.Fatalf("remaining = %d", r.Statuses[0].GetLimitRemaining())
		}
	}
	var b strings.Builder
	reg.WriteText(&b)
	if want := `ratelimit_shadow_mode_total{domain="d",descriptor="k"} 2`; !strings.Contains(b.String(), want) {
		t.Fatalf("metrics lack %q:\n%s", want, b.String())
	}

	// Global shadow mode shadows every rule.
	g := NewService(ServiceOptions{Now: newClock().Now, ShadowMode: true})
	g.SetRules(mustRules(t, nil, cfg))
	ask(t, g, "d", desc("hard=x"))
	if got := summary(ask(t, g, "d", desc("hard=x"))); got != "OK OK" {
		t.Fatalf("global shadow: %s", got)
	}
}

func TestHitsAddend(t *testing.T) {
	cfg := "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 10}\n"
	s, _ := newTestService(t, newClock(), cfg)
	call := func(reqAddend uint32, d *ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitResponse_DescriptorStatus {
		t.Helper()
		r, err := s.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{d}, HitsAddend: reqAddend})
		if err != nil {
			t.Fatal(err)
		}
		return r.Statuses[0]
	}
	steps := []struct {
		name      string
		addend    uint32
		perDesc   *uint64
		refund    bool
		remaining uint32
		code      rlsv3.RateLimitResponse_Code
	}{
		{"request addend 0 counts as 1", 0, nil, false, 9, rlsv3.RateLimitResponse_OK},
		{"request addend 4", 4, nil, false, 5, rlsv3.RateLimitResponse_OK},
		{"descriptor addend 0 only reads", 7, ptr(uint64(0)), false, 5, rlsv3.RateLimitResponse_OK},
		{"descriptor addend overrides the request's", 1, ptr(uint64(5)), false, 0, rlsv3.RateLimitResponse_OK},
		{"one more is over", 0, nil, false, 0, rlsv3.RateLimitResponse_OVER_LIMIT},
		{"refund", 0, ptr(uint64(3)), true, 2, rlsv3.RateLimitResponse_OK},
		{"a big addend is over at once", 3, nil, false, 0, rlsv3.RateLimitResponse_OVER_LIMIT},
	}
	for _, st := range steps {
		d := desc("k=v")
		if st.perDesc != nil {
			d.HitsAddend = wrapperspb.UInt64(*st.perDesc)
			d.IsNegativeHits = st.refund
		}
		got := call(st.addend, d)
		if got.GetCode() != st.code || got.GetLimitRemaining() != st.remaining {
			t.Fatalf("%s: code %v remaining %d, want %v %d", st.name, got.GetCode(), got.GetLimitRemaining(), st.code, st.remaining)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestReplacesAndOverride(t *testing.T) {
	cfg := `
domain: d
descriptors:
  - key: user
    rate_limit: {name: per-user, unit: second, requests_per_unit: 1}
  - key: plan
    value: gold
    rate_limit: {unit: second, requests_per_unit: 3, replaces: [{name: per-user}]}
`
	s, _ := newTestService(t, newClock(), cfg)
	// Alone, the user is limited to 1/s.
	ask(t, s, "d", desc("user=ann"))
	if got := summary(ask(t, s, "d", desc("user=ann"))); got != "OVER_LIMIT OVER_LIMIT" {
		t.Fatalf("per-user: %s", got)
	}
	// With the gold plan's descriptor in the same request, per-user is
	// replaced: not counted, OK, no limit reported.
	for i, want := range []string{"OK OK OK", "OK OK OK", "OK OK OK", "OVER_LIMIT OK OVER_LIMIT"} {
		r := ask(t, s, "d", desc("user=bob"), desc("plan=gold"))
		if got := summary(r); got != want {
			t.Fatalf("gold call %d: %s, want %s", i, got, want)
		}
		if r.Statuses[0].GetCurrentLimit() != nil {
			t.Fatalf("replaced limit reported: %v", r.Statuses[0])
		}
	}
	// A client-supplied limit override applies even without a rule.
	d := desc("anything=x")
	d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: 2 /* MINUTE */}
	ask(t, s, "d", d)
	r := ask(t, s, "d", d)
	if got := summary(r); got != "OVER_LIMIT OVER_LIMIT" || r.Statuses[0].GetCurrentLimit().GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE {
		t.Fatalf("override: %s %v", got, r.Statuses[0])
	}
}

func TestUnlimitedStatus(t *testing.T) {
	s, _ := newTestService(t, newClock(), nested)
	r := ask(t, s, "edge", desc("generic_key=checkout", "x-vip=1"))
	if st := r.Statuses[0]; st.GetCode() != rlsv3.RateLimitResponse_OK || st.GetLimitRemaining() != math.MaxUint32 {
		t.Fatalf("unlimited status: %v", st)
	}
}

func TestRequestErrors(t *testing.T) {
	s, reg := newTestService(t, newClock(), nested)
	tests := []struct {
		name string
		req  *rlsv3.RateLimitRequest
		code codes.Code
		msg  string
	}{
		{"empty domain", &rlsv3.RateLimitRequest{Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("a=b")}}, codes.InvalidArgument, "domain is empty"},
		{"no descriptors", &rlsv3.RateLimitRequest{Domain: "edge"}, codes.InvalidArgument, "no descriptors"},
		{"empty descriptor", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("a=b"), {}}}, codes.InvalidArgument, "descriptor 1 has no entries"},
	}
	for _, tc := range tests {
		_, err := s.ShouldRateLimit(context.Background(), tc.req)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v containing %q", tc.name, err, tc.code, tc.msg)
		}
	}
	// An unknown domain is answered OK, as envoyproxy/ratelimit does, and
	// counted so the mismatch shows.
	if got := summary(ask(t, s, "ambassador", desc("remote_address=1.1.1.1"))); got != "OK OK" {
		t.Fatalf("unknown domain: %s", got)
	}
	var b strings.Builder
	reg.WriteText(&b)
	if want := `ratelimit_domain_not_found_total{domain="ambassador"} 1`; !strings.Contains(b.String(), want) {
		t.Fatalf("metrics lack %q", want)
	}
	// Unless domains are strict.
	strict := NewService(ServiceOptions{StrictDomains: true, Logger: quiet})
	strict.SetRules(mustRules(t, nil, nested))
	_, err := strict.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "ambassador", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("a=b")}})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `unknown domain "ambassador": configured domains are ["edge"]`) {
		t.Fatalf("strict unknown domain: %v", err)
	}
	// No configuration at all is an error.
	empty := NewService(ServiceOptions{})
	_, err = empty.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("a=b")}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("no config: %v", err)
	}
}

func TestWorkshopConfig(t *testing.T) {
	c := newClock()
	s, _ := newTestService(t, c, string(WorkshopConfig()))
	// The descriptor weft's ingress (like Emissary) builds from the
	// workshop's face Mapping: 8 pass per second, the 9th does not.
	d := desc("mykey=myvalue")
	for i := range 8 {
		if got := summary(ask(t, s, WorkshopDomain, d)); got != "OK OK" {
			t.Fatalf("call %d: %s", i, got)
		}
	}
	if got := summary(ask(t, s, WorkshopDomain, d)); got != "OVER_LIMIT OVER_LIMIT" {
		t.Fatalf("9th call: %s", got)
	}
	c.Add(time.Second)
	if got := summary(ask(t, s, WorkshopDomain, d)); got != "OK OK" {
		t.Fatalf("next second: %s", got)
	}
}

func TestMemoryBounded(t *testing.T) {
	c := newClock()
	m := NewMemory(c.Now)
	after := make([]uint64, 1)
	// Many one-second windows of distinct keys: closed windows are dropped
	// as new counters arrive, so the store never holds more than a few
	// shards' worth beyond the live window.
	const windows, perWindow = 100, 2000
	for w := range windows {
		end := c.Now().Truncate(time.Second).Add(time.Second)
		for i := range perWindow {
			if err := m.Add(context.Background(), []Hit{{Key: fmt.Sprintf("k%d_%d", w, i), N: 1, End: end}}, after); err != nil {
				t.Fatal(err)
			}
		}
		c.Add(time.Second)
	}
	// A shard sweeps when it reaches minSweep counters (the live window's
	// ~perWindow/memoryShards stay), so no shard ever holds more.
	if n := m.Len(); n > memoryShards*minSweep {
		t.Fatalf("memory holds %d counters after %d, most in closed windows", n, windows*perWindow)
	}
}

func BenchmarkShouldRateLimit(b *testing.B) {
	s, _ := newTestService(b, newClock(), nested)
	req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("generic_key=checkout", "x-user=bob"), desc("remote_address=1.2.3.4")}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.ShouldRateLimit(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
