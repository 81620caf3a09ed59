package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/local"
)

func TestParseDeployArg(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"deploy/web", "web"}, {"deployment/web", "web"}, {"deployments/web", "web"}, {"deployment.apps/web", "web"},
		{"web", ""}, {"svc/web", ""}, {"deploy/", ""},
	} {
		got, err := parseDeployArg(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("parseDeployArg(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestSetEnvArgs(t *testing.T) {
	sets, unsets, err := parseEnvArgs([]string{"A=1", "B=x=y", "C-", "EMPTY="})
	if err != nil {
		t.Fatal(err)
	}
	env := []corev1.EnvVar{{Name: "A", Value: "0"}, {Name: "C", Value: "gone"}, {Name: "D", Value: "kept"}}
	got := applyEnv(env, sets, unsets)
	want := []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "D", Value: "kept"}, {Name: "B", Value: "x=y"}, {Name: "EMPTY", Value: ""}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}
	if env[0].Value != "0" || len(env) != 3 {
		t.Errorf("applyEnv modified its input: %v", env)
	}
	for _, bad := range []string{"=1", "NOEQUALS", "-"} {
		if _, _, err := parseEnvArgs([]string{bad}); err == nil {
			t.Errorf("parseEnvArgs(%q) accepted", bad)
		}
	}
}

func TestReadManifests(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a manifest"), 0o644)
	objs, err := readManifests([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].GetNamespace() != "default" {
		t.Fatalf("objects = %v; want one Service in namespace default", objs)
	}
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: db}\nspec:\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: db, image: postgres}]}\n"), 0o644)
	if _, err := readManifests([]string{dir}); err == nil || !strings.Contains(err.Error(), "needs a command") || !strings.Contains(err.Error(), "b.yaml") {
		t.Fatalf("err = %v; want the Deployment without a command refused, naming the file", err)
	}
	if _, err := readManifests([]string{filepath.Join(dir, "missing.yaml")}); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

func TestLogsFollow(t *testing.T) {
	dir := t.TempDir()
	for _, pod := range []string{"web-bcdfghjklm-bcdfg", "web-bcdfghjklm-hjklm", "webx-bcdfghjklm-bcdfg"} {
		pdir := filepath.Join(dir, local.LogDir, "shop", pod)
		os.MkdirAll(pdir, 0o755)
		os.WriteFile(filepath.Join(pdir, "web.log"), []byte("hello from "+pod+"\n"), 0o644)
		os.WriteFile(filepath.Join(pdir, "proxy.log"), []byte("proxy of "+pod+"\n"), 0o644)
	}
	files, err := logFiles(dir, "shop", "deploy/web", "app")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("files = %v; want the app logs of web's two pods only", files)
	}
	if _, err := logFiles(dir, "shop", "deploy/nope", "app"); err == nil {
		t.Fatal("logs of a missing deployment succeeded")
	}

	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var out bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	done := make(chan error)
	go func() { done <- printLogs(ctx, w, files, true) }()
	f, err := os.OpenFile(files[0].path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("partial ")
	f.WriteString("line\n")
	f.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		s := out.String()
		mu.Unlock()
		if strings.Contains(s, "] partial line\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("followed output lacks the new line:\n%s", s)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(out.String(), "[web-bcdfghjklm-hjklm/web] hello from web-bcdfghjklm-hjklm\n") {
		t.Errorf("output lacks a prefixed line of the second pod:\n%s", out.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestPrintStatus(t *testing.T) {
	m := &local.Mesh{PID: 7, StateDir: "/s", ControlAddr: "127.0.0.1:8086", Started: time.Now(),
		Problems: map[string]string{"shop/db": "local: needs a command"}, Components: []local.Component{
			{Name: "control", Namespace: "weft", Kind: "control", Ready: true, Addresses: map[string]string{"grpc": "127.0.0.1:8086"},
				Processes: []local.ProcessInfo{{Name: "control", PID: 11}}},
			{Name: "web-x-y", Namespace: "shop", Kind: "Deployment", Owner: "web", Restarts: 3, Addresses: map[string]string{"outbound": "127.0.0.1:5"},
				Processes: []local.ProcessInfo{{Name: "proxy", PID: 12}, {Name: "web", PID: 0, Restarts: 3, LastExit: "exit status 2", Log: "/s/logs/shop/web-x-y/web.log"}}},
		}}
	var b bytes.Buffer
	if err := printStatus(&b, m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAMESPACE", "deploy/web", "web-x-y", "proxy=12,web=-", "outbound=127.0.0.1:5", "grpc=127.0.0.1:8086"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	var row []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "shop ") {
			row = strings.Fields(l)
		}
	}
	if len(row) < 5 || row[3] != "no" || row[4] != "3" {
		t.Errorf("replica row %v: want READY no and RESTARTS 3", row)
	}
	if !strings.Contains(b.String(), "shop deploy/db cannot run: local: needs a command") {
		t.Errorf("status does not show the problem:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "shop/web-x-y web: restarted 3 times, last exit: exit status 2; log: /s/logs/shop/web-x-y/web.log") {
		t.Errorf("status does not explain the restarts:\n%s", b.String())
	}
}

func TestPrintStatusSystemComponents(t *testing.T) {
	m := &local.Mesh{PID: 7, StateDir: "/s", ControlAddr: "127.0.0.1:8086", Started: time.Now(), Components: []local.Component{
		{Name: "control", Namespace: "weft", Kind: local.KindControl, Ready: true, Addresses: map[string]string{"grpc": "127.0.0.1:8086"}},
		{Name: "ratelimit", Namespace: "weft", Kind: local.KindRateLimit, Ready: true,
			Addresses: map[string]string{"grpc": "127.0.0.1:8081", "admin": "127.0.0.1:9", "config": "/s/ratelimit"},
			Processes: []local.ProcessInfo{{Name: "ratelimit", PID: 13}}},
		{Name: "dashboard", Namespace: "weft", Kind: local.KindDashboard, Ready: false,
			Addresses: map[string]string{"url": "http://127.0.0.1:50750/"},
			Processes: []local.ProcessInfo{{Name: "dashboard", PID: 14}}},
	}}
	var b bytes.Buffer
	if err := printStatus(&b, m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"rate limit service 127.0.0.1:8081 (configuration: /s/ratelimit)",
		"dashboard http://127.0.0.1:50750/",
		"ratelimit=13", "dashboard=14", "url=http://127.0.0.1:50750/",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

func TestLogFilesSystemComponents(t *testing.T) {
	for _, name := range []string{"control", "ratelimit", "dashboard"} {
		files, err := logFiles("/s", "default", name, "app")
		if err != nil {
			t.Fatalf("logs %s: %v", name, err)
		}
		if want := filepath.Join("/s", local.LogDir, "weft", name, name+".log"); len(files) != 1 || files[0].path != want {
			t.Errorf("logs %s: %+v, want %s", name, files, want)
		}
	}
}

func TestUpRefusesTakenSystemPorts(t *testing.T) {
	for _, flag := range []string{"--ratelimit-addr", "--dashboard-addr"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		args := []string{"--control-addr", freeAddr(t), "--ratelimit-addr", freeAddr(t), "--dashboard-addr", freeAddr(t), flag, l.Addr().String()}
		code, _, out := runCLI(t, append([]string{"up", "--state-dir", t.TempDir()}, args...)...)
		if code != 2 || !strings.Contains(out, l.Addr().String()) || !strings.Contains(out, flag) {
			t.Errorf("weft up with %s taken: exit %d, want 2 and a message naming the address and flag:\n%s", flag, code, out)
		}
	}
}
