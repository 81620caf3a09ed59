package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is a process the harness measures (CPU, RSS).
type proc struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
}

// path is one way from the client to the server.
type path struct {
	name   string
	note   string
	target target
	procs  []proc // the proxy processes on this path
}

// env holds everything the harness started; close stops it all.
type env struct {
	dir      string
	weft     string // weft binary
	stateDir string
	direct   string // the upstream server's address
	paths    map[string]*path
	skipped  map[string]string // path -> why it did not run
	cmds     []*exec.Cmd
	meshUp   bool
	control  string // the mesh's control plane address
	cliAdmin string // the client sidecar's admin address (/metrics)
	log      func(string, ...any)
}

func (e *env) close() {
	if e.meshUp {
		cmd := exec.Command(e.weft, "--state-dir", e.stateDir, "down")
		cmd.Stdout, cmd.Stderr = nil, nil
		if err := cmd.Run(); err != nil {
			e.log("weft down: %v", err)
		}
	}
	for i := len(e.cmds) - 1; i >= 0; i-- {
		c := e.cmds[i]
		if c.Process == nil {
			continue
		}
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
}

// freePort returns a port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startLogged starts cmd with its output in dir/name.log.
func (e *env) startLogged(name string, cmd *exec.Cmd) error {
	f, err := os.Create(filepath.Join(e.dir, name+".log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("bench: starting %s: %w", name, err)
	}
	f.Close()
	e.cmds = append(e.cmds, cmd)
	return nil
}

// startServer runs this executable as the upstream server and returns its
// address.
func (e *env) startServer(ctx context.Context) (string, int, error) {
	self, err := os.Executable()
	if err != nil {
		return "", 0, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), serveEnv+"=1", "PORT=0")
	return e.startReporting(cmd)
}

// startReporting starts cmd, which prints "listening ADDR" as its first
// line of output, and returns ADDR.
func (e *env) startReporting(cmd *exec.Cmd) (string, int, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", 0, fmt.Errorf("bench: starting %s: %w", cmd.Path, err)
	}
	e.cmds = append(e.cmds, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return "", 0, fmt.Errorf("bench: %s did not report its address: %w", cmd.Path, err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if !ok {
		return "", 0, fmt.Errorf("bench: unexpected output %q from %s", line, cmd.Path)
	}
	go func() { // keep the pipe drained
		buf := make([]byte, 4096)
		for {
			if _, err := out.Read(buf); err != nil {
				return
			}
		}
	}()
	return addr, cmd.Process.Pid, nil
}

// Authorities of the benchmark's Services.
const (
	meshAuthority   = "benchsrv.default.svc.cluster.local"    // meshed: the server behind its own sidecar
	directAuthority = "benchdirect.default.svc.cluster.local" // not meshed: the harness's server itself
	ingressListener = 8080
)

// meshManifest is what 'weft up' applies: a meshed copy of the server
// (benchsrv), an idle client workload whose sidecar the load generator
// uses (benchcli), a Service with a hand-written EndpointSlice for the
// harness's own server (one hop: outbound proxy -> server), and an
// Emissary Listener and Mapping for the ingress path.
func meshManifest(self, directPort string, ingress bool) string {
	m := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: benchsrv, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: benchsrv}}
  template:
    metadata: {labels: {app: benchsrv}}
    spec:
      containers:
      - name: app
        command: [%[1]q]
        env: [{name: %[3]s, value: "1"}]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: benchsrv, namespace: default}
spec:
  selector: {app: benchsrv}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: benchcli, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: benchcli}}
  template:
    metadata: {labels: {app: benchcli}}
    spec:
      containers:
      - name: app
        command: [%[1]q]
        env: [{name: %[3]s, value: "1"}]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: benchdirect, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: benchdirect-1
  namespace: default
  labels: {kubernetes.io/service-name: benchdirect}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
ports: [{name: http, port: %[2]s, protocol: TCP}]
`, self, directPort, serveEnv)
	if ingress {
		m += fmt.Sprintf(`---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: http, namespace: weft}
spec: {port: %d, protocol: HTTP, securityModel: XFP, hostBinding: {namespace: {from: ALL}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: bench, namespace: default}
spec:
  hostname: "*"
  prefix: /
  service: benchsrv.default:80
`, ingressListener)
	}
	return m
}

// meshFile is the part of STATE/mesh.json the harness reads.
type meshFile struct {
	Components []struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Kind      string            `json:"kind"`
		Owner     string            `json:"owner"`
		Ready     bool              `json:"ready"`
		Addresses map[string]string `json:"addresses"`
		Processes []struct {
			Name string `json:"name"`
			PID  int    `json:"pid"`
		} `json:"processes"`
	} `json:"components"`
}

// startMesh runs 'weft up' and registers the Weft paths that were asked for.
func (e *env) startMesh(ctx context.Context, want map[string]bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	_, directPort, _ := net.SplitHostPort(e.direct)
	ingress := want["weft-ingress"]
	e.stateDir = filepath.Join(e.dir, "state")
	manifest := filepath.Join(e.dir, "mesh.yaml")
	if err := os.WriteFile(manifest, []byte(meshManifest(self, directPort, ingress)), 0o644); err != nil {
		return err
	}
	cport, err := freePort()
	if err != nil {
		return err
	}
	e.control = fmt.Sprintf("127.0.0.1:%d", cport)
	// No rate limit service or dashboard: the paths measured use neither,
	// and their default addresses are fixed ports that another mesh (or a
	// test running beside this one) may hold, which makes 'weft up' fail.
	args := []string{"--state-dir", e.stateDir, "up", "-d", "-f", manifest,
		"--control-addr", e.control, "--drain-delay", "0s",
		"--ratelimit-addr", "", "--dashboard-addr", ""}
	ingressPort := 0
	if ingress {
		if ingressPort, err = freePort(); err != nil {
			return err
		}
		args = append(args, "--ingress-port-map", fmt.Sprintf("%d=%d", ingressListener, ingressPort))
	}
	cmd := exec.CommandContext(ctx, e.weft, args...)
	logf, err := os.Create(filepath.Join(e.dir, "weft-up.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	e.meshUp = true
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bench: weft up failed (see %s): %w", logf.Name(), err)
	}
	raw, err := os.ReadFile(filepath.Join(e.stateDir, "mesh.json"))
	if err != nil {
		return fmt.Errorf("bench: reading mesh.json: %w", err)
	}
	var m meshFile
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("bench: decoding mesh.json: %w", err)
	}
	pid := func(owner, name string) (proc, map[string]string, error) {
		for _, c := range m.Components {
			if c.Owner == owner || (c.Owner == "" && c.Name == owner) {
				for _, p := range c.Processes {
					if p.Name == name {
						return proc{Name: owner + "/" + name, PID: p.PID}, c.Addresses, nil
					}
				}
			}
		}
		return proc{}, nil, fmt.Errorf("bench: mesh.json has no %s process of %s (see %s)", name, owner, filepath.Join(e.stateDir, "mesh.json"))
	}
	cli, cliAddrs, err := pid("benchcli", "proxy")
	if err != nil {
		return err
	}
	srv, _, err := pid("benchsrv", "proxy")
	if err != nil {
		return err
	}
	out := "http://" + cliAddrs["outbound"]
	e.cliAdmin = cliAddrs["admin"]
	e.paths["weft-1hop"] = &path{name: "weft-1hop", note: "client -> weft outbound proxy (HTTP/1.1 absolute-form) -> server",
		target: target{url: "http://" + directAuthority + "/", proxy: out}, procs: []proc{cli}}
	e.paths["weft-1hop-h2c"] = &path{name: "weft-1hop-h2c", note: "client -> weft outbound proxy (h2c prior knowledge, 1 connection) -> server (h2c)",
		target: target{url: "http://" + directAuthority + "/", h2c: true, dial: cliAddrs["outbound"]}, procs: []proc{cli}}
	e.paths["weft-mesh"] = &path{name: "weft-mesh", note: "client -> outbound proxy -> HTTP/2 between proxies (mTLS when identity is on) -> inbound proxy -> server",
		target: target{url: "http://" + meshAuthority + "/", proxy: out}, procs: []proc{cli, srv}}
	if ingress {
		ing, _, err := pid("weft-ingress", "ingress")
		if err != nil {
			return err
		}
		ingp, _, err := pid("weft-ingress", "proxy")
		if err != nil {
			return err
		}
		e.paths["weft-ingress"] = &path{name: "weft-ingress", note: "client -> weft ingress -> its sidecar -> HTTP/2 -> inbound proxy -> server",
			target: target{url: fmt.Sprintf("http://127.0.0.1:%d/", ingressPort)}, procs: []proc{ing, ingp, srv}}
	}
	return nil
}

// startPeer runs one of the peer proxies as a plain reverse proxy to the
// server, or returns why it cannot.
func (e *env) startPeer(name, caddyBin string) (*path, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	var conf, note string
	switch name {
	case "haproxy":
		bin, err := exec.LookPath("haproxy")
		if err != nil {
			return nil, errors.New("haproxy is not installed (apt-get install -y haproxy)")
		}
		note = "HAProxy, 1 thread, http-reuse always, keep-alive both sides"
		conf = fmt.Sprintf(`global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind %s
  default_backend be
backend be
  server s1 %s
`, listen, e.direct)
		cmd = exec.Command(bin, "-db", "-f", filepath.Join(dir, "haproxy.cfg"))
		if err := os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(conf), 0o644); err != nil {
			return nil, err
		}
	case "nginx":
		bin, err := exec.LookPath("nginx")
		if err != nil {
			return nil, errors.New("nginx is not installed (apt-get install -y nginx)")
		}
		note = "NGINX, 1 worker process, upstream keepalive 32, HTTP/1.1 upstream, access log off"
		conf = fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_requests 1000000;
  upstream up { server %[3]s; keepalive 32; keepalive_requests 1000000; }
  server {
    listen %[2]s;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, dir, listen, e.direct)
		if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
			return nil, err
		}
		cmd = exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	case "caddy":
		bin := caddyBin
		if bin == "" {
			var err error
			if bin, err = exec.LookPath("caddy"); err != nil {
				return nil, errors.New("caddy not found (-caddy PATH, or go install github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9)")
			}
		}
		note = "Caddy reverse_proxy (Go, GOMAXPROCS default), keep-alive upstream (default pool), no logs"
		conf = fmt.Sprintf(`{
  admin off
  auto_https off
  persist_config off
}
http://%s {
  reverse_proxy %s
}
`, listen, e.direct)
		if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(conf), 0o644); err != nil {
			return nil, err
		}
		cmd = exec.Command(bin, "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	default:
		return nil, fmt.Errorf("unknown peer %q", name)
	}
	if err := e.startLogged(name, cmd); err != nil {
		return nil, err
	}
	if err := waitListening(listen, 15*time.Second); err != nil {
		return nil, fmt.Errorf("%s did not listen on %s (see %s.log): %w", name, listen, filepath.Join(e.dir, name), err)
	}
	procs := []proc{{Name: name, PID: cmd.Process.Pid}}
	if name == "nginx" {
		for _, c := range childPIDs(cmd.Process.Pid) {
			procs = append(procs, proc{Name: "nginx/worker", PID: c})
		}
	}
	return &path{name: name, note: note, target: target{url: "http://" + listen + "/"}, procs: procs}, nil
}

func waitListening(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startProfiledProxy builds and runs bench/proxyprof (internal/proxy with
// pprof, identity off) against the mesh's control plane, and moves the
// one-hop paths onto it. Its profiles land in outDir when it stops.
func (e *env) startProfiledProxy(ctx context.Context, outDir string) error {
	bin := filepath.Join(e.dir, "proxyprof")
	b := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/weft-mesh/weft/bench/proxyprof")
	b.Stderr = os.Stderr
	if err := b.Run(); err != nil {
		return fmt.Errorf("bench: building bench/proxyprof: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	abs, err := filepath.Abs(outDir)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "--control-addr", e.control,
		"-cpuprofile", filepath.Join(abs, "proxy-cpu.pprof"), "-allocprofile", filepath.Join(abs, "proxy-allocs.pprof"))
	f, err := os.Create(filepath.Join(e.dir, "proxyprof.log"))
	if err != nil {
		return err
	}
	cmd.Stderr = f
	addr, pid, err := e.startReporting(cmd)
	f.Close()
	if err != nil {
		return err
	}
	pr := proc{Name: "proxyprof", PID: pid}
	for _, name := range []string{"weft-1hop", "weft-1hop-h2c"} {
		p := e.paths[name]
		if p == nil {
			continue
		}
		p.note += " [profiled: bench/proxyprof, identity off]"
		p.procs = []proc{pr}
		if p.target.h2c {
			p.target.dial = addr
		} else {
			p.target.proxy = "http://" + addr
		}
	}
	return nil
}

// meshTLS reads the client sidecar's metrics and reports whether its
// requests to the meshed server went over mTLS (tls="true"), so that the
// report says what the mesh path measured.
func (e *env) meshTLS(ctx context.Context) string {
	if e.cliAdmin == "" {
		return ""
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.cliAdmin+"/metrics", nil)
	if err != nil {
		return "unknown: " + err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "unknown: " + err.Error()
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "unknown: " + err.Error()
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if !strings.HasPrefix(line, "request_total{") || !strings.Contains(line, `authority="`+meshAuthority) {
			continue
		}
		if strings.Contains(line, `tls="true"`) {
			return "mTLS"
		}
		return "plaintext"
	}
	return "unknown: no request_total for " + meshAuthority
}
