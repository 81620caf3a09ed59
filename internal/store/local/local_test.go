package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

const waitFor = 10 * time.Second

func svc(ns, name string, port int32) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: port}}},
	}
}

func svcRef(ns, name string) api.Ref {
	return api.Ref{Kind: api.KindService, Namespace: ns, Name: name}
}

func open(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := OpenWithOptions(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitNotify waits for one notification on ch.
func waitNotify(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatal("no watch notification")
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestApplyGetListDelete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := open(t, dir, Options{})
	ctx := context.Background()

	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state file exists before the first apply: %v", err)
	}
	if err := s.Apply(ctx, svc("b", "z", 80), svc("a", "y", 81), svc("b", "x", 82)); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, api.KindService, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range list {
		got = append(got, o.GetNamespace()+"/"+o.GetName())
		if ts := o.GetCreationTimestamp(); ts.IsZero() {
			t.Errorf("%s has no creationTimestamp", o.GetName())
		}
	}
	if want := "a/y b/x b/z"; strings.Join(got, " ") != want {
		t.Errorf("List = %v, want %s", got, want)
	}
	if l, _ := s.List(ctx, api.KindService, "b"); len(l) != 2 {
		t.Errorf("List(ns b) has %d objects, want 2", len(l))
	}

	o, err := s.Get(ctx, svcRef("a", "y"))
	if err != nil {
		t.Fatal(err)
	}
	if p := o.(*corev1.Service).Spec.Ports[0].Port; p != 81 {
		t.Errorf("port = %d, want 81", p)
	}
	created := o.GetCreationTimestamp()

	// Re-applying the same object changes nothing, not even the file.
	before, _ := os.ReadFile(s.Path())
	beforeID, _ := statID(s.Path())
	if err := s.Apply(ctx, svc("a", "y", 81)); err != nil {
		t.Fatal(err)
	}
	afterID, _ := statID(s.Path())
	if beforeID != afterID {
		t.Error("an unchanged apply rewrote the state file")
	}
	// An update keeps the creation time.
	if err := s.Apply(ctx, svc("a", "y", 90)); err != nil {
		t.Fatal(err)
	}
	o, _ = s.Get(ctx, svcRef("a", "y"))
	if p := o.(*corev1.Service).Spec.Ports[0].Port; p != 90 {
		t.Errorf("after update port = %d, want 90", p)
	}
	if ts := o.GetCreationTimestamp(); !ts.Equal(&created) {
		t.Errorf("creationTimestamp changed on update: %v -> %v", created, ts)
	}
	after, _ := os.ReadFile(s.Path())
	if bytes.Equal(before, after) {
		t.Error("an update did not change the state file")
	}

	if err := s.Delete(ctx, svcRef("a", "y"), svcRef("nope", "nope")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, svcRef("a", "y")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}

	// A second instance (a new process, in effect) sees the same objects.
	s2 := open(t, dir, Options{})
	if l, _ := s2.List(ctx, api.KindService, ""); len(l) != 2 {
		t.Errorf("reopened store has %d services, want 2", len(l))
	}

	for path, want := range map[string]os.FileMode{dir: 0o700, s.Path(): 0o600, filepath.Join(dir, LockName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".resources-*")); len(m) != 0 {
		t.Errorf("temporary files left behind: %v", m)
	}
}

func TestApplyDoesNotModifyCaller(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	in := svc("a", "b", 80)
	if err := s.Apply(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if ts := in.GetCreationTimestamp(); !ts.IsZero() {
		t.Error("Apply set creationTimestamp on the caller's object")
	}
}

func TestRefusedApplyLeavesFileByteIdentical(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	ctx := context.Background()
	if err := s.Apply(ctx, svc("a", "keep", 80)); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	unknown := svc("a", "bad", 80)
	unknown.Kind = "Servize"
	noName := svc("a", "", 80)
	for _, bad := range [][]api.Object{
		{svc("a", "new", 80), unknown},
		{noName, svc("a", "keep", 99)},
	} {
		if err := s.Apply(ctx, bad...); err == nil {
			t.Fatalf("Apply of a batch with a bad object succeeded")
		}
		after, _ := os.ReadFile(s.Path())
		if !bytes.Equal(before, after) {
			t.Fatalf("refused Apply changed the file:\n%s\n---\n%s", before, after)
		}
	}
	if _, err := s.Get(ctx, svcRef("a", "new")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("object from a refused batch was stored: %v", err)
	}
	o, _ := s.Get(ctx, svcRef("a", "keep"))
	if p := o.(*corev1.Service).Spec.Ports[0].Port; p != 80 {
		t.Errorf("object changed by a refused batch: port %d", p)
	}
}

func TestCorruptFile(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":      "{not json",
		"empty":        "",
		"wrong format": `{"format": "other", "objects": []}`,
		"unknown kind": `{"format": "weft.io/resources/v1", "objects": [{"apiVersion": "v1", "kind": "Nope", "metadata": {"name": "x"}}]}`,
		"bad field":    `{"format": "weft.io/resources/v1", "objects": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": "eighty"}}]}`,
		"duplicate":    `{"format": "weft.io/resources/v1", "objects": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(dir)
			if err == nil {
				t.Fatal("Open of a corrupt state file succeeded")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "corrupt") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

// A file broken under a running store: reads keep the last good objects,
// writes are refused with an error naming the file, and the file is left for
// the user to repair.
func TestCorruptedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	s := open(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	if err := s.Apply(ctx, svc("a", "good", 80)); err != nil {
		t.Fatal(err)
	}
	garbage := []byte("{\"format\": \"weft.io/resources/v1\", \"objects\": [\n{oops\n")
	if err := os.WriteFile(filepath.Join(dir, "x.tmp"), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "x.tmp"), s.Path()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, svcRef("a", "good")); err != nil {
		t.Errorf("Get after corruption = %v, want the last good object", err)
	}
	err := s.Apply(ctx, svc("a", "new", 80))
	if err == nil || !strings.Contains(err.Error(), s.Path()) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("Apply on a corrupt file = %v, want an error naming the file and line", err)
	}
	if got, _ := os.ReadFile(s.Path()); !bytes.Equal(got, garbage) {
		t.Error("Apply overwrote a corrupt state file")
	}
	if !strings.Contains(logs.String(), "keeping the last good objects") {
		t.Errorf("no log about the unreadable file; logs:\n%s", logs.String())
	}
}

func TestConcurrentGoroutinesLoseNoUpdate(t *testing.T) {
	dir := t.TempDir()
	shared := open(t, dir, Options{})
	ctx := context.Background()
	const writers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		// Half share one Store (the in-process mutex excludes them), half
		// open their own (the flock excludes them).
		s := shared
		if w%2 == 1 {
			s = open(t, dir, Options{})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.Apply(ctx, svc("ns", fmt.Sprintf("w%d-%d", w, i), 80)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fresh := open(t, dir, Options{})
	if l, _ := fresh.List(ctx, api.KindService, ""); len(l) != writers*each {
		t.Errorf("%d services stored, want %d", len(l), writers*each)
	}
	// The shared instance catches up with the others' writes too.
	eventually(t, "shared store to see every write", func() bool {
		l, _ := shared.List(ctx, api.KindService, "")
		return len(l) == writers*each
	})
}

// childEnv makes the test binary act as a separate weft process applying
// services; see TestChildProcess.
const childEnv = "WEFT_STORE_LOCAL_CHILD"

// TestChildProcess is not a test: run as a child by
// TestConcurrentProcessesLoseNoUpdate, it applies services one at a time.
func TestChildProcess(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("helper process; runs only as a child")
	}
	parts := strings.Split(spec, ",") // dir,id,count
	n, _ := strconv.Atoi(parts[2])
	s, err := Open(parts[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := range n {
		if err := s.Apply(context.Background(), svc("ns", fmt.Sprintf("p%s-%d", parts[1], i), 80)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	s.Close()
	os.Exit(0)
}

func TestConcurrentProcessesLoseNoUpdate(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip()
	}
	dir := t.TempDir()
	parent := open(t, dir, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := parent.Watch(ctx, api.KindService)
	if err != nil {
		t.Fatal(err)
	}
	waitNotify(t, ch) // the initial notification

	const procs, each = 4, 20
	var cmds []*exec.Cmd
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d", childEnv, dir, p, each))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("child %d stderr: %s", p, stderr.String())
			}
		})
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v", i, err)
		}
	}
	// The parent's watcher fires for the children's writes...
	waitNotify(t, ch)
	// ...and its index converges on every object.
	eventually(t, "parent to see every child's write", func() bool {
		l, _ := parent.mem.List(ctx, api.KindService, "")
		return len(l) == procs*each
	})
}

func TestWatchFiresAcrossInstances(t *testing.T) {
	for name, opts := range map[string]Options{
		"fsnotify": {},
		"poll":     {NoFSNotify: true, PollInterval: 20 * time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			watcher := open(t, dir, opts)
			writer := open(t, dir, Options{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch, err := watcher.Watch(ctx, api.KindService)
			if err != nil {
				t.Fatal(err)
			}
			waitNotify(t, ch) // initial
			if err := writer.Apply(ctx, svc("a", "b", 80)); err != nil {
				t.Fatal(err)
			}
			waitNotify(t, ch)
			// Read the index directly: Get would refresh from the file
			// itself and hide a watcher that did not update it.
			if _, err := watcher.mem.Get(ctx, svcRef("a", "b")); err != nil {
				t.Fatalf("watcher's index after notification: %v", err)
			}
			if err := writer.Delete(ctx, svcRef("a", "b")); err != nil {
				t.Fatal(err)
			}
			waitNotify(t, ch)
			if _, err := watcher.mem.Get(ctx, svcRef("a", "b")); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("watcher's index after delete: %v", err)
			}
		})
	}
}

// Without following, reads still see other instances' writes.
func TestNoFollowReadsSeeOtherWrites(t *testing.T) {
	dir := t.TempDir()
	reader := open(t, dir, Options{NoFollow: true})
	writer := open(t, dir, Options{})
	ctx := context.Background()
	if err := writer.Apply(ctx, svc("a", "b", 80)); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Get(ctx, svcRef("a", "b")); err != nil {
		t.Fatalf("Get of another instance's write: %v", err)
	}
	if err := reader.Apply(ctx, svc("a", "c", 80)); err != nil {
		t.Fatal(err)
	}
	if l, _ := writer.List(ctx, api.KindService, "a"); len(l) != 2 {
		t.Fatalf("writer sees %d services, want 2", len(l))
	}
}

func TestClose(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Apply(context.Background(), svc("a", "b", 1)); err == nil {
		t.Fatal("Apply after Close succeeded")
	}
}

func TestRoundTripEncoding(t *testing.T) {
	s := store.NewMemory()
	objs := []api.Object{svc("b", "x<&>", 80), svc("a", "y", 81)}
	if err := s.Apply(context.Background(), objs...); err != nil {
		t.Fatal(err)
	}
	state := s.Snapshot()
	got, err := parseState(encodeState(state))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(state) {
		t.Fatalf("round trip has %d objects, want %d", len(got), len(state))
	}
	for ref, raw := range state {
		if !bytes.Equal(got[ref], raw) {
			t.Errorf("%s: round trip %s, want %s", ref, got[ref], raw)
		}
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"format": "weft.io/resources/v1", "objects": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "a"}}]}`))
	f.Add([]byte(`{"format": "weft.io/resources/v1", "objects": []}`))
	f.Add([]byte(`{"format": "weft.io/resources/v1", "objects": [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		state, err := parseState(data)
		if err != nil {
			return
		}
		// Whatever parses must survive a write and a re-read unchanged.
		again, err := parseState(encodeState(state))
		if err != nil {
			t.Fatalf("re-reading an encoded state: %v", err)
		}
		if len(again) != len(state) {
			t.Fatalf("round trip has %d objects, want %d", len(again), len(state))
		}
		for ref, raw := range state {
			if !bytes.Equal(again[ref], raw) {
				t.Fatalf("%s: round trip %s, want %s", ref, again[ref], raw)
			}
		}
	})
}

// A writer stuck holding the lock (a stopped process, say) blocks Apply only
// until the caller's context ends; once released, writes go through.
func TestApplyWaitsForLockUntilContextEnds(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	other, err := lock(context.Background(), filepath.Join(dir, LockName))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = s.Apply(ctx, svc("a", "b", 80))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), LockName) {
		t.Fatalf("Apply while another descriptor holds the lock = %v, want a deadline error naming the lock", err)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Apply wrote without the lock")
	}

	// Released while an Apply waits: that Apply completes.
	errc := make(chan error, 1)
	go func() { errc <- s.Apply(context.Background(), svc("a", "b", 80)) }()
	// The abandoned waiter of the first Apply must not keep (or steal) it.
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("Apply did not finish after the lock was released")
	}
	if _, err := s.Get(context.Background(), svcRef("a", "b")); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRemovesStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".resources-123.tmp")
	if err := os.WriteFile(stale, []byte("half a write"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "mesh.json") // not ours: left alone
	if err := os.WriteFile(other, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	open(t, dir, Options{})
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file survived Open: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("Open removed another component's file: %v", err)
	}
}
