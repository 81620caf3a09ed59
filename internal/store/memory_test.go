package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weft-mesh/weft/internal/api"
)

const waitFor = 5 * time.Second

func svc(ns, name string, port int32) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: port}}},
	}
}

func pod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
	}
}

func recv(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
	case <-time.After(waitFor):
		t.Fatal("no watch notification")
	}
}

// pending counts notifications that arrive within a short window. It is a
// bound on extra notifications, not a wait for an expected one.
func pending(ch <-chan struct{}) int {
	n := 0
	timeout := time.After(100 * time.Millisecond)
	for {
		select {
		case <-ch:
			n++
		case <-timeout:
			return n
		}
	}
}

func names(objs []api.Object) string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetNamespace()+"/"+o.GetName())
	}
	return strings.Join(out, " ")
}

func TestListOrderingAndFilter(t *testing.T) {
	m := NewMemory()
	ctx := context.Background()
	if err := m.Apply(ctx, svc("b", "a", 1), svc("a", "z", 1), svc("a", "b", 1), svc("c", "a", 1), pod("a", "p")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind api.Kind
		ns   string
		want string
	}{
		{api.KindService, "", "a/b a/z b/a c/a"},
		{api.KindService, "a", "a/b a/z"},
		{api.KindService, "nope", ""},
		{api.KindPod, "", "a/p"},
		{api.KindDeployment, "", ""},
	} {
		got, err := m.List(ctx, tc.kind, tc.ns)
		if err != nil {
			t.Fatal(err)
		}
		if names(got) != tc.want {
			t.Errorf("List(%s, %q) = %q, want %q", tc.kind, tc.ns, names(got), tc.want)
		}
	}
}

func TestGetReturnsCopies(t *testing.T) {
	m := NewMemory()
	ctx := context.Background()
	in := svc("a", "b", 80)
	if err := m.Apply(ctx, in); err != nil {
		t.Fatal(err)
	}
	in.Spec.Ports[0].Port = 1 // the caller's object is not the stored one
	ref := api.Ref{Kind: api.KindService, Namespace: "a", Name: "b"}
	o, err := m.Get(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if p := o.(*corev1.Service).Spec.Ports[0].Port; p != 80 {
		t.Fatalf("stored port = %d, want 80", p)
	}
	o.(*corev1.Service).Spec.Ports[0].Port = 2
	o, _ = m.Get(ctx, ref)
	if p := o.(*corev1.Service).Spec.Ports[0].Port; p != 80 {
		t.Fatalf("stored port after modifying a Get result = %d, want 80", p)
	}
	if _, err := m.Get(ctx, api.Ref{Kind: api.KindService, Namespace: "a", Name: "zz"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing object = %v, want ErrNotFound", err)
	}
}

func TestApplyAllOrNothing(t *testing.T) {
	m := NewMemory()
	ctx := context.Background()
	bad := svc("a", "bad", 1)
	bad.Kind = "Nope"
	if err := m.Apply(ctx, svc("a", "good", 1), bad); err == nil {
		t.Fatal("Apply with an unknown kind succeeded")
	}
	if err := m.Apply(ctx, svc("a", "good", 1), svc("a", "", 1)); err == nil {
		t.Fatal("Apply with a nameless object succeeded")
	}
	if len(m.Snapshot()) != 0 {
		t.Fatalf("a refused Apply stored %d objects", len(m.Snapshot()))
	}
}

func TestWatchCoalescesAndFilters(t *testing.T) {
	m := NewMemory()
	m.Resync = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := m.Watch(ctx, api.KindService)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, ch) // the initial notification

	// Many changes while nobody reads: a few notifications queue up (one
	// buffered for the reader, one being forwarded, one pending behind it),
	// never one per change.
	for i := range 200 {
		if err := m.Apply(ctx, svc("a", fmt.Sprintf("s%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	recv(t, ch)
	if n := pending(ch); n > 2 {
		t.Errorf("%d extra notifications after 200 coalesced changes, want at most 2", n)
	}

	// An unchanged apply is not a change.
	if err := m.Apply(ctx, svc("a", "s0", 1)); err != nil {
		t.Fatal(err)
	}
	// Nor is a change to a kind nobody watches.
	if err := m.Apply(ctx, pod("a", "p")); err != nil {
		t.Fatal(err)
	}
	if n := pending(ch); n != 0 {
		t.Errorf("%d notifications for non-changes, want 0", n)
	}

	if err := m.Delete(ctx, api.Ref{Kind: api.KindService, Namespace: "a", Name: "s1"}); err != nil {
		t.Fatal(err)
	}
	recv(t, ch)

	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			// A last notification may have been pending; the close follows.
			if _, ok := <-ch; ok {
				t.Fatal("watch channel not closed after cancel")
			}
		}
	case <-time.After(waitFor):
		t.Fatal("watch channel not closed after cancel")
	}
}

func TestWatchResync(t *testing.T) {
	m := NewMemory()
	m.Resync = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := m.Watch(ctx, api.KindService)
	for range 3 { // the initial one, then resyncs with no change at all
		recv(t, ch)
	}
}

func TestReplace(t *testing.T) {
	m := NewMemory()
	m.Resync = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Apply(ctx, svc("a", "b", 1), pod("a", "p")); err != nil {
		t.Fatal(err)
	}
	snap := m.Snapshot()
	ch, _ := m.Watch(ctx, api.KindService)
	recv(t, ch)

	m.Replace(m.Snapshot()) // identical content: no notification
	if n := pending(ch); n != 0 {
		t.Errorf("%d notifications for an identical Replace", n)
	}
	delete(snap, api.Ref{Kind: api.KindService, Namespace: "a", Name: "b"})
	m.Replace(snap)
	recv(t, ch)
	if l, _ := m.List(ctx, api.KindService, ""); len(l) != 0 {
		t.Errorf("after Replace %d services, want 0", len(l))
	}

	m.Replace(nil)
	if err := m.Apply(ctx, svc("a", "c", 1)); err != nil {
		t.Fatalf("Apply after Replace(nil): %v", err)
	}
}

// TestListShared: objects are decoded once per stored version and shared
// between calls; a change, a Replace or a Delete gives the new state.
func TestListShared(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	if err := m.Apply(ctx, svc("faces", "smiley", 80), svc("faces", "color", 80), pod("faces", "p")); err != nil {
		t.Fatal(err)
	}
	first, err := ListShared(ctx, m, api.KindService, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(first); got != "faces/color faces/smiley" {
		t.Fatalf("ListShared = %s", got)
	}
	if err := m.Apply(ctx, svc("faces", "smiley", 8080)); err != nil {
		t.Fatal(err)
	}
	second, _ := ListShared(ctx, m, api.KindService, "faces")
	if second[0] != first[0] {
		t.Error("the unchanged Service was decoded again")
	}
	if second[1] == first[1] || second[1].(*corev1.Service).Spec.Ports[0].Port != 8080 {
		t.Errorf("the changed Service is stale: %+v", second[1])
	}
	// Replace with the same JSON keeps the decoded object; Delete drops it.
	m.Replace(m.Snapshot())
	third, _ := ListShared(ctx, m, api.KindService, "")
	if third[0] != first[0] || third[1] != second[1] {
		t.Error("Replace with unchanged objects decoded them again")
	}
	// Replace with a changed object gives the new one.
	snap := m.Snapshot()
	changed, err := json.Marshal(svc("faces", "smiley", 9090))
	if err != nil {
		t.Fatal(err)
	}
	snap[api.RefOf(svc("faces", "smiley", 80))] = changed
	m.Replace(snap)
	if got, _ := ListShared(ctx, m, api.KindService, ""); got[0] != first[0] || got[1].(*corev1.Service).Spec.Ports[0].Port != 9090 {
		t.Errorf("after Replace with a changed Service: %+v", got[1])
	}
	if err := m.Delete(ctx, api.RefOf(svc("faces", "color", 80))); err != nil {
		t.Fatal(err)
	}
	if got, _ := ListShared(ctx, m, api.KindService, ""); names(got) != "faces/smiley" {
		t.Errorf("after Delete: %s", names(got))
	}
	if _, ok := m.shared[api.RefOf(svc("faces", "color", 80))]; ok {
		t.Error("the deleted Service is still cached")
	}
	// List still hands out copies.
	l, _ := m.List(ctx, api.KindService, "")
	if l[0] == third[1] {
		t.Error("List returned the shared object")
	}
}
