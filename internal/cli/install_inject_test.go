package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/internal/inject"
	"github.com/weft-mesh/weft/internal/install"
)

// ingressDeployment decodes the weft-ingress Deployment among the
// documents of manifests.
func ingressDeployment(t *testing.T, manifests string) (*appsv1.Deployment, string) {
	t.Helper()
	// Documents start with "---" on a line of its own (the PEM blocks end
	// with dashes too).
	for doc := range strings.SplitSeq("\n"+manifests, "\n---\n") {
		if !strings.Contains(doc, "kind: Deployment") {
			continue
		}
		d := new(appsv1.Deployment)
		if err := yaml.UnmarshalStrict([]byte(doc), d); err != nil {
			t.Fatalf("decoding a Deployment: %v\n%s", err, doc)
		}
		if d.Name == install.IngressName {
			return d, doc
		}
	}
	t.Fatalf("no %s Deployment in\n%s", install.IngressName, manifests)
	return nil, ""
}

func containerNames(d *appsv1.Deployment) (containers, inits []string) {
	for _, c := range d.Spec.Template.Spec.Containers {
		containers = append(containers, c.Name)
	}
	for _, c := range d.Spec.Template.Spec.InitContainers {
		inits = append(inits, c.Name)
	}
	return containers, inits
}

// TestInstalledIngressIsInjectManual: the ingress Deployment 'weft install'
// prints is exactly what 'weft inject --manual', given the same images and
// trust anchors, makes of it once 'weft uninject' has taken the proxy
// out: the install's meshing cannot drift from the injector's.
func TestInstalledIngressIsInjectManual(t *testing.T) {
	id := filepath.Join("..", "install", "testdata", "identity")
	wh := filepath.Join("..", "install", "testdata", "webhook")
	const image, initImage = "ghcr.io/weft-mesh/weft:v0.0.0-test", "registry.example/weft-proxy-init:v0.0.0-test"
	code, out, errOut := runCLI(t, "install", "--image", image, "--init-image", initImage,
		"--identity-trust-anchors-file", filepath.Join(id, "ca.crt"),
		"--identity-issuer-certificate-file", filepath.Join(id, "issuer.crt"),
		"--identity-issuer-key-file", filepath.Join(id, "issuer.key"),
		"--webhook-tls-cert-file", filepath.Join(wh, "tls.crt"), "--webhook-tls-key-file", filepath.Join(wh, "tls.key"))
	if code != 0 {
		t.Fatalf("install: exit %d: %s", code, errOut)
	}
	installed, doc := ingressDeployment(t, out)
	if c, i := containerNames(installed); !cmp.Equal(c, []string{inject.ProxyContainerName, install.IngressName}) || !cmp.Equal(i, []string{inject.InitContainerName}) {
		t.Fatalf("installed ingress: containers %q, init containers %q; want the proxy, the ingress and proxy-init", c, i)
	}

	dir := t.TempDir()
	meshedFile := filepath.Join(dir, "meshed.yaml")
	if err := os.WriteFile(meshedFile, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	code, plain, errOut := runCLI(t, "uninject", meshedFile)
	if code != 0 || !strings.Contains(errOut, `deployment "weft-ingress" uninjected`) {
		t.Fatalf("uninject: exit %d: %s", code, errOut)
	}
	un, _ := ingressDeployment(t, plain)
	if c, i := containerNames(un); !cmp.Equal(c, []string{install.IngressName}) || len(i) != 0 {
		t.Fatalf("uninjected ingress: containers %q, init containers %q; want the ingress alone", c, i)
	}
	plainFile := filepath.Join(dir, "plain.yaml")
	if err := os.WriteFile(plainFile, []byte(plain), 0o644); err != nil {
		t.Fatal(err)
	}
	code, again, errOut := runCLI(t, "inject", "--manual", "--image", image, "--init-image", initImage,
		"--identity-trust-anchors-file", filepath.Join(id, "ca.crt"), plainFile)
	if code != 0 || !strings.Contains(errOut, `deployment "weft-ingress" injected`) {
		t.Fatalf("inject --manual: exit %d: %s", code, errOut)
	}
	injected, _ := ingressDeployment(t, again)
	if diff := cmp.Diff(installed, injected); diff != "" {
		t.Errorf("the installed ingress differs from 'weft inject --manual' of it (-install +inject):\n%s", diff)
	}
}

// TestInstalledIngressProxyInitRules: the iptables rules the installed
// ingress's weft-init writes (its own arguments, with --dry-run) let the
// API server's ports out directly and keep the Listener and admin ports
// away from the inbound proxy, before the rules that redirect everything
// else.
func TestInstalledIngressProxyInitRules(t *testing.T) {
	code, out, errOut := runCLI(t, "install", "--image", "ghcr.io/weft-mesh/weft:v0.0.0-test")
	if code != 0 {
		t.Fatalf("install: exit %d: %s", code, errOut)
	}
	d, _ := ingressDeployment(t, out)
	var args []string
	for _, c := range d.Spec.Template.Spec.InitContainers {
		if c.Name == inject.InitContainerName {
			args = c.Args
		}
	}
	if len(args) == 0 || args[0] != "proxy-init" {
		t.Fatalf("the ingress's %s runs %q, want weft proxy-init", inject.InitContainerName, args)
	}
	code, rules, errOut := runCLI(t, append(args, "--dry-run")...)
	if code != 0 {
		t.Fatalf("weft %q --dry-run: exit %d: %s", args, code, errOut)
	}
	lines := strings.Split(rules, "\n")
	// index of the first line with all of parts, -1 if none.
	index := func(parts ...string) int {
		for i, l := range lines {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(l, p)
			}
			if all {
				return i
			}
		}
		return -1
	}
	outSkip := index("-A WEFT_OUTBOUND", "--dports 443,6443", "-j RETURN")
	outRedirect := index("-A WEFT_OUTBOUND", "REDIRECT --to-ports 4140")
	if outSkip < 0 || outRedirect < 0 || outSkip > outRedirect {
		t.Errorf("outbound: the API server's ports are not returned before the redirect to the proxy:\n%s", rules)
	}
	inSkip := index("-A WEFT_INBOUND", "--dports 4191,8080,8443,9990", "-j RETURN")
	inRedirect := index("-A WEFT_INBOUND", "REDIRECT --to-ports 4143")
	if inSkip < 0 || inRedirect < 0 || inSkip > inRedirect {
		t.Errorf("inbound: the Listener and admin ports are not returned before the redirect to the proxy:\n%s", rules)
	}
}
