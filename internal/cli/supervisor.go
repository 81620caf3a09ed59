package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/ingress"
	"github.com/weft-mesh/weft/internal/local"
	"github.com/weft-mesh/weft/internal/ratelimit"
	"github.com/weft-mesh/weft/internal/store"
	localstore "github.com/weft-mesh/weft/internal/store/local"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// stateDirAbs is the state directory as an absolute path: children and
// mesh.json must not depend on the working directory.
func stateDirAbs(g *Globals) (string, error) {
	d, err := filepath.Abs(g.StateDirOrDefault())
	if err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	return d, nil
}

func newCmdUp(g *Globals) *cobra.Command {
	var (
		files       []string
		controlAddr string
		drain       time.Duration
		detach      bool
		ingressArgs []string
		portMaps    []string
		identity    local.IdentityConfig
		sys         systemOptions
	)
	cmd := &cobra.Command{
		Use:   "up [-f FILE|DIR]...",
		Short: "Run the local mesh: control plane, workloads with sidecars, ingress",
		Long: `Run the local mesh in the foreground until Ctrl-C, SIGTERM or 'weft down'.

The manifests given with -f are applied first (all or nothing: a bad manifest
starts nothing). Then the control plane starts, and every Deployment in the
store runs as processes: each replica is its containers' commands plus a
'weft proxy' sidecar, on free loopback ports. Changes to the store (weft
apply, weft scale, weft set env) are rolled out while the mesh runs, with new
replicas ready before old ones stop. 'weft status' shows what runs and where;
logs are in STATE_DIR/logs/<namespace>/<pod>/<container>.log.

In local mode a container runs its command (with args and env, $(VAR)
references expanded; "weft" as command[0] is this binary). A container
without a command runs only if its image is a demo image weft has built in
(ghcr.io/buoyantio/faces-gui and faces-workload run 'weft faces'). The app
gets PORT (its first containerPort's local port), HTTP_PROXY/HTTPS_PROXY (its
sidecar), NO_PROXY, POD_NAME and POD_NAMESPACE; an env value equal to a
declared containerPort is rewritten to that port's local port.

Beside the workloads run the rate limit service ('weft ratelimit' at
--ratelimit-addr, configured by the envoyproxy/ratelimit YAML files in
STATE_DIR/ratelimit/, which it watches; the ingress sends its rate limit
checks there whatever a RateLimitService's spec.service says) and the viz
dashboard at --dashboard-addr.`,
		Example: `  weft up -f k8s/
  weft up --state-dir /tmp/mesh2 --control-addr 127.0.0.1:9086 -f app.yaml
  weft up -d -f app.yaml && weft status`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := stateDirAbs(g)
			if err != nil {
				return err
			}
			if detach {
				return upDetached(cmd.Context(), g, dir)
			}
			if err := absIdentityFiles(&identity.Files); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			return runUp(cmd.Context(), g, dir, files, controlAddr, drain, portMaps, ingressArgs, identity, sys)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file or directory (*.yaml, *.yml, *.json) to apply before starting; repeatable")
	cmd.Flags().StringVar(&controlAddr, "control-addr", "127.0.0.1:8086", "control plane gRPC address")
	cmd.Flags().DurationVar(&drain, "drain-delay", 3*time.Second, "how long a stopping replica keeps serving after it left the endpoints, so that every proxy hears of it first")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run in the background; return once the mesh is ready")
	cmd.Flags().StringArrayVar(&portMaps, "ingress-port-map", nil, "serve the Emissary Listener with spec.port LISTENER on local port LOCAL, as LISTENER=LOCAL (repeatable; LOCAL 0 picks a free port)")
	cmd.Flags().StringArrayVar(&ingressArgs, "ingress-arg", nil, "extra argument for 'weft ingress' (repeatable)")
	cmd.Flags().StringVar(&sys.ratelimitAddr, "ratelimit-addr", ratelimit.DefaultAddr, `gRPC address of the rate limit service ("" runs none)`)
	cmd.Flags().StringVar(&sys.ratelimitRedis, "ratelimit-redis", "", "keep the rate limit counters in Redis at HOST:PORT (default: in memory)")
	cmd.Flags().StringVar(&sys.dashboardAddr, "dashboard-addr", DefaultDashboardAddr, `address of the viz dashboard and API ("" serves none)`)
	cmd.Flags().StringVar(&identity.Files.TrustAnchors, "identity-trust-anchors-file", "", "PEM trust anchors of the mesh (with the two other --identity-*-file flags; default: generated in STATE_DIR/identity)")
	cmd.Flags().StringVar(&identity.Files.IssuerCertificate, "identity-issuer-certificate-file", "", "PEM issuer certificate, chaining to the trust anchors")
	cmd.Flags().StringVar(&identity.Files.IssuerKey, "identity-issuer-key-file", "", "PEM issuer private key")
	cmd.Flags().DurationVar(&identity.IssuanceLifetime, "identity-issuance-lifetime", 0, "lifetime of the proxies' certificates (default 24h)")
	return cmd
}

// systemOptions are the 'weft up' flags of the system components.
type systemOptions struct {
	ratelimitAddr, ratelimitRedis, dashboardAddr string
}

// RateLimitConfigDir is the directory of envoyproxy/ratelimit YAML files
// the local rate limit service reads.
func RateLimitConfigDir(stateDir string) string { return filepath.Join(stateDir, "ratelimit") }

// absIdentityFiles makes the --identity-*-file paths absolute (the control
// plane runs as a child process) and insists on all three or none.
func absIdentityFiles(f *tlsid.Files) error {
	if *f == (tlsid.Files{}) {
		return nil
	}
	for _, p := range []*string{&f.TrustAnchors, &f.IssuerCertificate, &f.IssuerKey} {
		if *p == "" {
			return errors.New("up: give all three of --identity-trust-anchors-file, --identity-issuer-certificate-file and --identity-issuer-key-file, or none")
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("up: %s: %w", *p, err)
		}
		*p = abs
	}
	return nil
}

func runUp(ctx context.Context, g *Globals, dir string, files []string, controlAddr string, drain time.Duration, portMaps, ingressArgs []string, identity local.IdentityConfig, sys systemOptions) error {
	for _, pm := range portMaps {
		if _, _, err := ingress.ParsePortMap(pm); err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("up: --ingress-port-map: %w", err)}
		}
	}
	lock, err := local.AcquireLock(dir)
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	defer lock.Release()
	if err := local.CheckFree(controlAddr, "--control-addr"); err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	for _, a := range []struct{ addr, flag string }{{sys.ratelimitAddr, "--ratelimit-addr"}, {sys.dashboardAddr, "--dashboard-addr"}} {
		if a.addr == "" {
			continue
		}
		if err := local.CheckFree(a.addr, a.flag+` (or "" for none)`); err != nil {
			return &ExitError{Code: 2, Err: err}
		}
	}
	objs, err := readManifests(files)
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("up: finding the weft binary: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(g.Err, nil))
	st, err := localstore.OpenWithOptions(dir, localstore.Options{Logger: logger})
	if err != nil {
		return &ExitError{Code: 1, Err: fmt.Errorf("up: %w", err)}
	}
	defer st.Close()
	if len(objs) > 0 {
		if err := st.Apply(ctx, objs...); err != nil {
			return &ExitError{Code: 1, Err: fmt.Errorf("up: applying manifests (nothing was applied): %w", err)}
		}
		fmt.Fprintf(g.Out, "applied %d object(s)\n", len(objs))
	}
	for _, port := range listenerPorts(ctx, st, portMaps) {
		if port == 0 {
			continue // the ingress picks a free one
		}
		if err := local.CheckFree(fmt.Sprintf("127.0.0.1:%d", port), "--ingress-port-map LISTENER=LOCAL"); err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("up: an Emissary Listener needs port %d: %w", port, err)}
		}
	}
	sup := local.New(local.Config{
		StateDir:     dir,
		Store:        st,
		Exe:          exe,
		ControlAddr:  controlAddr,
		ProxyVersion: VersionString(),
		DrainDelay:   drain,
		Ingress:      ingressConfig(portMaps, ingressArgs, sys.ratelimitAddr),
		RateLimit:    &local.RateLimitConfig{Addr: sys.ratelimitAddr, ConfigDir: RateLimitConfigDir(dir), Redis: sys.ratelimitRedis},
		Dashboard:    &local.DashboardConfig{Addr: sys.dashboardAddr},
		Identity:     identity,
		Logger:       logger,
		OnReady: func(m *local.Mesh) {
			fmt.Fprintf(g.Out, "mesh ready: %d component(s) running; 'weft status' shows them, logs are in %s\n",
				len(m.Components), filepath.Join(dir, local.LogDir))
		},
	})
	fmt.Fprintf(g.Out, "mesh starting (state dir %s, control plane %s); stop with Ctrl-C or 'weft down'\n", dir, controlAddr)
	return sup.Run(ctx)
}

// ingressConfig returns the settings of the ingress system workload: it runs
// while the store holds Emissary Listeners.
func ingressConfig(portMaps, extra []string, ratelimitAddr string) *local.IngressConfig {
	var args []string
	for _, pm := range portMaps {
		args = append(args, "--port-map", pm)
	}
	if ratelimitAddr != "" {
		// RateLimitServices name a cluster service (ratelimit.emissary:8081)
		// that does not resolve here: the local one answers for all.
		args = append(args, "--ratelimit-addr", ratelimitAddr)
	}
	return &local.IngressConfig{
		Args:       append(args, extra...),
		Enabled:    func(ctx context.Context, st store.Store) bool { return len(listenerPorts(ctx, st, nil)) > 0 },
		WatchKinds: []api.Kind{api.KindListener},
		Addresses: func(ctx context.Context, st store.Store) map[string]string {
			out := map[string]string{}
			objs, _ := st.List(ctx, api.KindListener, "")
			for i, port := range listenerPorts(ctx, st, portMaps) {
				addr := fmt.Sprintf("127.0.0.1:%d", port)
				if port == 0 {
					addr = "127.0.0.1:(a free port; see the ingress log)"
				}
				out[fmt.Sprintf("listener:%d", objs[i].(*api.Listener).Spec.Port)] = addr
			}
			return out
		},
	}
}

// listenerPorts returns the local ports the ingress will bind for the
// store's Listeners, after --ingress-port-map.
func listenerPorts(ctx context.Context, st store.Store, portMaps []string) []int {
	objs, err := st.List(ctx, api.KindListener, "")
	if err != nil {
		return nil
	}
	moved := map[int32]int{}
	for _, pm := range portMaps {
		if l, p, err := ingress.ParsePortMap(pm); err == nil {
			moved[l] = p
		}
	}
	var out []int
	for _, o := range objs {
		port := int(o.(*api.Listener).Spec.Port)
		if p, ok := moved[int32(port)]; ok {
			port = p
		}
		out = append(out, port)
	}
	return out
}

// readManifests decodes every -f file and checks that Deployments can run
// locally; it reports every problem and returns no objects if there is any.
func readManifests(paths []string) ([]api.Object, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("up: -f %s: %w", p, err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("up: -f %s: %w", p, err)
		}
		for _, e := range ents {
			switch filepath.Ext(e.Name()) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
		}
	}
	var objs []api.Object
	var problems []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		got, err := api.Decode(fh, f)
		fh.Close()
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for _, o := range got {
			if ki := api.Lookup(api.KindOf(o)); ki != nil && ki.Namespaced && o.GetNamespace() == "" {
				o.SetNamespace("default")
			}
			if d, ok := o.(*appsv1.Deployment); ok {
				if err := local.CheckRunnable(d); err != nil {
					problems = append(problems, fmt.Sprintf("%s: %v", f, err))
				}
			}
		}
		objs = append(objs, got...)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("up: refusing the manifests, nothing was applied or started:\n%s", strings.Join(problems, "\n"))
	}
	return objs, nil
}

// upDetached runs 'weft up' again without -d as a background process and
// returns once its mesh is ready, or with its log if it fails.
func upDetached(ctx context.Context, g *Globals, dir string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("up: finding the weft binary: %w", err)
	}
	var args []string
	for _, a := range os.Args[1:] {
		if a == "-d" || a == "--detach" || a == "--detach=true" {
			continue
		}
		args = append(args, a)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("up: state directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, local.LogDir), 0o755); err != nil {
		return fmt.Errorf("up: log directory: %w", err)
	}
	logPath := filepath.Join(dir, local.LogDir, "weft-up.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	c := exec.Command(exe, args...)
	c.Stdout, c.Stderr = logf, logf
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return fmt.Errorf("up: starting the background supervisor: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	deadline := time.After(2 * time.Minute)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			code := 1
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				code = ee.ExitCode()
			}
			return &ExitError{Code: code, Err: fmt.Errorf("up: the mesh did not start:\n%s", out)}
		case <-deadline:
			return fmt.Errorf("up: the mesh (pid %d) is not ready after 2m; see 'weft status' and %s", c.Process.Pid, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		m, err := local.ReadMesh(dir)
		if err != nil || m.PID != c.Process.Pid || len(m.Components) == 0 {
			continue
		}
		ready := true
		for _, comp := range m.Components {
			ready = ready && comp.Ready
		}
		if ready {
			fmt.Fprintf(g.Out, "mesh running in the background (pid %d, log %s); stop it with 'weft down'\n", c.Process.Pid, logPath)
			return nil
		}
	}
}

func newCmdDown(g *Globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the local mesh of the state directory and wait until it has stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := stateDirAbs(g)
			if err != nil {
				return err
			}
			m, err := local.ReadMesh(dir)
			if err != nil {
				if errors.Is(err, local.ErrNoMesh) {
					fmt.Fprintf(g.Out, "no mesh is running for state dir %s\n", dir)
					return nil
				}
				return err
			}
			if err := syscall.Kill(m.PID, syscall.SIGTERM); err != nil {
				return fmt.Errorf("down: signalling the supervisor (pid %d): %w", m.PID, err)
			}
			fmt.Fprintf(g.Out, "stopping the mesh (pid %d)...\n", m.PID)
			deadline := time.Now().Add(timeout)
			for local.Running(dir) {
				if time.Now().After(deadline) {
					return fmt.Errorf("down: the supervisor (pid %d) is still running after %s; see %s", m.PID, timeout, filepath.Join(dir, local.LogDir))
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
			fmt.Fprintln(g.Out, "mesh stopped")
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 90*time.Second, "how long to wait for the mesh to stop")
	return cmd
}

func newCmdStatus(g *Globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what the local mesh runs: components, replicas, processes, addresses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := stateDirAbs(g)
			if err != nil {
				return err
			}
			m, err := local.ReadMesh(dir)
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			switch output {
			case "json":
				enc := json.NewEncoder(g.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(m)
			case "", "table", "wide":
				return printStatus(g.Out, m)
			default:
				return &ExitError{Code: 2, Err: fmt.Errorf("status: unknown output format %q: use table or json", output)}
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func printStatus(w io.Writer, m *local.Mesh) error {
	fmt.Fprintf(w, "mesh pid %d, state dir %s, control plane %s, up %s\n", m.PID, m.StateDir, m.ControlAddr, time.Since(m.Started).Round(time.Second))
	for _, c := range m.Components {
		switch c.Kind {
		case local.KindDashboard:
			fmt.Fprintf(w, "dashboard %s\n", c.Addresses["url"])
		case local.KindRateLimit:
			fmt.Fprintf(w, "rate limit service %s (configuration: %s)\n", c.Addresses["grpc"], c.Addresses["config"])
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tCOMPONENT\tREPLICA\tREADY\tRESTARTS\tPIDS\tADDRESSES")
	for _, c := range m.Components {
		comp := c.Kind
		if c.Kind == "Deployment" {
			comp = "deploy/" + c.Owner
		}
		var pids []string
		for _, p := range c.Processes {
			pid := "-"
			if p.PID != 0 {
				pid = fmt.Sprint(p.PID)
			}
			pids = append(pids, p.Name+"="+pid)
		}
		keys := make([]string, 0, len(c.Addresses))
		for k := range c.Addresses {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		addrs := make([]string, len(keys))
		for i, k := range keys {
			addrs[i] = k + "=" + c.Addresses[k]
		}
		ready := "no"
		switch {
		case c.Terminated:
			ready = "stopping"
		case c.Ready:
			ready = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", c.Namespace, comp, c.Name, ready, c.Restarts, strings.Join(pids, ","), strings.Join(addrs, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Say why something restarts or is down, and where to look.
	var notes []string
	for _, c := range m.Components {
		for _, p := range c.Processes {
			if p.LastExit != "" && (p.Restarts > 0 || p.PID == 0) {
				notes = append(notes, fmt.Sprintf("  %s/%s %s: restarted %d times, last exit: %s; log: %s", c.Namespace, c.Name, p.Name, p.Restarts, p.LastExit, p.Log))
			}
		}
	}
	keys := make([]string, 0, len(m.Problems))
	for k := range m.Problems {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		notes = append(notes, fmt.Sprintf("  %s deploy/%s cannot run: %s", ns, name, m.Problems[k]))
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(notes, "\n"))
	}
	return nil
}

// parseDeployArg accepts deploy/NAME, deployment/NAME, deployments/NAME and
// deployment.apps/NAME.
func parseDeployArg(s string) (string, error) {
	kind, name, ok := strings.Cut(s, "/")
	if ok && name != "" {
		switch strings.ToLower(kind) {
		case "deploy", "deployment", "deployments", "deployment.apps", "deployments.apps":
			return name, nil
		}
	}
	return "", fmt.Errorf("%q: want deploy/NAME", s)
}

var podNameRE = regexp.MustCompile(`^[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}$`)

func newCmdLogs(g *Globals) *cobra.Command {
	var (
		ns        string
		container string
		follow    bool
	)
	cmd := &cobra.Command{
		Use:   "logs (deploy/NAME | POD | control | ingress | ratelimit | dashboard)",
		Short: "Print the logs of a Deployment's replicas, a pod, or a system component",
		Long: `Print logs from STATE_DIR/logs. -c picks the container: "app" (the default:
the pod's containers), "proxy" (the sidecar), or a container name.`,
		Example: `  weft logs deploy/smiley -n faces
  weft logs deploy/smiley -n faces -c proxy -f
  weft logs control
  weft logs ingress -c proxy`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := stateDirAbs(g)
			if err != nil {
				return err
			}
			files, err := logFiles(dir, ns, args[0], container)
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			return printLogs(cmd.Context(), g.Out, files, follow)
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	cmd.Flags().StringVarP(&container, "container", "c", "app", `"app", "proxy" or a container name`)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until interrupted")
	return cmd
}

type logFile struct{ label, path string }

func logFiles(dir, ns, target, container string) ([]logFile, error) {
	switch target {
	case "control", local.KindRateLimit, local.KindDashboard:
		return []logFile{{target, filepath.Join(dir, local.LogDir, "weft", target, target+".log")}}, nil
	case "ingress":
		target, ns = "deploy/"+local.IngressName, local.IngressNamespace
	}
	var pods []string
	if name, err := parseDeployArg(target); err == nil {
		// Prefer what runs now; fall back to every pod of that Deployment
		// that left logs.
		if m, err := local.ReadMesh(dir); err == nil {
			for _, c := range m.Components {
				if c.Namespace == ns && c.Owner == name {
					pods = append(pods, c.Name)
				}
			}
		}
		if len(pods) == 0 {
			ents, _ := os.ReadDir(filepath.Join(dir, local.LogDir, ns))
			for _, e := range ents {
				if rest, ok := strings.CutPrefix(e.Name(), name+"-"); ok && podNameRE.MatchString(rest) {
					pods = append(pods, e.Name())
				}
			}
		}
		if len(pods) == 0 {
			return nil, fmt.Errorf("logs: no logs for deployment %s in namespace %s (state dir %s); check 'weft status'", name, ns, dir)
		}
	} else if strings.Contains(target, "/") {
		return nil, fmt.Errorf("logs: %w", err)
	} else {
		pods = []string{target}
	}
	var out []logFile
	for _, pod := range pods {
		pdir := filepath.Join(dir, local.LogDir, ns, pod)
		ents, err := os.ReadDir(pdir)
		if err != nil {
			return nil, fmt.Errorf("logs: no logs for pod %s/%s: %w", ns, pod, err)
		}
		for _, e := range ents {
			c := strings.TrimSuffix(e.Name(), ".log")
			if c == e.Name() {
				continue
			}
			if container == c || (container == "app" && c != "proxy") {
				out = append(out, logFile{pod + "/" + c, filepath.Join(pdir, e.Name())})
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("logs: no %q container logs for %s in namespace %s", container, target, ns)
	}
	return out, nil
}

// printLogs copies the files to w, prefixing lines with pod/container when
// there are several; with follow it keeps polling for new lines.
func printLogs(ctx context.Context, w io.Writer, files []logFile, follow bool) error {
	type tail struct {
		logFile
		f *os.File
		r *bufio.Reader
	}
	var tails []*tail
	for _, lf := range files {
		f, err := os.Open(lf.path)
		if err != nil {
			return fmt.Errorf("logs: %w", err)
		}
		defer f.Close()
		tails = append(tails, &tail{lf, f, bufio.NewReader(f)})
	}
	prefix := len(tails) > 1
	bw := bufio.NewWriter(w)
	drain := func() {
		for _, t := range tails {
			for {
				line, err := t.r.ReadString('\n')
				if err != nil {
					// A partial line waits for its end; rewind over it.
					if len(line) > 0 {
						t.f.Seek(-int64(len(line)), io.SeekCurrent)
						t.r.Reset(t.f)
					}
					break
				}
				if prefix {
					bw.WriteString("[" + t.label + "] ")
				}
				bw.WriteString(line)
			}
		}
		bw.Flush()
	}
	drain()
	if !follow {
		// Print a last unterminated line too.
		for _, t := range tails {
			rest, _ := io.ReadAll(t.r)
			if len(rest) > 0 {
				if prefix {
					bw.WriteString("[" + t.label + "] ")
				}
				bw.Write(rest)
				bw.WriteString("\n")
			}
		}
		return bw.Flush()
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			drain()
		}
	}
}

// editDeployment reads a Deployment from the store, lets edit change it,
// and applies it; the running supervisor rolls it out.
func editDeployment(ctx context.Context, g *Globals, ns, target string, edit func(d *appsv1.Deployment) error) (string, error) {
	name, err := parseDeployArg(target)
	if err != nil {
		return "", &ExitError{Code: 2, Err: err}
	}
	dir, err := stateDirAbs(g)
	if err != nil {
		return "", err
	}
	st, err := localstore.OpenWithOptions(dir, localstore.Options{NoFollow: true})
	if err != nil {
		return "", err
	}
	defer st.Close()
	o, err := st.Get(ctx, api.Ref{Kind: api.KindDeployment, Namespace: ns, Name: name})
	if err != nil {
		return "", &ExitError{Code: 1, Err: fmt.Errorf("deployment %s not found in namespace %s (state dir %s): %w", name, ns, dir, err)}
	}
	d := o.(*appsv1.Deployment)
	if err := edit(d); err != nil {
		return "", &ExitError{Code: 2, Err: err}
	}
	if err := st.Apply(ctx, d); err != nil {
		return "", err
	}
	return name, nil
}

func newCmdScale(g *Globals) *cobra.Command {
	var (
		ns       string
		replicas int
	)
	cmd := &cobra.Command{
		Use:     "scale deploy/NAME --replicas N",
		Short:   "Set a Deployment's replicas; the running mesh starts or stops replicas",
		Example: `  weft scale deploy/smiley -n faces --replicas 3`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") || replicas < 0 {
				return &ExitError{Code: 2, Err: errors.New("scale: --replicas N (N >= 0) is required")}
			}
			name, err := editDeployment(cmd.Context(), g, ns, args[0], func(d *appsv1.Deployment) error {
				n := int32(replicas)
				d.Spec.Replicas = &n
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.Out, "deployment.apps/%s scaled\n", name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	cmd.Flags().IntVar(&replicas, "replicas", 0, "the new number of replicas")
	return cmd
}

func newCmdSet(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Change a field of a resource",
	}
	var (
		ns        string
		container string
	)
	env := &cobra.Command{
		Use:   "env deploy/NAME KEY=VALUE... [KEY-]...",
		Short: "Set or remove environment variables of a Deployment's containers; the mesh rolls it out",
		Example: `  weft set env deploy/color -n faces COLOR=blue
  weft set env deploy/color -n faces COLOR-`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sets, unsets, err := parseEnvArgs(args[1:])
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			name, err := editDeployment(cmd.Context(), g, ns, args[0], func(d *appsv1.Deployment) error {
				found := false
				for i := range d.Spec.Template.Spec.Containers {
					c := &d.Spec.Template.Spec.Containers[i]
					if container != "" && c.Name != container {
						continue
					}
					found = true
					c.Env = applyEnv(c.Env, sets, unsets)
				}
				if !found {
					return fmt.Errorf("set env: deployment %s has no container %q", d.Name, container)
				}
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.Out, "deployment.apps/%s env updated\n", name)
			return nil
		},
	}
	env.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	env.Flags().StringVarP(&container, "container", "c", "", "only this container (default: all)")
	cmd.AddCommand(env)
	return cmd
}

func parseEnvArgs(args []string) ([]corev1.EnvVar, []string, error) {
	var sets []corev1.EnvVar
	var unsets []string
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			if k == "" {
				return nil, nil, fmt.Errorf("set env: %q: empty variable name", a)
			}
			sets = append(sets, corev1.EnvVar{Name: k, Value: v})
			continue
		}
		if k, ok := strings.CutSuffix(a, "-"); ok && k != "" {
			unsets = append(unsets, k)
			continue
		}
		return nil, nil, fmt.Errorf("set env: %q: want KEY=VALUE to set or KEY- to remove", a)
	}
	return sets, unsets, nil
}

func applyEnv(env []corev1.EnvVar, sets []corev1.EnvVar, unsets []string) []corev1.EnvVar {
	out := env[:0:0]
	for _, e := range env {
		drop := false
		for _, u := range unsets {
			drop = drop || e.Name == u
		}
		if !drop {
			out = append(out, e)
		}
	}
	for _, s := range sets {
		replaced := false
		for i := range out {
			if out[i].Name == s.Name {
				out[i] = s
				replaced = true
			}
		}
		if !replaced {
			out = append(out, s)
		}
	}
	return out
}
