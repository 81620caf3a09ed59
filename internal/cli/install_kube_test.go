package cli

import (
	"bytes"
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

	"github.com/weft-mesh/weft/internal/install"
	"github.com/weft-mesh/weft/internal/kubetest"
)

// TestInstalledControlPlaneRuns applies 'weft install --crds' and 'weft
// install' to a real API server, then runs 'weft control' with the
// arguments and Secret files of the rendered Deployment, authenticated as
// its ServiceAccount: the RBAC the install grants is enough for the kube
// store to become ready (and the webhook and identity flags are accepted).
func TestInstalledControlPlaneRuns(t *testing.T) {
	c, o := installedCluster(t)

	// The control Deployment's container, its Secret volumes written out
	// where they would be mounted.
	secrets := map[string]*corev1.Secret{}
	var dep *appsv1.Deployment
	for _, obj := range install.Objects(o) {
		switch v := obj.(type) {
		case *corev1.Secret:
			secrets[v.Name] = v
		case *appsv1.Deployment:
			if v.Name == install.ControlName {
				dep = v
			}
		}
	}
	if dep == nil {
		t.Fatal("no control Deployment rendered")
	}
	pod := dep.Spec.Template.Spec
	mounts := map[string]string{} // mount path -> local dir
	for _, m := range pod.Containers[0].VolumeMounts {
		dir := t.TempDir()
		mounts[m.MountPath] = dir
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				s := secrets[v.Secret.SecretName]
				if s == nil {
					t.Fatalf("volume %s: Secret %s is not rendered", v.Name, v.Secret.SecretName)
				}
				for k, data := range s.StringData {
					if err := os.WriteFile(filepath.Join(dir, k), []byte(data), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	admin := freeAddr(t)
	var args []string
	for _, a := range pod.Containers[0].Args {
		switch {
		case strings.HasPrefix(a, "--admin-addr="):
			a = "--admin-addr=" + admin
		case strings.HasPrefix(a, "--addr="), strings.HasPrefix(a, "--webhook-addr="):
			name, _, _ := strings.Cut(a, "=")
			a = name + "=" + freeAddr(t)
		}
		for path, dir := range mounts {
			a = strings.Replace(a, "="+path, "="+dir, 1)
		}
		args = append(args, a)
	}
	sa := "system:serviceaccount:" + install.DefaultNamespace + ":" + pod.ServiceAccountName
	kubeconfig := c.WriteKubeconfig(t, "weft-control", c.UserConfig(t, sa, "system:serviceaccounts", "system:serviceaccounts:"+install.DefaultNamespace, "system:authenticated"))
	args = append(args, "--kubeconfig="+kubeconfig)

	ctx, stop := context.WithCancel(context.Background())
	var errOut syncBuffer
	code := make(chan int, 1)
	go func() { code <- Run(ctx, args, strings.NewReader(""), io.Discard, &errOut) }()
	deadline := time.Now().Add(45 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case c := <-code:
			t.Fatalf("weft %s exited %d: %s", strings.Join(args, " "), c, errOut.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("weft control as %s never ready: %s", sa, errOut.String())
		}
	}
	stop()
	if c := <-code; c != 0 {
		t.Errorf("weft control exited %d: %s", c, errOut.String())
	}
	if strings.Contains(errOut.String(), "forbidden") {
		t.Errorf("RBAC refused the control plane something:\n%s", errOut.String())
	}
}

// installTestdata reads a file of internal/install's testdata (the fixed
// identity and webhook certificates its golden files use).
func installTestdata(t *testing.T, p ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"..", "install", "testdata"}, p...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// installedCluster starts a real API server and applies 'weft install
// --crds' and 'weft install' to it, rendered with the testdata identity
// and webhook certificates; it returns the options it rendered with.
func installedCluster(t *testing.T) (*kubetest.Cluster, install.Options) {
	t.Helper()
	c := kubetest.Start(t)
	wcert := installTestdata(t, "webhook", "tls.crt")
	o := install.Options{
		Image: "ghcr.io/weft-mesh/weft:test",
		Identity: install.Identity{TrustAnchors: installTestdata(t, "identity", "ca.crt"),
			IssuerCertificate: installTestdata(t, "identity", "issuer.crt"), IssuerKey: installTestdata(t, "identity", "issuer.key")},
		Webhook: install.WebhookTLS{CABundle: wcert, Certificate: wcert, Key: installTestdata(t, "webhook", "tls.key")},
	}
	var crds, cp bytes.Buffer
	if err := install.WriteCRDs(&crds); err != nil {
		t.Fatal(err)
	}
	if err := install.WriteControlPlane(&cp, o); err != nil {
		t.Fatal(err)
	}
	c.ApplyYAML(t, crds.Bytes())
	c.ApplyYAML(t, cp.Bytes())
	return c, o
}
