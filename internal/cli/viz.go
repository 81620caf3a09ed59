package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-mesh/weft/internal/local"
	localstore "github.com/weft-mesh/weft/internal/store/local"
	"github.com/weft-mesh/weft/internal/viz"
	"github.com/weft-mesh/weft/internal/viz/stats"
)

// DefaultDashboardAddr is where 'weft viz dashboard' serves the dashboard and
// the viz API; the other viz commands use that API when it runs for the same
// state directory.
const DefaultDashboardAddr = "127.0.0.1:50750"

// directWindow is the window of viz commands that measure themselves (no viz
// API running): they scrape every proxy twice, this far apart.
const directWindow = 10 * time.Second

func newCmdViz(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "viz",
		Short: "Golden metrics, routes, edges and the dashboard",
		Long: `Observe the mesh: success rate, requests per second and latency of every
workload, per route and per edge, read from the proxies' /metrics.

When 'weft viz dashboard' runs for the same state directory the commands ask
its viz API (window 1m by default); otherwise they scrape every proxy twice,
--window apart (10s by default).`,
	}
	cmd.AddCommand(newCmdVizStat(g), newCmdVizRoutes(g), newCmdVizEdges(g), newCmdVizTop(g), newCmdVizTap(g), newCmdVizDashboard(g))
	return cmd
}

// vizSource is how a viz command gets its numbers.
type vizSource struct {
	addr   string
	window time.Duration
}

func (o *vizSource) flags(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&o.window, "window", 0, "time window of the metrics (default: the viz API's 1m, or 10s when measuring directly)")
	cmd.Flags().StringVar(&o.addr, "viz-addr", "", "viz API address (default: "+DefaultDashboardAddr+" when it serves this state directory)")
}

// open returns the viz API when one serves dir, else a direct measurement
// over the window.
func (o *vizSource) open(ctx context.Context, g *Globals) (viz.Source, time.Duration, error) {
	dir := g.StateDirOrDefault()
	if o.addr != "" {
		return viz.Remote{Addr: o.addr}, o.window, nil
	}
	// The dashboard 'weft up' runs for dir (at its --dashboard-addr), else
	// one at the default address serving dir.
	addrs := []string{DefaultDashboardAddr}
	if m, err := local.ReadMesh(dir); err == nil {
		for _, c := range m.Components {
			if u := c.Addresses["url"]; c.Kind == local.KindDashboard && u != "" {
				a := strings.TrimSuffix(strings.TrimPrefix(u, "http://"), "/")
				if a != DefaultDashboardAddr {
					addrs = append([]string{a}, addrs...)
				}
			}
		}
	}
	for _, a := range addrs {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		info, err := viz.Remote{Addr: a}.Info(pctx)
		cancel()
		if err == nil && sameDir(info.StateDir, dir) {
			return viz.Remote{Addr: a}, o.window, nil
		}
	}
	window := o.window
	if window <= 0 {
		window = directWindow
	}
	st, err := localstore.OpenWithOptions(dir, localstore.Options{NoFollow: true})
	if err != nil {
		return nil, 0, err
	}
	defer st.Close()
	pods, err := viz.PodsFromStore(ctx, st)
	if err != nil {
		return nil, 0, err
	}
	scrapable := 0
	for _, p := range pods {
		if p.AdminAddr != "" {
			scrapable++
		}
	}
	if scrapable == 0 {
		return nil, 0, fmt.Errorf("viz: no meshed pods in the state directory %s: start a mesh with 'weft up' (or pass --state-dir)", dir)
	}
	c := &viz.Collector{
		Pods:   func(context.Context) ([]stats.Pod, error) { return pods, nil },
		Window: window,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	snap, err := viz.Measure(ctx, c, window)
	if err != nil {
		return nil, 0, err
	}
	for k, e := range c.Errors() {
		fmt.Fprintf(g.Err, "warning: %s: %s\n", k, e)
	}
	return snap, window, nil
}

func sameDir(a, b string) bool {
	ca, err1 := filepath.Abs(a)
	cb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && filepath.Clean(ca) == filepath.Clean(cb)
}

// Cells as Linkerd's viz prints them.
func cellSR(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", *v*100)
}

func cellRPS(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1frps", *v)
}

func cellMs(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%dms", int64(math.Round(*v)))
}

func cellCount(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%d", int64(math.Round(*v)))
}

func cellBytes(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1fB/s", *v)
}

func checkOutput(o string) error {
	switch o {
	case "", "wide", "json":
		return nil
	}
	return fmt.Errorf("viz: unknown output format %q (want wide or json)", o)
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func noTraffic(g *Globals) error {
	fmt.Fprintln(g.Err, "No traffic found.")
	return nil
}

func newCmdVizStat(g *Globals) *cobra.Command {
	var (
		src                        vizSource
		ns, from, to, fromNS, toNS string
		all                        bool
		output                     string
	)
	cmd := &cobra.Command{
		Use:   "stat (deploy|po|ns|au) [NAME]",
		Short: "Golden metrics of deployments, pods, namespaces or authorities",
		Long: `Print success rate, requests per second, latency percentiles and open TCP
connections of each resource, from its proxies' inbound metrics, or with
--from/--to from the callers' outbound metrics.`,
		Example: `  weft viz stat deploy -n faces
  weft viz stat deploy/face -n faces -o wide
  weft viz stat deploy -n faces --from deploy/face
  weft viz stat po -A --to deploy/smiley --to-namespace faces --window 30s`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			typ, name := args[0], ""
			if t, n, ok := strings.Cut(typ, "/"); ok {
				typ, name = t, n
			}
			if len(args) == 2 {
				if name != "" {
					return fmt.Errorf("viz: give the name once: %q or %q", args[0], args[0]+" "+args[1])
				}
				name = args[1]
			}
			kind, err := stats.ParseKind(typ)
			if err != nil {
				return err
			}
			if ns == "" {
				ns = "default"
			}
			q := stats.Query{Kind: kind, Name: name, Namespace: ns}
			if all || kind == stats.Namespace {
				q.Namespace = ""
			}
			if from != "" && to != "" {
				return errors.New("viz: --from and --to cannot be used together")
			}
			for _, p := range []struct {
				flag, v, ns string
				dst         **stats.Ref
			}{{"--from", from, fromNS, &q.From}, {"--to", to, toNS, &q.To}} {
				if p.v == "" {
					continue
				}
				if p.ns == "" {
					p.ns = ns
				}
				r, err := stats.ParseRef(p.v, p.ns)
				if err != nil {
					return fmt.Errorf("%s: %w", p.flag, err)
				}
				*p.dst = &r
			}
			s, window, err := src.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			rows, err := s.Stat(cmd.Context(), q, window)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeStatJSON(g.Out, kind, rows)
			}
			if len(rows) == 0 {
				return noTraffic(g)
			}
			return statTable(kind, rows, q.Namespace == "" && kind != stats.Namespace, output == "wide").write(g.Out)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ns, "namespace", "n", "", `namespace of the resources (default "default")`)
	f.BoolVarP(&all, "all-namespaces", "A", false, "resources of every namespace")
	f.StringVar(&from, "from", "", "only traffic sent by this resource (TYPE/NAME)")
	f.StringVar(&to, "to", "", "only traffic sent to this resource (TYPE/NAME)")
	f.StringVar(&fromNS, "from-namespace", "", "namespace of --from (default: --namespace)")
	f.StringVar(&toNS, "to-namespace", "", "namespace of --to (default: --namespace)")
	f.StringVarP(&output, "output", "o", "", "output format: wide or json")
	src.flags(cmd)
	return cmd
}

func statTable(kind stats.Kind, rows []stats.Row, withNS, wide bool) *table {
	t := &table{}
	if withNS {
		t.header = append(t.header, "NAMESPACE")
	}
	t.header = append(t.header, "NAME")
	if kind == stats.PodKind {
		t.header = append(t.header, "STATUS")
	}
	t.header = append(t.header, "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN")
	if wide {
		t.header = append(t.header, "READ_BYTES/SEC", "WRITE_BYTES/SEC")
	}
	for _, r := range rows {
		var row []string
		if withNS {
			row = append(row, r.Namespace)
		}
		row = append(row, r.Name)
		if kind == stats.PodKind {
			row = append(row, orDash(r.Status))
		}
		meshed := "-"
		if r.TotalPods > 0 {
			meshed = fmt.Sprintf("%d/%d", r.MeshedPods, r.TotalPods)
		}
		row = append(row, meshed, cellSR(r.SuccessRate), cellRPS(r.RPS), cellMs(r.LatencyP50), cellMs(r.LatencyP95), cellMs(r.LatencyP99), cellCount(r.TCPConn))
		if wide {
			row = append(row, cellBytes(r.ReadBytesPS), cellBytes(r.WriteBytesPS))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeStatJSON writes rows with Linkerd's -o json keys.
func writeStatJSON(w io.Writer, kind stats.Kind, rows []stats.Row) error {
	type jsonRow struct {
		Namespace    string   `json:"namespace"`
		Kind         string   `json:"kind"`
		Name         string   `json:"name"`
		Meshed       string   `json:"meshed"`
		Success      *float64 `json:"success"`
		RPS          *float64 `json:"rps"`
		P50          *float64 `json:"latency_ms_p50"`
		P95          *float64 `json:"latency_ms_p95"`
		P99          *float64 `json:"latency_ms_p99"`
		TCP          *float64 `json:"tcp_open_connections"`
		ReadBytesPS  *float64 `json:"tcp_read_bytes_rate,omitempty"`
		WriteBytesPS *float64 `json:"tcp_write_bytes_rate,omitempty"`
	}
	out := make([]jsonRow, 0, len(rows))
	for _, r := range rows {
		meshed := "-"
		if r.TotalPods > 0 {
			meshed = fmt.Sprintf("%d/%d", r.MeshedPods, r.TotalPods)
		}
		out = append(out, jsonRow{r.Namespace, string(kind), r.Name, meshed, r.SuccessRate, r.RPS, r.LatencyP50, r.LatencyP95, r.LatencyP99, r.TCPConn, r.ReadBytesPS, r.WriteBytesPS})
	}
	return writeJSONOut(w, out)
}

func newCmdVizRoutes(g *Globals) *cobra.Command {
	var (
		src          vizSource
		ns, to, toNS string
		output       string
	)
	cmd := &cobra.Command{
		Use:   "routes deploy/NAME",
		Short: "Golden metrics per route",
		Long: `Print golden metrics per ServiceProfile route of a workload's inbound
traffic, or with --to of its outbound traffic toward a resource. Requests that
matched no route (or every request, without route metrics) are the [DEFAULT]
row. With --to and -o wide, EFFECTIVE counts requests as the caller saw them
(after retries) and ACTUAL counts every attempt.`,
		Example: `  weft viz routes deploy/smiley -n faces
  weft viz routes deploy/face -n faces --to deploy/smiley -o wide`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if ns == "" {
				ns = "default"
			}
			res, err := stats.ParseRef(args[0], ns)
			if err != nil {
				return err
			}
			q := stats.RouteQuery{Resource: res}
			if to != "" {
				if toNS == "" {
					toNS = ns
				}
				r, err := stats.ParseRef(to, toNS)
				if err != nil {
					return fmt.Errorf("--to: %w", err)
				}
				q.To = &r
			}
			s, window, err := src.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			rows, err := s.Routes(cmd.Context(), q, window)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSONOut(g.Out, rows)
			}
			if len(rows) == 0 {
				return noTraffic(g)
			}
			wide := output == "wide" && q.To != nil
			t := &table{header: []string{"ROUTE", "SERVICE"}}
			if wide {
				t.header = append(t.header, "EFFECTIVE_SUCCESS", "EFFECTIVE_RPS", "ACTUAL_SUCCESS", "ACTUAL_RPS")
			} else {
				t.header = append(t.header, "SUCCESS", "RPS")
			}
			t.header = append(t.header, "LATENCY_P50", "LATENCY_P95", "LATENCY_P99")
			for _, r := range rows {
				row := []string{r.Route, orDash(r.Service), cellSR(r.Effective.SuccessRate), cellRPS(r.Effective.RPS)}
				if wide {
					row = append(row, cellSR(r.Actual.SuccessRate), cellRPS(r.Actual.RPS))
				}
				row = append(row, cellMs(r.Effective.LatencyP50), cellMs(r.Effective.LatencyP95), cellMs(r.Effective.LatencyP99))
				t.rows = append(t.rows, row)
			}
			return t.write(g.Out)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ns, "namespace", "n", "", `namespace of the resource (default "default")`)
	f.StringVar(&to, "to", "", "outbound routes toward this resource (TYPE/NAME)")
	f.StringVar(&toNS, "to-namespace", "", "namespace of --to (default: --namespace)")
	f.StringVarP(&output, "output", "o", "", "output format: wide (with --to) or json")
	src.flags(cmd)
	return cmd
}

func newCmdVizEdges(g *Globals) *cobra.Command {
	var (
		src    vizSource
		ns     string
		all    bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "edges (deploy|po)",
		Short: "Who calls whom, and whether the connection is secured",
		Example: `  weft viz edges deploy -n faces
  weft viz edges po -A -o wide`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			kind, err := stats.ParseKind(args[0])
			if err != nil {
				return err
			}
			if kind != stats.Deployment && kind != stats.PodKind {
				return fmt.Errorf("viz: edges are between deployments or pods, not %ss", kind)
			}
			if ns == "" {
				ns = "default"
			}
			if all {
				ns = ""
			}
			s, window, err := src.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			edges, err := s.Edges(cmd.Context(), kind, ns, window)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSONOut(g.Out, edges)
			}
			if len(edges) == 0 {
				fmt.Fprintln(g.Err, "No edges found.")
				return nil
			}
			t := &table{header: []string{"SRC", "DST", "SRC_NS", "DST_NS", "SECURED"}}
			if output == "wide" {
				t.header = append(t.header, "CLIENT_ID", "SERVER_ID")
			}
			for _, e := range edges {
				secured := "×"
				if e.Secured {
					secured = "√"
				}
				row := []string{e.Src, e.Dst, e.SrcNamespace, e.DstNamespace, secured}
				if output == "wide" {
					row = append(row, orDash(e.ClientID), orDash(e.ServerID))
				}
				t.rows = append(t.rows, row)
			}
			return t.write(g.Out)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ns, "namespace", "n", "", `namespace (default "default")`)
	f.BoolVarP(&all, "all-namespaces", "A", false, "edges of every namespace")
	f.StringVarP(&output, "output", "o", "", "output format: wide or json")
	src.flags(cmd)
	return cmd
}

// tapOptions are the filters of 'weft viz tap' and 'weft viz top'.
type tapOptions struct {
	ns, method, path, authority, to, toNS string
	limit                                 uint32
}

func (o *tapOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&o.ns, "namespace", "n", "default", "namespace of the resource")
	f.StringVar(&o.method, "method", "", "only requests with this HTTP method")
	f.StringVar(&o.path, "path", "", "only requests whose path starts with this")
	f.StringVar(&o.authority, "authority", "", "only requests to this authority")
	f.StringVar(&o.to, "to", "", "only requests to this resource (TYPE/NAME)")
	f.StringVar(&o.toNS, "to-namespace", "", "namespace of --to (default: --namespace)")
	f.Uint32Var(&o.limit, "limit", 0, "stop after this many requests per proxy (0: until interrupted)")
}

// start resolves the resource and filter and returns the pods to tap.
func (o *tapOptions) start(ctx context.Context, g *Globals, arg string) ([]stats.Pod, viz.TapFilter, error) {
	res, err := stats.ParseRef(arg, o.ns)
	if err != nil {
		return nil, viz.TapFilter{}, err
	}
	if res.Kind == stats.Authority {
		return nil, viz.TapFilter{}, fmt.Errorf("viz: tap a deployment, pod or namespace, not %s", arg)
	}
	f := viz.TapFilter{Method: o.method, Path: o.path, Authority: o.authority, Limit: o.limit}
	if o.to != "" {
		ns := o.toNS
		if ns == "" {
			ns = o.ns
		}
		to, err := stats.ParseRef(o.to, ns)
		if err != nil {
			return nil, f, fmt.Errorf("--to: %w", err)
		}
		f.To = &to
	}
	st, err := localstore.OpenWithOptions(g.StateDirOrDefault(), localstore.Options{NoFollow: true})
	if err != nil {
		return nil, f, err
	}
	defer st.Close()
	pods, err := viz.PodsFromStore(ctx, st)
	if err != nil {
		return nil, f, err
	}
	targets := viz.TapTargets(pods, res)
	if len(targets) == 0 {
		return nil, f, fmt.Errorf("viz: no pods for %s in namespace %s", arg, o.ns)
	}
	return targets, f, nil
}

func tapError(err error) error {
	if errors.Is(err, viz.ErrTapUnavailable) {
		return &ExitError{Code: 2, Err: fmt.Errorf("%w; 'weft viz stat' and 'weft viz routes' work from metrics meanwhile", err)}
	}
	return err
}

func newCmdVizTap(g *Globals) *cobra.Command {
	var (
		o      tapOptions
		output string
	)
	cmd := &cobra.Command{
		Use:   "tap (deploy/NAME|po/NAME|ns/NAME)",
		Short: "Stream the requests of a workload as its proxies see them",
		Long: `Print one line per request, response and end of stream seen by the
proxies of a resource, in Linkerd's tap format, until interrupted (or
--limit requests per proxy). Needs proxies that serve the tap API (pods
annotated weft.io/tap-addr).`,
		Example: `  weft viz tap deploy/face -n faces
  weft viz tap deploy/face -n faces --path /smiley --method GET --to deploy/smiley`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" {
				return fmt.Errorf("viz: unknown output format %q (want json)", output)
			}
			pods, f, err := o.start(cmd.Context(), g, args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(g.Out)
			err = viz.Tap(cmd.Context(), pods, f, func(l viz.TapLine) {
				if output == "json" {
					enc.Encode(l)
					return
				}
				fmt.Fprintln(g.Out, l.Line)
			})
			return tapError(err)
		},
	}
	o.flags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (one object per event)")
	return cmd
}

func newCmdVizTop(g *Globals) *cobra.Command {
	var (
		o       tapOptions
		rows    int
		refresh time.Duration
	)
	cmd := &cobra.Command{
		Use:   "top (deploy/NAME|po/NAME|ns/NAME)",
		Short: "A live table of the most frequent requests",
		Long: `Tap a resource's proxies and show its requests grouped by source,
destination, method and path, most frequent first: Source Destination Method
Path Count Best Worst Last Success Rate. On a terminal the table is redrawn
every --refresh; otherwise it is printed when the tap ends (--limit).`,
		Example: `  weft viz top deploy/face -n faces`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pods, f, err := o.start(cmd.Context(), g, args[0])
			if err != nil {
				return err
			}
			var (
				mu  sync.Mutex
				top viz.TopFromTap
			)
			live := isTerminal(g.Out)
			done := make(chan error, 1)
			go func() {
				done <- viz.Tap(cmd.Context(), pods, f, func(l viz.TapLine) {
					mu.Lock()
					top.Add(l)
					mu.Unlock()
				})
			}()
			draw := func(clear bool) {
				mu.Lock()
				defer mu.Unlock()
				if clear {
					fmt.Fprint(g.Out, "\033[H\033[2J")
				}
				viz.RenderTop(g.Out, top.Rows(), rows)
			}
			tick := time.NewTicker(refresh)
			defer tick.Stop()
			for {
				select {
				case err := <-done:
					if err != nil {
						return tapError(err)
					}
					draw(live)
					return nil
				case <-tick.C:
					if live {
						draw(true)
					}
				}
			}
		},
	}
	o.flags(cmd)
	cmd.Flags().IntVar(&rows, "routes", 20, "how many rows to show (0: all)")
	cmd.Flags().DurationVar(&refresh, "refresh", time.Second, "redraw period on a terminal")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func newCmdVizDashboard(g *Globals) *cobra.Command {
	var (
		addr, show       string
		window, interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the web dashboard and the viz API",
		Long: `Scrape every proxy of the local mesh every --interval, keep --window of
scrapes, and serve the dashboard (workloads, routes, topology) and the viz
API (/api/v1/...) at --addr until interrupted.`,
		Example: `  weft viz dashboard
  weft viz dashboard --addr 127.0.0.1:0 --show url`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if show != "url" && show != "browser" {
				return fmt.Errorf("viz: --show %q: want url or browser", show)
			}
			// Absolute, so commands run from elsewhere recognise the state
			// directory the API reports.
			dir, err := filepath.Abs(g.StateDirOrDefault())
			if err != nil {
				return fmt.Errorf("viz: state directory: %w", err)
			}
			st, err := localstore.Open(dir)
			if err != nil {
				return err
			}
			defer st.Close()
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("viz: dashboard address %s: %w (is another dashboard running? pick one with --addr)", addr, err)
			}
			log := slog.New(slog.NewTextHandler(g.Err, nil))
			c := &viz.Collector{
				Pods:     func(ctx context.Context) ([]stats.Pod, error) { return viz.PodsFromStore(ctx, st) },
				Window:   window,
				Interval: interval,
				Logger:   log,
			}
			url := "http://" + ln.Addr().String()
			fmt.Fprintf(g.Out, "Weft dashboard available at:\n%s\n", url)
			if show == "browser" {
				if err := openBrowser(url); err != nil {
					fmt.Fprintf(g.Err, "could not open a browser (%v); open the URL above\n", err)
				}
			}
			return viz.Serve(cmd.Context(), ln, c, dir, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", DefaultDashboardAddr, "listen address of the dashboard and the viz API")
	f.StringVar(&show, "show", "browser", "url: print the URL; browser: also open it")
	f.DurationVar(&window, "window", viz.DefaultWindow, "metrics window kept and shown")
	f.DurationVar(&interval, "interval", 2*time.Second, "scrape period")
	return cmd
}

func openBrowser(url string) error {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	cmd := exec.Command(name, url)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}

func newCmdDiagnostics(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diagnostics",
		Short: "Raw views for debugging: proxy metrics, endpoints",
	}
	cmd.AddCommand(newCmdDiagProxyMetrics(g), newCmdDiagEndpoints(g))
	return cmd
}

func newCmdDiagProxyMetrics(g *Globals) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "proxy-metrics (deploy/NAME|po/NAME)",
		Short: "Print the raw /metrics of a workload's proxies",
		Example: `  weft diagnostics proxy-metrics -n faces deploy/smiley
  weft diagnostics proxy-metrics -n faces po/smiley-5d8f9c7b4-x2k9q`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := stats.ParseRef(args[0], ns)
			if err != nil {
				return err
			}
			if ref.Kind != stats.Deployment && ref.Kind != stats.PodKind {
				return fmt.Errorf("diagnostics: proxy-metrics takes deploy/NAME or po/NAME, not %s", args[0])
			}
			dir := g.StateDirOrDefault()
			st, err := localstore.OpenWithOptions(dir, localstore.Options{NoFollow: true})
			if err != nil {
				return err
			}
			defer st.Close()
			pods, err := viz.PodsFromStore(cmd.Context(), st)
			if err != nil {
				return err
			}
			var match []stats.Pod
			for _, p := range pods {
				if p.Namespace == ns && (ref.Kind == stats.PodKind && p.Name == ref.Name || ref.Kind == stats.Deployment && p.Deployment == ref.Name) {
					match = append(match, p)
				}
			}
			if len(match) == 0 {
				return fmt.Errorf("diagnostics: no pods for %s in namespace %s (see 'weft get pods -n %s')", args[0], ns, ns)
			}
			client := &http.Client{Timeout: 5 * time.Second}
			var failed []string
			for i, p := range match {
				fmt.Fprintf(g.Out, "#\n# POD %s (%d of %d)\n#\n", p.Name, i+1, len(match))
				if p.AdminAddr == "" {
					fmt.Fprintf(g.Out, "# no proxy admin address (annotation %s): not meshed\n", viz.AnnotationAdminAddr)
					failed = append(failed, p.Name)
					continue
				}
				body, err := viz.FetchRaw(cmd.Context(), client, p.AdminAddr)
				if err != nil {
					fmt.Fprintf(g.Out, "# %v\n", err)
					failed = append(failed, p.Name)
					continue
				}
				g.Out.Write(body)
			}
			if len(failed) > 0 {
				return fmt.Errorf("diagnostics: could not read the metrics of %s", strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace of the resource")
	return cmd
}

func newCmdDiagEndpoints(g *Globals) *cobra.Command {
	var (
		ns, controlAddr, output string
		timeout                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "endpoints AUTHORITY...",
		Short: "Ask the control plane's Destination service for an authority's endpoints",
		Long: `Resolve each authority (smiley.faces.svc.cluster.local:80, smiley.faces:80,
...) with the control plane's Destination.Get, as a proxy in --namespace
would, and print the endpoints of the first update.`,
		Example: `  weft diagnostics endpoints smiley.faces.svc.cluster.local:80`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" {
				return fmt.Errorf("diagnostics: unknown output format %q (want json)", output)
			}
			addr := controlAddr
			if addr == "" {
				m, err := local.ReadMesh(g.StateDirOrDefault())
				if err != nil {
					return fmt.Errorf("diagnostics: finding the control plane: %w (or pass --control-addr)", err)
				}
				addr = m.ControlAddr
			}
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return fmt.Errorf("diagnostics: control plane at %s: %w", addr, err)
			}
			defer cc.Close()
			token, _ := json.Marshal(map[string]string{"ns": ns})
			var all []endpointRow
			for _, authority := range args {
				rows, err := firstEndpoints(cmd.Context(), pb.NewDestinationClient(cc), authority, string(token), timeout)
				if err != nil {
					return fmt.Errorf("diagnostics: endpoints of %s from %s: %w", authority, addr, err)
				}
				all = append(all, rows...)
			}
			if output == "json" {
				return writeJSONOut(g.Out, all)
			}
			if len(all) == 0 {
				fmt.Fprintln(g.Err, "No endpoints found.")
				return nil
			}
			t := &table{header: []string{"NAMESPACE", "IP", "PORT", "POD", "SERVICE"}}
			for _, r := range all {
				t.rows = append(t.rows, []string{orDash(r.Namespace), r.IP, fmt.Sprint(r.Port), orDash(r.Pod), orDash(r.Service)})
			}
			return t.write(g.Out)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ns, "namespace", "n", "default", "namespace of the asking proxy (short authorities are relative to it)")
	f.StringVar(&controlAddr, "control-addr", "", "control plane gRPC address (default: from the running mesh)")
	f.StringVarP(&output, "output", "o", "", "output format: json")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the first update")
	return cmd
}

type endpointRow struct {
	Namespace string `json:"namespace"`
	IP        string `json:"ip"`
	Port      uint32 `json:"port"`
	Pod       string `json:"pod"`
	Service   string `json:"service"`
}

// firstEndpoints reads the first update of a Destination.Get stream.
func firstEndpoints(ctx context.Context, c pb.DestinationClient, authority, token string, timeout time.Duration) ([]endpointRow, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stream, err := c.Get(ctx, &pb.GetDestination{Path: authority, ContextToken: token})
	if err != nil {
		return nil, err
	}
	u, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	add := u.GetAdd()
	if add == nil {
		return nil, nil // no_endpoints (or a removal, impossible first)
	}
	var rows []endpointRow
	for _, a := range add.GetAddrs() {
		labels := map[string]string{}
		for k, v := range add.GetMetricLabels() {
			labels[k] = v
		}
		for k, v := range a.GetMetricLabels() {
			labels[k] = v
		}
		r := endpointRow{Namespace: labels["namespace"], Pod: labels["pod"], Service: labels["service"]}
		if ta := a.GetAddr(); ta != nil {
			r.Port = ta.GetPort()
			r.IP = viz.IPAddr(ta.GetIp())
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Pod != rows[j].Pod {
			return rows[i].Pod < rows[j].Pod
		}
		return rows[i].Port < rows[j].Port
	})
	return rows, nil
}
