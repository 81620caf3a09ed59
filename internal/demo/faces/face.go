package faces

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// downstream is the outcome of one call from face to smiley or color.
type downstream struct {
	value  string // the smiley or color to draw
	failed bool
	errMsg string // "smiley: error from smiley: 500 (Error fraction triggered)"
}

func (s *Server) serveFace(w http.ResponseWriter, r *http.Request, start time.Time, rate string) {
	// The GUI asks for /center/ or /edge/; pass that on so a mesh can route
	// the centre cells differently (e.g. to smiley2/color2).
	sub, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	user := r.Header.Get(s.cfg.UserHeader)
	if user == "" {
		user = "unknown"
	}
	ua := r.UserAgent()
	if ua == "" {
		ua = "unknown"
	}
	colorc := make(chan downstream, 1)
	go func() { colorc <- s.callDownstream(r.Context(), "color", s.cfg.ColorService, sub, user, ua) }()
	smiley := s.callDownstream(r.Context(), "smiley", s.cfg.SmileyService, sub, user, ua)
	color := <-colorc

	errs := []string{}
	for _, d := range []downstream{smiley, color} {
		if d.failed {
			errs = append(errs, d.errMsg)
		}
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{
		"smiley":  smiley.value,
		"color":   color.value,
		"rate":    rate,
		"errors":  errs,
		"latency": s.now().Sub(start).Milliseconds(),
	})
}

// callDownstream GETs http://<service>/<sub>/ and takes field key from the
// JSON reply. Failures are mapped as upstream maps them: a 504 (the mesh
// timed the call out) draws a sleeping face or a red background; anything
// else, transport errors included, a cursing face or grey.
func (s *Server) callDownstream(ctx context.Context, key, service, sub, user, ua string) downstream {
	url := "http://" + service + "/"
	if sub != "" {
		url += sub + "/"
	}
	fail := func(code int, msg string) downstream {
		return downstream{value: mapFailure(key, code), failed: true, errMsg: key + ": " + msg}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail(http.StatusInternalServerError, fmt.Sprintf("couldn't create request to %s: %v", service, err))
	}
	req.Header.Set(s.cfg.UserHeader, user)
	req.Header.Set("User-Agent", ua)
	resp, err := s.client.Do(req)
	if err != nil {
		return fail(http.StatusInternalServerError, fmt.Sprintf("couldn't make request to %s: %v", service, err))
	}
	defer resp.Body.Close()
	// Replies are small; the cap only guards against a misbehaving peer.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fail(http.StatusInternalServerError, fmt.Sprintf("couldn't read response from %s: %v", service, err))
	}
	return interpretReply(key, service, resp.StatusCode, body)
}

// interpretReply turns smiley's or color's reply into what face draws: field
// key of a 200's JSON body, or the mapped failure with its error text.
func interpretReply(key, service string, status int, body []byte) downstream {
	fail := func(code int, msg string) downstream {
		return downstream{value: mapFailure(key, code), failed: true, errMsg: key + ": " + msg}
	}
	if status != http.StatusOK {
		detail := ""
		if b := strings.TrimSpace(string(body)); b != "" {
			detail = " (" + b + ")"
		}
		return fail(status, fmt.Sprintf("error from %s: %03d%s", service, status, detail))
	}
	var data map[string]any
	if err := json.Unmarshal(body, &data); err != nil {
		return fail(http.StatusInternalServerError, fmt.Sprintf("couldn't decode response from %s: %v", service, err))
	}
	v, ok := data[key].(string)
	if !ok {
		return fail(http.StatusInternalServerError, fmt.Sprintf("no %s in response from %s", key, service))
	}
	return downstream{value: v}
}

// mapFailure is upstream's status map: only smiley-504 and color-504 have
// their own entries; every other failure falls to the default.
func mapFailure(key string, code int) string {
	if key == "smiley" {
		if code == http.StatusGatewayTimeout {
			return Smileys["Sleeping"]
		}
		return Smileys["Cursing"]
	}
	if code == http.StatusGatewayTimeout {
		return Colors["red"]
	}
	return Colors["grey"]
}
