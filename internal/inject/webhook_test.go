package inject

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/internal/kubetest"
)

// serveTLS serves h over TLS on 127.0.0.1:0 with a fresh self-signed
// certificate and returns its URL and the certificate (PEM) as caBundle.
func serveTLS(t *testing.T, h http.Handler) (string, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weft-webhook-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String() + "/inject", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestWebhookOnAPIServer registers the webhook with a real API server and
// creates pods: annotated ones (or in annotated namespaces) come back with
// the proxy and init containers, skip ports in the init container's args.
func TestWebhookOnAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	client, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	wh := &Webhook{Config: testConfig, Logger: slog.New(slog.DiscardHandler), Namespaces: func(ctx context.Context, ns string) (map[string]string, error) {
		n, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return n.Annotations, nil
	}}
	url, ca := serveTLS(t, wh)
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	_, err = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "weft-proxy-injector"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "proxy-injector.weft.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "meshed", Annotations: map[string]string{InjectAnnotation: "enabled"}}},
	} {
		if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// No controllers run in the harness to make it.
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns.Name}}
		if _, err := client.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(ns, name string, ann map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann, Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
		}
	}
	for _, tt := range []struct {
		name     string
		pod      *corev1.Pod
		injected bool
		initArg  string
	}{
		{"annotated pod", pod("plain", "web", map[string]string{InjectAnnotation: "enabled", SkipOutboundPortsAnnotation: "25,4000-4100", SkipInboundPortsAnnotation: "9090"}), true, "--outbound-ports-to-ignore=25,4000-4100"},
		{"annotated namespace", pod("meshed", "api", nil), true, "--inbound-ports-to-ignore=4191"},
		{"pod opts out", pod("meshed", "db", map[string]string{InjectAnnotation: "disabled"}), false, ""},
		{"plain pod", pod("plain", "job", nil), false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := client.CoreV1().Pods(tt.pod.Namespace).Create(ctx, tt.pod, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range got.Spec.Containers {
				names = append(names, c.Name)
			}
			if !tt.injected {
				if len(names) != 1 || len(got.Spec.InitContainers) != 0 {
					t.Fatalf("containers %v, init %v: want the pod unchanged", names, got.Spec.InitContainers)
				}
				return
			}
			if strings.Join(names, ",") != ProxyContainerName+",app" {
				t.Fatalf("containers %v, want the proxy before the app", names)
			}
			if len(got.Spec.InitContainers) != 1 || got.Spec.InitContainers[0].Name != InitContainerName {
				t.Fatalf("init containers %v", got.Spec.InitContainers)
			}
			args := strings.Join(got.Spec.InitContainers[0].Args, " ")
			if !strings.Contains(args, tt.initArg) || !strings.Contains(args, "--proxy-uid=2102") {
				t.Errorf("init args %q, want %q and the proxy UID", args, tt.initArg)
			}
			if got.Annotations[ProxyVersionAnnotation] != testConfig.Version {
				t.Errorf("annotations %v", got.Annotations)
			}
			var token bool
			for _, v := range got.Spec.Volumes {
				if v.Projected != nil && v.Name == TokenVolumeName && v.Projected.Sources[0].ServiceAccountToken.Audience == TokenAudience {
					token = true
				}
			}
			if !token {
				t.Errorf("no projected identity token volume in %v", got.Spec.Volumes)
			}
		})
	}

	// An annotated Deployment's pods: 'weft inject' annotates the pod
	// template, the API server stores the Deployment, and a pod made from
	// the stored template (as the ReplicaSet controller makes them; no
	// controllers run here) is injected, the template's skip ports
	// honoured.
	t.Run("annotated deployment's pod", func(t *testing.T) {
		const manifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: smiley, namespace: plain}
spec:
  replicas: 1
  selector: {matchLabels: {app: smiley}}
  template:
    metadata:
      labels: {app: smiley}
      annotations: {config.linkerd.io/skip-inbound-ports: "9090"}
    spec:
      containers: [{name: smiley, image: "ghcr.io/buoyantio/faces-workload:1.4.1"}]
`
		var out bytes.Buffer
		if err := Transform(strings.NewReader(manifest), &out, io.Discard, ModeAnnotate, Config{}); err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		if err := yaml.UnmarshalStrict(out.Bytes(), &d); err != nil {
			t.Fatalf("weft inject output: %v\n%s", err, out.Bytes())
		}
		stored, err := client.AppsV1().Deployments("plain").Create(ctx, &d, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tmpl := stored.Spec.Template
		controller := true
		got, err := client.CoreV1().Pods("plain").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				GenerateName: "smiley-", Labels: tmpl.Labels, Annotations: tmpl.Annotations,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: stored.Name, UID: stored.UID, Controller: &controller}},
			},
			Spec: tmpl.Spec,
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.Containers) != 2 || got.Spec.Containers[0].Name != ProxyContainerName || len(got.Spec.InitContainers) != 1 {
			t.Fatalf("containers %+v, init containers %+v: want the proxy and proxy-init", got.Spec.Containers, got.Spec.InitContainers)
		}
		if args := strings.Join(got.Spec.InitContainers[0].Args, " "); !strings.Contains(args, "--inbound-ports-to-ignore=4191,9090") {
			t.Errorf("init args %q lack the template's skipped inbound port", args)
		}
	})

	// A bad skip-ports annotation is refused with the reason.
	_, err = client.CoreV1().Pods("plain").Create(ctx, pod("plain", "bad", map[string]string{InjectAnnotation: "enabled", SkipInboundPortsAnnotation: "http"}), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), SkipInboundPortsAnnotation) {
		t.Errorf("bad annotation: err = %v", err)
	}
}

func TestWebhookBadRequests(t *testing.T) {
	url, ca := serveTLS(t, &Webhook{Config: testConfig})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, tt := range []struct {
		method, body string
		want         int
	}{
		{http.MethodGet, "", http.StatusMethodNotAllowed},
		{http.MethodPost, "not json", http.StatusBadRequest},
		{http.MethodPost, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest},
		{http.MethodPost, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"kind":"Service","version":"v1"},"operation":"CREATE"}}`, http.StatusOK},
	} {
		req, _ := http.NewRequest(tt.method, url, strings.NewReader(tt.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %q: status %d, want %d", tt.method, tt.body, resp.StatusCode, tt.want)
		}
	}
}
