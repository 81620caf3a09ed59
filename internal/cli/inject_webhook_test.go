package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weft-mesh/weft/internal/kubetest"
)

// TestControlWebhook runs 'weft control --store=kube --webhook-addr' and
// lets a real API server call it: a pod created in a namespace annotated
// linkerd.io/inject: enabled comes back with the proxy, and its
// skip-inbound-ports annotation in the init container's arguments.
func TestControlWebhook(t *testing.T) {
	c := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The webhook's serving certificate, for 127.0.0.1.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weft-proxy-injector"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}

	addr, admin, webhook := freeAddr(t), freeAddr(t), freeAddr(t)
	stateDir := t.TempDir()
	runCtx, stop := context.WithCancel(context.Background())
	var errOut syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(runCtx, []string{"control", "--store=kube", "--kubeconfig", c.Kubeconfig,
			"--state-dir", stateDir, "--addr", addr, "--admin-addr", admin,
			"--webhook-addr", webhook, "--webhook-tls-cert-file", certFile, "--webhook-tls-key-file", keyFile,
			"--proxy-image", "example/weft:test", "--proxy-control-addr", "weft-dst.mesh.svc.cluster.local.:8086"}, strings.NewReader(""), io.Discard, &errOut)
	}()
	defer func() {
		stop()
		if c := <-code; c != 0 {
			t.Errorf("weft control exited %d: %s", c, errOut.String())
		}
	}()

	url := "https://" + webhook + "/inject"
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "weft-proxy-injector"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         "proxy-injector.weft.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: certPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "faces", Annotations: map[string]string{"linkerd.io/inject": "enabled"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("faces").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "smiley", Annotations: map[string]string{"config.linkerd.io/skip-inbound-ports": "9090"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "smiley", Image: "ghcr.io/buoyantio/faces-workload:1.4.1"}}},
	}
	// The control plane (and its view of the namespace) may still be
	// starting: the webhook fails closed in this test, and a pod it did not
	// inject because the store had not seen the namespace is retried.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := cs.CoreV1().Pods("faces").Create(ctx, pod, metav1.CreateOptions{})
		if err == nil && len(got.Spec.InitContainers) == 1 {
			args := strings.Join(got.Spec.InitContainers[0].Args, " ")
			if !strings.Contains(args, "--inbound-ports-to-ignore=4191,9090") {
				t.Errorf("init args %q lack the skipped inbound port", args)
			}
			if got.Spec.Containers[0].Name != "weft-proxy" || got.Spec.Containers[0].Image != "example/weft:test" {
				t.Errorf("containers %+v", got.Spec.Containers)
			}
			if args := strings.Join(got.Spec.Containers[0].Args, " "); !strings.Contains(args, "--control-addr=weft-dst.mesh.svc.cluster.local.:8086") {
				t.Errorf("proxy args %q lack --proxy-control-addr's address", args)
			}
			// The control plane generated its identity in the state
			// directory; the proxy is given those anchors.
			var anchors string
			for _, e := range got.Spec.Containers[0].Env {
				if e.Name == "WEFT_PROXY_IDENTITY_TRUST_ANCHORS" {
					anchors = e.Value
				}
			}
			if want, err := os.ReadFile(filepath.Join(stateDir, "identity", "ca.crt")); err != nil || anchors != string(want) {
				t.Errorf("proxy trust anchors %q, want the control plane's (%v)", anchors, err)
			}
			return
		}
		if err == nil {
			if derr := cs.CoreV1().Pods("faces").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); derr != nil {
				t.Fatal(derr)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod not injected (last error %v); control: %s", err, errOut.String())
		}
		<-tick.C
	}
}
