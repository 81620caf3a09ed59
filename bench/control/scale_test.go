package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/kubetest"
)

// kubeBackend writes through a real API server, as a cluster's kubelets
// and EndpointSlice controller would, to a control plane run with
// --store=kube.
type kubeBackend struct {
	c     *kubetest.Cluster
	cs    kubernetes.Interface
	slice map[string]*discoveryv1.EndpointSlice // last written, for resourceVersion
	mu    sync.Mutex
}

func (b *kubeBackend) command(scratch string) []string {
	return []string{"--state-dir", scratch, "control", "--store=kube", "--kubeconfig", b.c.Kubeconfig}
}

// load creates the objects with a few concurrent writers; pods get
// their status as a kubelet would set it.
func (b *kubeBackend) load(ctx context.Context, objs []api.Object) error {
	work := make(chan api.Object)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	create := func(o api.Object) error {
		switch o := o.(type) {
		case *corev1.Namespace:
			_, err := b.cs.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
			return err
		case *corev1.Service:
			_, err := b.cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			return err
		case *corev1.ServiceAccount:
			_, err := b.cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			return err
		case *corev1.Pod:
			status := o.Status
			p, err := b.cs.CoreV1().Pods(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			p.Status = status
			_, err = b.cs.CoreV1().Pods(o.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
			return err
		case *discoveryv1.EndpointSlice:
			es, err := b.cs.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			if err == nil {
				b.mu.Lock()
				b.slice[es.Name] = es
				b.mu.Unlock()
			}
			return err
		}
		return fmt.Errorf("unexpected %T", o)
	}
	// The namespace, service accounts and services first (pods need
	// their service account); then pods and slices in any order.
	var rest []api.Object
	for _, o := range objs {
		switch o.(type) {
		case *corev1.Pod, *discoveryv1.EndpointSlice:
			rest = append(rest, o)
		default:
			if err := create(o); err != nil {
				return fmt.Errorf("creating %s/%s: %w", o.GetNamespace(), o.GetName(), err)
			}
		}
	}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				if err := create(o); err != nil {
					select {
					case errs <- fmt.Errorf("creating %s/%s: %w", o.GetNamespace(), o.GetName(), err):
					default:
					}
				}
			}
		}()
	}
	for _, o := range rest {
		work <- o
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (b *kubeBackend) change(ctx context.Context, es *discoveryv1.EndpointSlice) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	es.ResourceVersion = b.slice[es.Name].ResourceVersion
	got, err := b.cs.DiscoveryV1().EndpointSlices(es.Namespace).Update(ctx, es, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	b.slice[es.Name] = got
	return nil
}

// TestScaleKube is the control plane benchmark on Kubernetes: the same
// measurement as 'go run ./bench/control', with the objects in a real
// API server and 'weft control --store=kube' reading them through
// informers. It is a test only because internal/kubetest starts the API
// server for tests; it runs when WEFT_BENCH_CONTROL=1:
//
//	WEFT_BENCH_CONTROL=1 go test ./bench/control -run TestScaleKube -v -timeout 20m
//
// WEFT_BENCH_CONTROL_ARGS takes the flags of the command (e.g.
// "-endpoints 2000 -streams 200"); WEFT_BENCH_CONTROL_OUT a JSON file.
func TestScaleKube(t *testing.T) {
	if os.Getenv("WEFT_BENCH_CONTROL") != "1" {
		t.Skip("a benchmark: set WEFT_BENCH_CONTROL=1 to run it")
	}
	o := options{endpoints: 10000, perSlice: 100, streams: 1000, conns: 1000, changes: 20, weft: os.Getenv("WEFT_BENCH_WEFT")}
	if a := os.Getenv("WEFT_BENCH_CONTROL_ARGS"); a != "" {
		if err := parseArgs(&o, strings.Fields(a)); err != nil {
			t.Fatal(err)
		}
	}
	c := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	r, err := measure(context.Background(), o, &kubeBackend{c: c, cs: cs, slice: map[string]*discoveryv1.EndpointSlice{}}, t.TempDir(), &testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	r.Store = "kube"
	writeMarkdown(&log, r)
	t.Log("\n" + log.String())
	if out := os.Getenv("WEFT_BENCH_CONTROL_OUT"); out != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
