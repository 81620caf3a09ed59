// Package local is the local-mode supervisor behind 'weft up': it runs the
// control plane, every Deployment replica as a process with a sidecar proxy,
// and the ingress; restarts what crashes; rolls Deployments when they change;
// and keeps the store's Pods and EndpointSlices true to what runs.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/control/identity"
	proxyidentity "github.com/weft-mesh/weft/internal/proxy/identity"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// Config configures a Supervisor.
type Config struct {
	StateDir string
	Store    store.Store
	// Exe is the weft binary children run (os.Executable()).
	Exe string
	// ControlAddr is the control plane's gRPC address, which proxies dial.
	ControlAddr string
	// ProxyVersion is written in each Pod's linkerd.io/proxy-version.
	ProxyVersion string
	// DrainDelay is how long a replica keeps serving after it left the
	// EndpointSlices, so that every client proxy hears of it first (weft up
	// uses 3s; zero means no delay).
	DrainDelay time.Duration
	// Grace is how long a process may take to exit after SIGTERM.
	Grace time.Duration
	// ProbeInterval is how often readiness is checked.
	ProbeInterval time.Duration
	// OnReady, if set, is called once, the first time every component is
	// ready (from the reconcile loop; it must not block).
	OnReady func(*Mesh)
	// IdentityDir holds the mesh's identity material (default
	// STATE_DIR/identity, where 'weft control' keeps it): the supervisor
	// mints each replica's identity token with the key kept there.
	IdentityDir string
	// Identity is what 'weft up --identity-*' says about the mesh's CA;
	// it is passed on to 'weft control'.
	Identity IdentityConfig
	// Ingress, when set, runs 'weft ingress' as a system workload.
	Ingress *IngressConfig
	// RateLimit, when set with an address, runs 'weft ratelimit'.
	RateLimit *RateLimitConfig
	// Dashboard, when set with an address, runs 'weft viz dashboard'.
	Dashboard *DashboardConfig
	Logger    *slog.Logger
}

// IdentityConfig configures the mesh's certificate authority.
type IdentityConfig struct {
	// Files, all three or none, are the trust anchors, issuer certificate
	// and issuer key to use instead of those generated in IdentityDir
	// (--identity-trust-anchors-file, --identity-issuer-certificate-file,
	// --identity-issuer-key-file).
	Files tlsid.Files
	// IssuanceLifetime is the proxies' certificate lifetime; 0 means the
	// control plane's default (24h).
	IssuanceLifetime time.Duration
}

// anchorsFile is where proxies' trust anchors come from.
func (s *Supervisor) anchorsFile() string {
	if f := s.cfg.Identity.Files.TrustAnchors; f != "" {
		return f
	}
	return filepath.Join(s.cfg.IdentityDir, tlsid.AnchorsFile)
}

// IngressConfig describes the ingress system workload.
type IngressConfig struct {
	// Args are passed to 'weft ingress' after the flags the supervisor sets.
	Args []string
	// Enabled reports whether the store asks for an ingress now.
	Enabled func(ctx context.Context, st store.Store) bool
	// WatchKinds are kinds whose changes may flip Enabled.
	WatchKinds []api.Kind
	// Addresses, if set, names where the ingress serves (for 'weft
	// status'): the ingress binds its Listeners' ports itself.
	Addresses func(ctx context.Context, st store.Store) map[string]string
}

// Supervisor runs a local mesh.
type Supervisor struct {
	cfg   Config
	log   *slog.Logger
	ports *Ports
	kick  chan struct{}

	mu       sync.Mutex
	replicas map[string]*replica
	seq      uint64
	failing  map[string]string // deployment key -> last error, to log it once
	started  time.Time

	control      *Process
	controlAdmin string
	controlReady bool
	system       []*systemComponent // rate limit service, dashboard

	tokenKey     []byte
	ingressAddrs map[string]string
	announced    bool // OnReady was called
}

// New returns a Supervisor; Run starts it.
func New(cfg Config) *Supervisor {
	if cfg.Grace == 0 {
		cfg.Grace = 10 * time.Second
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.IdentityDir == "" {
		cfg.IdentityDir = filepath.Join(cfg.StateDir, "identity")
	}
	return &Supervisor{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "supervisor"),
		ports:    NewPorts(),
		kick:     make(chan struct{}, 1),
		replicas: map[string]*replica{},
		failing:  map[string]string{},
	}
}

// Kick asks for a reconcile soon.
func (s *Supervisor) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Supervisor) process(name string, argv, env []string, logPath string) *Process {
	return &Process{Name: name, Argv: argv, Env: env, LogPath: logPath, Grace: s.cfg.Grace, Logger: s.log, OnChange: s.Kick}
}

// baseEnv is the environment children inherit: the supervisor's own, minus
// proxy settings, which would send the mesh's own traffic astray.
func (s *Supervisor) baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		switch name, _, _ := cut(kv); name {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY", "all_proxy", "WEFT_STATE_DIR", proxyTokenEnv, proxyAnchorsEnv:
			continue
		}
		out = append(out, kv)
	}
	// A child that is itself weft (ingress, a 'weft' command) finds the
	// mesh's state directory without being told.
	return append(out, "WEFT_STATE_DIR="+s.cfg.StateDir)
}

func cut(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

func (s *Supervisor) secret(ctx context.Context) SecretLookup {
	return func(ns, name, key string) (string, error) {
		o, err := s.cfg.Store.Get(ctx, api.Ref{Kind: api.KindSecret, Namespace: ns, Name: name})
		if err != nil {
			return "", fmt.Errorf("secret %s/%s: %w", ns, name, err)
		}
		sec := o.(*corev1.Secret)
		if v, ok := sec.StringData[key]; ok {
			return v, nil
		}
		if v, ok := sec.Data[key]; ok {
			return string(v), nil
		}
		return "", fmt.Errorf("secret %s/%s has no key %q", ns, name, key)
	}
}

// Run starts the control plane and the workloads and keeps them in line with
// the store until ctx ends, then stops everything gracefully: workloads leave
// the EndpointSlices, drain, and stop; the control plane stops last.
func (s *Supervisor) Run(ctx context.Context) error {
	s.started = time.Now()
	// mesh.json exists from the start, so 'weft down' can stop a mesh that
	// is still starting.
	s.writeMesh()
	if err := s.cleanStore(context.Background()); err != nil {
		s.shutdown()
		return err
	}
	// The token key is shared with the control plane, which validates
	// the tokens; whichever starts first creates it.
	if err := os.MkdirAll(s.cfg.IdentityDir, 0o700); err != nil {
		s.shutdown()
		return fmt.Errorf("local: identity directory: %w", err)
	}
	key, err := identity.LoadOrCreateTokenKey(s.cfg.IdentityDir)
	if err != nil {
		s.shutdown()
		return fmt.Errorf("local: %w", err)
	}
	s.tokenKey = key
	// The CA exists before any proxy starts, so that every proxy is given
	// the trust anchors (the control plane loads the same files).
	if err := s.loadCA(); err != nil {
		s.shutdown()
		return err
	}
	if err := s.startControl(ctx); err != nil {
		s.shutdown()
		return err
	}
	if err := s.startSystem(ctx); err != nil {
		s.shutdown()
		return err
	}
	kinds := []api.Kind{api.KindDeployment, api.KindService, api.KindPod, api.KindEndpointSlice, api.KindSecret, api.KindNamespace}
	if s.cfg.Ingress != nil {
		kinds = append(kinds, s.cfg.Ingress.WatchKinds...)
	}
	watch, err := s.cfg.Store.Watch(ctx, kinds...)
	if err != nil {
		s.shutdown()
		return fmt.Errorf("local: watching the store: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case _, ok := <-watch:
			if !ok {
				s.shutdown()
				return nil
			}
		case <-s.kick:
		}
		if err := s.reconcile(ctx); err != nil {
			s.log.Error("reconcile failed; will retry", "err", err)
			time.AfterFunc(time.Second, s.Kick)
		}
	}
}

// cleanStore removes Pods and EndpointSlices a previous supervisor of this
// state directory left behind (it was killed): none of them runs now.
func (s *Supervisor) cleanStore(ctx context.Context) error {
	var refs []api.Ref
	pods, err := s.cfg.Store.List(ctx, api.KindPod, "")
	if err != nil {
		return fmt.Errorf("local: listing pods: %w", err)
	}
	for _, o := range pods {
		if o.GetAnnotations()[AnnotationManagedBy] == ManagedBy {
			refs = append(refs, api.RefOf(o))
		}
	}
	slices, err := s.cfg.Store.List(ctx, api.KindEndpointSlice, "")
	if err != nil {
		return fmt.Errorf("local: listing endpointslices: %w", err)
	}
	for _, o := range slices {
		if o.GetLabels()[LabelManagedBy] == ManagedBy {
			refs = append(refs, api.RefOf(o))
		}
	}
	if len(refs) == 0 {
		return nil
	}
	if err := s.cfg.Store.Delete(ctx, refs...); err != nil {
		return fmt.Errorf("local: removing stale pods and endpointslices: %w", err)
	}
	return nil
}

// controlArgv is the control plane's command line, with the identity
// settings 'weft up' was given.
func (s *Supervisor) controlArgv() []string {
	argv := []string{s.cfg.Exe, "control", "--state-dir", s.cfg.StateDir, "--addr", s.cfg.ControlAddr, "--admin-addr", s.controlAdmin}
	if f := s.cfg.Identity.Files; f != (tlsid.Files{}) {
		argv = append(argv, "--identity-trust-anchors-file", f.TrustAnchors,
			"--identity-issuer-certificate-file", f.IssuerCertificate, "--identity-issuer-key-file", f.IssuerKey)
	}
	if l := s.cfg.Identity.IssuanceLifetime; l > 0 {
		argv = append(argv, "--identity-issuance-lifetime", l.String())
	}
	return argv
}

func (s *Supervisor) startControl(ctx context.Context) error {
	adminPort, err := s.ports.Alloc()
	if err != nil {
		return err
	}
	s.controlAdmin = loopback(adminPort)
	argv := s.controlArgv()
	s.control = s.process("weft/control", argv, s.baseEnv(), filepath.Join(s.cfg.StateDir, LogDir, "weft", "control", "control.log"))
	if err := s.control.Start(context.Background()); err != nil {
		return err
	}
	s.writeMesh()
	// Proxies survive a missing control plane, but starting them with one
	// up avoids a round of failed discovery at start.
	if !waitUntil(ctx, 20*time.Second, func() bool { return tcpOK(ctx, s.cfg.ControlAddr) }) && ctx.Err() == nil {
		s.log.Warn("control plane is not accepting connections yet; starting workloads anyway", "addr", s.cfg.ControlAddr,
			"log", s.control.LogPath)
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			ok := s.control.State().PID != 0 && tcpOK(ctx, s.cfg.ControlAddr)
			s.mu.Lock()
			changed := s.controlReady != ok
			s.controlReady = ok
			s.mu.Unlock()
			if changed {
				s.Kick()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// The proxy reads its identity from these variables.
const (
	proxyTokenEnv   = proxyidentity.TokenEnv
	proxyAnchorsEnv = proxyidentity.AnchorsEnv
)

// AnnotationInject is Linkerd's injection switch, on a Namespace or a pod
// template; the template's wins.
const AnnotationInject = "linkerd.io/inject"

// injected reports whether d's replicas get a sidecar. Local mode meshes
// every workload unless linkerd.io/inject says "disabled" on its pod
// template or, when the template does not say, on its Namespace.
func (s *Supervisor) injected(ctx context.Context, d *appsv1.Deployment) bool {
	if v, ok := d.Spec.Template.Annotations[AnnotationInject]; ok {
		return v != "disabled"
	}
	o, err := s.cfg.Store.Get(ctx, api.Ref{Kind: api.KindNamespace, Name: d.Namespace})
	if err != nil {
		return true
	}
	return o.GetAnnotations()[AnnotationInject] != "disabled"
}

// proxyIdentityEnv is the environment that gives a replica's proxy its
// identity: a token entitling it to its service account's certificate
// (Certify checks it with the shared key), and the trust anchors.
func (s *Supervisor) proxyIdentityEnv(ns, sa, pod string) ([]string, error) {
	tok, err := identity.MintToken(s.tokenKey, identity.Workload{Namespace: ns, ServiceAccount: sa, Pod: pod})
	if err != nil {
		return nil, fmt.Errorf("local: pod %s/%s: %w", ns, pod, err)
	}
	env := []string{proxyTokenEnv + "=" + string(tok)}
	if pem, err := os.ReadFile(s.anchorsFile()); err == nil {
		env = append(env, proxyAnchorsEnv+"="+string(pem))
	}
	return env, nil
}

// loadCA generates the mesh's trust anchor and issuer in the identity
// directory on first start, or checks the files 'weft up' was given.
func (s *Supervisor) loadCA() error {
	f := s.cfg.Identity.Files
	if f == (tlsid.Files{}) {
		if _, generated, err := tlsid.LoadOrGenerate(s.cfg.IdentityDir, tlsid.DefaultDomain, time.Now()); err != nil {
			return fmt.Errorf("local: identity: %w", err)
		} else if generated {
			s.log.Info("generated the mesh's trust anchor and issuer", "dir", s.cfg.IdentityDir)
		}
		return nil
	}
	if f.TrustAnchors == "" || f.IssuerCertificate == "" || f.IssuerKey == "" {
		return errors.New("local: identity: give all three of --identity-trust-anchors-file, --identity-issuer-certificate-file and --identity-issuer-key-file, or none")
	}
	a, err := tlsid.Load(f, tlsid.DefaultDomain)
	if err != nil {
		return fmt.Errorf("local: identity: %w", err)
	}
	if err := a.Validate(); err != nil {
		return fmt.Errorf("local: identity: %w", err)
	}
	return nil
}

// desiredDeployments lists the Deployments to run, with the ingress
// system workload when configured and asked for.
func (s *Supervisor) desiredDeployments(ctx context.Context) (map[string]*appsv1.Deployment, map[string]string, error) {
	objs, err := s.cfg.Store.List(ctx, api.KindDeployment, "")
	if err != nil {
		return nil, nil, fmt.Errorf("local: listing deployments: %w", err)
	}
	out := map[string]*appsv1.Deployment{}
	kinds := map[string]string{}
	for _, o := range objs {
		d := o.(*appsv1.Deployment)
		out[d.Namespace+"/"+d.Name] = d
		kinds[d.Namespace+"/"+d.Name] = "Deployment"
	}
	if in := s.cfg.Ingress; in != nil && in.Enabled(ctx, s.cfg.Store) {
		if in.Addresses != nil {
			addrs := in.Addresses(ctx, s.cfg.Store)
			s.mu.Lock()
			s.ingressAddrs = addrs
			s.mu.Unlock()
		}
		d := ingressDeployment(s.cfg.StateDir, in.Args)
		out[d.Namespace+"/"+d.Name] = d
		kinds[d.Namespace+"/"+d.Name] = "ingress"
	}
	return out, kinds, nil
}

// IngressNamespace and IngressName name the ingress system workload.
const (
	IngressNamespace = "weft"
	IngressName      = "weft-ingress"
)

// ingressAdminPort is the containerPort the ingress workload declares for
// its admin server; like any declared port it gets a free local port, which
// the ingress learns through $(PORT).
const ingressAdminPort = 8877

// ingressDeployment is the ingress system workload: 'weft ingress' with a
// sidecar like any workload, so that its upstream requests ride the mesh
// ($(HTTP_PROXY) is its sidecar's outbound address).
func ingressDeployment(stateDir string, args []string) *appsv1.Deployment {
	d := api.New(api.KindDeployment).(*appsv1.Deployment)
	d.Namespace, d.Name = IngressNamespace, IngressName
	one := int32(1)
	d.Spec.Replicas = &one
	d.Spec.Template.Labels = map[string]string{"app": IngressName}
	d.Spec.Template.Spec.ServiceAccountName = IngressName
	cmd := []string{"weft", "--state-dir", stateDir, "ingress",
		"--proxy", "$(HTTP_PROXY)",
		"--admin-addr", "127.0.0.1:$(PORT)",
		"--namespace", IngressNamespace,
	}
	d.Spec.Template.Spec.Containers = []corev1.Container{{
		Name:    "ingress",
		Command: append(cmd, args...),
		Ports:   []corev1.ContainerPort{{Name: "admin", ContainerPort: ingressAdminPort}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("admin")},
		}},
	}}
	return d
}

func (s *Supervisor) reconcile(ctx context.Context) error {
	deps, kinds, err := s.desiredDeployments(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	for k := range s.failing {
		if _, ok := deps[k]; !ok {
			delete(s.failing, k) // deleted: no longer a problem
		}
	}
	byDeploy := map[string][]*replica{}
	for _, r := range s.replicas {
		if r.terminating {
			continue
		}
		k := r.ns + "/" + r.deploy
		if _, ok := deps[k]; !ok {
			s.log.Info("deployment gone; stopping replica", "pod", r.key())
			r.terminating = true
			continue
		}
		byDeploy[k] = append(byDeploy[k], r)
	}
	s.mu.Unlock()

	keys := make([]string, 0, len(deps))
	for k := range deps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d := deps[k]
		if err := CheckRunnable(d); err != nil {
			s.reportOnce(k, err)
			continue
		}
		hash := TemplateHash(&d.Spec.Template)
		want := 1
		if d.Spec.Replicas != nil {
			want = int(*d.Spec.Replicas)
		}
		views := make([]ReplicaView, 0, len(byDeploy[k]))
		for _, r := range byDeploy[k] {
			views = append(views, ReplicaView{Name: r.name, Hash: r.hash, Ready: r.ready.Load(), Seq: r.seq})
		}
		plan := PlanRollout(hash, want, views)
		for range plan.Start {
			r, err := s.newReplica(ctx, d, hash, kinds[k], s.injected(ctx, d))
			if err != nil {
				s.reportOnce(k, err)
				break
			}
			s.mu.Lock()
			delete(s.failing, k)
			s.seq++
			r.seq = s.seq
			s.replicas[r.key()] = r
			s.mu.Unlock()
			s.log.Info("starting replica", "pod", r.key(), "hash", hash)
			s.startReplica(r)
		}
		if len(plan.Stop) > 0 {
			s.mu.Lock()
			for _, name := range plan.Stop {
				if r := s.replicas[d.Namespace+"/"+name]; r != nil {
					s.log.Info("stopping replica", "pod", r.key(), "reason", "rollout or scale")
					r.terminating = true
				}
			}
			s.mu.Unlock()
		}
	}

	if err := s.syncPods(ctx); err != nil {
		return err
	}
	if err := ReconcileSlices(ctx, s.cfg.Store); err != nil {
		return err
	}
	// Only now, with the replicas gone from the store, may they stop.
	s.mu.Lock()
	for _, r := range s.replicas {
		if r.terminating && !r.stopping {
			r.stopping = true
			go func() {
				s.stopReplica(r, s.cfg.DrainDelay)
				s.mu.Lock()
				delete(s.replicas, r.key())
				s.mu.Unlock()
				s.Kick()
			}()
		}
	}
	s.mu.Unlock()
	m := s.Snapshot()
	if err := WriteMesh(s.cfg.StateDir, m); err != nil {
		s.log.Error("writing mesh.json", "err", err)
	}
	if !s.announced && s.cfg.OnReady != nil && settled(m) {
		s.mu.Lock()
		pending := len(s.failing) > 0
		s.mu.Unlock()
		if !pending {
			s.announced = true
			s.cfg.OnReady(m)
		}
	}
	return nil
}

// settled reports whether everything in m runs and is ready.
func settled(m *Mesh) bool {
	for _, c := range m.Components {
		if !c.Ready || c.Terminated {
			return false
		}
	}
	return len(m.Components) > 0
}

func (s *Supervisor) reportOnce(key string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing[key] == err.Error() {
		return
	}
	s.failing[key] = err.Error()
	s.log.Error("cannot run deployment", "deployment", key, "err", err)
}

// syncPods makes the store's supervisor-managed Pods match the live
// replicas; terminating replicas are removed.
func (s *Supervisor) syncPods(ctx context.Context) error {
	objs, err := s.cfg.Store.List(ctx, api.KindPod, "")
	if err != nil {
		return fmt.Errorf("local: listing pods: %w", err)
	}
	have := map[string]*corev1.Pod{}
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if p.Annotations[AnnotationManagedBy] == ManagedBy {
			have[p.Namespace+"/"+p.Name] = p
		}
	}
	var apply []api.Object
	s.mu.Lock()
	for k, r := range s.replicas {
		if r.terminating {
			continue
		}
		want := r.pod()
		if old, ok := have[k]; !ok || !samePod(old, want) {
			apply = append(apply, want)
		}
		delete(have, k)
	}
	s.mu.Unlock()
	if len(apply) > 0 {
		if err := s.cfg.Store.Apply(ctx, apply...); err != nil {
			return fmt.Errorf("local: writing pods: %w", err)
		}
	}
	if len(have) > 0 {
		refs := make([]api.Ref, 0, len(have))
		for _, p := range have {
			refs = append(refs, api.RefOf(p))
		}
		if err := s.cfg.Store.Delete(ctx, refs...); err != nil {
			return fmt.Errorf("local: deleting pods: %w", err)
		}
	}
	return nil
}

// shutdown stops everything in order; see Run.
func (s *Supervisor) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.log.Info("stopping the mesh")
	s.mu.Lock()
	for _, r := range s.replicas {
		r.terminating = true
	}
	s.mu.Unlock()
	if err := s.syncPods(ctx); err != nil {
		s.log.Error("removing pods", "err", err)
	}
	if err := ReconcileSlices(ctx, s.cfg.Store); err != nil {
		s.log.Error("removing endpointslices", "err", err)
	}
	var wg sync.WaitGroup
	s.mu.Lock()
	for _, r := range s.replicas {
		if r.stopping {
			continue // already on its way out; waited for below
		}
		r.stopping = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stopReplica(r, s.cfg.DrainDelay)
			s.mu.Lock()
			delete(s.replicas, r.key())
			s.mu.Unlock()
		}()
	}
	s.mu.Unlock()
	wg.Wait()
	// Replicas that were stopping before shutdown finish on their own.
	waitUntil(ctx, s.cfg.DrainDelay+s.cfg.Grace*2, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.replicas) == 0
	})
	s.stopSystem()
	if s.control != nil {
		s.control.Stop()
	}
	if err := s.cleanStore(ctx); err != nil {
		s.log.Error("cleaning the store", "err", err)
	}
	if err := os.Remove(filepath.Join(s.cfg.StateDir, MeshFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("removing mesh.json", "err", err)
	}
	s.log.Info("mesh stopped")
}

// Snapshot returns what runs now, as written to mesh.json.
func (s *Supervisor) Snapshot() *Mesh {
	m := &Mesh{PID: os.Getpid(), StateDir: s.cfg.StateDir, ControlAddr: s.cfg.ControlAddr, Started: s.started, Updated: time.Now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.failing {
		if m.Problems == nil {
			m.Problems = map[string]string{}
		}
		m.Problems[k] = v
	}
	if s.control != nil {
		st := s.control.State()
		m.Components = append(m.Components, Component{
			Name: "control", Namespace: "weft", Kind: "control", Ready: s.controlReady, Restarts: st.Restarts,
			Addresses: map[string]string{"grpc": s.cfg.ControlAddr, "admin": s.controlAdmin},
			Processes: []ProcessInfo{{Name: "control", PID: st.PID, Restarts: st.Restarts, Log: s.control.LogPath, LastExit: st.LastExit}},
		})
	}
	m.Components = append(m.Components, s.systemSnapshot()...)
	rs := make([]*replica, 0, len(s.replicas))
	for _, r := range s.replicas {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].ns != rs[j].ns {
			return rs[i].ns < rs[j].ns
		}
		if rs[i].deploy != rs[j].deploy {
			return rs[i].deploy < rs[j].deploy
		}
		return rs[i].seq < rs[j].seq
	})
	for _, r := range rs {
		c := Component{
			Name: r.name, Namespace: r.ns, Kind: r.kind, Owner: r.deploy, Ready: r.ready.Load(), Terminated: r.terminating,
			Addresses: map[string]string{},
		}
		procs := r.apps
		if r.meshed {
			c.Addresses["outbound"] = loopback(r.outbound)
			c.Addresses["admin"] = loopback(r.admin)
			c.Addresses["tap"] = loopback(r.tap)
			for cp, ip := range r.inbound {
				c.Addresses[fmt.Sprintf("inbound:%d", cp)] = loopback(ip)
			}
			procs = append([]*Process{r.proxy}, r.apps...)
		}
		for cp, ap := range r.appPorts {
			c.Addresses[fmt.Sprintf("app:%d", cp)] = loopback(ap)
		}
		if r.kind == "ingress" {
			for k, v := range s.ingressAddrs {
				c.Addresses[k] = v
			}
		}
		for _, p := range procs {
			st := p.State()
			c.Restarts += st.Restarts
			name := filepath.Base(p.Name)
			c.Processes = append(c.Processes, ProcessInfo{Name: name, PID: st.PID, Restarts: st.Restarts, Log: p.LogPath, LastExit: st.LastExit})
		}
		m.Components = append(m.Components, c)
	}
	return m
}

func (s *Supervisor) writeMesh() {
	if err := WriteMesh(s.cfg.StateDir, s.Snapshot()); err != nil {
		s.log.Error("writing mesh.json", "err", err)
	}
}

// waitUntil polls cond until it holds, ctx ends or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}
