package local

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/control/identity"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// The supervisor creates the CA before any proxy, so every proxy is given
// the anchors; a second start keeps it.
func TestLoadCAGenerates(t *testing.T) {
	s := New(Config{StateDir: t.TempDir(), Store: store.NewMemory(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	key, err := identity.LoadOrCreateTokenKey(s.cfg.IdentityDir)
	must(t, err)
	s.tokenKey = key
	must(t, s.loadCA())
	anchors, err := os.ReadFile(filepath.Join(s.cfg.IdentityDir, tlsid.AnchorsFile))
	must(t, err)
	if _, err := tlsid.ParseAnchors(anchors); err != nil {
		t.Fatalf("generated anchors: %v", err)
	}
	env, err := s.proxyIdentityEnv("shop", "web", "web-abc-xyz")
	must(t, err)
	if !slices.Contains(env, proxyAnchorsEnv+"="+string(anchors)) {
		t.Errorf("proxy env lacks the generated anchors: %q", env)
	}
	must(t, s.loadCA())
	again, err := os.ReadFile(filepath.Join(s.cfg.IdentityDir, tlsid.AnchorsFile))
	must(t, err)
	if !bytes.Equal(anchors, again) {
		t.Error("a second start replaced the CA")
	}
	if argv := strings.Join(s.controlArgv(), " "); strings.Contains(argv, "--identity-") {
		t.Errorf("control argv %q: no identity flags were given", argv)
	}
}

// With 'weft up --identity-*' files, the supervisor checks them, gives
// proxies those anchors, passes the files and the lifetime to 'weft
// control', and generates nothing.
func TestLoadCAFromFiles(t *testing.T) {
	other := filepath.Join(t.TempDir(), "ca")
	g, err := tlsid.Generate(tlsid.DefaultDomain, time.Now(), time.Hour)
	must(t, err)
	must(t, os.MkdirAll(other, 0o700))
	must(t, g.WriteDir(other))
	files := tlsid.DirFiles(other)

	s := New(Config{StateDir: t.TempDir(), Store: store.NewMemory(), Identity: IdentityConfig{Files: files, IssuanceLifetime: 90 * time.Second}})
	key, err := identity.LoadOrCreateTokenKey(s.cfg.IdentityDir)
	must(t, err)
	s.tokenKey = key
	must(t, s.loadCA())
	if _, err := os.Stat(filepath.Join(s.cfg.IdentityDir, tlsid.AnchorsFile)); !os.IsNotExist(err) {
		t.Errorf("a CA was generated in the identity directory although files were given (%v)", err)
	}
	anchors, err := os.ReadFile(files.TrustAnchors)
	must(t, err)
	env, err := s.proxyIdentityEnv("shop", "web", "web-abc-xyz")
	must(t, err)
	if !slices.Contains(env, proxyAnchorsEnv+"="+string(anchors)) {
		t.Errorf("proxy env lacks the given anchors: %q", env)
	}
	argv := strings.Join(s.controlArgv(), " ")
	for _, want := range []string{
		"--identity-trust-anchors-file " + files.TrustAnchors,
		"--identity-issuer-certificate-file " + files.IssuerCertificate,
		"--identity-issuer-key-file " + files.IssuerKey,
		"--identity-issuance-lifetime 1m30s",
	} {
		if !strings.Contains(argv, want) {
			t.Errorf("control argv %q lacks %q", argv, want)
		}
	}

	for name, f := range map[string]tlsid.Files{
		"partial":   {TrustAnchors: files.TrustAnchors},
		"missing":   {TrustAnchors: "/nonexistent/ca.crt", IssuerCertificate: files.IssuerCertificate, IssuerKey: files.IssuerKey},
		"not a key": {TrustAnchors: files.TrustAnchors, IssuerCertificate: files.IssuerCertificate, IssuerKey: files.TrustAnchors},
	} {
		bad := New(Config{StateDir: t.TempDir(), Store: store.NewMemory(), Identity: IdentityConfig{Files: f}})
		if err := bad.loadCA(); err == nil {
			t.Errorf("%s files: accepted", name)
		}
	}
}
