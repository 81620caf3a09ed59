package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
