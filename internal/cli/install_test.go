package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallCommands(t *testing.T) {
	id := filepath.Join("..", "install", "testdata", "identity")
	files := []string{
		"--identity-trust-anchors-file", filepath.Join(id, "ca.crt"),
		"--identity-issuer-certificate-file", filepath.Join(id, "issuer.crt"),
		"--identity-issuer-key-file", filepath.Join(id, "issuer.key"),
	}
	wh := filepath.Join("..", "install", "testdata", "webhook")
	webhookFiles := []string{"--webhook-tls-cert-file", filepath.Join(wh, "tls.crt"), "--webhook-tls-key-file", filepath.Join(wh, "tls.key")}
	golden, err := os.ReadFile(filepath.Join("..", "install", "testdata", "install.golden"))
	if err != nil {
		t.Fatal(err)
	}
	// The CLI with the test files prints exactly the install package's
	// golden output.
	code, out, errOut := runCLI(t, append(append([]string{"install", "--image", "ghcr.io/weft-mesh/weft:v0.0.0-test"}, files...), webhookFiles...)...)
	// The meshed ingress's proxy-version is this binary's version, as
	// 'weft inject --manual' writes it; the golden file has the test's.
	versionLine := "linkerd.io/proxy-version: " + VersionString()
	if !strings.Contains(out, versionLine) {
		t.Errorf("install: the ingress's pod template has no %q", versionLine)
	}
	out = strings.Replace(out, versionLine, "linkerd.io/proxy-version: v0.0.0-test", 1)
	if code != 0 || out != string(golden) {
		t.Errorf("install with files: code %d, stderr %q, output equal to golden: %v", code, errOut, out == string(golden))
	}

	// Generated identities differ per run but the rest is the same.
	code, gen1, _ := runCLI(t, "install")
	_, gen2, _ := runCLI(t, "install")
	if code != 0 || gen1 == gen2 || !strings.Contains(gen1, "BEGIN CERTIFICATE") || !strings.Contains(gen1, "image: ghcr.io/weft-mesh/weft:"+VersionString()) {
		t.Errorf("generated install: code %d, differs %v", code, gen1 != gen2)
	}

	code, crds, _ := runCLI(t, "install", "--crds")
	if code != 0 || !strings.Contains(crds, "name: mappings.getambassador.io") || !strings.Contains(crds, "name: httproutes.gateway.networking.k8s.io") {
		t.Errorf("install --crds: code %d", code)
	}

	code, un, _ := runCLI(t, "uninstall")
	if code != 0 || !strings.Contains(un, "kind: List") || strings.Contains(un, "CustomResourceDefinition") {
		t.Errorf("uninstall: code %d: %s", code, un)
	}
	code, un, _ = runCLI(t, "uninstall", "--crds")
	if code != 0 || !strings.Contains(un, "name: serviceprofiles.linkerd.io") {
		t.Errorf("uninstall --crds: code %d", code)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"install", "--identity-trust-anchors-file", files[1]}, "give all three"},
		{[]string{"install", "--webhook-tls-cert-file", webhookFiles[1]}, "give both"},
		{[]string{"install", "--webhook-tls-cert-file", webhookFiles[1], "--webhook-tls-key-file", files[5]}, "private key does not match"},
		{[]string{"install", "--identity-trust-anchors-file", files[1], "--identity-issuer-certificate-file", files[1], "--identity-issuer-key-file", files[5]}, "identity"},
		{[]string{"install", "--identity-trust-anchors-file", "/nonexistent", "--identity-issuer-certificate-file", files[3], "--identity-issuer-key-file", files[5]}, "/nonexistent"},
	} {
		code, out, errOut := runCLI(t, tt.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: code %d, stdout %d bytes, stderr %q; want 2 and %q", tt.args, code, len(out), errOut, tt.want)
		}
	}
}
