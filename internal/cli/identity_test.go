package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/control"
	"github.com/weft-mesh/weft/internal/local"
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
// held and mesh.json names the control plane.
func runningMesh(t *testing.T, dir, identityDir string) {
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
	if err := local.WriteMesh(dir, &local.Mesh{PID: os.Getpid(), StateDir: dir, ControlAddr: p.Addr().String(), Started: time.Now(), Updated: time.Now()}); err != nil {
		t.Fatal(err)
	}
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
	runningMesh(t, dir, identityDirOf(dir))

	code, out, errOut := runCLI(t, "check", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("weft check exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"weft-state\n----------\n√ state directory exists\n√ mesh is running\n",
		"weft-control-plane\n------------------\n√ control plane is reachable\n√ identity service is serving\n",
		"√ issuer cert is within its validity period\n",
		"√ issuer cert is issued by the trust anchor\n",
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
