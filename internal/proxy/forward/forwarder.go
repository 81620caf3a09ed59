package forward

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"

	"github.com/weft-mesh/weft/internal/proxy/proxyerr"
)

// Forwarder is the proxy's HTTP forwarder (an http.Handler). It forwards
// requests as httputil.ReverseProxy does (hop-by-hop headers removed,
// Te: trailers kept, bodies and trailers streamed, responses of unknown
// length and event streams flushed as they come), with the forwarded
// headers kept as the client sent them, but without ReverseProxy's per
// request overhead: no Request.Clone and WithContext, no cancel context, no
// client trace, no media type parsing, and response headers moved rather
// than copied value by value (together about 20 allocations and 1.5 KB per
// request and hop).
//
// Requests that need what only ReverseProxy does go through it instead:
// protocol upgrades (websockets), Expect: 100-continue (relayed 1xx
// responses), and query strings it would rewrite (';' separators, bad
// escapes). Other 1xx responses (103 Early Hints) from the upstream are
// not relayed.
type Forwarder struct {
	rt      http.RoundTripper
	target  func(*http.Request) string
	rewrite func(out, in *http.Request)
	log     *slog.Logger
	general *httputil.ReverseProxy
}

// Owner is a RoundTripper that can also take a request it owns: one
// built for that round trip alone, whose URL and Header it may change in
// place instead of copying them first (as a RoundTripper must). The
// Forwarder's outgoing requests are such requests.
type Owner interface {
	http.RoundTripper
	RoundTripOwned(*http.Request) (*http.Response, error)
}

// NewForwarder returns a Forwarder sending requests through rt to the
// authority returned by target. rewrite, if not nil, edits each outgoing
// request (its Header is its own) after the standard changes.
func NewForwarder(rt http.RoundTripper, target func(*http.Request) string, rewrite func(out, in *http.Request), log *slog.Logger) *Forwarder {
	general := NewReverseProxy(rt, target, log)
	if rewrite != nil {
		base := general.Rewrite
		general.Rewrite = func(pr *httputil.ProxyRequest) {
			base(pr)
			rewrite(pr.Out, pr.In)
		}
	}
	return &Forwarder{rt: rt, target: target, rewrite: rewrite, log: log, general: general}
}

// needsGeneral reports whether in needs httputil.ReverseProxy.
func needsGeneral(in *http.Request) bool {
	h := in.Header
	if len(h["Expect"]) > 0 || httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return true
	}
	return queryNeedsCleaning(in.URL.RawQuery)
}

// queryNeedsCleaning reports whether ReverseProxy would re-encode the
// query (its cleanQueryParams): ';' separators, bad % escapes, or more
// parameters than url.ParseQuery accepts.
func queryNeedsCleaning(s string) bool {
	if strings.Count(s, "&") >= 10000 {
		return true
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ';':
			return true
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return true
			}
			i += 2
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// hopHeaders are removed in both directions (RFC 9110 7.6.1, and the
// older list httputil keeps).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// Shared values set on outgoing headers. Header methods replace or
// append to a header's slice, never write into it.
var (
	teTrailers = []string{"trailers"}
	noUA       = []string{""}
)

// removeHopByHop deletes the headers named in Connection, then the fixed
// hop-by-hop ones.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = strings.TrimSpace(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// outHeader copies h for the upstream request in one allocation of values
// (as Header.Clone does), without the hop-by-hop headers.
func outHeader(h http.Header) http.Header {
	nv := 0
	for _, vv := range h {
		nv += len(vv)
	}
	values := make([]string, nv)
	out := make(http.Header, len(h)+1)
	for k, vv := range h {
		if vv == nil {
			out[k] = nil
			continue
		}
		n := copy(values, vv)
		out[k] = values[:n:n]
		values = values[n:]
	}
	removeHopByHop(out)
	// Tell the upstream that trailers are welcome when the client said so
	// (gRPC needs it); Te itself is hop-by-hop.
	if httpguts.HeaderValuesContainsToken(h["Te"], "trailers") {
		out["Te"] = teTrailers
	}
	// Without a User-Agent the client transport would add Go's.
	if _, ok := out["User-Agent"]; !ok {
		out["User-Agent"] = noUA
	}
	return out
}

func (f *Forwarder) ServeHTTP(w http.ResponseWriter, in *http.Request) {
	if needsGeneral(in) {
		f.general.ServeHTTP(w, in)
		return
	}
	out := new(http.Request)
	*out = *in
	u := *in.URL
	u.Scheme, u.Host = "http", f.target(in)
	out.URL = &u
	out.Header = outHeader(in.Header)
	out.Close = false
	if in.ContentLength == 0 {
		out.Body = nil // a bodiless request can be retried by the transport
	} else if out.Body != nil {
		// The transport closes the body it was given when it fails; that
		// must not close the server's (a 100-continue body would hang).
		// Closed when the handler returns: a transport goroutine that
		// outlives it must not read the server's body any more.
		nb := &noCloseBody{rc: in.Body}
		defer nb.Close()
		out.Body = nb
	}
	if f.rewrite != nil {
		f.rewrite(out, in)
	}

	authority := u.Host
	var res *http.Response
	var err error
	if o, ok := f.rt.(Owner); ok {
		res, err = o.RoundTripOwned(out) // out is ours: no copy needed
	} else {
		res, err = f.rt.RoundTrip(out)
	}
	if err != nil {
		f.fail(w, in, err)
		return
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// Upgrades go through the general path; a 101 here was not asked for.
		res.Body.Close()
		f.fail(w, in, proxyerr.New(http.StatusBadGateway, "proxy: upstream switched protocols unasked", nil))
		return
	}
	removeHopByHop(res.Header)
	dst := w.Header()
	for k, vv := range res.Header {
		// The response is ours: its value slices move over. (Header.Add
		// only ever appends to them, which copies a full slice.)
		if old, ok := dst[k]; ok {
			dst[k] = append(old, vv...)
		} else {
			dst[k] = vv
		}
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)

	// Streams (no length: gRPC, chunked) and event streams go out as they
	// come, headers at once; the rest is written as the server buffers it.
	var rc *http.ResponseController
	if res.ContentLength == -1 || isEventStream(res.Header["Content-Type"]) {
		rc = http.NewResponseController(w)
		_ = rc.Flush()
	}
	if err := f.copyBody(w, res.Body, rc); err != nil {
		res.Body.Close()
		f.log.Debug("response body copy failed", "authority", authority, "err", err)
		if in.Context().Value(http.ServerContextKey) != nil {
			// Abort the response: a client must not take a truncated body
			// for a whole one.
			panic(http.ErrAbortHandler)
		}
		return
	}
	res.Body.Close() // populates res.Trailer
	if len(res.Trailer) > 0 {
		// Force chunking, so that the trailers can follow.
		_ = http.NewResponseController(w).Flush()
	}
	if len(res.Trailer) == announced {
		for k, vv := range res.Trailer {
			dst[k] = append(dst[k], vv...)
		}
		return
	}
	for k, vv := range res.Trailer {
		k = http.TrailerPrefix + k
		dst[k] = append(dst[k], vv...)
	}
}

// copyBody copies the response body with a pooled buffer, flushing each
// write when rc is set. It returns write errors and read errors other
// than EOF.
func (f *Forwarder) copyBody(w io.Writer, body io.Reader, rc *http.ResponseController) error {
	buf := bufPool.Get()
	defer bufPool.Put(buf)
	for {
		nr, rerr := body.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
			if rc != nil {
				if err := rc.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// fail answers a request that got no response.
func (f *Forwarder) fail(w http.ResponseWriter, in *http.Request, err error) {
	f.general.ErrorHandler(w, in, err)
}

// isEventStream reports whether a Content-Type is text/event-stream
// (server-sent events: flushed as they come, as ReverseProxy does).
func isEventStream(ct []string) bool {
	if len(ct) == 0 {
		return false
	}
	const es = "text/event-stream"
	v := strings.TrimSpace(ct[0])
	if len(v) < len(es) || !strings.EqualFold(v[:len(es)], es) {
		return false
	}
	return len(v) == len(es) || v[len(es)] == ';' || v[len(es)] == ' ' || v[len(es)] == '\t'
}

// noCloseBody passes reads to the server's request body but not Close,
// after which it reads nothing more (see ServeHTTP).
type noCloseBody struct {
	rc     io.ReadCloser
	closed atomic.Bool // Close may come from the transport's goroutine
}

var errBodyClosed = errors.New("forward: read from a closed request body")

func (b *noCloseBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBodyClosed
	}
	return b.rc.Read(p)
}

func (b *noCloseBody) Close() error {
	b.closed.Store(true)
	return nil
}
