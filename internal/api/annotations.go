package api

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// Linkerd annotations Weft honours on Services, HTTPRoutes and GRPCRoutes
// (retries, timeouts), Services (failure accrual) and Namespaces and
// workloads (injection, default policy, opaque ports). Route annotations
// override the Service's as a whole; a ServiceProfile disables them.
const (
	AnnotationRetryHTTP    = "retry.linkerd.io/http"
	AnnotationRetryGRPC    = "retry.linkerd.io/grpc"
	AnnotationRetryLimit   = "retry.linkerd.io/limit"
	AnnotationRetryTimeout = "retry.linkerd.io/timeout"

	AnnotationTimeoutRequest  = "timeout.linkerd.io/request"
	AnnotationTimeoutResponse = "timeout.linkerd.io/response"
	AnnotationTimeoutIdle     = "timeout.linkerd.io/idle"

	AnnotationFailureAccrual            = "balancer.linkerd.io/failure-accrual"
	AnnotationFailureAccrualMaxFailures = "balancer.linkerd.io/failure-accrual-consecutive-max-failures"
	AnnotationFailureAccrualMinPenalty  = "balancer.linkerd.io/failure-accrual-consecutive-min-penalty"
	AnnotationFailureAccrualMaxPenalty  = "balancer.linkerd.io/failure-accrual-consecutive-max-penalty"
	AnnotationFailureAccrualJitterRatio = "balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio"

	AnnotationInject               = "linkerd.io/inject"
	AnnotationDefaultInboundPolicy = "config.linkerd.io/default-inbound-policy"
	AnnotationOpaquePorts          = "config.linkerd.io/opaque-ports"
)

// Defaults Linkerd applies when an annotation is absent.
const (
	DefaultRetryLimit                = 1
	DefaultFailureAccrualMaxFailures = 7
	DefaultFailureAccrualMinPenalty  = time.Second
	DefaultFailureAccrualMaxPenalty  = time.Minute
	DefaultFailureAccrualJitterRatio = 0.5
	maxFailureAccrualJitterRatio     = 100.0
	failureAccrualConsecutive        = "consecutive"
	linkerdDurationFormatExplanation = "want an integer with a unit ms, s, m, h or d, such as 300ms or 5s"
)

// ParseLinkerdDuration parses a duration as Linkerd's annotations write
// them: a non-negative integer followed by one unit, ms, s, m, h or d
// ("300ms", "10s", "1d"). Fractions ("1.5s"), compound values ("1m30s") and
// bare numbers are refused, as Linkerd refuses them.
func ParseLinkerdDuration(s string) (time.Duration, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i == len(s) {
		return 0, fmt.Errorf("invalid duration %q: %s", s, linkerdDurationFormatExplanation)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: number too large", s)
	}
	var unit time.Duration
	switch s[i:] {
	case "ms":
		unit = time.Millisecond
	case "s":
		unit = time.Second
	case "m":
		unit = time.Minute
	case "h":
		unit = time.Hour
	case "d":
		unit = 24 * time.Hour
	default:
		return 0, fmt.Errorf("invalid duration %q: %s", s, linkerdDurationFormatExplanation)
	}
	if n > int64(1<<63-1)/int64(unit) {
		return 0, fmt.Errorf("invalid duration %q: too long", s)
	}
	return time.Duration(n) * unit, nil
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct {
	Min, Max uint32
}

// Contains reports whether status lies in the range.
func (r StatusRange) Contains(status int) bool {
	return status >= int(r.Min) && status <= int(r.Max)
}

// ParseHTTPRetryConditions parses retry.linkerd.io/http: a comma-separated
// list of "5xx" (500-599), "gateway-error" (502-504), a status ("504") or an
// inclusive range ("500-504"), each within 100-599.
func ParseHTTPRetryConditions(s string) ([]StatusRange, error) {
	var out []StatusRange
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		switch strings.ToLower(item) {
		case "5xx":
			out = append(out, StatusRange{500, 599})
			continue
		case "gateway-error":
			out = append(out, StatusRange{502, 504})
			continue
		case "":
			return nil, fmt.Errorf("empty condition in %q: want a comma-separated list such as 5xx,429", s)
		}
		lo, hi, isRange := strings.Cut(item, "-")
		min, err := parseStatus(lo)
		if err != nil {
			return nil, fmt.Errorf("invalid condition %q: %w; want 5xx, gateway-error, a status such as 504 or a range such as 500-504", item, err)
		}
		max := min
		if isRange {
			if max, err = parseStatus(hi); err != nil {
				return nil, fmt.Errorf("invalid condition %q: %w; want 5xx, gateway-error, a status such as 504 or a range such as 500-504", item, err)
			}
			if max < min {
				return nil, fmt.Errorf("invalid range %q: the end is below the start", item)
			}
		}
		out = append(out, StatusRange{min, max})
	}
	return out, nil
}

func parseStatus(s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n < 100 || n > 599 {
		return 0, fmt.Errorf("%q is not an HTTP status (100-599)", s)
	}
	return uint32(n), nil
}

// grpcRetryCodes are the values retry.linkerd.io/grpc accepts.
var grpcRetryCodes = map[string]codes.Code{
	"cancelled":          codes.Canceled,
	"deadline-exceeded":  codes.DeadlineExceeded,
	"internal":           codes.Internal,
	"resource-exhausted": codes.ResourceExhausted,
	"unavailable":        codes.Unavailable,
}

// ParseGRPCRetryConditions parses retry.linkerd.io/grpc: a comma-separated
// list of cancelled, deadline-exceeded, internal, resource-exhausted and
// unavailable (case-insensitive).
func ParseGRPCRetryConditions(s string) ([]codes.Code, error) {
	var out []codes.Code
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		c, ok := grpcRetryCodes[strings.ToLower(item)]
		if !ok {
			return nil, fmt.Errorf("unknown gRPC status %q: want a comma-separated list of cancelled, deadline-exceeded, internal, resource-exhausted, unavailable", item)
		}
		out = append(out, c)
	}
	return out, nil
}

// ParseRetryLimit parses retry.linkerd.io/limit: the maximum number of
// retries of one request, an integer from 0 to 65535 (Linkerd's range).
// Zero means no retries.
func ParseRetryLimit(s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("invalid retry limit %q: want a non-negative integer such as 3 (at most 65535)", s)
	}
	return uint32(n), nil
}

// RetryAnnotations is what the retry.linkerd.io annotations of one object say.
type RetryAnnotations struct {
	// Limit is the maximum number of retries; DefaultRetryLimit if unset.
	Limit uint32
	// HTTP lists the statuses to retry; nil means the annotation is absent
	// and the proxy's default applies (Linkerd retries 5xx).
	HTTP []StatusRange
	// GRPC lists the gRPC statuses to retry.
	GRPC []codes.Code
	// Timeout bounds each attempt; zero means no per-attempt timeout.
	Timeout time.Duration
}

// ParseRetryAnnotations reads the retry.linkerd.io annotations. It returns
// nil when none is set: then the object configures no retries (and, for a
// route, the Service's apply).
func ParseRetryAnnotations(annotations map[string]string) (*RetryAnnotations, error) {
	var rp RetryAnnotations
	set := false
	rp.Limit = DefaultRetryLimit
	if v, ok := annotations[AnnotationRetryHTTP]; ok {
		set = true
		r, err := ParseHTTPRetryConditions(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", AnnotationRetryHTTP, err)
		}
		rp.HTTP = r
	}
	if v, ok := annotations[AnnotationRetryGRPC]; ok {
		set = true
		c, err := ParseGRPCRetryConditions(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", AnnotationRetryGRPC, err)
		}
		rp.GRPC = c
	}
	if v, ok := annotations[AnnotationRetryLimit]; ok {
		set = true
		n, err := ParseRetryLimit(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", AnnotationRetryLimit, err)
		}
		rp.Limit = n
	}
	if v, ok := annotations[AnnotationRetryTimeout]; ok {
		set = true
		d, err := ParseLinkerdDuration(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", AnnotationRetryTimeout, err)
		}
		rp.Timeout = d
	}
	if !set {
		return nil, nil
	}
	return &rp, nil
}

// TimeoutAnnotations is what the timeout.linkerd.io annotations of one object say;
// zero means unset.
type TimeoutAnnotations struct {
	Request  time.Duration // whole request and response, all retries included
	Response time.Duration // from the end of the request to the end of the response
	Idle     time.Duration // no data in either direction
}

// ParseTimeoutAnnotations reads the timeout.linkerd.io annotations.
func ParseTimeoutAnnotations(annotations map[string]string) (TimeoutAnnotations, error) {
	var t TimeoutAnnotations
	for _, a := range []struct {
		key string
		dst *time.Duration
	}{{AnnotationTimeoutRequest, &t.Request}, {AnnotationTimeoutResponse, &t.Response}, {AnnotationTimeoutIdle, &t.Idle}} {
		v, ok := annotations[a.key]
		if !ok {
			continue
		}
		d, err := ParseLinkerdDuration(v)
		if err != nil {
			return TimeoutAnnotations{}, fmt.Errorf("%s: %w", a.key, err)
		}
		*a.dst = d
	}
	return t, nil
}

// FailureAccrual is the consecutive-failures circuit breaker a Service's
// balancer.linkerd.io annotations configure.
type FailureAccrual struct {
	// MaxFailures trips an endpoint after this many consecutive failures.
	MaxFailures uint32
	// MinPenalty and MaxPenalty bound the exponential backoff before a
	// tripped endpoint is probed again.
	MinPenalty, MaxPenalty time.Duration
	// JitterRatio randomizes the backoff.
	JitterRatio float64
}

// ParseFailureAccrual reads the balancer.linkerd.io/failure-accrual
// annotations. It returns nil when failure accrual is not enabled
// (balancer.linkerd.io/failure-accrual absent); unset parameters take
// Linkerd's defaults (7 failures, 1s, 60s, 0.5).
func ParseFailureAccrual(annotations map[string]string) (*FailureAccrual, error) {
	mode, ok := annotations[AnnotationFailureAccrual]
	if !ok {
		return nil, nil
	}
	if mode != failureAccrualConsecutive {
		return nil, fmt.Errorf("%s: unknown mode %q; use %q", AnnotationFailureAccrual, mode, failureAccrualConsecutive)
	}
	fa := &FailureAccrual{
		MaxFailures: DefaultFailureAccrualMaxFailures,
		MinPenalty:  DefaultFailureAccrualMinPenalty,
		MaxPenalty:  DefaultFailureAccrualMaxPenalty,
		JitterRatio: DefaultFailureAccrualJitterRatio,
	}
	if v, ok := annotations[AnnotationFailureAccrualMaxFailures]; ok {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%s: invalid %q: want a positive integer such as 7", AnnotationFailureAccrualMaxFailures, v)
		}
		fa.MaxFailures = uint32(n)
	}
	if v, ok := annotations[AnnotationFailureAccrualMinPenalty]; ok {
		d, err := ParseLinkerdDuration(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", AnnotationFailureAccrualMinPenalty, err)
		}
		fa.MinPenalty = d
	}
	if v, ok := annotations[AnnotationFailureAccrualMaxPenalty]; ok {
		d, err := ParseLinkerdDuration(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", AnnotationFailureAccrualMaxPenalty, err)
		}
		if d == 0 {
			return nil, fmt.Errorf("%s: must be greater than zero", AnnotationFailureAccrualMaxPenalty)
		}
		fa.MaxPenalty = d
	}
	if fa.MaxPenalty < fa.MinPenalty {
		return nil, fmt.Errorf("%s: %s is below the min penalty %s", AnnotationFailureAccrualMaxPenalty, fa.MaxPenalty, fa.MinPenalty)
	}
	if v, ok := annotations[AnnotationFailureAccrualJitterRatio]; ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f < 0 || f > maxFailureAccrualJitterRatio || f != f {
			return nil, fmt.Errorf("%s: invalid %q: want a number from 0 to %g, such as 0.5", AnnotationFailureAccrualJitterRatio, v, maxFailureAccrualJitterRatio)
		}
		fa.JitterRatio = f
	}
	return fa, nil
}

// ParseOpaquePorts parses config.linkerd.io/opaque-ports: a comma-separated
// list of ports, inclusive ranges and, on workloads, container port names
// ("25,3306,4000-4100,mysql"). Numbers and ranges come back as ranges
// (single ports have Min == Max), names as names for the caller to resolve
// against the container ports.
func ParseOpaquePorts(s string) (ranges []PortRange, names []string, err error) {
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if item[0] < '0' || item[0] > '9' {
			if msg := portNameProblem(item); msg != "" {
				return nil, nil, fmt.Errorf("invalid port %q in %q: want ports, ranges and port names such as 25,3306,4000-4100,mysql", item, s)
			}
			names = append(names, item)
			continue
		}
		lo, hi, isRange := strings.Cut(item, "-")
		min, err := parsePortNumber(lo)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid port %q in %q: want ports, ranges and port names such as 25,3306,4000-4100,mysql", item, s)
		}
		max := min
		if isRange {
			if max, err = parsePortNumber(hi); err != nil || max < min {
				return nil, nil, fmt.Errorf("invalid port range %q in %q", item, s)
			}
		}
		ranges = append(ranges, PortRange{min, max})
	}
	return ranges, names, nil
}

// PortRange is an inclusive range of port numbers.
type PortRange struct {
	Min, Max uint16
}

// Contains reports whether port lies in the range.
func (r PortRange) Contains(port int) bool { return port >= int(r.Min) && port <= int(r.Max) }

func parsePortNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return uint16(n), nil
}

// validateMeshAnnotations checks the Linkerd annotations of an object's
// metadata. routeOrService enables the retry and timeout annotations;
// service enables failure accrual.
func validateMeshAnnotations(path string, ann map[string]string, routeOrService, service bool, errs *FieldErrors) {
	at := func(key string) string { return path + "[" + key + "]" }
	for _, key := range sortedKeys(ann) {
		v := ann[key]
		var err error
		switch key {
		case AnnotationRetryHTTP:
			_, err = ParseHTTPRetryConditions(v)
		case AnnotationRetryGRPC:
			_, err = ParseGRPCRetryConditions(v)
		case AnnotationRetryLimit:
			_, err = ParseRetryLimit(v)
		case AnnotationRetryTimeout, AnnotationTimeoutRequest, AnnotationTimeoutResponse, AnnotationTimeoutIdle:
			_, err = ParseLinkerdDuration(v)
		case AnnotationFailureAccrual, AnnotationFailureAccrualMaxFailures, AnnotationFailureAccrualMinPenalty,
			AnnotationFailureAccrualMaxPenalty, AnnotationFailureAccrualJitterRatio:
			if !service {
				errs.Add(at(key), "only takes effect on a Service")
				continue
			}
			continue // checked together below
		case AnnotationInject:
			switch v {
			case "enabled", "disabled", "ingress":
			default:
				errs.Add(at(key), "unknown value %q; use enabled, disabled or ingress", v)
			}
			continue
		case AnnotationDefaultInboundPolicy:
			if !contains(DefaultPolicies, v) {
				errs.Add(at(key), "unknown policy %q; use one of %s", v, strings.Join(DefaultPolicies, ", "))
			}
			continue
		case AnnotationOpaquePorts:
			_, _, err = ParseOpaquePorts(v)
		default:
			continue
		}
		if err != nil {
			errs.Add(at(key), "%v", err)
		} else if !routeOrService && (strings.HasPrefix(key, "retry.linkerd.io/") || strings.HasPrefix(key, "timeout.linkerd.io/")) {
			errs.Add(at(key), "only takes effect on a Service, HTTPRoute or GRPCRoute")
		}
	}
	if !service {
		return
	}
	if _, err := ParseFailureAccrual(ann); err != nil {
		key, reason, _ := strings.Cut(err.Error(), ": ")
		errs.Add(at(key), "%s", reason)
	} else if _, on := ann[AnnotationFailureAccrual]; !on {
		for _, k := range []string{AnnotationFailureAccrualMaxFailures, AnnotationFailureAccrualMinPenalty, AnnotationFailureAccrualMaxPenalty, AnnotationFailureAccrualJitterRatio} {
			if _, ok := ann[k]; ok {
				errs.Add(at(k), "has no effect unless %s is %q", AnnotationFailureAccrual, failureAccrualConsecutive)
			}
		}
	}
}
