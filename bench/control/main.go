// Command control benchmarks the control plane against issue 8's targets:
// how long an endpoint change takes to reach many watching Destination
// streams, and how much memory a control plane holding many endpoints
// uses.
//
// It writes a namespace of Services, Pods and EndpointSlices (-endpoints
// in slices of -per-slice, as Kubernetes' controller cuts them) into a
// local state directory, runs a real 'weft control' process on it, opens
// -streams Destination.Get streams on one service over -conns gRPC
// connections (each proxy has its own connection), then -changes times
// adds an endpoint to that service's slice and measures, per stream, the
// time from the start of the write to the update's arrival. The clock
// starts before the state directory is written, so the latency covers
// the whole path: store write, the control plane noticing it (fsnotify),
// rebuilding its snapshot, and the fan-out.
//
//	go run ./bench/control                     # 10,000 endpoints, 1,000 streams
//	go run ./bench/control -weft /path/to/weft -o bench/control/results.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store/local"
)

const namespace = "bench"

type options struct {
	weft      string
	endpoints int
	perSlice  int
	streams   int
	conns     int
	changes   int
	jsonOut   string
	profile   string // directory for the control plane's heap and CPU profiles
}

// result is what one run measured.
type result struct {
	Store       string  `json:"store"`
	Endpoints   int     `json:"endpoints"`
	Services    int     `json:"services"`
	Streams     int     `json:"streams"`
	Conns       int     `json:"conns"`
	Changes     int     `json:"changes"`
	Samples     int     `json:"samples"`
	Missed      int     `json:"missed"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	FirstMs     float64 `json:"first_ms_median"` // first stream to hear of a change
	WriteMs     float64 `json:"write_ms_median"` // the store write alone
	ReadyS      float64 `json:"ready_s"`         // start to /ready with every endpoint loaded
	RSSIdleMB   float64 `json:"rss_loaded_mb"`   // after loading, before streams
	RSSStreamMB float64 `json:"rss_streams_mb"`  // with every stream open
	PeakRSSMB   float64 `json:"peak_rss_mb"`     // VmHWM at the end
	Machine     string  `json:"machine"`
}

// parseArgs reads the command's flags into o.
func parseArgs(o *options, args []string) error {
	f := flag.NewFlagSet("control", flag.ContinueOnError)
	f.StringVar(&o.weft, "weft", o.weft, "weft binary (default: build ./cmd/weft)")
	f.IntVar(&o.endpoints, "endpoints", o.endpoints, "endpoints (pods) in the namespace")
	f.IntVar(&o.perSlice, "per-slice", o.perSlice, "endpoints per service (one EndpointSlice each)")
	f.IntVar(&o.streams, "streams", o.streams, "Destination.Get streams watching the changed service")
	f.IntVar(&o.conns, "conns", o.conns, "gRPC connections the streams are spread over")
	f.IntVar(&o.changes, "changes", o.changes, "endpoint changes to time")
	f.StringVar(&o.jsonOut, "o", o.jsonOut, "also write the result as JSON to this file")
	f.StringVar(&o.profile, "profile", o.profile, "write the control plane's heap profile (streams open) and CPU profile (during the changes) to this directory")
	if err := f.Parse(args); err != nil {
		return err
	}
	if o.endpoints < 1 || o.perSlice < 1 || o.streams < 1 || o.conns < 1 || o.changes < 1 {
		return fmt.Errorf("control: -endpoints, -per-slice, -streams, -conns and -changes must be positive")
	}
	return nil
}

func main() {
	o := options{endpoints: 10000, perSlice: 100, streams: 1000, conns: 1000, changes: 20}
	if err := parseArgs(&o, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	r, err := run(context.Background(), o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "control:", err)
		os.Exit(1)
	}
	writeMarkdown(os.Stdout, r)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "control:", err)
			os.Exit(1)
		}
	}
}

// backend is where the benchmark writes resources and how the control
// plane is told to read them: a local state directory, or a Kubernetes
// API server (scale_test.go).
type backend interface {
	// load writes the namespace before the control plane starts.
	load(ctx context.Context, objs []api.Object) error
	// change writes a new version of an EndpointSlice.
	change(ctx context.Context, es *discoveryv1.EndpointSlice) error
	// command is 'weft [--state-dir D] control [store flags]', for a
	// control plane whose scratch directory is scratch.
	command(scratch string) []string
}

// localBackend is a state directory, written as 'weft apply' does.
type localBackend struct {
	dir string
	st  *local.Store
}

func newLocalBackend(dir string) (*localBackend, error) {
	st, err := local.Open(dir)
	if err != nil {
		return nil, err
	}
	return &localBackend{dir: dir, st: st}, nil
}

func (b *localBackend) load(ctx context.Context, objs []api.Object) error {
	return b.st.Apply(ctx, objs...)
}

func (b *localBackend) change(ctx context.Context, es *discoveryv1.EndpointSlice) error {
	return b.st.Apply(ctx, es)
}

func (b *localBackend) command(string) []string { return []string{"--state-dir", b.dir, "control"} }

func run(ctx context.Context, o options, logw io.Writer) (*result, error) {
	dir, err := os.MkdirTemp("", "weft-bench-control-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b, err := newLocalBackend(filepath.Join(dir, "state"))
	if err != nil {
		return nil, err
	}
	defer b.st.Close()
	r, err := measure(ctx, o, b, dir, logw)
	if r != nil {
		r.Store = "local"
	}
	return r, err
}

// measure loads the namespace into b, runs the control plane on it and
// times the changes.
func measure(ctx context.Context, o options, b backend, dir string, logw io.Writer) (*result, error) {
	bin := o.weft
	if bin == "" {
		bin = filepath.Join(dir, "weft")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/weft")
		cmd.Stderr = logw
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("building weft: %w", err)
		}
	}
	services := (o.endpoints + o.perSlice - 1) / o.perSlice
	fmt.Fprintf(logw, "writing %d services, %d pods and slices...\n", services, o.endpoints)
	if err := b.load(ctx, objects(o.endpoints, o.perSlice)); err != nil {
		return nil, fmt.Errorf("writing the namespace: %w", err)
	}

	addr, admin := freeAddr(), freeAddr()
	start := time.Now()
	args := append(b.command(filepath.Join(dir, "control")), "--addr", addr, "--admin-addr", admin, "--log-level", "warn")
	if o.profile != "" {
		args = append(args, "--enable-pprof")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := waitReady(admin, 2*time.Minute); err != nil {
		return nil, err
	}
	r := &result{Endpoints: o.endpoints, Services: services, Streams: o.streams, Conns: o.conns, Changes: o.changes, Machine: machine()}
	// /ready means the store was read; the first answer for the last
	// service means the snapshot holds every endpoint.
	probe, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer probe.Close()
	last := fmt.Sprintf("svc-%d.%s.svc.cluster.local:80", services-1, namespace)
	if _, err := firstAdd(ctx, pb.NewDestinationClient(probe), last); err != nil {
		return nil, err
	}
	r.ReadyS = time.Since(start).Seconds()
	// The control plane gives its start-up memory back after the first
	// snapshot, beside its watch loop: read RSS once it has settled.
	r.RSSIdleMB = settledRSS(cmd.Process.Pid, 5*time.Second)

	// The watchers: -streams Get streams on svc-0 over -conns connections.
	target := fmt.Sprintf("svc-0.%s.svc.cluster.local:80", namespace)
	conns := make([]*grpc.ClientConn, o.conns)
	for i := range conns {
		if conns[i], err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return nil, err
		}
		defer conns[i].Close()
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	arrivals := make([]chan time.Time, o.streams)
	var opened sync.WaitGroup
	errs := make(chan error, o.streams)
	for i := range o.streams {
		arrivals[i] = make(chan time.Time, o.changes+1)
		opened.Add(1)
		go func() {
			s, err := pb.NewDestinationClient(conns[i%len(conns)]).Get(sctx, &pb.GetDestination{Scheme: "k8s", Path: target, ContextToken: `{"ns":"` + namespace + `"}`})
			if err == nil {
				_, err = s.Recv() // the current endpoints
			}
			opened.Done()
			if err != nil {
				errs <- err
				return
			}
			for {
				u, err := s.Recv()
				if err != nil {
					return
				}
				if u.GetAdd() != nil {
					arrivals[i] <- time.Now()
				}
			}
		}()
	}
	opened.Wait()
	select {
	case err := <-errs:
		return nil, fmt.Errorf("opening streams: %w", err)
	default:
	}
	r.RSSStreamMB = rssMB(cmd.Process.Pid, "VmRSS")
	fmt.Fprintf(logw, "%d streams open; timing %d changes...\n", o.streams, o.changes)

	var cpuDone chan error
	if o.profile != "" {
		if err := fetch(admin, "/debug/pprof/heap?gc=1", filepath.Join(o.profile, "control-heap.pprof")); err != nil {
			return nil, err
		}
		// The text form ends with runtime.MemStats: stacks, heap
		// released and idle, GC target.
		if err := fetch(admin, "/debug/pprof/heap?debug=1", filepath.Join(o.profile, "control-heap.txt")); err != nil {
			return nil, err
		}
		cpuDone = make(chan error, 1)
		go func() {
			cpuDone <- fetch(admin, "/debug/pprof/profile?seconds=5", filepath.Join(o.profile, "control-cpu.pprof"))
		}()
	}

	var lat, first, writes []time.Duration
	for c := range o.changes {
		es := slice(0, o.perSlice, c+1)
		t0 := time.Now()
		if err := b.change(ctx, es); err != nil {
			return nil, err
		}
		writes = append(writes, time.Since(t0))
		deadline := time.After(10 * time.Second)
		earliest := time.Duration(-1)
		for i := range arrivals {
			select {
			case at := <-arrivals[i]:
				d := at.Sub(t0)
				lat = append(lat, d)
				if earliest < 0 || d < earliest {
					earliest = d
				}
			case <-deadline:
				r.Missed++
			}
		}
		first = append(first, earliest)
	}
	slices.Sort(lat)
	slices.Sort(first)
	slices.Sort(writes)
	r.Samples = len(lat)
	r.P50Ms, r.P90Ms, r.P99Ms = ms(pct(lat, 50)), ms(pct(lat, 90)), ms(pct(lat, 99))
	if len(lat) > 0 {
		r.MaxMs = ms(lat[len(lat)-1])
	}
	r.FirstMs, r.WriteMs = ms(pct(first, 50)), ms(pct(writes, 50))
	r.PeakRSSMB = rssMB(cmd.Process.Pid, "VmHWM")
	if cpuDone != nil {
		if err := <-cpuDone; err != nil {
			return nil, err
		}
	}
	return r, nil
}

// fetch saves what the admin server answers at path to file.
func fetch(admin, path, file string) error {
	resp, err := http.Get("http://" + admin + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// objects is the benchmark namespace: services of perSlice pods each.
func objects(endpoints, perSlice int) []api.Object {
	ns := api.New(api.KindNamespace).(*corev1.Namespace)
	ns.Name = namespace
	objs := []api.Object{ns}
	for s := 0; s*perSlice < endpoints; s++ {
		svc := api.New(api.KindService).(*corev1.Service)
		svc.Namespace, svc.Name = namespace, "svc-"+strconv.Itoa(s)
		svc.Spec.Selector = map[string]string{"app": svc.Name}
		svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}
		sa := api.New(api.KindServiceAccount).(*corev1.ServiceAccount)
		sa.Namespace, sa.Name = namespace, svc.Name
		objs = append(objs, svc, sa)
		n := min(perSlice, endpoints-s*perSlice)
		for i := range n {
			objs = append(objs, pod(s, i))
		}
		objs = append(objs, slice(s, n, 0))
	}
	return objs
}

func podName(s, i int) string { return fmt.Sprintf("svc-%d-7d9f8c6b5-%05d", s, i) }

// podIP gives every (service, pod) its own address in 10.0.0.0/8.
func podIP(s, i int) string {
	n := s*1000 + i + 1
	return fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
}

func pod(s, i int) *corev1.Pod {
	p := api.New(api.KindPod).(*corev1.Pod)
	p.Namespace, p.Name = namespace, podName(s, i)
	p.Labels = map[string]string{"app": fmt.Sprintf("svc-%d", s), "pod-template-hash": "7d9f8c6b5"}
	p.Annotations = map[string]string{"linkerd.io/proxy-version": "bench"}
	p.Spec.ServiceAccountName = fmt.Sprintf("svc-%d", s)
	p.Spec.Containers = []corev1.Container{{Name: "app", Image: "app"}}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = podIP(s, i)
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	return p
}

// slice is service s's EndpointSlice with n pods, plus extra endpoints
// without pods (the changes the benchmark times).
func slice(s, n, extra int) *discoveryv1.EndpointSlice {
	es := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
	es.Namespace, es.Name = namespace, fmt.Sprintf("svc-%d-abcde", s)
	es.Labels = map[string]string{discoveryv1.LabelServiceName: fmt.Sprintf("svc-%d", s)}
	es.AddressType = discoveryv1.AddressTypeIPv4
	ready := true
	for i := range n {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{podIP(s, i)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: podName(s, i)},
		})
	}
	for i := range extra {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.255.%d.%d", (i+1)>>8&255, (i+1)&255)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	name, port, proto := "http", int32(8080), corev1.ProtocolTCP
	es.Ports = []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}}
	return es
}

func firstAdd(ctx context.Context, c pb.DestinationClient, path string) (*pb.Update, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := c.Get(ctx, &pb.GetDestination{Scheme: "k8s", Path: path, ContextToken: `{"ns":"` + namespace + `"}`})
	if err != nil {
		return nil, err
	}
	for {
		u, err := s.Recv()
		if err != nil {
			return nil, fmt.Errorf("waiting for %s: %w", path, err)
		}
		if u.GetAdd() != nil {
			return u, nil
		}
	}
}

func waitReady(admin string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + admin + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the control plane was not ready after %v", d)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// settledRSS polls VmRSS until two reads 100 ms apart differ by under
// 1%, or d passes.
func settledRSS(pid int, d time.Duration) float64 {
	last := rssMB(pid, "VmRSS")
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		cur := rssMB(pid, "VmRSS")
		if cur > last*0.99 && cur < last*1.01 {
			return cur
		}
		last = cur
	}
	return last
}

// rssMB reads a Vm* line of /proc/PID/status, in MB.
func rssMB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// pct is the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func machine() string {
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	return fmt.Sprintf("%d x %s, %s, load average %s", runtime.NumCPU(), cpu, runtime.Version(), strings.Join(strings.Fields(string(load))[:3], " "))
}

func writeMarkdown(w io.Writer, r *result) {
	fmt.Fprintf(w, "Machine: %s\n\n", r.Machine)
	fmt.Fprintf(w, "Store: %s. %d endpoints in %d services; %d Destination.Get streams on one service over %d connections; %d endpoint changes.\n\n",
		r.Store, r.Endpoints, r.Services, r.Streams, r.Conns, r.Changes)
	fmt.Fprintln(w, "| measure | value |")
	fmt.Fprintln(w, "|---|---:|")
	fmt.Fprintf(w, "| change to stream, p50 | %.1f ms |\n", r.P50Ms)
	fmt.Fprintf(w, "| change to stream, p90 | %.1f ms |\n", r.P90Ms)
	fmt.Fprintf(w, "| change to stream, p99 | %.1f ms |\n", r.P99Ms)
	fmt.Fprintf(w, "| change to stream, max | %.1f ms |\n", r.MaxMs)
	fmt.Fprintf(w, "| change to first stream (median over changes) | %.1f ms |\n", r.FirstMs)
	fmt.Fprintf(w, "| store write alone (median) | %.1f ms |\n", r.WriteMs)
	fmt.Fprintf(w, "| updates received / missed | %d / %d |\n", r.Samples, r.Missed)
	fmt.Fprintf(w, "| start to every endpoint served | %.1f s |\n", r.ReadyS)
	fmt.Fprintf(w, "| RSS loaded, no streams | %.1f MB |\n", r.RSSIdleMB)
	fmt.Fprintf(w, "| RSS with every stream open | %.1f MB |\n", r.RSSStreamMB)
	fmt.Fprintf(w, "| peak RSS (VmHWM) | %.1f MB |\n", r.PeakRSSMB)
}
