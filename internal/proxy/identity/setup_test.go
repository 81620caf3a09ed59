package identity

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-mesh/weft/internal/tlsid"
)

func TestSetup(t *testing.T) {
	cp := newControlPlane(t, time.Minute)
	conn, err := grpc.NewClient(cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dir := t.TempDir()
	anchorsFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(anchorsFile, tlsid.EncodeCertificates(cp.ca.Anchors...), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, _ := cp.token(t, "faces", "default")()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, tok, 0o600); err != nil {
		t.Fatal(err)
	}

	// From files; the service account defaults to "default".
	c, mesh, err := Setup(Options{Conn: conn, Namespace: "faces", TokenFile: tokenFile, AnchorsFile: anchorsFile, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "default.faces.serviceaccount.identity.weft.cluster.local" {
		t.Errorf("name %q", c.Name())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitReady(t, c)
	if mesh.Server().GetCertificate == nil || mesh.Client(c.Name()).ServerName != c.Name() {
		t.Error("mesh configs not wired to the client")
	}

	// The admin endpoint reports the certificate, which verifies.
	srv := httptest.NewServer(c)
	defer srv.Close()
	resp, err := http.Get(srv.URL + AdminPath)
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	certs, err := tlsid.ParseCertificates([]byte(st.Certificate))
	if err != nil || len(certs) != 2 || certs[0].DNSNames[0] != c.Name() || st.Refreshes != 1 || st.Identity != c.Name() {
		t.Fatalf("status %+v, %v", st, err)
	}
	if strings.Contains(st.Certificate, "PRIVATE KEY") {
		t.Fatal("status leaks the key")
	}

	// From the environment.
	t.Setenv(AnchorsEnv, string(tlsid.EncodeCertificates(cp.ca.Anchors...)))
	t.Setenv(TokenEnv, string(tok))
	if _, _, err := Setup(Options{Conn: conn, Namespace: "faces", ServiceAccount: "default"}); err != nil {
		t.Errorf("Setup from env: %v", err)
	}

	for _, tt := range []struct {
		name string
		o    Options
		env  map[string]string
		want string
	}{
		{"no namespace", Options{Conn: conn}, nil, "no namespace"},
		{"no anchors", Options{Conn: conn, Namespace: "faces"}, map[string]string{AnchorsEnv: ""}, "no trust anchors"},
		{"bad anchors", Options{Conn: conn, Namespace: "faces"}, map[string]string{AnchorsEnv: "junk"}, "trust anchors"},
		{"no token", Options{Conn: conn, Namespace: "faces"}, map[string]string{TokenEnv: ""}, "no token"},
		{"missing token file", Options{Conn: conn, Namespace: "faces", TokenFile: filepath.Join(dir, "nope")}, nil, "reading the token"},
	} {
		for k, v := range tt.env {
			t.Setenv(k, v)
		}
		if _, _, err := Setup(tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Setup = %v, want error containing %q", tt.name, err, tt.want)
		}
		t.Setenv(AnchorsEnv, string(tlsid.EncodeCertificates(cp.ca.Anchors...)))
		t.Setenv(TokenEnv, string(tok))
	}
}
