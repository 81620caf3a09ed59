// Package promtext parses the Prometheus text exposition format (0.0.4), the
// format every proxy's admin /metrics endpoint writes. It reads samples only:
// HELP and TYPE lines are skipped, because viz tells counters from gauges by
// their names (Linkerd's families follow the _total/_bucket conventions).
package promtext

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Sample is one line of the exposition: a series and its value.
type Sample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`

	key string // cached Key, see Keyed
}

// maxLine bounds a line so that a misbehaving endpoint cannot make the
// scraper buffer without limit.
const maxLine = 1 << 20

// Parse reads every sample of r. It stops at the first malformed line and
// returns an error naming its line number.
func Parse(r io.Reader) ([]Sample, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var out []Sample
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := ParseLine(line)
		if err != nil {
			return out, fmt.Errorf("promtext: line %d: %w", n, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("promtext: %w", err)
	}
	return out, nil
}

// ParseLine parses one sample line: name{labels} value [timestamp].
func ParseLine(line string) (Sample, error) {
	var s Sample
	i := 0
	for i < len(line) && isNameChar(line[i], i == 0) {
		i++
	}
	if i == 0 {
		return s, fmt.Errorf("expected a metric name at %q", clip(line))
	}
	s.Name = line[:i]
	rest := line[i:]
	if strings.HasPrefix(rest, "{") {
		labels, n, err := parseLabels(rest)
		if err != nil {
			return s, fmt.Errorf("%s: %w", s.Name, err)
		}
		s.Labels = labels
		rest = rest[n:]
	}
	if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
		return s, fmt.Errorf("%s: expected a space before the value", s.Name)
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || len(fields) > 2 {
		return s, fmt.Errorf("%s: expected a value and an optional timestamp, got %q", s.Name, clip(rest))
	}
	v, err := parseValue(fields[0])
	if err != nil {
		return s, fmt.Errorf("%s: %w", s.Name, err)
	}
	s.Value = v
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return s, fmt.Errorf("%s: bad timestamp %q", s.Name, clip(fields[1]))
		}
	}
	return s, nil
}

// parseLabels parses {a="x",b="y"} at the start of s and returns how many
// bytes it used.
func parseLabels(s string) (map[string]string, int, error) {
	labels := map[string]string{}
	i := 1 // past '{'
	for {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i < len(s) && s[i] == '}' {
			return labels, i + 1, nil
		}
		start := i
		for i < len(s) && isLabelChar(s[i], i == start) {
			i++
		}
		if i == start {
			return nil, 0, fmt.Errorf("expected a label name at offset %d", i)
		}
		name := s[start:i]
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i+1 >= len(s) || s[i] != '=' || s[i+1] != '"' {
			return nil, 0, fmt.Errorf("label %s: expected =\"", name)
		}
		i += 2
		var b strings.Builder
		closed := false
		for i < len(s) {
			c := s[i]
			if c == '"' {
				closed = true
				i++
				break
			}
			if c == '\\' {
				if i+1 >= len(s) {
					break
				}
				switch s[i+1] {
				case 'n':
					b.WriteByte('\n')
				case '\\':
					b.WriteByte('\\')
				case '"':
					b.WriteByte('"')
				default:
					return nil, 0, fmt.Errorf("label %s: bad escape \\%c", name, s[i+1])
				}
				i += 2
				continue
			}
			b.WriteByte(c)
			i++
		}
		if !closed {
			return nil, 0, fmt.Errorf("label %s: unterminated value", name)
		}
		if _, dup := labels[name]; dup {
			return nil, 0, fmt.Errorf("label %s repeated", name)
		}
		labels[name] = b.String()
		for i < len(s) && s[i] == ' ' {
			i++
		}
		switch {
		case i < len(s) && s[i] == ',':
			i++
		case i < len(s) && s[i] == '}':
			return labels, i + 1, nil
		default:
			return nil, 0, fmt.Errorf("label %s: expected , or }", name)
		}
	}
}

// ParseValue parses a sample value or an le bound: a float, +Inf, -Inf or NaN.
func ParseValue(f string) (float64, error) { return parseValue(f) }

func parseValue(f string) (float64, error) {
	switch f {
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return 0, fmt.Errorf("bad value %q", clip(f))
	}
	return v, nil
}

func isNameChar(c byte, first bool) bool {
	return c == ':' || isLabelChar(c, first)
}

func isLabelChar(c byte, first bool) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Keyed returns s with its Key computed once and kept, for samples that are
// matched across many scrapes.
func (s Sample) Keyed() Sample {
	s.key = s.Key()
	return s
}

// Key renders a sample's series identity (name and sorted labels), for
// matching the same series across scrapes.
func (s Sample) Key() string {
	if s.key != "" {
		return s.key
	}
	if len(s.Labels) == 0 {
		return s.Name
	}
	names := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(s.Name)
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(s.Labels[k]))
	}
	b.WriteByte('}')
	return b.String()
}
