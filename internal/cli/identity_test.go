package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-mesh/weft/internal/control"
	ctlidentity "github.com/weft-mesh/weft/internal/control/identity"
	"github.com/weft-mesh/weft/internal/local"
	proxyidentity "github.com/weft-mesh/weft/internal/proxy/identity"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// runCLI runs weft with args and returns the exit code and stdout.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// runningMesh makes dir look like a running mesh whose control plane (real,
// on 127.0.0.1) signs with the CA in identityDir: the supervisor's lock is
// held and mesh.json names the control plane and the given proxies. It
// returns the control plane's address.
func runningMesh(t *testing.T, dir, identityDir string, proxies ...local.Component) string {
	t.Helper()
	p, err := control.Listen(control.Config{
		Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Store: store.NewMemory(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Identity: control.IdentityConfig{Dir: identityDir},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	lock, err := local.AcquireLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Release() })
	if err := local.WriteMesh(dir, &local.Mesh{PID: os.Getpid(), StateDir: dir, ControlAddr: p.Addr().String(), Started: time.Now(), Updated: time.Now(), Components: proxies}); err != nil {
		t.Fatal(err)
	}
	return p.Addr().String()
}

// proxyComponent serves h as a proxy's admin server on 127.0.0.1 and
// returns the mesh.json component for it.
func proxyComponent(t *testing.T, ns, name string, h http.Handler) local.Component {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return local.Component{Name: name, Namespace: ns, Kind: "Deployment", Owner: "smiley", Ready: true,
		Addresses: map[string]string{"admin": strings.TrimPrefix(srv.URL, "http://")}}
}

// certifiedProxy runs a real proxy certificate client against the control
// plane at addr (token key in identityDir; anchors there too unless
// anchorsFile is given) and returns it once it holds a certificate.
func certifiedProxy(t *testing.T, addr, identityDir, ns, sa string, anchorsFile ...string) *proxyidentity.Client {
	t.Helper()
	key, err := ctlidentity.LoadOrCreateTokenKey(identityDir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ctlidentity.MintToken(key, ctlidentity.Workload{Namespace: ns, ServiceAccount: sa, Pod: sa + "-0"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, tok, 0o600); err != nil {
		t.Fatal(err)
	}
	anchors := filepath.Join(identityDir, tlsid.AnchorsFile)
	if len(anchorsFile) > 0 {
		anchors = anchorsFile[0]
	}
	c, _, err := proxyidentity.Setup(proxyidentity.Options{
		Conn: conn, Namespace: ns, ServiceAccount: sa, TokenFile: tokenFile,
		AnchorsFile: anchors,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("proxy got no certificate")
	}
	return c
}

// writeCA writes an anchor and an issuer valid until issuerNotAfter into
// dir/identity.
func writeCA(t *testing.T, dir string, issuerNotBefore, issuerNotAfter time.Time) {
	t.Helper()
	now := time.Now()
	anchor, anchorKey, err := tlsid.NewRoot("root.weft.cluster.local", now.Add(-400*24*time.Hour), now.Add(365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	issuer, issuerKey, err := tlsid.NewIntermediate("identity.weft.cluster.local", anchor, anchorKey, issuerNotBefore, issuerNotAfter)
	if err != nil {
		t.Fatal(err)
	}
	g := &tlsid.Generated{Anchor: anchor, AnchorKey: anchorKey, Issuer: issuer, IssuerKey: issuerKey}
	if err := g.WriteDir(identityDirOf(dir)); err != nil {
		t.Fatal(err)
	}
}

func TestCheckPassesOnRunningMesh(t *testing.T) {
	dir := t.TempDir()
	// The proxies need the control plane's address before mesh.json is
	// written: start a first one to certify them, as 'weft up' would.
	idDir := identityDirOf(dir)
	addr := runningMesh(t, t.TempDir(), idDir)
	proxy := certifiedProxy(t, addr, idDir, "faces", "smiley")
	runningMesh(t, dir, idDir, proxyComponent(t, "faces", "smiley-0", proxy))

	code, out, errOut := runCLI(t, "check", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("weft check exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"weft-state\n----------\n√ state directory exists\n√ mesh is running\n",
		"weft-control-plane\n------------------\n√ control plane is reachable\n√ identity service is serving\n",
		"√ issuer cert is within its validity period\n",
		"√ issuer cert is issued by the trust anchor\n",
		"weft-data-plane\n---------------\n√ data plane proxies certificate match CA\n",
		"\nStatus check results are √\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runCLI(t, "check", "--state-dir", dir, "-o", "json")
	var rep checkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.Success {
		t.Fatalf("json: exit %d, %v, %+v", code, err, rep)
	}
	n := 0
	for _, c := range rep.Categories {
		for _, ch := range c.Checks {
			n++
			if ch.Result != "success" {
				t.Errorf("%s: %s", ch.Description, ch.Result)
			}
		}
	}
	if n != len(checks()) {
		t.Errorf("json lists %d checks, want all %d", n, len(checks()))
	}
}

func TestCheckFailsOnExpiredIssuer(t *testing.T) {
	// The control plane runs (with its own valid CA), but the mesh's
	// identity directory holds an issuer that expired yesterday.
	dir := t.TempDir()
	runningMesh(t, dir, filepath.Join(t.TempDir(), "identity"))
	now := time.Now()
	writeCA(t, dir, now.Add(-48*time.Hour), now.Add(-24*time.Hour))

	code, out, errOut := runCLI(t, "check", "--state-dir", dir)
	if code != 1 {
		t.Fatalf("weft check exit %d, want 1\n%s", code, out)
	}
	want := "× issuer cert is within its validity period\n    issuer certificate \"CN=identity.weft.cluster.local\""
	if !strings.Contains(out, want) || !strings.Contains(out, "expired on "+now.Add(-24*time.Hour).UTC().Format("2006-01-02")) {
		t.Errorf("output lacks the expiry failure %q:\n%s", want, out)
	}
	if !strings.Contains(out, "    see docs/checks.md#weft-identity-issuer-time-valid for hints\n") {
		t.Errorf("output lacks the hint:\n%s", out)
	}
	if !strings.Contains(out, "√ control plane is reachable") || !strings.Contains(out, "√ issuer cert is issued by the trust anchor") {
		t.Errorf("unrelated checks did not pass:\n%s", out)
	}
	if strings.Count(out, "×") != 1+1 { // the failed check and the summary
		t.Errorf("want exactly one failed check:\n%s", out)
	}
	if !strings.HasSuffix(out, "Status check results are ×\n") || !strings.Contains(errOut, "some checks failed") {
		t.Errorf("summary missing: %q / %q", out, errOut)
	}
}

func TestCheckWarnsBeforeExpiry(t *testing.T) {
	dir := t.TempDir()
	runningMesh(t, dir, filepath.Join(t.TempDir(), "identity"))
	now := time.Now()
	writeCA(t, dir, now.Add(-time.Hour), now.Add(30*24*time.Hour))
	code, out, _ := runCLI(t, "check", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("weft check exit %d, want 0 (a warning is not a failure)\n%s", code, out)
	}
	if !strings.Contains(out, "‼ issuer cert is valid for at least 60 days\n    issuer certificate") {
		t.Errorf("no expiry warning:\n%s", out)
	}
}

func TestCheckFailsWithoutMesh(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := runCLI(t, "check", "--state-dir", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{"× mesh is running\n", "start one with 'weft up'", "× certificate config is valid\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "control plane is reachable") {
		t.Errorf("control plane checked without a mesh:\n%s", out)
	}
	// A control plane that is down is reported as such.
	code, out, _ = runCLI(t, "check", "--state-dir", dir, "--control-addr", freeAddr(t), "--timeout", "2s")
	if code != 1 || !strings.Contains(out, "‼ mesh is running") || !strings.Contains(out, "× control plane is reachable\n    control plane at") {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
}

func TestIdentityCommand(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	writeCA(t, dir, now.Add(-time.Hour), now.Add(100*24*time.Hour))
	code, out, errOut := runCLI(t, "identity", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	issuer, err := tlsid.LoadCertificates(filepath.Join(identityDirOf(dir), tlsid.IssuerCertFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Trust anchors (" + filepath.Join(dir, "identity", "ca.crt") + ")\n  Subject:      CN=root.weft.cluster.local\n",
		"Issuer (" + filepath.Join(dir, "identity", "issuer.crt") + ")\n  Subject:      CN=identity.weft.cluster.local\n  Issuer:       CN=root.weft.cluster.local\n",
		"  Serial:       " + issuer[0].SerialNumber.Text(16) + "\n",
		"(99 days left)",
		"  Fingerprint:  SHA256 " + tlsid.Fingerprint(issuer[0]) + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, _, errOut = runCLI(t, "identity", "--state-dir", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "they are generated when the control plane first starts") {
		t.Errorf("empty dir: exit %d, %s", code, errOut)
	}
}

func TestCheckDataPlane(t *testing.T) {
	dir := t.TempDir()
	idDir := identityDirOf(dir)
	addr := runningMesh(t, t.TempDir(), idDir)
	good := certifiedProxy(t, addr, idDir, "faces", "smiley")
	// A proxy certified by another mesh's control plane.
	otherDir := filepath.Join(t.TempDir(), "identity")
	otherAddr := runningMesh(t, t.TempDir(), otherDir)
	foreign := certifiedProxy(t, otherAddr, otherDir, "faces", "color")

	tests := []struct {
		name    string
		proxies []local.Component
		code    int
		want    []string
	}{
		{"foreign certificate", []local.Component{
			proxyComponent(t, "faces", "smiley-0", good),
			proxyComponent(t, "faces", "color-0", foreign),
		}, 1, []string{"× data plane proxies certificate match CA\n    1 of 2 proxies have no valid certificate:\n    * faces/color-0: certificate for color.faces.serviceaccount.identity.weft.cluster.local does not verify against the trust anchors"}},
		{"wrong namespace", []local.Component{proxyComponent(t, "emojivoto", "web-0", good)}, 1,
			[]string{"* emojivoto/web-0: identity smiley.faces.serviceaccount.identity.weft.cluster.local is not in the pod's namespace emojivoto"}},
		{"not reporting", []local.Component{proxyComponent(t, "faces", "old-0", http.NotFoundHandler())}, 0,
			[]string{"‼ data plane proxies certificate match CA\n    1 of 1 proxies do not report their certificate (no /identity.json on their admin server): faces/old-0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			runningMesh(t, dir, idDir, tt.proxies...)
			code, out, _ := runCLI(t, "check", "--state-dir", dir, "--identity-dir", idDir)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// 'weft control' signs with the CA from the --identity-*-file flags, with
// the configured lifetime and clock skew.
func TestControlIdentityFlags(t *testing.T) {
	caDir := t.TempDir()
	now := time.Now()
	writeCA(t, caDir, now.Add(-time.Hour), now.Add(100*24*time.Hour))
	files := tlsid.DirFiles(identityDirOf(caDir))
	stateDir := t.TempDir()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"control", "--state-dir", stateDir, "--addr", addr, "--admin-addr", freeAddr(t),
			"--identity-trust-anchors-file", files.TrustAnchors,
			"--identity-issuer-certificate-file", files.IssuerCertificate,
			"--identity-issuer-key-file", files.IssuerKey,
			"--identity-issuance-lifetime", "90m",
			"--identity-clock-skew-allowance", "1m",
		}, strings.NewReader(""), io.Discard, &errOut)
	}()
	c := certifiedProxy(t, addr, identityDirOf(stateDir), "faces", "smiley", files.TrustAnchors)
	leaf := c.Certificate().Leaf
	issuer, err := tlsid.LoadCertificates(files.IssuerCertificate)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(issuer[0]); err != nil {
		t.Errorf("leaf not signed by the issuer from the flags: %v", err)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d != 91*time.Minute {
		t.Errorf("leaf validity %v, want 90m lifetime + 1m skew", d)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("weft control exit %d: %s", c, errOut.String())
	}

	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--identity-issuance-lifetime", "0s"}, 2, "must be positive"},
		{[]string{"--identity-trust-anchors-file", files.TrustAnchors}, 1, "give all three or none"},
		{[]string{"--identity-trust-domain", "Not_A_Domain"}, 1, "trust domain"},
	} {
		var out syncBuffer
		args := append([]string{"control", "--state-dir", t.TempDir(), "--addr", freeAddr(t), "--admin-addr", freeAddr(t)}, tt.args...)
		if got := Run(context.Background(), args, strings.NewReader(""), io.Discard, &out); got != tt.code || !strings.Contains(out.String(), tt.want) {
			t.Errorf("%v: exit %d, %q; want %d containing %q", tt.args, got, out.String(), tt.code, tt.want)
		}
	}
}

// A mesh started with 'weft up --identity-*-file' keeps no CA in the
// state directory: 'weft check' with the same flags checks those files,
// and without them says how to.
func TestCheckWithIdentityFiles(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(t.TempDir(), "ca")
	runningMesh(t, dir, caDir) // the control plane generates its CA there
	files := tlsid.DirFiles(caDir)

	code, out, _ := runCLI(t, "check", "--state-dir", dir)
	if code != 1 || !strings.Contains(out, "give 'weft check' the same flags") {
		t.Errorf("check without the files: exit %d, want 1 with a hint:\n%s", code, out)
	}
	code, out, _ = runCLI(t, "check", "--state-dir", dir,
		"--identity-trust-anchors-file", files.TrustAnchors,
		"--identity-issuer-certificate-file", files.IssuerCertificate,
		"--identity-issuer-key-file", files.IssuerKey)
	if code != 0 || !strings.Contains(out, "√ certificate config is valid") {
		t.Errorf("check with the files: exit %d, want 0:\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, "check", "--state-dir", dir, "--identity-trust-anchors-file", files.TrustAnchors); code != 2 || !strings.Contains(errOut, "all three") {
		t.Errorf("one file of three: exit %d (%s), want 2", code, errOut)
	}
}
