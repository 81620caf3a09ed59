package viz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/viz/stats"
)

// The viz API: JSON over HTTP, served by 'weft viz dashboard'.
//
//	GET /api/v1/info                      state dir, window, whether tap works
//	GET /api/v1/stat?kind=deploy&name=&namespace=&from=deploy/x&from_namespace=&to=&to_namespace=&window=30s
//	GET /api/v1/edges?kind=deploy&namespace=&window=
//	GET /api/v1/routes?resource=deploy/x&namespace=&to=&to_namespace=&window=
//	GET /api/v1/overview?namespace=       everything the dashboard polls
//	GET /api/v1/tap?resource=deploy/x&namespace=&method=&path=&authority=&to=&to_namespace=
//	                                      server-sent events, one TapLine each;
//	                                      501 when no proxy serves tap

// Source answers viz queries: a Remote viz API, or a Snapshot computed here.
type Source interface {
	Stat(ctx context.Context, q stats.Query, window time.Duration) ([]stats.Row, error)
	Edges(ctx context.Context, kind stats.Kind, namespace string, window time.Duration) ([]stats.Edge, error)
	Routes(ctx context.Context, q stats.RouteQuery, window time.Duration) ([]stats.RouteRow, error)
}

// Snapshot is a Source over deltas already taken.
type Snapshot struct {
	Deltas []stats.Delta
	Pods   []stats.Pod
}

// Stat implements Source.
func (s Snapshot) Stat(_ context.Context, q stats.Query, _ time.Duration) ([]stats.Row, error) {
	return stats.Stat(s.Deltas, s.Pods, q), nil
}

// Edges implements Source.
func (s Snapshot) Edges(_ context.Context, kind stats.Kind, ns string, _ time.Duration) ([]stats.Edge, error) {
	return stats.Edges(s.Deltas, kind, ns), nil
}

// Routes implements Source.
func (s Snapshot) Routes(_ context.Context, q stats.RouteQuery, _ time.Duration) ([]stats.RouteRow, error) {
	return stats.Routes(s.Deltas, q), nil
}

// ErrTapUnavailable means no pod has a tap server (annotation
// weft.io/tap-addr): the proxies do not serve io.linkerd.proxy.tap yet.
var ErrTapUnavailable = errors.New("viz: tap is unavailable: no proxy serves the tap API (pods carry no " + AnnotationTapAddr + " annotation)")

// Info describes a running viz API.
type Info struct {
	StateDir string  `json:"stateDir"`
	Window   float64 `json:"windowSeconds"`
	Tap      bool    `json:"tap"`
}

// Overview is what the dashboard polls: every namespace, workload and edge.
type Overview struct {
	Window      float64           `json:"windowSeconds"`
	Namespaces  []stats.Row       `json:"namespaces"`
	Deployments []stats.Row       `json:"deployments"`
	Pods        []stats.Row       `json:"pods"`
	Edges       []stats.Edge      `json:"edges"`
	Errors      map[string]string `json:"scrapeErrors,omitempty"`
	Tap         bool              `json:"tap"`
	// TapDeployments are the deployments (namespace/name) with a pod
	// whose proxy serves tap.
	TapDeployments []string `json:"tapDeployments,omitempty"`
}

// APIHandler serves the viz API from c.
func APIHandler(c *Collector, stateDir string) http.Handler {
	return apiHandler(c, stateDir, context.Background())
}

// apiHandler is APIHandler whose tap streams also end with streams: a
// server shutting down ends them, as they would never go idle.
func apiHandler(c *Collector, stateDir string, streams context.Context) http.Handler {
	mux := http.NewServeMux()
	snap := func(r *http.Request) (Snapshot, time.Duration, error) {
		w := c.window()
		if s := r.URL.Query().Get("window"); s != "" {
			d, err := api.ParseDuration(s)
			if err != nil || d <= 0 {
				return Snapshot{}, 0, fmt.Errorf("viz: bad window %q: want a duration such as 30s", s)
			}
			w = d
		}
		deltas, pods := c.Snapshot(w)
		return Snapshot{deltas, pods}, w, nil
	}
	mux.HandleFunc("GET /api/v1/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, Info{StateDir: stateDir, Window: c.window().Seconds(), Tap: anyTap(c.CurrentPods())})
	})
	mux.HandleFunc("GET /api/v1/stat", func(w http.ResponseWriter, r *http.Request) {
		s, win, err := snap(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		q, err := QueryFromValues(r.URL.Query())
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		rows, _ := s.Stat(r.Context(), q, win)
		writeJSON(w, map[string]any{"windowSeconds": win.Seconds(), "rows": rows})
	})
	mux.HandleFunc("GET /api/v1/edges", func(w http.ResponseWriter, r *http.Request) {
		s, win, err := snap(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		kind := stats.Deployment
		if k := r.URL.Query().Get("kind"); k != "" {
			if kind, err = stats.ParseKind(k); err != nil {
				writeError(w, http.StatusBadRequest, err)
				return
			}
		}
		edges, _ := s.Edges(r.Context(), kind, r.URL.Query().Get("namespace"), win)
		writeJSON(w, map[string]any{"windowSeconds": win.Seconds(), "edges": edges})
	})
	mux.HandleFunc("GET /api/v1/routes", func(w http.ResponseWriter, r *http.Request) {
		s, win, err := snap(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		q, err := RouteQueryFromValues(r.URL.Query())
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		rows, _ := s.Routes(r.Context(), q, win)
		writeJSON(w, map[string]any{"windowSeconds": win.Seconds(), "routes": rows})
	})
	mux.HandleFunc("GET /api/v1/overview", func(w http.ResponseWriter, r *http.Request) {
		s, win, err := snap(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		ns := r.URL.Query().Get("namespace")
		writeJSON(w, Overview{
			Window:         win.Seconds(),
			Namespaces:     stats.Stat(s.Deltas, s.Pods, stats.Query{Kind: stats.Namespace}),
			Deployments:    stats.Stat(s.Deltas, s.Pods, stats.Query{Kind: stats.Deployment, Namespace: ns}),
			Pods:           stats.Stat(s.Deltas, s.Pods, stats.Query{Kind: stats.PodKind, Namespace: ns}),
			Edges:          stats.Edges(s.Deltas, stats.Deployment, ns),
			Errors:         c.Errors(),
			Tap:            anyTap(s.Pods),
			TapDeployments: tapDeployments(s.Pods),
		})
	})
	mux.HandleFunc("GET /api/v1/tap", func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query()
		res, err := stats.ParseRef(v.Get("resource"), v.Get("namespace"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		f := TapFilter{Method: v.Get("method"), Path: v.Get("path"), Authority: v.Get("authority")}
		if to := v.Get("to"); to != "" {
			ref, err := stats.ParseRef(to, v.Get("to_namespace"))
			if err != nil {
				writeError(w, http.StatusBadRequest, err)
				return
			}
			f.To = &ref
		}
		pods := TapTargets(c.CurrentPods(), res)
		if !anyTap(pods) {
			writeError(w, http.StatusNotImplemented, ErrTapUnavailable)
			return
		}
		// Server-sent events: one JSON TapLine per event.
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		rc.Flush()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(streams, cancel)()
		err = Tap(ctx, pods, f, func(l TapLine) {
			b, _ := json.Marshal(l)
			fmt.Fprintf(w, "data: %s\n\n", b)
			rc.Flush()
		})
		if err != nil {
			b, _ := json.Marshal(map[string]string{"error": err.Error()})
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
			rc.Flush()
		}
	})
	return mux
}

func anyTap(pods []stats.Pod) bool {
	for _, p := range pods {
		if p.TapAddr != "" {
			return true
		}
	}
	return false
}

func tapDeployments(pods []stats.Pod) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range pods {
		k := p.Namespace + "/" + p.Deployment
		if p.TapAddr != "" && p.Deployment != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// QueryFromValues reads a stat query from URL parameters.
func QueryFromValues(v url.Values) (stats.Query, error) {
	k := v.Get("kind")
	if k == "" {
		k = "deploy"
	}
	kind, err := stats.ParseKind(k)
	if err != nil {
		return stats.Query{}, err
	}
	q := stats.Query{Kind: kind, Name: v.Get("name"), Namespace: v.Get("namespace")}
	for _, p := range []struct {
		param string
		dst   **stats.Ref
	}{{"from", &q.From}, {"to", &q.To}} {
		s := v.Get(p.param)
		if s == "" {
			continue
		}
		r, err := stats.ParseRef(s, v.Get(p.param+"_namespace"))
		if err != nil {
			return stats.Query{}, err
		}
		*p.dst = &r
	}
	return q, nil
}

// Values renders q as URL parameters for QueryFromValues.
func Values(q stats.Query) url.Values {
	v := url.Values{"kind": {string(q.Kind)}}
	if q.Name != "" {
		v.Set("name", q.Name)
	}
	if q.Namespace != "" {
		v.Set("namespace", q.Namespace)
	}
	if q.From != nil {
		v.Set("from", q.From.String())
		v.Set("from_namespace", q.From.Namespace)
	}
	if q.To != nil {
		v.Set("to", q.To.String())
		v.Set("to_namespace", q.To.Namespace)
	}
	return v
}

// RouteQueryFromValues reads a routes query from URL parameters.
func RouteQueryFromValues(v url.Values) (stats.RouteQuery, error) {
	res, err := stats.ParseRef(v.Get("resource"), v.Get("namespace"))
	if err != nil {
		return stats.RouteQuery{}, err
	}
	q := stats.RouteQuery{Resource: res}
	if s := v.Get("to"); s != "" {
		to, err := stats.ParseRef(s, v.Get("to_namespace"))
		if err != nil {
			return stats.RouteQuery{}, err
		}
		q.To = &to
	}
	return q, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// Remote is a Source backed by a running viz API at Addr (host:port).
type Remote struct {
	Addr   string
	Client *http.Client
}

func (r Remote) get(ctx context.Context, path string, v url.Values, window time.Duration, out any) error {
	if window > 0 {
		v.Set("window", window.String())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addr+path+"?"+v.Encode(), nil)
	if err != nil {
		return fmt.Errorf("viz: %w", err)
	}
	c := r.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("viz: viz API at %s: %w", r.Addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("viz: viz API at %s: %w", r.Addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("viz: viz API at %s: %s", r.Addr, resp.Status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("viz: viz API at %s: decoding %s: %w", r.Addr, path, err)
	}
	return nil
}

// Info asks the API what it serves.
func (r Remote) Info(ctx context.Context) (Info, error) {
	var i Info
	err := r.get(ctx, "/api/v1/info", url.Values{}, 0, &i)
	return i, err
}

// Stat implements Source.
func (r Remote) Stat(ctx context.Context, q stats.Query, window time.Duration) ([]stats.Row, error) {
	var out struct{ Rows []stats.Row }
	err := r.get(ctx, "/api/v1/stat", Values(q), window, &out)
	return out.Rows, err
}

// Edges implements Source.
func (r Remote) Edges(ctx context.Context, kind stats.Kind, ns string, window time.Duration) ([]stats.Edge, error) {
	var out struct{ Edges []stats.Edge }
	err := r.get(ctx, "/api/v1/edges", url.Values{"kind": {string(kind)}, "namespace": {ns}}, window, &out)
	return out.Edges, err
}

// Routes implements Source.
func (r Remote) Routes(ctx context.Context, q stats.RouteQuery, window time.Duration) ([]stats.RouteRow, error) {
	v := url.Values{"resource": {q.Resource.String()}, "namespace": {q.Resource.Namespace}}
	if q.To != nil {
		v.Set("to", q.To.String())
		v.Set("to_namespace", q.To.Namespace)
	}
	var out struct{ Routes []stats.RouteRow }
	err := r.get(ctx, "/api/v1/routes", v, window, &out)
	return out.Routes, err
}

// Measure scrapes c's pods twice, window apart, and returns the snapshot:
// how the CLI computes stats when no viz API runs.
func Measure(ctx context.Context, c *Collector, window time.Duration) (Snapshot, error) {
	if err := c.ScrapeOnce(ctx); err != nil {
		return Snapshot{}, err
	}
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return Snapshot{}, ctx.Err()
	case <-t.C:
	}
	if err := c.ScrapeOnce(ctx); err != nil {
		return Snapshot{}, err
	}
	deltas, pods := c.Snapshot(2 * window)
	// Rates are over the window asked for, as Prometheus' increase() over a
	// range is: the two scrapes are window apart give or take their own
	// durations.
	for i := range deltas {
		deltas[i].Seconds = window.Seconds()
	}
	return Snapshot{deltas, pods}, nil
}
