// Package kubetest runs a real Kubernetes control plane for tests: an etcd
// (Debian's etcd-server package) and a kube-apiserver built from the Go
// module proxy by hack/kube-apiserver/build.sh. Nothing is faked: requests
// go through the real authentication, RBAC authorization, admission,
// validation and storage of the API server.
//
// Start returns a running Cluster; everything it started is stopped and its
// files removed when the test ends. When a binary is missing the test is
// skipped with a message naming what to install or build, unless the
// environment has WEFT_REQUIRE_KUBE=1, where it fails instead (.ci/run
// builds kube-apiserver and installs etcd first, so there the tests run).
//
// Binaries are found through the environment first:
//
//	WEFT_KUBE_APISERVER  path of kube-apiserver
//	WEFT_ETCD            path of etcd
//	WEFT_KUBE_CACHE      the cache build.sh writes to (default
//	                     ${XDG_CACHE_HOME:-$HOME/.cache}/weft)
//
// and otherwise at the cache path build.sh prints and etcd on $PATH.
package kubetest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Timeouts for starting and stopping processes. Generous: CI machines have
// two cores, and a first start of kube-apiserver installs its bootstrap
// RBAC roles and priority levels before /readyz passes.
const (
	readyTimeout = 90 * time.Second
	stopTimeout  = 10 * time.Second
)

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Config is an admin client configuration: the client certificate is in
	// group system:masters, which RBAC lets do everything.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file with the same admin
	// credentials, for processes started by the test ('weft control
	// --kubeconfig').
	Kubeconfig string
	// URL is the API server's base URL (https://127.0.0.1:PORT).
	URL string

	dir     string
	pki     *pki
	apiBin  string
	apiArgs []string

	mu  sync.Mutex
	api *process
}

// Start runs etcd and kube-apiserver in temporary directories on free
// loopback ports, waits until the API server's /readyz passes, and stops
// both when tb ends. It skips (or, with WEFT_REQUIRE_KUBE=1, fails) the test
// when a binary is missing.
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	apiBin, etcdBin := binaries(tb)
	dir := tb.TempDir()
	p, err := newPKI(dir)
	if err != nil {
		tb.Fatalf("kubetest: %v", err)
	}

	etcdURL := startEtcd(tb, etcdBin, dir)

	c := &Cluster{dir: dir, pki: p, apiBin: apiBin}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	// The port is chosen before the server binds it; should another
	// program take it in between, try again with another.
	for attempt := 1; ; attempt++ {
		c.configure(freePort(tb), etcdURL)
		if err := writeKubeconfig(c.Kubeconfig, c.URL, p.caPEM, p.adminCertPEM, p.adminKeyPEM); err != nil {
			tb.Fatalf("kubetest: %v", err)
		}
		err := c.tryStartAPIServer()
		if err == nil {
			break
		}
		if attempt < 3 && errors.Is(err, errPortTaken) {
			continue
		}
		tb.Fatalf("kubetest: %v", err)
	}
	// Killed, not stopped: a graceful stop waits for clients' open watches
	// to drain, which only slows tests down; etcd has every write.
	tb.Cleanup(c.StopAPIServer)
	return c
}

// configure sets the API server's flags and the clients' configuration for
// a server on port.
func (c *Cluster) configure(port int, etcdURL string) {
	c.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	c.apiArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.dir, "apiserver-certs"),
		"--tls-cert-file=" + c.pki.servingCert,
		"--tls-private-key-file=" + c.pki.servingKey,
		"--client-ca-file=" + c.pki.caCert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.pki.saKey,
		"--service-account-signing-key-file=" + c.pki.saKey,
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		// No kube-controller-manager runs: deletions must not wait
		// for its garbage collector (orphan and foreground
		// finalizers), and nothing maintains the kubernetes
		// Service's endpoints.
		"--enable-garbage-collector=false",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=1",
	}
	c.Config = &rest.Config{
		Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caPEM,
			CertData: c.pki.adminCertPEM,
			KeyData:  c.pki.adminKeyPEM,
		},
		// Tests create objects in bursts; client-go's default limit
		// (5 QPS) would make them slow for no benefit.
		QPS:   1000,
		Burst: 1000,
	}
}

// RestartAPIServer kills kube-apiserver and starts it again on the same
// port over the same etcd, for tests of clients that must survive the loss
// of the API server. It returns once the new server is ready.
func (c *Cluster) RestartAPIServer(tb testing.TB) {
	tb.Helper()
	c.StopAPIServer()
	c.startAPIServer(tb)
}

// StopAPIServer kills kube-apiserver, as a crash would (etcd keeps
// running and holds every object). StartAPIServer or RestartAPIServer
// brings it back.
func (c *Cluster) StopAPIServer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api != nil {
		c.api.kill()
		c.api = nil
	}
}

// StartAPIServer starts kube-apiserver again after StopAPIServer and waits
// until it is ready.
func (c *Cluster) StartAPIServer(tb testing.TB) {
	tb.Helper()
	c.startAPIServer(tb)
}

func (c *Cluster) startAPIServer(tb testing.TB) {
	tb.Helper()
	if err := c.tryStartAPIServer(); err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
}

// errPortTaken marks a start that failed because the port was taken.
var errPortTaken = errors.New("port taken")

func (c *Cluster) tryStartAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api != nil {
		return nil
	}
	api, err := startProcess(c.dir, "kube-apiserver", c.apiBin, c.apiArgs...)
	if err != nil {
		return err
	}
	if err := waitReady(c.URL+"/readyz", c.pki, api); err != nil {
		api.kill()
		tail := api.tail()
		if strings.Contains(tail, "address already in use") {
			return fmt.Errorf("kube-apiserver: %w: %v", errPortTaken, err)
		}
		return fmt.Errorf("kube-apiserver did not become ready: %v\n%s", err, tail)
	}
	c.api = api
	return nil
}

// UserConfig returns a client configuration authenticating as user in
// groups, with a client certificate signed by the cluster's client CA. RBAC
// applies to it: it can do only what the test grants it.
func (c *Cluster) UserConfig(tb testing.TB, user string, groups ...string) *rest.Config {
	tb.Helper()
	certPEM, keyPEM, err := c.pki.clientCert(user, groups)
	if err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.CertData, cfg.KeyData = certPEM, keyPEM
	return cfg
}

// WaitAllowed waits until RBAC lets user (in groups) do what attrs
// describes, failing the test after a while. The RBAC authorizer reads
// roles and bindings from informers, so a grant takes effect a moment
// after its create returns: tests that grant and then act wait here first.
func (c *Cluster) WaitAllowed(tb testing.TB, attrs authorizationv1.ResourceAttributes, user string, groups ...string) {
	tb.Helper()
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		ResourceAttributes: &attrs, User: user, Groups: groups,
	}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
		if err == nil && res.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			why := fmt.Sprint(err)
			if err == nil {
				why = "denied: " + res.Status.Reason
			}
			tb.Fatalf("kubetest: after 20s RBAC still does not let %s %s %s in namespace %q (%s)", user, attrs.Verb, attrs.Resource, attrs.Namespace, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WriteKubeconfig writes a kubeconfig file for cfg (from Config or
// UserConfig) into the cluster's directory and returns its path.
func (c *Cluster) WriteKubeconfig(tb testing.TB, name string, cfg *rest.Config) string {
	tb.Helper()
	path := filepath.Join(c.dir, name+".kubeconfig")
	if err := writeKubeconfig(path, cfg.Host, cfg.CAData, cfg.CertData, cfg.KeyData); err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
	return path
}

// binaries finds kube-apiserver and etcd or ends the test.
func binaries(tb testing.TB) (apiBin, etcdBin string) {
	tb.Helper()
	var problems []string
	apiBin, err := APIServerPath()
	if err != nil {
		problems = append(problems, err.Error())
	}
	etcdBin, err = EtcdPath()
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) == 0 {
		return apiBin, etcdBin
	}
	msg := "kubetest: " + strings.Join(problems, "; ")
	if os.Getenv("WEFT_REQUIRE_KUBE") == "1" {
		tb.Fatal(msg + " (WEFT_REQUIRE_KUBE=1, so this fails instead of skipping)")
	}
	tb.Skip(msg)
	return "", ""
}

// EtcdPath returns the etcd binary: $WEFT_ETCD, else etcd on $PATH, else
// Debian's /usr/bin/etcd.
func EtcdPath() (string, error) {
	if p := os.Getenv("WEFT_ETCD"); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("WEFT_ETCD=%s is not an executable file", p)
		}
		return p, nil
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	return "", errors.New("etcd not found on $PATH: install it (Debian: apt-get install etcd-server) or set WEFT_ETCD")
}

// APIServerPath returns the kube-apiserver binary: $WEFT_KUBE_APISERVER,
// else the one hack/kube-apiserver/build.sh caches for the version pinned in
// hack/kube-apiserver/go.mod.
func APIServerPath() (string, error) {
	if p := os.Getenv("WEFT_KUBE_APISERVER"); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("WEFT_KUBE_APISERVER=%s is not an executable file", p)
		}
		return p, nil
	}
	version, err := PinnedVersion()
	if err != nil {
		return "", err
	}
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "kube-apiserver-"+version)
	if !isExecutable(p) {
		return "", fmt.Errorf("kube-apiserver %s not built: run hack/kube-apiserver/build.sh (about 10 minutes, once; it caches %s)", version, p)
	}
	return p, nil
}

// CacheDir is where build.sh caches binaries: $WEFT_KUBE_CACHE, else
// $XDG_CACHE_HOME/weft, else ~/.cache/weft.
func CacheDir() (string, error) {
	if d := os.Getenv("WEFT_KUBE_CACHE"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "weft"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for kube-apiserver: set WEFT_KUBE_CACHE or HOME: %w", err)
	}
	return filepath.Join(home, ".cache", "weft"), nil
}

// PinnedVersion reads the k8s.io/kubernetes version required by
// hack/kube-apiserver/go.mod, found by walking up from the working
// directory (a package directory under go test) to the repository root.
func PinnedVersion() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		f, err := os.Open(filepath.Join(dir, "hack", "kube-apiserver", "go.mod"))
		if err == nil {
			defer f.Close()
			return requiredVersion(f.Name(), f)
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("hack/kube-apiserver/go.mod not found above %s; set WEFT_KUBE_APISERVER", wd)
		}
	}
}

func requiredVersion(name string, f *os.File) (string, error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "require" && fields[1] == "k8s.io/kubernetes" {
			return fields[2], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	return "", fmt.Errorf("%s has no line \"require k8s.io/kubernetes VERSION\"", name)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// startEtcd runs a single-member etcd on free loopback ports and returns
// its client URL once it answers.
func startEtcd(tb testing.TB, bin, dir string) string {
	tb.Helper()
	for attempt := 1; ; attempt++ {
		url, etcd, err := tryStartEtcd(bin, dir, attempt)
		if err == nil {
			tb.Cleanup(etcd.stop)
			return url
		}
		if attempt < 3 && errors.Is(err, errPortTaken) {
			continue
		}
		tb.Fatalf("kubetest: %v", err)
	}
}

// tryStartEtcd runs etcd on ports chosen now; should another program take
// one first, the error wraps errPortTaken.
func tryStartEtcd(bin, dir string, attempt int) (string, *process, error) {
	clientPort, peerPort, err := twoFreePorts()
	if err != nil {
		return "", nil, err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	etcd, err := startProcess(dir, "etcd", bin,
		"--name=kubetest",
		"--data-dir="+filepath.Join(dir, "etcd-data-"+strconv.Itoa(attempt)),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--log-level=warn",
	)
	if err != nil {
		return "", nil, err
	}
	if err := waitHTTP(http.DefaultClient, clientURL+"/health", etcd); err != nil {
		etcd.kill()
		tail := etcd.tail()
		if strings.Contains(tail, "address already in use") {
			return "", nil, fmt.Errorf("etcd: %w: %v", errPortTaken, err)
		}
		return "", nil, fmt.Errorf("etcd did not become healthy: %v\n%s", err, tail)
	}
	return clientURL, etcd, nil
}

// twoFreePorts returns two distinct loopback ports free a moment ago.
func twoFreePorts() (int, int, error) {
	var ports [2]int
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("no free port: %w", err)
		}
		defer l.Close() // held until both are chosen, so they differ
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], nil
}

// freePort returns a loopback TCP port that was free a moment ago. The
// processes take a port number, not a listener, so a race with another
// program is possible but unlikely; startup fails loudly if it happens.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("kubetest: no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitReady polls the API server's /readyz until it answers 200.
func waitReady(url string, p *pki, proc *process) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	cert, err := tls.X509KeyPair(p.adminCertPEM, p.adminKeyPEM)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	defer client.CloseIdleConnections()
	return waitHTTP(client, url, proc)
}

// waitHTTP polls url until it answers 200, the process exits, or
// readyTimeout passes.
func waitHTTP(client *http.Client, url string, proc *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", readyTimeout, last)
		case <-proc.done:
			return fmt.Errorf("%s exited: %v", proc.name, proc.err)
		case <-tick.C:
		}
	}
}

// process is a child process whose output goes to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // valid after done is closed
}

func startProcess(dir, name, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that a signal to the test binary's group
	// (^C) does not race our orderly stop, and stop reaches any children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM, and SIGKILL if the process has not exited within
// stopTimeout.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (p *process) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// tail returns the end of the process's log, for failure messages.
func (p *process) tail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "--- " + p.name + " log (end) ---\n" + string(b)
}
