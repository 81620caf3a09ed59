package api

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
)

func TestParseLinkerdDuration(t *testing.T) {
	good := map[string]time.Duration{
		"0s":    0,
		"300ms": 300 * time.Millisecond,
		"10s":   10 * time.Second,
		"5m":    5 * time.Minute,
		"2h":    2 * time.Hour,
		"1d":    24 * time.Hour,
		"007s":  7 * time.Second,
	}
	for in, want := range good {
		if got, err := ParseLinkerdDuration(in); err != nil || got != want {
			t.Errorf("ParseLinkerdDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10", "s", "1.5s", "1m30s", "-1s", "10us", "10 s", " 10s", "10S", "99999999999999999999s", "200000d"} {
		if d, err := ParseLinkerdDuration(in); err == nil {
			t.Errorf("ParseLinkerdDuration(%q) = %v, want an error", in, d)
		}
	}
}

func TestParseHTTPRetryConditions(t *testing.T) {
	tests := []struct {
		in   string
		want []StatusRange
		err  string
	}{
		{in: "5xx", want: []StatusRange{{500, 599}}},
		{in: "gateway-error", want: []StatusRange{{502, 504}}},
		{in: "504", want: []StatusRange{{504, 504}}},
		{in: "500-504", want: []StatusRange{{500, 504}}},
		{in: "5xx, 429 ,gateway-error", want: []StatusRange{{500, 599}, {429, 429}, {502, 504}}},
		{in: "5XX", want: []StatusRange{{500, 599}}},
		{in: "", err: "empty condition"},
		{in: "5xx,", err: "empty condition"},
		{in: "4xx", err: "want 5xx, gateway-error"},
		{in: "99", err: "not an HTTP status"},
		{in: "600", err: "not an HTTP status"},
		{in: "504-500", err: "end is below the start"},
		{in: "500-", err: "not an HTTP status"},
		{in: "500-504-510", err: "not an HTTP status"},
	}
	for _, tc := range tests {
		got, err := ParseHTTPRetryConditions(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseHTTPRetryConditions(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseHTTPRetryConditions(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseHTTPRetryConditions(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	if r := (StatusRange{502, 504}); !r.Contains(503) || r.Contains(501) || r.Contains(505) {
		t.Errorf("StatusRange.Contains is wrong for %v", r)
	}
}

func TestParseGRPCRetryConditions(t *testing.T) {
	got, err := ParseGRPCRetryConditions("cancelled, deadline-exceeded,Internal,resource-exhausted,unavailable")
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.Canceled, codes.DeadlineExceeded, codes.Internal, codes.ResourceExhausted, codes.Unavailable}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, in := range []string{"", "canceled", "not-found", "unavailable,,internal"} {
		if _, err := ParseGRPCRetryConditions(in); err == nil {
			t.Errorf("ParseGRPCRetryConditions(%q) succeeded, want an error", in)
		}
	}
}

func TestParseRetryAnnotations(t *testing.T) {
	rp, err := ParseRetryAnnotations(map[string]string{"app": "x"})
	if err != nil || rp != nil {
		t.Fatalf("no retry annotations: got %+v, %v; want nil, nil", rp, err)
	}
	rp, err = ParseRetryAnnotations(map[string]string{
		AnnotationRetryHTTP:    "gateway-error",
		AnnotationRetryTimeout: "250ms",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &RetryAnnotations{Limit: DefaultRetryLimit, HTTP: []StatusRange{{502, 504}}, Timeout: 250 * time.Millisecond}
	if diff := cmp.Diff(want, rp); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	rp, err = ParseRetryAnnotations(map[string]string{AnnotationRetryLimit: "0", AnnotationRetryGRPC: "unavailable"})
	if err != nil || rp.Limit != 0 || len(rp.GRPC) != 1 {
		t.Errorf("limit 0: got %+v, %v", rp, err)
	}
	if _, err := ParseRetryAnnotations(map[string]string{AnnotationRetryLimit: "3.5"}); err == nil || !strings.HasPrefix(err.Error(), AnnotationRetryLimit+": ") {
		t.Errorf("bad limit error = %v, want one prefixed with the annotation", err)
	}
}

func TestParseTimeoutAnnotations(t *testing.T) {
	got, err := ParseTimeoutAnnotations(map[string]string{AnnotationTimeoutRequest: "10s", AnnotationTimeoutIdle: "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (TimeoutAnnotations{Request: 10 * time.Second, Idle: time.Minute}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := ParseTimeoutAnnotations(map[string]string{AnnotationTimeoutResponse: "1.5s"}); err == nil || !strings.Contains(err.Error(), AnnotationTimeoutResponse) {
		t.Errorf("fractional timeout error = %v", err)
	}
}

func TestParseFailureAccrual(t *testing.T) {
	fa, err := ParseFailureAccrual(nil)
	if err != nil || fa != nil {
		t.Fatalf("not enabled: got %+v, %v", fa, err)
	}
	fa, err = ParseFailureAccrual(map[string]string{AnnotationFailureAccrual: "consecutive"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (FailureAccrual{MaxFailures: 7, MinPenalty: time.Second, MaxPenalty: time.Minute, JitterRatio: 0.5}); *fa != want {
		t.Errorf("defaults = %+v, want %+v", *fa, want)
	}
	fa, err = ParseFailureAccrual(map[string]string{
		AnnotationFailureAccrual:            "consecutive",
		AnnotationFailureAccrualMaxFailures: "3",
		AnnotationFailureAccrualMinPenalty:  "100ms",
		AnnotationFailureAccrualMaxPenalty:  "10s",
		AnnotationFailureAccrualJitterRatio: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := (FailureAccrual{MaxFailures: 3, MinPenalty: 100 * time.Millisecond, MaxPenalty: 10 * time.Second}); *fa != want {
		t.Errorf("got %+v, want %+v", *fa, want)
	}
	for name, ann := range map[string]map[string]string{
		"mode":          {AnnotationFailureAccrual: "unified"},
		"zero failures": {AnnotationFailureAccrual: "consecutive", AnnotationFailureAccrualMaxFailures: "0"},
		"min no unit":   {AnnotationFailureAccrual: "consecutive", AnnotationFailureAccrualMinPenalty: "1"},
		"max below min": {AnnotationFailureAccrual: "consecutive", AnnotationFailureAccrualMaxPenalty: "500ms"},
		"jitter NaN":    {AnnotationFailureAccrual: "consecutive", AnnotationFailureAccrualJitterRatio: "NaN"},
		"jitter big":    {AnnotationFailureAccrual: "consecutive", AnnotationFailureAccrualJitterRatio: "101"},
	} {
		if _, err := ParseFailureAccrual(ann); err == nil {
			t.Errorf("%s: ParseFailureAccrual(%v) succeeded, want an error", name, ann)
		}
	}
}

func TestParseOpaquePorts(t *testing.T) {
	got, names, err := ParseOpaquePorts("25, 3306,4000-4100,mysql,")
	if err != nil {
		t.Fatal(err)
	}
	want := []PortRange{{25, 25}, {3306, 3306}, {4000, 4100}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"mysql"}, names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if !got[2].Contains(4050) || got[2].Contains(4101) {
		t.Errorf("PortRange.Contains is wrong for %v", got[2])
	}
	for _, in := range []string{"0", "65536", "Not_A_Name", "100-50", "1-2-3", "-5"} {
		if _, _, err := ParseOpaquePorts(in); err == nil {
			t.Errorf("ParseOpaquePorts(%q) succeeded, want an error", in)
		}
	}
}

func TestParseNetwork(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.0/8": "10.0.0.0/8", "10.1.2.3/8": "10.0.0.0/8", "192.168.1.7": "192.168.1.7/32", "fd00::/8": "fd00::/8", "::1": "::1/128"} {
		got, err := ParseNetwork(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseNetwork(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/33", "10.0.0", "example.com"} {
		if _, err := ParseNetwork(in); err == nil {
			t.Errorf("ParseNetwork(%q) succeeded, want an error", in)
		}
	}
}

func FuzzParseLinkerdDuration(f *testing.F) {
	for _, s := range []string{"300ms", "10s", "1d", "1.5s", "", "99999999999999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseLinkerdDuration(s)
		if err == nil && d < 0 {
			t.Fatalf("ParseLinkerdDuration(%q) = %v, negative", s, d)
		}
	})
}

func FuzzParseHTTPRetryConditions(f *testing.F) {
	for _, s := range []string{"5xx", "gateway-error,504", "500-504", "", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseHTTPRetryConditions(s)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Min < 100 || r.Max > 599 || r.Min > r.Max {
				t.Fatalf("ParseHTTPRetryConditions(%q) gave bad range %v", s, r)
			}
		}
	})
}

// FuzzValueParsers runs every value parser on the same input: none may
// panic, and what they accept must satisfy their documented invariants.
func FuzzValueParsers(f *testing.F) {
	for _, s := range []string{"25,3306,4000-4100,mysql", "unavailable,internal", "1h30m", "10.0.0.0/8", "fd00::1", "3", "0.5", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if rs, names, err := ParseOpaquePorts(s); err == nil {
			for _, r := range rs {
				if r.Min == 0 || r.Min > r.Max {
					t.Fatalf("ParseOpaquePorts(%q) gave bad range %v", s, r)
				}
			}
			for _, n := range names {
				if portNameProblem(n) != "" {
					t.Fatalf("ParseOpaquePorts(%q) gave bad name %q", s, n)
				}
			}
		}
		if cs, err := ParseGRPCRetryConditions(s); err == nil && len(cs) == 0 {
			t.Fatalf("ParseGRPCRetryConditions(%q) accepted no conditions", s)
		}
		if d, err := ParseGatewayDuration(s); err == nil && d < 0 {
			t.Fatalf("ParseGatewayDuration(%q) = %v", s, d)
		}
		if d, err := ParseDuration(s); err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %v", s, d)
		}
		if p, err := ParseNetwork(s); err == nil && (!p.IsValid() || p != p.Masked()) {
			t.Fatalf("ParseNetwork(%q) = %v, not a valid masked prefix", s, p)
		}
		for _, key := range []string{AnnotationFailureAccrualMaxFailures, AnnotationFailureAccrualMinPenalty, AnnotationFailureAccrualMaxPenalty, AnnotationFailureAccrualJitterRatio} {
			fa, err := ParseFailureAccrual(map[string]string{AnnotationFailureAccrual: "consecutive", key: s})
			if err == nil && (fa.MaxFailures == 0 || fa.MaxPenalty < fa.MinPenalty || fa.JitterRatio < 0 || fa.JitterRatio > 100) {
				t.Fatalf("ParseFailureAccrual(%s=%q) = %+v", key, s, *fa)
			}
		}
	})
}
