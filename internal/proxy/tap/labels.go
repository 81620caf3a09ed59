package tap

import (
	"errors"
	"strings"
)

// parseLabels reads a rendered metrics label set (`k="v",k2="v2"`, values
// escaped as the Prometheus text format escapes them) into m. The proxy
// keeps endpoint and TLS labels rendered (metrics.Labels), so tap decodes
// them only for tapped requests. Names lose a leading "dst_" when
// stripDst is set: tap's destination labels are the endpoint's own
// (deployment, pod, namespace), not the metric names.
func parseLabels(s string, m map[string]string, stripDst bool) error {
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return errors.New("tap: malformed label set " + s)
		}
		name := s[:eq]
		s = s[eq+2:]
		var b strings.Builder
		closed := false
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '"' {
				closed = true
				break
			}
			if c == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(s[i])
				}
				continue
			}
			b.WriteByte(c)
		}
		if !closed {
			return errors.New("tap: unterminated label value in " + name)
		}
		if stripDst && len(name) > len("dst_") {
			name = strings.TrimPrefix(name, "dst_")
		}
		m[name] = b.String()
		s = s[i+1:]
		if len(s) > 0 {
			if s[0] != ',' {
				return errors.New("tap: malformed label set after " + name)
			}
			s = s[1:]
		}
	}
	return nil
}
