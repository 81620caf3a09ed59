package ingress

import "strings"

// Host globs, as Emissary allows them: "*", "*.example.com" / "*example.com"
// (a leading '*'), "example.*" (a trailing '*'), or a plain name. Matching
// is case-insensitive and ignores a port on the request's authority.

// globMatch reports whether host (lower-case, no port) matches glob.
func globMatch(glob, host string) bool {
	switch {
	case glob == "*":
		return true
	case strings.HasPrefix(glob, "*"):
		suffix := glob[1:]
		return len(host) > len(suffix) && hasSuffixFold(host, suffix)
	case strings.HasSuffix(glob, "*"):
		prefix := glob[:len(glob)-1]
		return len(host) > len(prefix) && strings.EqualFold(host[:len(prefix)], prefix)
	}
	return strings.EqualFold(glob, host)
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// globsIntersect reports whether some hostname matches both globs: it
// decides whether a Mapping's hostname binds it to a Host.
func globsIntersect(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if a == "*" || b == "*" {
		return true
	}
	aw, bw := strings.ContainsRune(a, '*'), strings.ContainsRune(b, '*')
	switch {
	case !aw && !bw:
		return a == b
	case !aw:
		return globMatch(b, a)
	case !bw:
		return globMatch(a, b)
	}
	aSuf, bSuf := strings.HasPrefix(a, "*"), strings.HasPrefix(b, "*")
	switch {
	case aSuf && bSuf: // *.x.com and *.com: one suffix ends with the other
		return strings.HasSuffix(a[1:], b[1:]) || strings.HasSuffix(b[1:], a[1:])
	case !aSuf && !bSuf: // foo.* and foo.bar.*: one prefix starts the other
		pa, pb := a[:len(a)-1], b[:len(b)-1]
		return strings.HasPrefix(pa, pb) || strings.HasPrefix(pb, pa)
	}
	// One prefix glob, one suffix glob: "foo.*" and "*.com" share "foo.com".
	return true
}

// globRank orders virtual hosts as Envoy picks them: exact names first,
// then suffix globs (longest first), then prefix globs (longest first), then
// "*". Lower ranks first; ties are broken by length, longer first.
func globRank(glob string) (class int, length int) {
	switch {
	case glob == "*":
		return 3, 0
	case strings.HasPrefix(glob, "*"):
		return 1, len(glob)
	case strings.HasSuffix(glob, "*"):
		return 2, len(glob)
	}
	return 0, len(glob)
}

// stripPort returns the host of an authority, lower-cased, without port
// and without IPv6 brackets.
func stripPort(authority string) string {
	h := authority
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	return lower(h)
}

// lower is strings.ToLower without an allocation for already-lower input,
// the common case for authorities.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
