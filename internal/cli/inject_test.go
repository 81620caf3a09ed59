package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInjectCommands(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("..", "inject", "testdata", "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	want, _ := os.ReadFile(filepath.Join("..", "inject", "testdata", "inject.golden"))
	code, out, errOut := run(string(in), "inject", "-")
	if code != 0 || out != string(want) || !strings.Contains(errOut, `deployment "nginx" injected`) {
		t.Errorf("inject -: code %d, stderr %q, equal to golden %v", code, errOut, out == string(want))
	}
	code, manual, errOut := run(string(in), "inject", "--manual", "--image", "example/weft:1", "-")
	if code != 0 || !strings.Contains(manual, "image: example/weft:1") || !strings.Contains(errOut, "warning: no --identity-trust-anchors-file") {
		t.Errorf("inject --manual: code %d, stderr %q", code, errOut)
	}
	code, back, errOut := run(manual, "uninject", "-")
	if code != 0 || strings.Contains(back, "weft-proxy") || !strings.Contains(errOut, `deployment "nginx" uninjected`) {
		t.Errorf("uninject: code %d, stderr %q", code, errOut)
	}
	// A file argument works as stdin does.
	code, fromFile, _ := run("", "inject", filepath.Join("..", "inject", "testdata", "input.yaml"))
	if code != 0 || fromFile != string(want) {
		t.Errorf("inject FILE: code %d", code)
	}
	if code, _, errOut := run("", "inject", "/nonexistent.yaml"); code != 2 || !strings.Contains(errOut, "/nonexistent.yaml") {
		t.Errorf("missing file: code %d, %q", code, errOut)
	}
	if code := Run(context.Background(), []string{"inject", "--manual", "-"}, strings.NewReader("kind: Deployment\nspec: {template: {metadata: {annotations: {config.linkerd.io/skip-inbound-ports: x}}, spec: {}}}\n"), io.Discard, io.Discard); code == 0 {
		t.Error("bad skip-inbound-ports accepted")
	}
}

func TestProxyInitCommand(t *testing.T) {
	code, out, errOut := runCLI(t, "proxy-init", "--dry-run", "--inbound-ports-to-ignore=4191,9090", "--outbound-ports-to-ignore=25")
	if code != 0 || !strings.Contains(out, "--dports 4191,9090 -j RETURN") || !strings.Contains(out, "--uid-owner 2102") || !strings.Contains(out, "--to-ports 4140") {
		t.Errorf("proxy-init --dry-run: code %d, stderr %q:\n%s", code, errOut, out)
	}
	if code, _, errOut := runCLI(t, "proxy-init", "--dry-run", "--outbound-ports-to-ignore=smtp"); code != 2 || !strings.Contains(errOut, "--outbound-ports-to-ignore") {
		t.Errorf("bad ports: code %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "proxy-init", "--iptables-restore=/nonexistent/iptables-restore"); code == 0 || !strings.Contains(errOut, "NET_ADMIN") {
		t.Errorf("missing iptables-restore: code %d, %q", code, errOut)
	}
}
