package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/control/identity"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

func TestProxyIdentityEnv(t *testing.T) {
	dir := t.TempDir()
	s := New(Config{StateDir: dir, Store: store.NewMemory()})
	key, err := identity.LoadOrCreateTokenKey(s.cfg.IdentityDir)
	must(t, err)
	s.tokenKey = key

	env, err := s.proxyIdentityEnv("shop", "web", "web-abc-xyz")
	must(t, err)
	if len(env) != 1 {
		t.Fatalf("env = %q; want only the token before the control plane wrote anchors", env)
	}
	tok, ok := strings.CutPrefix(env[0], proxyTokenEnv+"=")
	if !ok {
		t.Fatalf("env = %q; want %s", env, proxyTokenEnv)
	}
	// The control plane validates with the key it loads from the same
	// directory.
	again, err := identity.LoadOrCreateTokenKey(filepath.Join(dir, "identity"))
	must(t, err)
	w, err := identity.NewHMACValidator(again).Validate(context.Background(), []byte(tok))
	must(t, err)
	if w != (identity.Workload{Namespace: "shop", ServiceAccount: "web", Pod: "web-abc-xyz"}) {
		t.Fatalf("token names %+v", w)
	}

	must(t, os.WriteFile(filepath.Join(s.cfg.IdentityDir, tlsid.AnchorsFile), []byte("PEM"), 0o600))
	env, err = s.proxyIdentityEnv("shop", "web", "web-abc-xyz")
	must(t, err)
	if len(env) != 2 || env[1] != proxyAnchorsEnv+"=PEM" {
		t.Fatalf("env = %q; want the anchors too", env)
	}
	if _, err := s.proxyIdentityEnv("Not_A_Label", "web", "p"); err == nil {
		t.Fatal("a namespace that cannot be an identity was accepted")
	}
}

func TestInjected(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	s := New(Config{StateDir: t.TempDir(), Store: st})
	nsOff := api.New(api.KindNamespace).(*corev1.Namespace)
	nsOff.Name = "off"
	nsOff.Annotations = map[string]string{AnnotationInject: "disabled"}
	must(t, st.Apply(ctx, nsOff))
	d := func(ns string, ann map[string]string) *appsv1.Deployment {
		d := api.New(api.KindDeployment).(*appsv1.Deployment)
		d.Namespace, d.Name = ns, "x"
		d.Spec.Template.Annotations = ann
		return d
	}
	for _, tc := range []struct {
		name string
		d    *appsv1.Deployment
		want bool
	}{
		{"default is meshed", d("shop", nil), true},
		{"template disables", d("shop", map[string]string{AnnotationInject: "disabled"}), false},
		{"namespace disables", d("off", nil), false},
		{"template overrides namespace", d("off", map[string]string{AnnotationInject: "enabled"}), true},
	} {
		if got := s.injected(ctx, tc.d); got != tc.want {
			t.Errorf("%s: injected = %v, want %v", tc.name, got, tc.want)
		}
	}
}
