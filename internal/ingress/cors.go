package ingress

import (
	"net/http"
	"strings"

	"github.com/weft-mesh/weft/internal/api"
)

// corsPolicy is a compiled Mapping cors block. The ingress answers
// preflight requests itself and decorates the responses of actual requests,
// as Envoy's CORS filter does.
type corsPolicy struct {
	origins     []string // exact origins; "*" allows any
	methods     string
	headers     string
	exposed     string
	maxAge      string
	credentials bool
}

// splitList flattens Emissary's string-or-list fields, splitting strings on
// commas.
func splitList(l api.StringOrList) []string {
	var out []string
	for _, s := range l {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func compileCORS(c *api.CORS) *corsPolicy {
	if c == nil {
		return nil
	}
	p := &corsPolicy{
		origins:     splitList(c.Origins),
		methods:     strings.Join(splitList(c.Methods), ","),
		headers:     strings.Join(splitList(c.Headers), ","),
		exposed:     strings.Join(splitList(c.ExposedHeaders), ","),
		maxAge:      c.MaxAge,
		credentials: c.Credentials != nil && *c.Credentials,
	}
	if d, err := api.ParseDuration(c.MaxAge); err == nil {
		p.maxAge = itoa(int64(d.Seconds())) // "1h" -> "3600"; a bare number stays
	}
	return p
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

func (p *corsPolicy) allows(origin string) bool {
	for _, o := range p.origins {
		if o == "*" || o == origin {
			return true
		}
	}
	return false
}

// preflight answers an OPTIONS preflight for an allowed origin. It reports
// whether it answered; other requests go upstream.
func (p *corsPolicy) preflight(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if r.Method != http.MethodOptions || origin == "" || r.Header.Get("Access-Control-Request-Method") == "" || !p.allows(origin) {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if p.methods != "" {
		h.Set("Access-Control-Allow-Methods", p.methods)
	}
	if p.headers != "" {
		h.Set("Access-Control-Allow-Headers", p.headers)
	}
	if p.maxAge != "" {
		h.Set("Access-Control-Max-Age", p.maxAge)
	}
	return true
}

// decorate adds the CORS headers to an actual response for an allowed
// origin.
func (p *corsPolicy) decorate(h http.Header, origin string) {
	if origin == "" || !p.allows(origin) {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if p.exposed != "" {
		h.Set("Access-Control-Expose-Headers", p.exposed)
	}
}
