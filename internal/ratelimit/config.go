// Package ratelimit is weft's rate limit service and its client. The server
// speaks Envoy's rate limit protocol v3
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) and reads
// envoyproxy/ratelimit's YAML configuration, so configurations and clients
// written for that service work unchanged. Counters live in memory (one
// replica) or in Redis (several replicas sharing one limit).
package ratelimit

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.yaml.in/yaml/v3"
)

// Unit is a rate limit's time unit, the protocol's enum.
type Unit = rlsv3.RateLimitResponse_RateLimit_Unit

// units maps the YAML spelling (any case) to the protocol's unit.
var units = map[string]Unit{
	"second": rlsv3.RateLimitResponse_RateLimit_SECOND,
	"minute": rlsv3.RateLimitResponse_RateLimit_MINUTE,
	"hour":   rlsv3.RateLimitResponse_RateLimit_HOUR,
	"day":    rlsv3.RateLimitResponse_RateLimit_DAY,
	"week":   rlsv3.RateLimitResponse_RateLimit_WEEK,
	"month":  rlsv3.RateLimitResponse_RateLimit_MONTH,
	"year":   rlsv3.RateLimitResponse_RateLimit_YEAR,
}

// unitSeconds is the length of a unit's fixed window, as envoyproxy/ratelimit
// counts them (a month is 30 days, a year 365).
func unitSeconds(u Unit) int64 {
	switch u {
	case rlsv3.RateLimitResponse_RateLimit_SECOND:
		return 1
	case rlsv3.RateLimitResponse_RateLimit_MINUTE:
		return 60
	case rlsv3.RateLimitResponse_RateLimit_HOUR:
		return 3600
	case rlsv3.RateLimitResponse_RateLimit_DAY:
		return 86400
	case rlsv3.RateLimitResponse_RateLimit_WEEK:
		return 7 * 86400
	case rlsv3.RateLimitResponse_RateLimit_MONTH:
		return 30 * 86400
	case rlsv3.RateLimitResponse_RateLimit_YEAR:
		return 365 * 86400
	}
	return 0
}

// Config is one domain's configuration: one YAML file.
type Config struct {
	// Source names where it came from (a file path), for errors.
	Source      string
	Domain      string
	Descriptors []DescriptorConfig
}

// DescriptorConfig is one node of the descriptor tree.
type DescriptorConfig struct {
	Key string
	// Value, when set, matches only that value ("prefix*" matches a prefix);
	// when empty every value of Key matches and gets its own counter.
	Value     string
	RateLimit *RateLimitConfig
	// ShadowMode counts but always answers OK.
	ShadowMode bool
	// DetailedMetric labels the metrics with the request's values.
	DetailedMetric bool
	// ValueToMetric puts the request's value in the metric's descriptor
	// label even when the node has no value.
	ValueToMetric bool
	// ShareThreshold makes every value matched by a wildcard share one
	// counter.
	ShareThreshold bool
	// QuotaMode is accepted for compatibility; weft treats it as a normal
	// limit.
	QuotaMode   bool
	Descriptors []DescriptorConfig
}

// RateLimitConfig is a node's rate_limit.
type RateLimitConfig struct {
	Unit            Unit
	RequestsPerUnit uint32
	Unlimited       bool
	Name            string
	Replaces        []string
}

// ConfigError is a problem in a configuration file: where and what.
type ConfigError struct {
	Source string
	Line   int    // 0 when unknown
	Path   string // e.g. descriptors[0].rate_limit.unit; "" for the document
	Reason string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("ratelimit: config ")
	b.WriteString(e.Source)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	if e.Path != "" {
		b.WriteString(": ")
		b.WriteString(e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// ParseConfig decodes one envoyproxy/ratelimit YAML configuration strictly:
// unknown keys, wrong types, bad units and contradictory limits are refused
// with the source, line and path of the problem.
func ParseConfig(source string, data []byte) (*Config, error) {
	p := &parser{source: source}
	var doc yaml.Node
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			return nil, p.errf(nil, "", "the file is empty: it needs a domain and descriptors")
		}
		return nil, p.errf(nil, "", "not valid YAML: %v", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, p.errf(&extra, "", "more than one YAML document: put each domain in its own file")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	c := &Config{Source: source}
	err := p.mapping(root, "", map[string]func(*yaml.Node, string) error{
		"domain": func(n *yaml.Node, path string) error { return p.str(n, path, &c.Domain) },
		"descriptors": func(n *yaml.Node, path string) error {
			return p.descriptors(n, path, &c.Descriptors)
		},
	})
	if err != nil {
		return nil, err
	}
	if c.Domain == "" {
		return nil, p.errf(root, "domain", "required: the domain clients send (e.g. domain: emissary)")
	}
	if err := validateTree(p, root, "descriptors", c.Descriptors); err != nil {
		return nil, err
	}
	return c, nil
}

type parser struct{ source string }

func (p *parser) errf(n *yaml.Node, path, format string, args ...any) error {
	e := &ConfigError{Source: p.source, Path: path, Reason: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line = n.Line
	}
	return e
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping walks a YAML mapping, refusing keys not in fields and duplicates.
func (p *parser) mapping(n *yaml.Node, path string, fields map[string]func(*yaml.Node, string) error) error {
	if n.Kind == yaml.AliasNode {
		return p.errf(n, path, "YAML aliases are not supported")
	}
	if n.Kind != yaml.MappingNode {
		return p.errf(n, path, "must be a mapping, got %s", kindName(n))
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return p.errf(k, path, "keys must be strings")
		}
		f, ok := fields[k.Value]
		if !ok {
			known := make([]string, 0, len(fields))
			for name := range fields {
				known = append(known, name)
			}
			slices.Sort(known)
			return p.errf(k, join(path, k.Value), "unknown key (known keys here: %s)", strings.Join(known, ", "))
		}
		if seen[k.Value] {
			return p.errf(k, join(path, k.Value), "given twice")
		}
		seen[k.Value] = true
		if err := f(v, join(path, k.Value)); err != nil {
			return err
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

func (p *parser) scalar(n *yaml.Node, path, want string) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return p.errf(n, path, "must be %s, got %s", want, kindName(n))
	}
	return nil
}

func (p *parser) str(n *yaml.Node, path string, out *string) error {
	if err := p.scalar(n, path, "a string"); err != nil {
		return err
	}
	if n.Tag != "!!str" {
		return p.errf(n, path, "must be a string, got %s (quote it)", kindName(n))
	}
	*out = n.Value
	return nil
}

func (p *parser) boolean(n *yaml.Node, path string, out *bool) error {
	if err := p.scalar(n, path, "true or false"); err != nil {
		return err
	}
	if n.Tag != "!!bool" {
		return p.errf(n, path, "must be true or false, got %s", kindName(n))
	}
	return n.Decode(out)
}

func (p *parser) descriptors(n *yaml.Node, path string, out *[]DescriptorConfig) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return p.errf(n, path, "must be a list of descriptors, got %s", kindName(n))
	}
	*out = make([]DescriptorConfig, len(n.Content))
	for i, item := range n.Content {
		if err := p.descriptor(item, fmt.Sprintf("%s[%d]", path, i), &(*out)[i]); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) descriptor(n *yaml.Node, path string, d *DescriptorConfig) error {
	err := p.mapping(n, path, map[string]func(*yaml.Node, string) error{
		"key":   func(n *yaml.Node, path string) error { return p.str(n, path, &d.Key) },
		"value": func(n *yaml.Node, path string) error { return p.str(n, path, &d.Value) },
		"rate_limit": func(n *yaml.Node, path string) error {
			d.RateLimit = &RateLimitConfig{}
			return p.rateLimit(n, path, d.RateLimit)
		},
		"shadow_mode":     func(n *yaml.Node, path string) error { return p.boolean(n, path, &d.ShadowMode) },
		"detailed_metric": func(n *yaml.Node, path string) error { return p.boolean(n, path, &d.DetailedMetric) },
		"value_to_metric": func(n *yaml.Node, path string) error { return p.boolean(n, path, &d.ValueToMetric) },
		"share_threshold": func(n *yaml.Node, path string) error { return p.boolean(n, path, &d.ShareThreshold) },
		"quota_mode":      func(n *yaml.Node, path string) error { return p.boolean(n, path, &d.QuotaMode) },
		"descriptors": func(n *yaml.Node, path string) error {
			return p.descriptors(n, path, &d.Descriptors)
		},
	})
	if err != nil {
		return err
	}
	if d.Key == "" {
		return p.errf(n, join(path, "key"), "required: the descriptor entry's key")
	}
	return nil
}

func (p *parser) rateLimit(n *yaml.Node, path string, rl *RateLimitConfig) error {
	var unitSet, rpuSet bool
	err := p.mapping(n, path, map[string]func(*yaml.Node, string) error{
		"unit": func(n *yaml.Node, path string) error {
			var s string
			if err := p.str(n, path, &s); err != nil {
				return err
			}
			u, ok := units[strings.ToLower(s)]
			if !ok {
				return p.errf(n, path, "unknown unit %q: use second, minute, hour, day, week, month or year", s)
			}
			rl.Unit, unitSet = u, true
			return nil
		},
		"requests_per_unit": func(n *yaml.Node, path string) error {
			if err := p.scalar(n, path, "a whole number"); err != nil {
				return err
			}
			v, err := strconv.ParseUint(n.Value, 10, 32)
			if n.Tag != "!!int" || err != nil {
				return p.errf(n, path, "must be a whole number from 0 to %d, got %s", uint32(1<<32-1), kindName(n))
			}
			rl.RequestsPerUnit, rpuSet = uint32(v), true
			return nil
		},
		"unlimited": func(n *yaml.Node, path string) error { return p.boolean(n, path, &rl.Unlimited) },
		"name":      func(n *yaml.Node, path string) error { return p.str(n, path, &rl.Name) },
		"replaces": func(n *yaml.Node, path string) error {
			if n.Kind != yaml.SequenceNode {
				return p.errf(n, path, "must be a list of {name: ...}, got %s", kindName(n))
			}
			for i, item := range n.Content {
				ip := fmt.Sprintf("%s[%d]", path, i)
				var name string
				if err := p.mapping(item, ip, map[string]func(*yaml.Node, string) error{
					"name": func(n *yaml.Node, path string) error { return p.str(n, path, &name) },
				}); err != nil {
					return err
				}
				if name == "" {
					return p.errf(item, join(ip, "name"), "required: the name of the rate limit this one replaces")
				}
				rl.Replaces = append(rl.Replaces, name)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	switch {
	case rl.Unlimited && (unitSet || rpuSet):
		return p.errf(n, path, "unlimited: true takes no unit or requests_per_unit")
	case !rl.Unlimited && !unitSet:
		return p.errf(n, join(path, "unit"), "required: second, minute, hour, day, week, month or year (or unlimited: true)")
	case !rl.Unlimited && !rpuSet:
		return p.errf(n, join(path, "requests_per_unit"), "required (or unlimited: true)")
	}
	return nil
}

// validateTree checks what a single node cannot: duplicate entries at one
// level, and wildcard rules.
func validateTree(p *parser, root *yaml.Node, path string, ds []DescriptorConfig) error {
	seen := make(map[entry]int, len(ds))
	for i := range ds {
		d := &ds[i]
		dp := fmt.Sprintf("%s[%d]", path, i)
		k := entry{d.Key, d.Value}
		if j, dup := seen[k]; dup {
			return p.errf(nil, dp, "duplicate descriptor %s (same key and value as %s[%d])", describe(d), path, j)
		}
		seen[k] = i
		if star := strings.IndexByte(d.Value, '*'); star >= 0 && star != len(d.Value)-1 {
			return p.errf(nil, join(dp, "value"), "a wildcard '*' may only end the value, got %q", d.Value)
		}
		if d.ShareThreshold && !strings.HasSuffix(d.Value, "*") {
			return p.errf(nil, join(dp, "share_threshold"), "needs a wildcard value ending in '*', got %q", d.Value)
		}
		if err := validateTree(p, root, join(dp, "descriptors"), d.Descriptors); err != nil {
			return err
		}
	}
	return nil
}

func describe(d *DescriptorConfig) string {
	if d.Value == "" {
		return fmt.Sprintf("key %q", d.Key)
	}
	return fmt.Sprintf("%s=%s", d.Key, d.Value)
}

// entry is one key/value, a map key for matching.
type entry struct{ key, value string }

var errNoConfig = errors.New("ratelimit: no rate limit configuration loaded")
