// Package e2e runs whole local meshes: it builds the weft binary and a test
// workload once, starts 'weft up' in a temporary state directory on free
// ports, and drives it only through the CLI and the workloads' own ports,
// as a user would.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/local"
)

var (
	weftBin     string
	workloadBin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weft-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	weftBin = filepath.Join(dir, "weft")
	workloadBin = filepath.Join(dir, "workload")
	_, here, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(here), "..", "..")
	// WEFT_E2E_RACE=1 builds weft with the race detector, to find races in
	// the supervisor, control plane and proxies under real traffic.
	flags := []string{"build"}
	if os.Getenv("WEFT_E2E_RACE") == "1" {
		flags = append(flags, "-race")
	}
	for _, b := range []struct{ out, pkg string }{{weftBin, "./cmd/weft"}, {workloadBin, "./test/e2e/workload"}} {
		cmd := exec.Command("go", append(flags, "-o", b.out, b.pkg)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testPorts hands out the tests' fixed ports as the supervisor hands out
// replicas' ports: from below the ephemeral range, where no outgoing
// connection takes them before the process under test binds them.
var testPorts = local.NewPorts()

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := testPorts.Alloc()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// mesh is one running 'weft up'.
type mesh struct {
	t           *testing.T
	dir         string
	controlAddr string
	// ratelimitAddr and dashboardAddr are the system components' free
	// ports (the defaults would collide with other meshes).
	ratelimitAddr string
	dashboardAddr string
	cmd           *exec.Cmd
	out           *syncBuffer
	exited        chan struct{}
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// weft runs a weft CLI command against the mesh's state directory.
func (m *mesh) weft(args ...string) (string, int) {
	return runWeft(m.t, m.dir, args...)
}

func runWeft(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, weftBin, append([]string{"--state-dir", dir}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		// Not failing t here: it may be the parent of the running subtest.
		ee, ok := err.(*exec.ExitError)
		if !ok {
			return fmt.Sprintf("weft %s: %v\n%s", strings.Join(args, " "), err, out), -1
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// startMesh runs 'weft up -f manifest [extra...]' in the background.
func startMesh(t *testing.T, manifest string, extra ...string) *mesh {
	t.Helper()
	m := &mesh{t: t, dir: t.TempDir(), controlAddr: freeAddr(t), ratelimitAddr: freeAddr(t), dashboardAddr: freeAddr(t), out: &syncBuffer{}, exited: make(chan struct{})}
	f := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	m.start(append([]string{"up", "-f", f}, extra...)...)
	return m
}

// startDemo runs 'weft demo [extra...]' in the background.
func startDemo(t *testing.T, extra ...string) *mesh {
	t.Helper()
	m := &mesh{t: t, dir: t.TempDir(), controlAddr: freeAddr(t), ratelimitAddr: freeAddr(t), dashboardAddr: freeAddr(t), out: &syncBuffer{}, exited: make(chan struct{})}
	m.start(append([]string{"demo"}, extra...)...)
	return m
}

// start runs 'weft --state-dir DIR COMMAND... --control-addr ...' with the
// mesh's addresses, and stops it when the test ends.
func (m *mesh) start(command ...string) {
	t := m.t
	t.Helper()
	args := append([]string{"--state-dir", m.dir}, command[0])
	args = append(args, "--control-addr", m.controlAddr, "--ratelimit-addr", m.ratelimitAddr, "--dashboard-addr", m.dashboardAddr)
	args = append(args, command[1:]...)
	m.cmd = exec.Command(weftBin, args...)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() {
		select {
		case <-m.exited:
		default:
			m.cmd.Process.Signal(os.Interrupt)
			select {
			case <-m.exited:
			case <-time.After(30 * time.Second):
				m.cmd.Process.Kill()
				<-m.exited
			}
		}
		// Under WEFT_E2E_RACE=1 a race in any process is a failure.
		if strings.Contains(m.out.String(), "DATA RACE") {
			t.Error("weft up reported a data race")
		}
		filepath.Walk(filepath.Join(m.dir, local.LogDir), func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("DATA RACE")) {
					t.Errorf("%s reports a data race", p)
				}
			}
			return nil
		})
		if t.Failed() {
			t.Logf("weft up output:\n%s", m.out.String())
			dumpLogs(t, m.dir)
		}
	})
}

func dumpLogs(t *testing.T, dir string) {
	filepath.Walk(filepath.Join(dir, local.LogDir), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("--- %s (tail):\n%s", p, b)
		return nil
	})
}

// status returns 'weft status -o json'.
func (m *mesh) status() (*local.Mesh, error) {
	out, code := m.weft("status", "-o", "json")
	if code != 0 {
		return nil, fmt.Errorf("weft status: exit %d: %s", code, out)
	}
	var st local.Mesh
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("weft status -o json: %v: %s", err, out)
	}
	return &st, nil
}

// replicas returns the live (not stopping) replicas of a Deployment.
func replicas(st *local.Mesh, ns, deploy string) []local.Component {
	var out []local.Component
	for _, c := range st.Components {
		if c.Kind == "Deployment" && c.Namespace == ns && c.Owner == deploy && !c.Terminated {
			out = append(out, c)
		}
	}
	return out
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not a wait for a condition
	}
}

// waitSettled waits until every component is ready, nothing is stopping,
// and each Deployment has want[name] replicas.
// t is the calling (sub)test: only it may be failed from its goroutine.
func (m *mesh) waitSettled(t *testing.T, ns string, want map[string]int, timeout time.Duration) *local.Mesh {
	t.Helper()
	var st *local.Mesh
	eventually(t, timeout, fmt.Sprintf("a settled mesh with %v", want), func() error {
		var err error
		st, err = m.status()
		if err != nil {
			return err
		}
		for _, c := range st.Components {
			if !c.Ready || c.Terminated {
				return fmt.Errorf("%s/%s ready=%v stopping=%v", c.Namespace, c.Name, c.Ready, c.Terminated)
			}
		}
		for d, n := range want {
			if got := len(replicas(st, ns, d)); got != n {
				return fmt.Errorf("deploy/%s has %d replicas, want %d", d, got, n)
			}
		}
		return nil
	})
	return st
}
