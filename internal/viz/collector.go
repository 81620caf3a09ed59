// Package viz is Weft's observability front: it scrapes every proxy's
// /metrics, keeps a short window of scrapes, and serves golden metrics,
// edges and routes as a JSON API and a web dashboard. The math lives in
// viz/stats; the text format parser in viz/promtext.
package viz

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/viz/promtext"
	"github.com/weft-mesh/weft/internal/viz/stats"
)

// Annotations the supervisor writes on each Pod.
const (
	AnnotationAdminAddr    = "weft.io/admin-addr"
	AnnotationProxyVersion = "linkerd.io/proxy-version"
)

// Defaults of the collector.
const (
	DefaultWindow   = time.Minute
	DefaultInterval = 5 * time.Second
)

// PodsFromStore lists the pods of st as viz sees them.
func PodsFromStore(ctx context.Context, st store.Store) ([]stats.Pod, error) {
	objs, err := st.List(ctx, api.KindPod, "")
	if err != nil {
		return nil, fmt.Errorf("viz: listing pods: %w", err)
	}
	pods := make([]stats.Pod, 0, len(objs))
	for _, o := range objs {
		p, ok := o.(*corev1.Pod)
		if !ok {
			continue
		}
		pods = append(pods, PodOf(p))
	}
	return pods, nil
}

// PodOf describes p for viz. The deployment is read from the replica name
// (<deployment>-<pod-template-hash>-<suffix>), as Kubernetes names them.
func PodOf(p *corev1.Pod) stats.Pod {
	_, meshed := p.Annotations[AnnotationProxyVersion]
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return stats.Pod{
		Namespace:      p.Namespace,
		Name:           p.Name,
		Deployment:     deploymentOf(p),
		ServiceAccount: sa,
		Status:         string(p.Status.Phase),
		Meshed:         meshed,
		AdminAddr:      p.Annotations[AnnotationAdminAddr],
		TapAddr:        p.Annotations[AnnotationTapAddr],
	}
}

func deploymentOf(p *corev1.Pod) string {
	for _, o := range p.OwnerReferences {
		if o.Kind == "Deployment" {
			return o.Name
		}
	}
	hash := p.Labels["pod-template-hash"]
	if hash == "" {
		return ""
	}
	if i := strings.LastIndex(p.Name, "-"+hash+"-"); i > 0 {
		return p.Name[:i]
	}
	return ""
}

// Collector scrapes every pod's proxy and keeps the scrapes of the last
// window. It is safe for concurrent use.
type Collector struct {
	// Pods lists the pods to scrape.
	Pods func(ctx context.Context) ([]stats.Pod, error)
	// Window is how long scrapes are kept (and the default stats window).
	Window time.Duration
	// Interval is the scrape period of Run.
	Interval time.Duration
	// Client fetches /metrics; nil means a client with a 2 s timeout.
	Client *http.Client
	Logger *slog.Logger

	mu      sync.Mutex
	pods    []stats.Pod
	history map[string][]stats.Scrape // by namespace/pod, oldest first
	errs    map[string]string         // last scrape error by namespace/pod
}

func (c *Collector) window() time.Duration {
	if c.Window <= 0 {
		return DefaultWindow
	}
	return c.Window
}

func (c *Collector) client() *http.Client {
	if c.Client != nil {
		return c.Client
	}
	return &http.Client{Timeout: 2 * time.Second}
}

func (c *Collector) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// Run scrapes every Interval until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	interval := c.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := c.ScrapeOnce(ctx); err != nil && ctx.Err() == nil {
			c.log().Warn("viz: scrape failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ScrapeOnce lists the pods and scrapes each proxy in parallel. A proxy that
// cannot be reached is remembered as an error and skipped: the others still
// count.
func (c *Collector) ScrapeOnce(ctx context.Context) error {
	pods, err := c.Pods(ctx)
	if err != nil {
		return err
	}
	type result struct {
		pod stats.Pod
		s   stats.Scrape
		err error
	}
	results := make([]result, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		results[i].pod = p
		if p.AdminAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Stamp the scrape when it is sent, as Prometheus does: the
			// proxy renders its counters right then, while the response
			// may be late on a loaded machine.
			at := time.Now()
			samples, err := Fetch(ctx, c.client(), p.AdminAddr)
			results[i].s = stats.Scrape{Pod: p, Time: at, Samples: samples}
			results[i].err = err
		}()
	}
	wg.Wait()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.history == nil {
		c.history = map[string][]stats.Scrape{}
		c.errs = map[string]string{}
	}
	c.pods = pods
	live := map[string]bool{}
	now := time.Now()
	for _, r := range results {
		k := r.pod.Namespace + "/" + r.pod.Name
		live[k] = true
		switch {
		case r.pod.AdminAddr == "":
			delete(c.errs, k)
		case r.err != nil:
			c.errs[k] = r.err.Error()
		default:
			delete(c.errs, k)
			r.s.Samples = intern(r.s.Samples, c.history[k])
			h := append(c.history[k], r.s)
			// Keep one scrape older than the window so a full window is
			// always covered.
			for len(h) > 2 && now.Sub(h[1].Time) > c.window() {
				h = h[1:]
			}
			c.history[k] = h
		}
	}
	for k := range c.history {
		if !live[k] {
			delete(c.history, k)
			delete(c.errs, k)
		}
	}
	return nil
}

// intern keeps the samples viz reads, with their keys computed, sharing
// label maps with the pod's previous scrape: a window of scrapes then costs
// little more than their values.
func intern(samples []promtext.Sample, history []stats.Scrape) []promtext.Sample {
	prev := map[string]map[string]string{}
	if len(history) > 0 {
		for _, s := range history[len(history)-1].Samples {
			prev[s.Key()] = s.Labels
		}
	}
	out := make([]promtext.Sample, 0, len(samples))
	for _, s := range samples {
		if !stats.Used(s.Name) {
			continue
		}
		s = s.Keyed()
		if l, ok := prev[s.Key()]; ok {
			s.Labels = l
		}
		out = append(out, s)
	}
	return out
}

// Snapshot returns each pod's delta over (about) the last window: from the
// oldest kept scrape not older than window to the newest. Pods scraped only
// once have no delta yet.
func (c *Collector) Snapshot(window time.Duration) ([]stats.Delta, []stats.Pod) {
	if window <= 0 {
		window = c.window()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var deltas []stats.Delta
	for _, p := range c.pods {
		h := c.history[p.Namespace+"/"+p.Name]
		if len(h) < 2 {
			continue
		}
		cur := h[len(h)-1]
		old := h[0]
		for _, s := range h[:len(h)-1] {
			// Allow a little slack: scrapes are not exactly periodic.
			if cur.Time.Sub(s.Time) <= window+window/10 {
				old = s
				break
			}
			old = s
		}
		deltas = append(deltas, stats.NewDelta(old, cur))
	}
	return deltas, slices.Clone(c.pods)
}

// CurrentPods returns the pods of the last scrape.
func (c *Collector) CurrentPods() []stats.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pods)
}

// Errors returns the last scrape error of each pod that failed, by
// namespace/pod.
func (c *Collector) Errors() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.errs))
	for k, v := range c.errs {
		out[k] = v
	}
	return out
}

// Fetch reads and parses a proxy's /metrics at addr (host:port).
func Fetch(ctx context.Context, client *http.Client, addr string) ([]promtext.Sample, error) {
	body, err := FetchRaw(ctx, client, addr)
	if err != nil {
		return nil, err
	}
	samples, err := promtext.Parse(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("viz: metrics of %s: %w", addr, err)
	}
	return samples, nil
}

// FetchRaw returns the body of a proxy's /metrics at addr (host:port).
func FetchRaw(ctx context.Context, client *http.Client, addr string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("viz: metrics of %s: %w", addr, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("viz: metrics of %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("viz: metrics of %s: %s", addr, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("viz: metrics of %s: %w", addr, err)
	}
	return body, nil
}
