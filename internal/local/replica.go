package local

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weft-mesh/weft/internal/api"
)

// replica is one running pod: a sidecar proxy and the pod's containers, each
// a Process, on ports of their own.
type replica struct {
	ns, name, deploy, hash string
	kind                   string // "Deployment" or "ingress"
	seq                    uint64
	created                time.Time
	spec                   corev1.PodSpec
	labels, annotations    map[string]string

	outbound, admin int
	tap             int           // the sidecar's tap server (weft viz tap)
	inbound         map[int32]int // containerPort -> inbound proxy port
	appPorts        map[int32]int // containerPort -> local app port

	// meshed is false for workloads with linkerd.io/inject: disabled: they
	// run without a sidecar, and their endpoints are the app's own ports.
	meshed bool
	proxy  *Process // nil when not meshed
	apps   []*Process

	ready      atomic.Bool
	readySince atomic.Int64 // unix nanos of the last readiness change

	// Owned by the supervisor under its mutex.
	terminating bool
	stopping    bool

	cancel context.CancelFunc // ends the readiness loop
	wg     sync.WaitGroup
}

func (r *replica) key() string { return r.ns + "/" + r.name }

func (r *replica) ports() []int {
	var ps []int
	if r.meshed {
		ps = append(ps, r.outbound, r.admin, r.tap)
	}
	for _, p := range r.inbound {
		ps = append(ps, p)
	}
	for _, p := range r.appPorts {
		ps = append(ps, p)
	}
	return ps
}

// newReplica allocates ports and builds the argv and env of every process of
// a new replica of d, without starting anything.
func (s *Supervisor) newReplica(ctx context.Context, d *appsv1.Deployment, hash, kind string, meshed bool) (*replica, error) {
	tmpl := d.Spec.Template.DeepCopy()
	r := &replica{
		ns: d.Namespace, deploy: d.Name, hash: hash, kind: kind,
		name:     PodName(d.Name, hash),
		created:  time.Now(),
		spec:     tmpl.Spec,
		inbound:  map[int32]int{},
		appPorts: map[int32]int{},
		meshed:   meshed,
	}
	if r.spec.ServiceAccountName == "" {
		r.spec.ServiceAccountName = "default"
	}
	r.labels = map[string]string{}
	for k, v := range tmpl.Labels {
		r.labels[k] = v
	}
	r.labels[LabelPodTemplateHash] = hash
	r.annotations = map[string]string{}
	for k, v := range tmpl.Annotations {
		r.annotations[k] = v
	}
	var err error
	alloc := func() int {
		if err != nil {
			return 0
		}
		var p int
		p, err = s.ports.Alloc()
		return p
	}
	if meshed {
		r.outbound, r.admin, r.tap = alloc(), alloc(), alloc()
	}
	for _, c := range r.spec.Containers {
		for _, p := range c.Ports {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				continue
			}
			if _, dup := r.appPorts[p.ContainerPort]; dup {
				continue
			}
			r.appPorts[p.ContainerPort] = alloc()
			if meshed {
				r.inbound[p.ContainerPort] = alloc()
			} else {
				// Without a sidecar, peers reach the app itself.
				r.inbound[p.ContainerPort] = r.appPorts[p.ContainerPort]
			}
		}
	}
	if err != nil {
		s.ports.Release(r.ports()...)
		return nil, err
	}
	r.annotations[AnnotationManagedBy] = ManagedBy
	r.annotations[AnnotationInboundPorts] = FormatInboundPorts(r.inbound)
	logDir := filepath.Join(s.cfg.StateDir, LogDir, r.ns, r.name)
	if meshed {
		r.annotations[AnnotationProxyVersion] = s.cfg.ProxyVersion
		r.annotations[AnnotationAdminAddr] = loopback(r.admin)
		r.annotations[AnnotationTapAddr] = loopback(r.tap)
		if err := s.newProxy(r, logDir); err != nil {
			s.ports.Release(r.ports()...)
			return nil, err
		}
	}

	pod := PodInfo{Name: r.name, Namespace: r.ns, ServiceAccount: r.spec.ServiceAccountName, Labels: r.labels, Annotations: r.annotations}
	for i := range r.spec.Containers {
		c := &r.spec.Containers[i]
		injected := []EnvVar{
			{"POD_NAME", r.name},
			{"POD_NAMESPACE", r.ns},
		}
		if meshed {
			injected = append(injected,
				EnvVar{"HTTP_PROXY", "http://" + loopback(r.outbound)},
				EnvVar{"HTTPS_PROXY", "http://" + loopback(r.outbound)},
				EnvVar{"NO_PROXY", "localhost,127.0.0.1"})
		}
		if len(c.Ports) > 0 {
			if lp, ok := r.appPorts[c.Ports[0].ContainerPort]; ok {
				injected = append([]EnvVar{{"PORT", strconv.Itoa(lp)}}, injected...)
			}
		}
		env, err := ContainerEnv(c, pod, injected, r.appPorts, s.secret(ctx))
		if err != nil {
			s.ports.Release(r.ports()...)
			return nil, fmt.Errorf("local: Deployment %s/%s: %w", d.Namespace, d.Name, err)
		}
		argv, err := ResolveCommand(c, s.cfg.Exe, env)
		if err != nil {
			s.ports.Release(r.ports()...)
			return nil, fmt.Errorf("local: Deployment %s/%s: %w", d.Namespace, d.Name, err)
		}
		full := append(s.baseEnv(), envList(env).Strings()...)
		app := s.process(r.ns+"/"+r.name+"/"+c.Name, argv, full, filepath.Join(logDir, c.Name+".log"))
		app.Grace = podGrace(&r.spec, s.cfg.Grace)
		r.apps = append(r.apps, app)
	}
	return r, nil
}

// newProxy prepares the sidecar of a meshed replica.
func (s *Supervisor) newProxy(r *replica, logDir string) error {
	proxyArgv := []string{s.cfg.Exe, "proxy",
		"--state-dir", s.cfg.StateDir,
		"--control-addr", s.cfg.ControlAddr,
		"--outbound-addr", loopback(r.outbound),
		"--admin-addr", loopback(r.admin),
		"--tap-addr", loopback(r.tap),
		"--namespace", r.ns,
		"--pod", r.name,
		"--deployment", r.deploy,
		"--service-account", r.spec.ServiceAccountName,
	}
	for _, c := range r.spec.Containers {
		for _, p := range c.Ports {
			if ip, ok := r.inbound[p.ContainerPort]; ok {
				proxyArgv = append(proxyArgv, "--inbound", fmt.Sprintf("%s=%s", loopback(ip), loopback(r.appPorts[p.ContainerPort])))
			}
		}
	}
	proxyArgv = dedupInbound(proxyArgv)
	idEnv, err := s.proxyIdentityEnv(r.ns, r.spec.ServiceAccountName, r.name)
	if err != nil {
		return err
	}
	r.proxy = s.process(r.ns+"/"+r.name+"/proxy", proxyArgv, append(s.baseEnv(), idEnv...), filepath.Join(logDir, "proxy.log"))
	return nil
}

// podGrace is how long the pod's containers may take to stop after SIGTERM:
// its terminationGracePeriodSeconds when set (0 means at once), else def.
func podGrace(spec *corev1.PodSpec, def time.Duration) time.Duration {
	if g := spec.TerminationGracePeriodSeconds; g != nil {
		if *g <= 0 {
			return time.Millisecond
		}
		return time.Duration(*g) * time.Second
	}
	return def
}

// dedupInbound drops repeated --inbound flags (two containers declaring the
// same port).
func dedupInbound(argv []string) []string {
	seen := map[string]bool{}
	out := argv[:0]
	for i := 0; i < len(argv); i++ {
		if argv[i] == "--inbound" && i+1 < len(argv) {
			if seen[argv[i+1]] {
				i++
				continue
			}
			seen[argv[i+1]] = true
		}
		out = append(out, argv[i])
	}
	return out
}

// start runs the proxy, waits until it accepts on its outbound port (so the
// app's first outbound call has somewhere to go), then the containers, and
// keeps probing readiness until stop.
func (s *Supervisor) startReplica(r *replica) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if r.proxy != nil {
			if err := r.proxy.Start(context.Background()); err != nil {
				s.log.Error("starting proxy", "pod", r.key(), "err", err)
				return
			}
			waitUntil(ctx, 15*time.Second, func() bool { return tcpOK(ctx, loopback(r.outbound)) })
			if ctx.Err() != nil {
				return
			}
		}
		for _, p := range r.apps {
			if err := p.Start(context.Background()); err != nil {
				s.log.Error("starting container", "process", p.Name, "err", err)
			}
		}
		s.probeLoop(ctx, r)
	}()
}

// probeLoop keeps r.ready current and tells the supervisor when it changes.
func (s *Supervisor) probeLoop(ctx context.Context, r *replica) {
	t := time.NewTicker(s.cfg.ProbeInterval)
	defer t.Stop()
	var fails readiness
	for {
		ok, gone := s.replicaReady(ctx, r)
		if ctx.Err() != nil {
			return
		}
		ready := fails.observe(ok, gone, r.failureThreshold())
		if r.ready.Swap(ready) != ready {
			r.readySince.Store(time.Now().UnixNano())
			s.log.Info("readiness changed", "pod", r.key(), "ready", ready)
			s.Kick()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readiness turns probe results into the Ready condition as Kubernetes
// does: one success makes a replica ready; only failureThreshold failures
// in a row make a ready replica unready, so that one slow probe under load
// does not pull it out of the endpoints. A process that is not running at
// all makes it unready at once.
type readiness struct {
	ready bool
	fails int
}

func (rd *readiness) observe(ok, gone bool, threshold int) bool {
	switch {
	case ok:
		rd.ready, rd.fails = true, 0
	case gone:
		rd.ready, rd.fails = false, 0
	default:
		rd.fails++
		if rd.fails >= threshold {
			rd.ready = false
		}
	}
	return rd.ready
}

// failureThreshold is the smallest readinessProbe.failureThreshold of the
// pod's containers, 3 (Kubernetes' default) when none says.
func (r *replica) failureThreshold() int {
	th := 3
	for _, c := range r.spec.Containers {
		if c.ReadinessProbe != nil && c.ReadinessProbe.FailureThreshold > 0 && int(c.ReadinessProbe.FailureThreshold) < th {
			th = int(c.ReadinessProbe.FailureThreshold)
		}
	}
	return th
}

// replicaReady probes the replica once; gone reports a process that is not
// running.
func (s *Supervisor) replicaReady(ctx context.Context, r *replica) (ok, gone bool) {
	if r.proxy != nil && r.proxy.State().PID == 0 {
		return false, true
	}
	for _, p := range r.apps {
		if p.State().PID == 0 {
			return false, true
		}
	}
	if r.proxy != nil && !httpOK(ctx, "http://"+loopback(r.admin)+"/ready") {
		return false, false
	}
	for i := range r.spec.Containers {
		if !containerReady(ctx, &r.spec.Containers[i], r.appPorts) {
			return false, false
		}
	}
	return true, false
}

// stopReplica stops a replica already removed from the store's
// EndpointSlices: it waits drain so that every proxy has heard of the
// removal, stops the containers (which finish their in-flight requests),
// then the proxy.
func (s *Supervisor) stopReplica(r *replica, drain time.Duration) {
	if drain > 0 {
		time.Sleep(drain) // a grace period, not a wait for a condition: peers learn of the removal asynchronously
	}
	r.cancel()
	r.wg.Wait()
	var wg sync.WaitGroup
	for _, p := range r.apps {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop() }()
	}
	wg.Wait()
	if r.proxy != nil {
		r.proxy.Stop()
	}
	r.ready.Store(false)
	s.ports.Release(r.ports()...)
}

// pod returns the Pod object the store shows for r.
func (r *replica) pod() *corev1.Pod {
	p := api.New(api.KindPod).(*corev1.Pod)
	p.Name, p.Namespace = r.name, r.ns
	p.Labels = r.labels
	p.Annotations = r.annotations
	p.CreationTimestamp = metav1.NewTime(r.created)
	p.Spec = *r.spec.DeepCopy()
	p.Spec.NodeName = "localhost"
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = "127.0.0.1"
	p.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	p.Status.HostIP = "127.0.0.1"
	status := corev1.ConditionFalse
	if r.ready.Load() {
		status = corev1.ConditionTrue
	}
	since := r.created
	if n := r.readySince.Load(); n != 0 {
		since = time.Unix(0, n)
	}
	p.Status.Conditions = []corev1.PodCondition{{
		Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.NewTime(since),
	}}
	return p
}

func samePod(a, b *corev1.Pod) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
