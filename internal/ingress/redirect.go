package ingress

import (
	"net"
	"net/http"
	"regexp"
	"strconv"

	"github.com/weft-mesh/weft/internal/api"
)

// redirect is a compiled host_redirect Mapping: the ingress answers with a
// redirect to the service's host instead of proxying.
type redirect struct {
	scheme    string // "" keeps the request's scheme
	authority string // host[:port] as written in service
	code      int
	path      string // path_redirect: the whole path
	prefix    string // prefix_redirect: replaces the matched prefix
	hasPrefix bool
	re        *regexp.Regexp // regex_redirect
	subst     string
}

func compileRedirect(s *api.MappingSpec) (*redirect, error) {
	a, err := api.ParseMappingService(s.Service)
	if err != nil {
		return nil, err
	}
	rd := &redirect{scheme: a.Scheme, authority: a.Host, code: http.StatusMovedPermanently, path: s.PathRedirect}
	if a.Port != 0 {
		rd.authority = net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
	}
	if s.RedirectResponseCode != nil {
		rd.code = int(*s.RedirectResponseCode)
	}
	if s.PrefixRedirect != "" {
		rd.prefix, rd.hasPrefix = s.PrefixRedirect, true
	}
	if rr := s.RegexRedirect; rr != nil {
		if rd.re, err = regexp.Compile(rr.Pattern); err != nil {
			return nil, err
		}
		rd.subst = envoySubstitution(rr.Substitution)
	}
	return rd, nil
}

// location builds the Location of a redirect for req.
func (rd *redirect) location(r *Route, req *http.Request) string {
	scheme := rd.scheme
	if scheme == "" {
		scheme = "http"
		if req.TLS != nil {
			scheme = "https"
		}
	}
	path := req.URL.EscapedPath()
	switch {
	case rd.path != "":
		path = rd.path
	case rd.hasPrefix:
		if r.re != nil || r.exact {
			path = rd.prefix
		} else {
			path = rd.prefix + path[len(r.prefix):]
		}
	case rd.re != nil:
		path = rd.re.ReplaceAllString(path, rd.subst)
	}
	loc := scheme + "://" + rd.authority + path
	if req.URL.RawQuery != "" {
		loc += "?" + req.URL.RawQuery
	}
	return loc
}
