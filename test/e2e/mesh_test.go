package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/local"
	proxyidentity "github.com/weft-mesh/weft/internal/proxy/identity"
	localstore "github.com/weft-mesh/weft/internal/store/local"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// manifest: two HTTP workloads (web, api) and one gRPC workload (echo), two
// replicas each, in namespace e2e, and one unmeshed HTTP workload (plain).
// Ports are declared as on Kubernetes; the supervisor maps them to free
// local ports.
const manifest = `
apiVersion: v1
kind: Namespace
metadata: {name: e2e}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: e2e}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        command: ["WORKLOAD", "http"]
        env: [{name: MSG, value: web-v1}]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: e2e}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: e2e}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        command: ["WORKLOAD"]
        args: ["$(MODE)"]
        env: [{name: MODE, value: http}, {name: MSG, value: v1}]
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: e2e}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain, namespace: e2e}
spec:
  selector: {matchLabels: {app: plain}}
  template:
    metadata:
      labels: {app: plain}
      annotations: {linkerd.io/inject: disabled}
    spec:
      containers:
      - name: plain
        command: ["WORKLOAD", "http"]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: e2e}
spec:
  selector: {app: plain}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: e2e}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        command: ["WORKLOAD", "grpc"]
        # The declared port in an env var of the app's own: the supervisor
        # rewrites it to the port it allocated.
        env: [{name: LISTEN_PORT, value: "9000"}]
        ports: [{name: grpc, containerPort: 9000}]
        readinessProbe:
          tcpSocket: {port: grpc}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: e2e}
spec:
  selector: {app: echo}
  ports: [{name: grpc, port: 9090, targetPort: grpc}]
`

type reply struct {
	Pod string `json:"pod"`
	Msg string `json:"msg"`
}

var httpClient = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}

// get sends one request to a workload's own port (the test is outside the
// mesh; the workload's outbound call goes through its sidecar).
func get(u string) (reply, error) {
	resp, err := httpClient.Get(u)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return reply{}, fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	var r reply
	if err := json.Unmarshal(body, &r); err != nil || r.Pod == "" {
		return reply{}, fmt.Errorf("%s: bad reply %q", u, body)
	}
	return r, nil
}

func callURL(callerApp, target string) string {
	return "http://" + callerApp + "/call?url=" + url.QueryEscape(target)
}

func grpcURL(callerApp, target string) string {
	return "http://" + callerApp + "/grpc?target=" + url.QueryEscape(target)
}

// load sends requests continuously and records every failure.
type load struct {
	ok, fail atomic.Int64
	mu       sync.Mutex
	pods     map[string]int
	msgs     map[string]int
	errs     []string
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startLoad(urls []string, workersPerURL int) *load {
	l := &load{pods: map[string]int{}, msgs: map[string]int{}, stop: make(chan struct{})}
	for _, u := range urls {
		for range workersPerURL {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for {
					select {
					case <-l.stop:
						return
					default:
					}
					r, err := get(u)
					l.mu.Lock()
					if err != nil {
						l.fail.Add(1)
						if len(l.errs) < 20 {
							l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
						}
					} else {
						l.ok.Add(1)
						l.pods[r.Pod]++
						l.msgs[r.Msg]++
					}
					l.mu.Unlock()
				}
			}()
		}
	}
	return l
}

// reset forgets which pods and messages were seen.
func (l *load) reset() {
	l.mu.Lock()
	l.pods, l.msgs = map[string]int{}, map[string]int{}
	l.mu.Unlock()
}

func (l *load) seen() (pods, msgs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range l.pods {
		pods = append(pods, p)
	}
	for m := range l.msgs {
		msgs = append(msgs, m)
	}
	sort.Strings(pods)
	sort.Strings(msgs)
	return pods, msgs
}

// finish stops the load and fails the test if any request failed.
func (l *load) finish(t *testing.T, what string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("%s: %d requests ok, %d failed", what, l.ok.Load(), l.fail.Load())
	if l.ok.Load() == 0 {
		t.Errorf("%s: no request succeeded", what)
	}
	if n := l.fail.Load(); n > 0 {
		t.Errorf("%s: %d requests failed; first errors:\n%s", what, n, strings.Join(l.errs, "\n"))
	}
}

func podNames(cs []local.Component) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	sort.Strings(out)
	return out
}

func sameSet(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// reachesAll sends requests to u until they have reached every one of pods
// (at least n requests, for at most 20s: a proxy learns of endpoints
// asynchronously), and fails on any failed request or unknown pod.
func reachesAll(t *testing.T, u string, pods []string, n int) {
	t.Helper()
	want := map[string]bool{}
	for _, p := range pods {
		want[p] = true
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < n || len(seen) < len(want); i++ {
		if time.Now().After(deadline) {
			break
		}
		r, err := get(u)
		if err != nil {
			t.Fatalf("request by service name failed: %v", err)
		}
		if !want[r.Pod] {
			t.Fatalf("%s reached %q, which is not one of %v", u, r.Pod, pods)
		}
		seen[r.Pod] = true
	}
	if len(seen) != len(want) {
		t.Fatalf("%s: requests reached only %v, want every replica %v", u, seen, pods)
	}
}

func TestMesh(t *testing.T) {
	m := startMesh(t, strings.ReplaceAll(manifest, "WORKLOAD", workloadBin))
	want := map[string]int{"web": 2, "api": 2, "echo": 2, "plain": 1}
	st := m.waitSettled(t, "e2e", want, 60*time.Second)
	webApps := []string{}
	for _, c := range replicas(st, "e2e", "web") {
		webApps = append(webApps, c.Addresses["app:8080"])
	}
	apiApp := replicas(st, "e2e", "api")[0].Addresses["app:8080"]

	// Discovery takes a moment after the replicas are ready.
	eventually(t, 30*time.Second, "a first request by service name", func() error {
		_, err := get(callURL(webApps[0], "http://api/"))
		return err
	})

	t.Run("status shows everything", func(t *testing.T) {
		out, code := m.weft("status")
		if code != 0 {
			t.Fatalf("weft status: exit %d:\n%s", code, out)
		}
		for _, wantLine := range []string{"control", "deploy/web", "deploy/api", "deploy/echo", m.controlAddr} {
			if !strings.Contains(out, wantLine) {
				t.Errorf("weft status does not show %q:\n%s", wantLine, out)
			}
		}
		for _, c := range st.Components {
			for _, p := range c.Processes {
				if p.PID == 0 || syscall.Kill(p.PID, 0) != nil {
					t.Errorf("%s/%s process %s: pid %d is not running", c.Namespace, c.Name, p.Name, p.PID)
				}
			}
		}
	})

	t.Run("every proxy has its workload's certificate", func(t *testing.T) {
		store, err := localstore.OpenWithOptions(m.dir, localstore.Options{NoFollow: true})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		for _, c := range st.Components {
			if c.Kind != "Deployment" || c.Addresses["admin"] == "" {
				continue
			}
			var id proxyidentity.Status
			resp, err := httpClient.Get("http://" + c.Addresses["admin"] + proxyidentity.AdminPath)
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&id)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s: %s: %v", c.Name, proxyidentity.AdminPath, err)
			}
			o, err := store.Get(context.Background(), api.Ref{Kind: api.KindPod, Namespace: c.Namespace, Name: c.Name})
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			sa := o.(*corev1.Pod).Spec.ServiceAccountName // the template's, or "default"
			if want := tlsid.DefaultDomain.Name(c.Namespace, sa); id.Identity != want || id.Certificate == "" {
				t.Errorf("%s: identity %q (certificate %d bytes), want %q with a certificate", c.Name, id.Identity, len(id.Certificate), want)
			}
		}
	})

	t.Run("requests by service name reach every replica", func(t *testing.T) {
		apiPods := podNames(replicas(st, "e2e", "api"))
		for _, target := range []string{"http://api/", "http://api.e2e/", "http://api.e2e.svc.cluster.local:80/"} {
			reachesAll(t, callURL(webApps[0], target), apiPods, 40)
		}
		reachesAll(t, callURL(apiApp, "http://web/"), podNames(replicas(st, "e2e", "web")), 40)
		reachesAll(t, grpcURL(webApps[1], "echo:9090"), podNames(replicas(st, "e2e", "echo")), 40)
	})

	t.Run("hops between proxies are mTLS and weft check passes", func(t *testing.T) {
		webID := "web.e2e.serviceaccount.identity.weft.cluster.local"
		apiID := "default.e2e.serviceaccount.identity.weft.cluster.local"
		for i := 0; i < 5; i++ {
			if _, err := get(callURL(webApps[0], "http://api/")); err != nil {
				t.Fatal(err)
			}
			if _, err := get(callURL(webApps[0], "http://plain.e2e/")); err != nil {
				t.Fatal(err)
			}
		}
		// Every api proxy's inbound saw web's requests over mTLS with
		// web's identity; none came in plaintext from a proxy.
		seen := false
		for _, c := range replicas(st, "e2e", "api") {
			m := proxyMetrics(t, c.Addresses["admin"])
			for _, line := range strings.Split(m, "\n") {
				if !strings.HasPrefix(line, "request_total{direction=\"inbound\"") {
					continue
				}
				if !strings.Contains(line, `tls="true",client_id="`+webID+`"`) {
					t.Errorf("%s: inbound request not mTLS from web: %s", c.Name, line)
				}
				seen = true
			}
		}
		if !seen {
			t.Error("no api proxy counted inbound requests")
		}
		// web's outbound: mTLS to api (server_id), plaintext to the
		// unmeshed plain workload, saying why.
		var web string
		for _, c := range replicas(st, "e2e", "web") {
			if c.Addresses["app:8080"] == webApps[0] {
				web = proxyMetrics(t, c.Addresses["admin"])
			}
		}
		for _, want := range []string{
			`authority="api.e2e.svc.cluster.local:80"`,
			`tls="true",server_id="` + apiID + `"`,
		} {
			if !strings.Contains(grepMetric(web, "request_total", `authority="api.e2e.svc.cluster.local:80"`), want) {
				t.Errorf("web outbound to api lacks %s:\n%s", want, grepMetric(web, "request_total", ""))
			}
		}
		if got := grepMetric(web, "request_total", `authority="plain.e2e.svc.cluster.local:80"`); !strings.Contains(got, `tls="no_identity",no_tls_reason="not_provided_by_service_discovery"`) {
			t.Errorf("web outbound to plain is not marked plaintext:\n%s", got)
		}
		out, code := m.weft("check")
		if code != 0 || !strings.Contains(out, "data plane proxies certificate match CA") {
			t.Errorf("weft check: exit %d:\n%s", code, out)
		}
	})

	t.Run("an unmeshed workload runs without a sidecar and is reached by name", func(t *testing.T) {
		plain := replicas(st, "e2e", "plain")
		if len(plain) != 1 || len(plain[0].Processes) != 1 || plain[0].Processes[0].Name != "plain" {
			t.Fatalf("plain: %+v; want one replica with only its app process", plain)
		}
		reachesAll(t, callURL(webApps[0], "http://plain.e2e/"), podNames(plain), 5)
	})

	t.Run("a crashed process is restarted", func(t *testing.T) {
		victim := replicas(st, "e2e", "echo")[0]
		var pid int
		for _, p := range victim.Processes {
			if p.Name == "echo" {
				pid = p.PID
			}
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the supervisor to restart the app", func() error {
			st, err := m.status()
			if err != nil {
				return err
			}
			for _, c := range replicas(st, "e2e", "echo") {
				if c.Name != victim.Name {
					continue
				}
				for _, p := range c.Processes {
					if p.Name == "echo" && p.PID != 0 && p.PID != pid && p.Restarts == 1 && c.Ready {
						return nil
					}
				}
				return fmt.Errorf("replica %s: %+v", c.Name, c)
			}
			return fmt.Errorf("replica %s is gone", victim.Name)
		})
		reachesAll(t, grpcURL(webApps[1], "echo:9090"), podNames(replicas(st, "e2e", "echo")), 40)
	})

	loadURLs := []string{
		callURL(webApps[0], "http://api/"),
		callURL(webApps[1], "http://api.e2e.svc.cluster.local/"),
		grpcURL(webApps[0], "echo.e2e:9090"),
	}

	t.Run("scale under load loses no request", func(t *testing.T) {
		l := startLoad(loadURLs, 2)
		if out, code := m.weft("scale", "deploy/api", "-n", "e2e", "--replicas", "3"); code != 0 {
			t.Fatalf("weft scale: exit %d: %s", code, out)
		}
		st := m.waitSettled(t, "e2e", map[string]int{"api": 3}, 30*time.Second)
		l.reset()
		pods := append(podNames(replicas(st, "e2e", "api")), podNames(replicas(st, "e2e", "echo"))...)
		sort.Strings(pods)
		eventually(t, 20*time.Second, "traffic on the new replica", func() error {
			if got, _ := l.seen(); !sameSet(got, pods) {
				return fmt.Errorf("saw %v, want %v", got, pods)
			}
			return nil
		})
		if out, code := m.weft("scale", "deploy/api", "-n", "e2e", "--replicas", "2"); code != 0 {
			t.Fatalf("weft scale: exit %d: %s", code, out)
		}
		m.waitSettled(t, "e2e", want, 30*time.Second)
		l.finish(t, "scale 2 -> 3 -> 2")
	})

	t.Run("set env rolls out under load losing no request", func(t *testing.T) {
		l := startLoad(loadURLs, 2)
		before, _ := m.status()
		for _, args := range [][]string{
			{"set", "env", "deploy/api", "-n", "e2e", "MSG=v2"},
			{"set", "env", "deploy/echo", "-n", "e2e", "ROLL=1"},
		} {
			if out, code := m.weft(args...); code != 0 {
				t.Fatalf("weft %v: exit %d: %s", args, code, out)
			}
		}
		eventually(t, 45*time.Second, "both rollouts to finish", func() error {
			st, err := m.status()
			if err != nil {
				return err
			}
			for _, d := range []string{"api", "echo"} {
				old, now := podNames(replicas(before, "e2e", d)), podNames(replicas(st, "e2e", d))
				for _, p := range now {
					for _, o := range old {
						if p == o {
							return fmt.Errorf("deploy/%s still runs old replica %s", d, p)
						}
					}
				}
			}
			return nil
		})
		m.waitSettled(t, "e2e", want, 30*time.Second)
		l.reset()
		eventually(t, 20*time.Second, "only the new env in replies", func() error {
			_, msgs := l.seen()
			if !sameSet(msgs, []string{"", "v2"}) { // "" is the gRPC replies
				return fmt.Errorf("messages seen: %q", msgs)
			}
			return nil
		})
		l.finish(t, "set env rollout")
	})

	t.Run("control plane down for 10s under load loses no request", func(t *testing.T) {
		st, err := m.status()
		if err != nil {
			t.Fatal(err)
		}
		control := st.Components[0]
		if control.Kind != "control" {
			t.Fatalf("first component is %q, want the control plane", control.Kind)
		}
		pid := control.Processes[0].PID
		l := startLoad(loadURLs, 2)
		// Freeze it first: for 10 seconds it answers nothing, the worst
		// failure for its clients; then kill it and let the supervisor
		// restart it.
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second) // the outage being tested, not a wait for a condition
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the supervisor to restart the control plane", func() error {
			st, err := m.status()
			if err != nil {
				return err
			}
			c := st.Components[0]
			if c.Processes[0].PID == 0 || c.Processes[0].PID == pid || !c.Ready || c.Restarts < 1 {
				return fmt.Errorf("control plane: %+v", c)
			}
			return nil
		})
		// The restarted control plane serves discovery again: a new
		// replica gets traffic.
		if out, code := m.weft("scale", "deploy/api", "-n", "e2e", "--replicas", "3"); code != 0 {
			t.Fatalf("weft scale: exit %d: %s", code, out)
		}
		st = m.waitSettled(t, "e2e", map[string]int{"api": 3}, 30*time.Second)
		l.reset()
		pods := append(podNames(replicas(st, "e2e", "api")), podNames(replicas(st, "e2e", "echo"))...)
		sort.Strings(pods)
		// Generous: the proxies reconnect with their own backoff, which
		// grows while the control plane is down.
		eventually(t, 60*time.Second, "traffic on the new replica", func() error {
			if got, _ := l.seen(); !sameSet(got, pods) {
				return fmt.Errorf("saw %v, want %v", got, pods)
			}
			return nil
		})
		if out, code := m.weft("scale", "deploy/api", "-n", "e2e", "--replicas", "2"); code != 0 {
			t.Fatalf("weft scale: exit %d: %s", code, out)
		}
		m.waitSettled(t, "e2e", want, 30*time.Second)
		l.finish(t, "control plane outage")
	})

	t.Run("a bad manifest is refused and changes nothing", func(t *testing.T) {
		if out, _ := m.weft("apply", "--help"); !strings.Contains(out, "-f") {
			t.Skip("weft apply is not available in this build")
		}
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(bad, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: e2e}
spec:
  replicas: 5
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, command: ["`+workloadBin+`", "http"], env: [{name: MSG, value: v3}]}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: e2e}
spec:
  selector: {app: api}
  ports: [{name: http, port: eighty}]
`), 0o644)
		out, code := m.weft("apply", "-f", bad)
		if code == 0 {
			t.Fatalf("weft apply of a bad manifest succeeded:\n%s", out)
		}
		if !strings.Contains(out, "bad.yaml") || !strings.Contains(out, "port") {
			t.Errorf("the error does not say where the problem is:\n%s", out)
		}
		l := startLoad(loadURLs[:1], 2)
		for range 20 {
			r, err := get(loadURLs[0])
			if err != nil || r.Msg != "v2" {
				t.Fatalf("after a refused apply: reply %+v, err %v; want msg v2 (unchanged)", r, err)
			}
		}
		st := m.waitSettled(t, "e2e", want, 10*time.Second)
		if n := len(replicas(st, "e2e", "api")); n != 2 {
			t.Fatalf("api has %d replicas after a refused apply", n)
		}
		l.finish(t, "after refused apply")
	})

	t.Run("a Deployment local mode cannot run is reported, not started", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "db.yaml")
		os.WriteFile(f, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: e2e}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: "postgres:16"}]
`), 0o644)
		if out, code := m.weft("apply", "-f", f); code != 0 {
			t.Fatalf("weft apply: exit %d:\n%s", code, out)
		}
		eventually(t, 10*time.Second, "weft status to report deploy/db", func() error {
			out, _ := m.weft("status")
			if !strings.Contains(out, "e2e deploy/db cannot run") || !strings.Contains(out, "needs a command") {
				return fmt.Errorf("status:\n%s", out)
			}
			return nil
		})
		if out, code := m.weft("delete", "deploy/db", "-n", "e2e"); code != 0 {
			t.Fatalf("weft delete: exit %d:\n%s", code, out)
		}
		eventually(t, 10*time.Second, "the problem to go with the Deployment", func() error {
			if out, _ := m.weft("status"); strings.Contains(out, "deploy/db") {
				return fmt.Errorf("status:\n%s", out)
			}
			return nil
		})
	})

	t.Run("logs", func(t *testing.T) {
		out, code := m.weft("logs", "deploy/api", "-n", "e2e")
		if code != 0 || !strings.Contains(out, "listening") {
			t.Errorf("weft logs deploy/api: exit %d:\n%s", code, out)
		}
		out, code = m.weft("logs", "deploy/api", "-n", "e2e", "-c", "proxy")
		if code != 0 || strings.TrimSpace(out) == "" {
			t.Errorf("weft logs -c proxy: exit %d:\n%s", code, out)
		}
	})

	t.Run("a second weft up on the state dir or the port is refused", func(t *testing.T) {
		out, code := m.weft("up", "--control-addr", freeAddr(t), "--ratelimit-addr", freeAddr(t), "--dashboard-addr", freeAddr(t))
		if code != 2 || !strings.Contains(out, "another 'weft up'") {
			t.Errorf("second weft up: exit %d, want 2:\n%s", code, out)
		}
		out, code = runWeft(t, t.TempDir(), "up", "--control-addr", m.controlAddr, "--ratelimit-addr", freeAddr(t), "--dashboard-addr", freeAddr(t))
		if code != 2 || !strings.Contains(out, m.controlAddr) || !strings.Contains(out, "--control-addr") {
			t.Errorf("weft up on a taken port: exit %d, want 2 and a message naming the port and flag:\n%s", code, out)
		}
	})

	t.Run("deleting a Deployment stops its replicas", func(t *testing.T) {
		st, err := m.status()
		if err != nil {
			t.Fatal(err)
		}
		gone := replicas(st, "e2e", "echo")
		if out, code := m.weft("delete", "deploy/echo", "-n", "e2e"); code != 0 {
			t.Fatalf("weft delete: exit %d:\n%s", code, out)
		}
		eventually(t, 30*time.Second, "echo's replicas to stop", func() error {
			st, err := m.status()
			if err != nil {
				return err
			}
			for _, c := range st.Components {
				if c.Owner == "echo" {
					return fmt.Errorf("%s still listed", c.Name)
				}
			}
			return nil
		})
		for _, c := range gone {
			for _, p := range c.Processes {
				if syscall.Kill(p.PID, 0) == nil {
					t.Errorf("%s %s (pid %d) still runs", c.Name, p.Name, p.PID)
				}
			}
		}
		out, code := m.weft("get", "endpointslices", "-n", "e2e")
		if code != 0 || !strings.Contains(out, "web-web-") || strings.Contains(out, "echo-") {
			t.Errorf("echo's EndpointSlices are left:\n%s", out)
		}
		m.waitSettled(t, "e2e", map[string]int{"web": 2, "api": 2, "plain": 1}, 10*time.Second)
	})

	t.Run("weft down stops everything", func(t *testing.T) {
		st, err := m.status()
		if err != nil {
			t.Fatal(err)
		}
		out, code := m.weft("down")
		if code != 0 {
			t.Fatalf("weft down: exit %d:\n%s", code, out)
		}
		select {
		case <-m.exited:
		case <-time.After(5 * time.Second):
			t.Fatal("weft up still runs after weft down returned")
		}
		if code := m.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("weft up exited with code %d after weft down, want 0", code)
		}
		for _, c := range st.Components {
			for _, p := range c.Processes {
				if p.PID != 0 && syscall.Kill(p.PID, 0) == nil {
					t.Errorf("%s/%s %s (pid %d) still runs", c.Namespace, c.Name, p.Name, p.PID)
				}
			}
		}
		if out, code := m.weft("status"); code == 0 || !strings.Contains(out, "no mesh is running") {
			t.Errorf("weft status after down: exit %d:\n%s", code, out)
		}
		s, err := localstore.Open(m.dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, k := range []api.Kind{api.KindPod, api.KindEndpointSlice} {
			objs, err := s.List(context.Background(), k, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != 0 {
				t.Errorf("%d %s objects left in the store after down", len(objs), k)
			}
		}
	})
}

func TestUpRefusesBadManifest(t *testing.T) {
	dir := t.TempDir()
	files := t.TempDir()
	deploy := filepath.Join(files, "db.yaml")
	os.WriteFile(deploy, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: e2e}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: postgres:16}]
`), 0o644)
	svc := filepath.Join(files, "bad.yaml")
	os.WriteFile(svc, []byte(`apiVersion: v1
kind: Service
metadata: {name: db, namespace: e2e}
spec:
  selector: {app: db}
  ports: [{port: 5432, bogus: true}]
`), 0o644)
	out, code := runWeft(t, dir, "up", "-f", deploy, "-f", svc, "--control-addr", freeAddr(t), "--ratelimit-addr", freeAddr(t), "--dashboard-addr", freeAddr(t))
	if code != 1 {
		t.Fatalf("weft up with a bad manifest: exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{"bad.yaml", "bogus", "db.yaml", "needs a command"} {
		if !strings.Contains(out, want) {
			t.Errorf("error does not mention %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, local.MeshFile)); err == nil {
		t.Error("mesh.json exists: something was started")
	}
	if _, err := os.Stat(filepath.Join(dir, local.LogDir)); err == nil {
		t.Error("a log directory exists: something was started")
	}
	s, err := localstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if objs, _ := s.List(context.Background(), api.KindDeployment, ""); len(objs) != 0 {
		t.Errorf("a refused manifest stored %d Deployments", len(objs))
	}
}

// proxyMetrics reads a proxy's /metrics from its admin address.
func proxyMetrics(t *testing.T, admin string) string {
	t.Helper()
	resp, err := httpClient.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", admin, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// grepMetric returns the lines of family name that contain sub.
func grepMetric(text, name, sub string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
