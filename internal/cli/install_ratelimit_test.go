package cli

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/ingress"
	"github.com/weft-mesh/weft/internal/install"
)

// configMapVolume lays out a ConfigMap volume as the kubelet does: the
// files in a timestamped directory, "..data" a symlink to it and each key a
// symlink through "..data"; update swaps "..data" with one rename.
type configMapVolume struct {
	t   *testing.T
	dir string
	gen int
}

func (v *configMapVolume) write(data map[string]string) {
	v.t.Helper()
	v.gen++
	ts := "..2026_11_22_05_00_0" + string(rune('0'+v.gen))
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		v.t.Fatal(err)
	}
	for k, d := range data {
		if err := os.WriteFile(filepath.Join(v.dir, ts, k), []byte(d), 0o644); err != nil {
			v.t.Fatal(err)
		}
		link := filepath.Join(v.dir, k)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
				v.t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
}

// TestInstalledRatelimitConfigMap runs 'weft ratelimit' with the arguments
// of the Deployment 'weft install' renders and its ConfigMap mounted where
// the Deployment mounts it: the default rules (the workshop's) are
// served, and an edit of the ConfigMap (the kubelet's symlink swap) takes
// effect without a restart.
func TestInstalledRatelimitConfigMap(t *testing.T) {
	objs := install.Objects(install.Options{Image: "ghcr.io/weft-mesh/weft:test"})
	var cm *corev1.ConfigMap
	var dep *appsv1.Deployment
	for _, obj := range objs {
		switch v := obj.(type) {
		case *corev1.ConfigMap:
			if v.Name == install.RatelimitConfigMap {
				cm = v
			}
		case *appsv1.Deployment:
			if v.Name == install.RatelimitName {
				dep = v
			}
		}
	}
	if cm == nil || dep == nil {
		t.Fatalf("weft install renders no %s ConfigMap or %s Deployment", install.RatelimitConfigMap, install.RatelimitName)
	}
	pod := dep.Spec.Template.Spec
	mounts := map[string]*configMapVolume{} // mount path -> volume
	for _, m := range pod.Containers[0].VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
				mounts[m.MountPath] = &configMapVolume{t: t, dir: t.TempDir()}
			}
		}
	}
	if len(mounts) != 1 {
		t.Fatalf("the ratelimit Deployment mounts ConfigMap %s %d times, want once", cm.Name, len(mounts))
	}
	addr, admin := freeAddr(t), freeAddr(t)
	var args []string
	var vol *configMapVolume
	for _, a := range pod.Containers[0].Args {
		switch {
		case strings.HasPrefix(a, "--addr="):
			a = "--addr=" + addr
		case strings.HasPrefix(a, "--admin-addr="):
			a = "--admin-addr=" + admin
		case strings.HasPrefix(a, "--config="):
			v := mounts[strings.TrimPrefix(a, "--config=")]
			if v == nil {
				t.Fatalf("%s: not the ConfigMap's mount path", a)
			}
			vol = v
			a = "--config=" + v.dir
		}
		args = append(args, a)
	}
	if vol == nil {
		t.Fatalf("the ratelimit Deployment's args %q have no --config at the ConfigMap", pod.Containers[0].Args)
	}
	vol.write(cm.Data)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut syncBuffer
	code := make(chan int, 1)
	go func() { code <- Run(ctx, args, strings.NewReader(""), io.Discard, &errOut) }()
	pollUntil(t, 10*time.Second, "weft ratelimit ready", &errOut, func() bool {
		resp, err := http.Get("http://" + admin + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	lim, closeLim := newIngressRateLimiter(addr)
	defer closeLim()
	over := func(domain string, d ingress.Descriptor) bool {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		resp, err := lim.ShouldRateLimit(rctx, ingress.RateLimitRequest{Domain: domain, Descriptors: []ingress.Descriptor{d}})
		if err != nil {
			t.Fatalf("ShouldRateLimit: %v\n%s", err, errOut.String())
		}
		return resp.OverLimit
	}
	// The default rules: the workshop's 8 a second on mykey=myvalue.
	workshop := ingress.Descriptor{{Key: "mykey", Value: "myvalue"}}
	limited := 0
	for range 20 {
		if over("emissary", workshop) {
			limited++
		}
	}
	if limited == 0 || limited > 12 {
		t.Fatalf("%d of 20 quick workshop requests limited, want some but at most 12 (8 a second)", limited)
	}

	// kubectl edit: a second domain, one request a minute.
	edited := map[string]string{}
	for k, v := range cm.Data {
		edited[k] = v
	}
	edited["edge.yaml"] = "domain: edge\ndescriptors:\n  - key: generic_key\n    value: checkout\n    rate_limit: {unit: minute, requests_per_unit: 1}\n"
	checkout := ingress.Descriptor{{Key: "generic_key", Value: "checkout"}}
	if over("edge", checkout) || over("edge", checkout) {
		t.Fatal("domain edge limited before the edit")
	}
	vol.write(edited)
	pollUntil(t, 10*time.Second, "the edited ConfigMap to limit domain edge", &errOut, func() bool {
		return over("edge", checkout)
	})

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("weft ratelimit exited %d: %s", c, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("weft ratelimit did not stop")
	}
}

// pollUntil polls cond every 10 ms until it holds, failing after timeout
// with the command's stderr.
func pollUntil(t *testing.T, timeout time.Duration, what string, errOut *syncBuffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stderr:\n%s", what, errOut.String())
		}
		<-tick.C
	}
}
