package ratelimit

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseConfig(t *testing.T) {
	sec, min := units["second"], units["minute"]
	tests := []struct {
		name string
		yaml string
		want *Config
		err  string // substring; "" means success
	}{
		{
			name: "reference example",
			yaml: `
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 100}
  - key: generic_key
    value: checkout
    descriptors:
      - key: x-user
        rate_limit: {unit: SECOND, requests_per_unit: 5}
        shadow_mode: true
`,
			want: &Config{Source: "t.yaml", Domain: "edge", Descriptors: []DescriptorConfig{
				{Key: "remote_address", RateLimit: &RateLimitConfig{Unit: min, RequestsPerUnit: 100}},
				{Key: "generic_key", Value: "checkout", Descriptors: []DescriptorConfig{
					{Key: "x-user", RateLimit: &RateLimitConfig{Unit: sec, RequestsPerUnit: 5}, ShadowMode: true},
				}},
			}},
		},
		{
			name: "every field",
			yaml: `
domain: d
descriptors:
  - key: k
    value: "v*"
    share_threshold: true
    detailed_metric: true
    value_to_metric: true
    quota_mode: false
    rate_limit:
      name: a
      unit: week
      requests_per_unit: 0
      replaces: [{name: b}]
  - key: u
    rate_limit: {unlimited: true}
  - key: w
`,
			want: &Config{Source: "t.yaml", Domain: "d", Descriptors: []DescriptorConfig{
				{Key: "k", Value: "v*", ShareThreshold: true, DetailedMetric: true, ValueToMetric: true,
					RateLimit: &RateLimitConfig{Name: "a", Unit: units["week"], Replaces: []string{"b"}}},
				{Key: "u", RateLimit: &RateLimitConfig{Unlimited: true}},
				{Key: "w"},
			}},
		},
		{name: "workshop", yaml: workshopConfig, want: &Config{Source: "t.yaml", Domain: "emissary", Descriptors: []DescriptorConfig{
			{Key: "mykey", Value: "myvalue", RateLimit: &RateLimitConfig{Name: "workshop-face", Unit: sec, RequestsPerUnit: 8}},
		}}},
		{name: "domain only", yaml: "domain: d\n", want: &Config{Source: "t.yaml", Domain: "d"}},

		{name: "empty", yaml: "", err: "t.yaml: the file is empty"},
		{name: "not yaml", yaml: "domain: [", err: "not valid YAML"},
		{name: "two documents", yaml: "domain: a\n---\ndomain: b\n", err: "t.yaml:2: more than one YAML document"},
		{name: "top is a list", yaml: "- a\n", err: "must be a mapping, got a list"},
		{name: "no domain", yaml: "descriptors: []\n", err: "domain: required"},
		{name: "domain not a string", yaml: "domain: 5\n", err: `domain: must be a string, got "5"`},
		{name: "unknown top key", yaml: "domain: d\ndescriptor: []\n", err: "t.yaml:2: descriptor: unknown key (known keys here: descriptors, domain)"},
		{name: "unknown descriptor key", yaml: "domain: d\ndescriptors:\n  - key: k\n    vaule: v\n", err: "t.yaml:4: descriptors[0].vaule: unknown key"},
		{name: "unknown rate_limit key", yaml: "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: k\n        rate_limit: {uint: second, requests_per_unit: 1}\n", err: "descriptors[0].descriptors[0].rate_limit.uint: unknown key"},
		{name: "missing key", yaml: "domain: d\ndescriptors:\n  - value: v\n", err: "descriptors[0].key: required"},
		{name: "descriptors not a list", yaml: "domain: d\ndescriptors: {key: k}\n", err: "descriptors: must be a list"},
		{name: "bad unit", yaml: "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n", err: `rate_limit.unit: unknown unit "fortnight"`},
		{name: "no unit", yaml: "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {requests_per_unit: 1}\n", err: "rate_limit.unit: required"},
		{name: "no requests_per_unit", yaml: "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second}\n", err: "rate_limit.requests_per_unit: required"},
		{name: "negative requests", yaml: "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: -1}\n", err: "requests_per_unit: must be a whole number"},
		{name: "too many requests", yaml: "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 4294967296}\n", err: "requests_per_unit: must be a whole number"},
		{name: "quoted number", yaml: "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: \"5\"}\n", err: "requests_per_unit: must be a whole number"},
		{name: "unlimited with unit", yaml: "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unlimited: true, unit: second}\n", err: "unlimited: true takes no unit"},
		{name: "shadow not bool", yaml: "domain: d\ndescriptors:\n  - key: k\n    shadow_mode: yes please\n", err: "shadow_mode: must be true or false"},
		{name: "duplicate key", yaml: "domain: d\ndomain: e\n", err: "domain: given twice"},
		{name: "duplicate descriptor", yaml: "domain: d\ndescriptors:\n  - key: k\n    value: v\n  - key: k\n    value: v\n", err: "descriptors[1]: duplicate descriptor k=v (same key and value as descriptors[0])"},
		{name: "wildcard in the middle", yaml: "domain: d\ndescriptors:\n  - key: k\n    value: a*b\n", err: "a wildcard '*' may only end the value"},
		{name: "share without wildcard", yaml: "domain: d\ndescriptors:\n  - key: k\n    value: a\n    share_threshold: true\n", err: "share_threshold: needs a wildcard value"},
		{name: "replaces without name", yaml: "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{}]}\n", err: "replaces[0].name: required"},
		{name: "alias", yaml: "domain: d\nx: &a {key: k}\ndescriptors: [*a]\n", err: "x: unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig("t.yaml", []byte(tc.yaml))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Source != "t.yaml" {
					t.Fatalf("error %v is not a *ConfigError naming the source", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("config (-want +got):\n%s", d)
			}
		})
	}
}

func TestCompileDuplicateDomain(t *testing.T) {
	a, _ := ParseConfig("a.yaml", []byte("domain: d\n"))
	b, _ := ParseConfig("b.yaml", []byte("domain: d\n"))
	_, err := Compile([]*Config{a, b}, nil)
	if err == nil || !strings.Contains(err.Error(), `b.yaml: domain "d" is already configured in a.yaml`) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		workshopConfig,
		"domain: d\ndescriptors:\n  - key: k\n    value: v*\n    share_threshold: true\n    rate_limit: {unit: hour, requests_per_unit: 3, name: n, replaces: [{name: m}]}\n",
		"domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        rate_limit: {unlimited: true}\n",
		"domain: [",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("fuzz.yaml", data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ConfigError", err)
			}
			return
		}
		if c.Domain == "" {
			t.Fatal("accepted a config without a domain")
		}
		// Whatever parses must compile and match without panicking.
		r, err := Compile([]*Config{c}, nil)
		if err != nil {
			t.Fatalf("compile: %v", err)
		}
		// A path of exact values always reaches its own node: exact
		// matches come first and are unique per level.
		var walk func(ds []DescriptorConfig, es []Entry)
		walk = func(ds []DescriptorConfig, es []Entry) {
			for _, d := range ds {
				if d.Value == "" || strings.HasSuffix(d.Value, "*") {
					continue
				}
				next := append(es[:len(es):len(es)], Entry{d.Key, d.Value})
				rl, _ := r.match(c.Domain, next)
				if (rl != nil) != (d.RateLimit != nil) || rl != nil && (rl.requestsPerUnit != d.RateLimit.RequestsPerUnit || rl.name != d.RateLimit.Name || rl.unlimited != d.RateLimit.Unlimited) {
					t.Fatalf("descriptor %v matched %+v, want the rule %+v", next, rl, d.RateLimit)
				}
				walk(d.Descriptors, next)
			}
		}
		walk(c.Descriptors, nil)
	})
}
