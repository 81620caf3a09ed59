package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/weft-mesh/weft/internal/inject"
	"github.com/weft-mesh/weft/internal/install"
	"github.com/weft-mesh/weft/internal/kubetest"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// checkStep is one run of 'weft check' in a scenario: what the test
// changes in the cluster first, then what the output must and must not say.
type checkStep struct {
	name     string
	setup    func(t *testing.T)
	args     []string
	argsFn   func() []string // instead of args, for what setup learns
	wantCode int
	want     []string
	notWant  []string
}

func runCheckSteps(t *testing.T, steps []checkStep) {
	t.Helper()
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) {
			if st.setup != nil {
				st.setup(t)
			}
			if st.argsFn != nil {
				st.args = st.argsFn()
			}
			code, out, errOut := runCLI(t, append([]string{"check"}, st.args...)...)
			if code != st.wantCode {
				t.Fatalf("weft check %s: exit %d, want %d\n%s%s", strings.Join(st.args, " "), code, st.wantCode, out, errOut)
			}
			for _, w := range st.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range st.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		}) {
			t.FailNow() // later steps build on this one
		}
	}
}

// TestCheckClusterPre runs 'weft check --pre' against a real API server:
// as an administrator on an empty cluster, as users RBAC limits, and once
// the namespace exists.
func TestCheckClusterPre(t *testing.T) {
	c := kubetest.Start(t)
	t.Setenv("KUBECONFIG", c.Kubeconfig)
	t.Setenv("WEFT_STATE_DIR", "")
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// A user who may read namespaces and create ConfigMaps, nothing else.
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "check-test-limited"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "check-test-limited"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "check-test-limited"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: "limited", APIGroup: "rbac.authorization.k8s.io"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.WaitAllowed(t, authorizationv1.ResourceAttributes{Namespace: "weft", Verb: "create", Resource: "configmaps"}, "limited", "system:authenticated")
	limited := c.WriteKubeconfig(t, "limited", c.UserConfig(t, "limited", "system:authenticated"))
	nobody := c.WriteKubeconfig(t, "nobody", c.UserConfig(t, "nobody", "system:authenticated"))
	// One kubeconfig with two contexts, the administrator's current.
	contexts := filepath.Join(t.TempDir(), "contexts")
	mergeKubeconfigs(t, contexts, []string{"admin", "nobody"}, []string{c.Kubeconfig, nobody})

	const hint = "    see docs/checks.md#pre-can-create for hints\n"
	runCheckSteps(t, []checkStep{
		{
			name: "admin on an empty cluster", args: []string{"--pre", "--kubeconfig", c.Kubeconfig}, wantCode: 0,
			want: []string{
				"Checking the Kubernetes cluster before install (--pre) (" + c.URL + ", kubeconfig " + c.Kubeconfig + ")\n\n",
				"kubernetes-api\n--------------\n√ can initialize the client\n√ can query the Kubernetes API\n",
				"√ is running the minimum Kubernetes API version\n",
				"√ control plane namespace does not already exist\n",
				"√ can create Namespaces\n", "√ can create ClusterRoles\n", "√ can create ClusterRoleBindings\n",
				"√ can create CustomResourceDefinitions\n", "√ can create MutatingWebhookConfigurations\n", "√ can create GatewayClasses\n",
				"√ can create ServiceAccounts\n", "√ can create Deployments\n", "√ can create Services\n",
				"√ can create Secrets\n", "√ can create ConfigMaps\n",
				"√ can bind the system:auth-delegator ClusterRole\n",
				"√ proxy-init can run with NET_ADMIN and NET_RAW\n",
				"Status check results are √\n",
			},
			notWant: []string{"weft-identity", "weft-existence"},
		},
		{
			name: "user with some rights", args: []string{"--pre", "--kubeconfig", limited}, wantCode: 1,
			want: []string{
				"√ control plane namespace does not already exist\n",
				"√ can create ConfigMaps\n",
				"× can create Secrets\n    not allowed to create secrets in namespace weft (no RBAC rule allows it); 'weft install' needs a cluster administrator's rights\n" + hint,
				"× can create ClusterRoles\n    not allowed to create clusterroles.rbac.authorization.k8s.io cluster-wide",
				"× can bind the system:auth-delegator ClusterRole\n    not allowed to bind clusterrole system:auth-delegator, nor to create tokenreviews",
				"Status check results are ×\n",
			},
		},
		{
			name: "user without rights", args: []string{"--pre", "--kubeconfig", nobody}, wantCode: 1,
			want: []string{
				"× control plane namespace does not already exist\n    cannot tell whether namespace weft exists:",
				"× can create Namespaces\n    not allowed to create namespaces cluster-wide",
				"× can create ConfigMaps\n",
				"‼ proxy-init can run with NET_ADMIN and NET_RAW\n    cannot list namespaces",
			},
		},
		{
			name: "--context chooses the user", args: []string{"--pre", "--kubeconfig", contexts, "--context", "nobody"}, wantCode: 1,
			want: []string{"(" + c.URL + ", kubeconfig " + contexts + ", context nobody)\n", "× can create Namespaces\n"},
		},
		{
			name: "the current context", args: []string{"--pre", "--kubeconfig", contexts}, wantCode: 0,
			want: []string{"√ can create Namespaces\n"},
		},
		{
			name: "unknown context", args: []string{"--pre", "--kubeconfig", contexts, "--context", "nope"}, wantCode: 1,
			want: []string{"× can initialize the client\n    store/kube: kubeconfig context \"nope\": ", "see docs/checks.md#k8s-api-client for hints\n"},
			// Nothing else runs without a client.
			notWant: []string{"can query", "pre-kubernetes-setup"},
		},
		{
			name: "a namespace enforcing baseline Pod Security warns",
			setup: func(t *testing.T) {
				createNamespace(t, cs, "strict", map[string]string{podSecurityEnforce: "baseline"})
			},
			args: []string{"--pre", "--kubeconfig", c.Kubeconfig}, wantCode: 0,
			want: []string{"‼ proxy-init can run with NET_ADMIN and NET_RAW\n    injected pods need NET_ADMIN and NET_RAW for weft-init, which Pod Security pod-security.kubernetes.io/enforce refuses in: strict (baseline)\n    see docs/checks.md#pre-net-admin for hints\n",
				"Status check results are √\n"},
		},
		{
			name:  "namespace weft exists",
			setup: func(t *testing.T) { createNamespace(t, cs, install.DefaultNamespace, nil) },
			// KUBECONFIG alone chooses the cluster too.
			args: []string{"--pre"}, wantCode: 1,
			want: []string{"× control plane namespace does not already exist\n    namespace weft already exists: Weft may be installed already",
				"see docs/checks.md#pre-ns for hints\n", "√ can create Namespaces\n"},
		},
	})
}

// mergeKubeconfigs writes to path a kubeconfig with one context per name,
// each the (only) context of the file at the same index; the first is
// current.
func mergeKubeconfigs(t *testing.T, path string, names, files []string) {
	t.Helper()
	out := clientcmdapi.NewConfig()
	for i, name := range names {
		in, err := clientcmd.LoadFromFile(files[i])
		if err != nil {
			t.Fatal(err)
		}
		ctx := in.Contexts[in.CurrentContext]
		out.Clusters[name] = in.Clusters[ctx.Cluster]
		out.AuthInfos[name] = in.AuthInfos[ctx.AuthInfo]
		out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	out.CurrentContext = names[0]
	if err := clientcmd.WriteToFile(*out, path); err != nil {
		t.Fatal(err)
	}
}

// TestCheckClusterUnreachable: without a cluster, or with one that does not
// answer, the first checks say so and nothing else runs.
func TestCheckClusterUnreachable(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	dead := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["dead"] = &clientcmdapi.Cluster{Server: "https://" + freeAddr(t), InsecureSkipTLSVerify: true}
	cfg.AuthInfos["dead"] = &clientcmdapi.AuthInfo{Token: "x"}
	cfg.Contexts["dead"] = &clientcmdapi.Context{Cluster: "dead", AuthInfo: "dead"}
	cfg.CurrentContext = "dead"
	if err := clientcmd.WriteToFile(*cfg, dead); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no cluster", []string{"--mode=kube"}, "× can initialize the client\n    store/kube: not running in a cluster and no kubeconfig given: pass --kubeconfig PATH or set KUBECONFIG\n    see docs/checks.md#k8s-api-client for hints\n"},
		{"no kubeconfig file", []string{"--kubeconfig", filepath.Join(t.TempDir(), "none")}, "× can initialize the client\n    store/kube: reading kubeconfig "},
		{"API server down", []string{"--pre", "--kubeconfig", dead, "--timeout", "2s"}, "√ can initialize the client\n× can query the Kubernetes API\n    API server at https://127.0.0.1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, _ := runCLI(t, append([]string{"check"}, tc.args...)...)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want 1 and %q in:\n%s", code, tc.want, out)
			}
			for _, later := range []string{"kubernetes-version", "pre-kubernetes-setup", "weft-config"} {
				if strings.Contains(out, later) {
					t.Errorf("%s checks ran without an API server:\n%s", later, out)
				}
			}
		})
	}
}

func setTrustRoots(t *testing.T, cs kubernetes.Interface, anchors []byte) {
	t.Helper()
	ctx := context.Background()
	cm, err := cs.CoreV1().ConfigMaps(install.DefaultNamespace).Get(ctx, install.TrustRootsMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[install.TrustRootsKey] = string(anchors)
	if _, err := cs.CoreV1().ConfigMaps(install.DefaultNamespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createNamespace(t *testing.T, cs kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestCheckCluster runs 'weft check' and 'weft check --proxy' against a
// real API server through an install: nothing there, then the output of
// 'weft install --crds' and 'weft install' applied with the Deployments not
// yet available, then their status written as the Deployment controller
// would; then injected pods whose proxy containers' statuses the test
// writes as a kubelet would.
func TestCheckCluster(t *testing.T) {
	c := kubetest.Start(t)
	t.Setenv("KUBECONFIG", c.Kubeconfig)
	t.Setenv("WEFT_STATE_DIR", "")
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	installOutput := func(t *testing.T, args ...string) []byte {
		t.Helper()
		code, out, errOut := runCLI(t, append([]string{"install"}, args...)...)
		if code != 0 {
			t.Fatalf("weft install %v: exit %d: %s", args, code, errOut)
		}
		return []byte(out)
	}
	setDeploymentsAvailable := func(t *testing.T) {
		t.Helper()
		deps, _ := expectedObjects(install.DefaultNamespace)
		for _, want := range deps {
			d, err := cs.AppsV1().Deployments(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n := *d.Spec.Replicas
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
			if _, err := cs.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	trustRoots := func(t *testing.T) []byte {
		t.Helper()
		cm, err := cs.CoreV1().ConfigMaps(install.DefaultNamespace).Get(ctx, install.TrustRootsMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return []byte(cm.Data[install.TrustRootsKey])
	}
	// injectedPod creates a pod as the injector would have meshed it.
	injectedPod := func(t *testing.T, name string, anchors []byte, version string) {
		t.Helper()
		meta := map[string]any{"name": name, "namespace": "faces"}
		spec := map[string]any{"containers": []any{map[string]any{"name": "app", "image": "ghcr.io/example/app:1"}}}
		cfg := inject.Config{Image: defaultImage(), Version: version, TrustAnchors: anchors}
		if err := inject.Manual(meta, spec, cfg, "smiley"); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.Pod
		if err := json.Unmarshal(b, &pod); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Pods("faces").Create(ctx, &pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// setProxyReady writes the pod's status as the kubelet would.
	setProxyReady := func(t *testing.T, name string, ready bool) {
		t.Helper()
		pod, err := cs.CoreV1().Pods("faces").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		started := metav1.NewTime(time.Now())
		pod.Status.Phase = corev1.PodRunning
		pod.Status.ContainerStatuses = nil
		for _, ctr := range pod.Spec.Containers {
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: ctr.Name, Image: ctr.Image, Ready: ready,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
			})
		}
		if _, err := cs.CoreV1().Pods("faces").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	otherAnchors := func() []byte {
		g, err := tlsid.Generate(tlsid.DefaultDomain, time.Now(), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tlsid.EncodeCertificates(g.Anchor)
	}()

	kc := []string{"--kubeconfig", c.Kubeconfig}
	var controlAddr string
	runCheckSteps(t, []checkStep{
		{
			name: "before install", args: kc, wantCode: 1,
			want: []string{
				"Checking the Kubernetes cluster after install (" + c.URL,
				"√ can query the Kubernetes API\n",
				"× control plane Namespace exists\n    namespace weft does not exist: install the control plane with 'weft install | kubectl apply -f -'\n    see docs/checks.md#weft-ns for hints\n",
				"× control plane CustomResourceDefinitions exist\n    ",
				"CRDs are missing: ",
				"install them with 'weft install --crds | kubectl apply -f -'\n    see docs/checks.md#weft-crds for hints\n",
				"Status check results are ×\n",
			},
			// Nothing is reported that only repeats the namespace's absence.
			notWant: []string{"Deployments", "weft-identity", "weft-webhook", "weft-control-plane"},
		},
		{
			name:  "installed, Deployments not available",
			setup: func(t *testing.T) { c.ApplyYAML(t, installOutput(t, "--crds")); c.ApplyYAML(t, installOutput(t)) },
			args:  kc, wantCode: 1,
			want: []string{
				"√ control plane Namespace exists\n√ control plane CustomResourceDefinitions exist\n",
				"√ control plane Deployments exist\n× control plane Deployments are available\n    weft-control: the Deployment controller has not seen the latest spec yet; weft-ingress: ",
				"see docs/checks.md#weft-deployments-available for hints\n",
				"√ control plane Services exist\n",
				"weft-identity\n-------------\n√ certificate config is valid\n",
				"√ issuer cert is issued by the trust anchor\n",
				"weft-webhook\n------------\n√ proxy injector webhook is registered\n√ proxy injector webhook has valid cert\n√ proxy injector cert is valid for at least 60 days\n",
				"- control plane is reachable (skipped)\n    no --control-addr given: run 'kubectl -n weft port-forward svc/weft-dst 8086'",
				"- Destination service answers (skipped)\n",
			},
		},
		{
			name:  "Deployments available",
			setup: setDeploymentsAvailable,
			args:  kc, wantCode: 0,
			want: []string{"√ control plane Deployments are available\n", "Status check results are √\n"},
		},
		{
			name: "control plane not answering", args: append([]string{"--control-addr", freeAddr(t), "--timeout", "2s"}, kc...), wantCode: 1,
			want: []string{"× control plane is reachable\n    control plane at 127.0.0.1:", "kubectl -n weft logs deploy/weft-control"},
		},
		{
			name: "control plane answers",
			setup: func(t *testing.T) {
				controlAddr = startKubeControl(t, c.Kubeconfig)
			},
			argsFn:   func() []string { return []string{"--control-addr", controlAddr} },
			wantCode: 0,
			want:     []string{"weft-control-plane\n------------------\n√ control plane is reachable\n√ Destination service answers\n", "Status check results are √\n"},
		},
		{
			name: "data plane namespace missing", args: []string{"--proxy", "-n", "faces"}, wantCode: 1,
			want: []string{"Checking the Kubernetes cluster with the data plane (--proxy) (", "× data plane namespace exists\n    namespace faces does not exist"},
		},
		{
			name: "no meshed pods",
			setup: func(t *testing.T) {
				createNamespace(t, cs, "faces", nil)
				if _, err := cs.CoreV1().ServiceAccounts("faces").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			args: []string{"--proxy", "-n", "faces"}, wantCode: 1,
			want:    []string{"√ data plane namespace exists\n× data plane proxies are ready\n    no pods with a weft-proxy container in namespace faces"},
			notWant: []string{"trust the cluster's trust anchors"},
		},
		{
			name: "proxy not ready",
			setup: func(t *testing.T) {
				injectedPod(t, "smiley-1", trustRoots(t), VersionString())
				setProxyReady(t, "smiley-1", false)
			},
			args: []string{"--proxy"}, wantCode: 1,
			want: []string{"× data plane proxies are ready\n    1 of 1 proxies are not ready:\n    * faces/smiley-1: running, readiness probe not passing\n    see docs/checks.md#weft-data-plane-ready for hints\n"},
		},
		{
			name:  "proxy ready",
			setup: func(t *testing.T) { setProxyReady(t, "smiley-1", true) },
			args:  []string{"--proxy", "-n", "faces"}, wantCode: 0,
			want: []string{
				"weft-data-plane\n---------------\n√ data plane namespace exists\n√ data plane proxies are ready\n√ data plane proxies trust the cluster's trust anchors\n√ data plane proxy versions match the control plane\n",
				"Status check results are √\n",
			},
		},
		{
			name: "proxy of another version",
			setup: func(t *testing.T) {
				injectedPod(t, "smiley-old", trustRoots(t), "v0.0.1")
				setProxyReady(t, "smiley-old", true)
			},
			args: []string{"--proxy", "-n", "faces"}, wantCode: 0,
			want: []string{"‼ data plane proxy versions match the control plane\n    the control plane runs " + VersionString() + "; 1 of 2 proxies run another version: faces/smiley-old (v0.0.1); restart their workloads",
				"see docs/checks.md#weft-data-plane-version for hints\n", "Status check results are √\n"},
		},
		{
			name: "proxy with other trust anchors",
			setup: func(t *testing.T) {
				injectedPod(t, "smiley-2", otherAnchors, VersionString())
				setProxyReady(t, "smiley-2", true)
			},
			args: []string{"--proxy", "-n", "faces"}, wantCode: 1,
			want: []string{"√ data plane proxies are ready\n× data plane proxies trust the cluster's trust anchors\n    1 of 3 proxies were injected with other trust anchors than ConfigMap weft/weft-identity-trust-roots holds:\n    * faces/smiley-2: has \"CN=root.weft.cluster.local"},
		},
		{
			name: "json", args: []string{"-o", "json"}, wantCode: 0,
			want: []string{`"success": true`, `"categoryName": "weft-webhook"`, `"result": "skipped"`, `"error": "no --control-addr given"`},
		},
		{
			name: "issuer Secret expiring soon",
			setup: func(t *testing.T) {
				now := time.Now()
				anchor, anchorKey, err := tlsid.NewRoot("root.weft.cluster.local", now.Add(-time.Hour), now.Add(365*24*time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				issuer, issuerKey, err := tlsid.NewIntermediate("identity.weft.cluster.local", anchor, anchorKey, now.Add(-time.Hour), now.Add(30*24*time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				keyPEM, err := tlsid.EncodeKey(issuerKey)
				if err != nil {
					t.Fatal(err)
				}
				anchors := tlsid.EncodeCertificates(anchor)
				sec, err := cs.CoreV1().Secrets(install.DefaultNamespace).Get(ctx, install.IssuerSecret, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				sec.Data = map[string][]byte{"ca.crt": anchors, "tls.crt": tlsid.EncodeCertificates(issuer), "tls.key": keyPEM}
				if _, err := cs.CoreV1().Secrets(install.DefaultNamespace).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
				setTrustRoots(t, cs, anchors)
			},
			args: nil, wantCode: 0,
			want: []string{"√ certificate config is valid\n", "‼ issuer cert is valid for at least 60 days\n    issuer certificate \"CN=identity.weft.cluster.local", "see docs/checks.md#weft-identity-issuer-not-expiring-soon for hints\n", "Status check results are √\n"},
		},
		{
			name:  "trust roots ConfigMap differs from the issuer Secret",
			setup: func(t *testing.T) { setTrustRoots(t, cs, otherAnchors) },
			args:  nil, wantCode: 1,
			want: []string{"× certificate config is valid\n    the trust roots in ConfigMap weft/weft-identity-trust-roots (what proxies are given) differ from ca.crt in Secret weft-identity-issuer"},
			// The certificates it did not load are not judged.
			notWant: []string{"issuer cert is"},
		},
		{
			name: "webhook caBundle does not validate the serving certificate",
			setup: func(t *testing.T) {
				other, err := install.GenerateWebhookTLS("", time.Now(), time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.InjectorName, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				mwc.Webhooks[0].ClientConfig.CABundle = other.CABundle
				if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			args: nil, wantCode: 1,
			want: []string{"√ proxy injector webhook is registered\n× proxy injector webhook has valid cert\n    the serving certificate in Secret weft/weft-proxy-injector-tls does not verify against webhook proxy-injector.weft.io's caBundle for weft-proxy-injector.weft.svc: x509: "},
		},
	})
}

// startKubeControl runs 'weft control --store=kube' against the cluster
// and returns its gRPC address once it is ready.
func startKubeControl(t *testing.T, kubeconfig string) string {
	t.Helper()
	addr, admin := freeAddr(t), freeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	var errOut syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"control", "--store=kube", "--kubeconfig", kubeconfig,
			"--state-dir", t.TempDir(), "--addr", addr, "--admin-addr", admin}, strings.NewReader(""), io.Discard, &errOut)
	}()
	t.Cleanup(func() { stop(); <-code })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		select {
		case c := <-code:
			code <- c
			t.Fatalf("weft control exited %d: %s", c, errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("weft control never ready: %s", errOut.String())
		}
	}
}

// TestCheckInstallResources keeps --pre's access reviews in step with what
// 'weft install' creates.
func TestCheckInstallResources(t *testing.T) {
	have := map[string]bool{}
	for _, r := range installResources {
		have[r.kind] = true
	}
	if !have["CustomResourceDefinition"] {
		t.Error("--pre does not check CustomResourceDefinitions ('weft install --crds')")
	}
	for _, o := range install.Objects(install.Options{}) {
		kind := reflect.TypeOf(o).Elem().Name()
		if !have[kind] {
			t.Errorf("'weft install' creates a %s, which 'weft check --pre' does not check", kind)
		}
	}
}

func TestCheckModeSelection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    string
		wantErr string
	}{
		{name: "nothing", want: "local"},
		{name: "KUBECONFIG", env: map[string]string{"KUBECONFIG": "/k"}, want: "kube"},
		{name: "in a pod", env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, want: "kube"},
		{name: "KUBECONFIG and WEFT_STATE_DIR", env: map[string]string{"KUBECONFIG": "/k", "WEFT_STATE_DIR": "/s"}, want: "local"},
		{name: "KUBECONFIG and --state-dir", args: []string{"--state-dir", "/s"}, env: map[string]string{"KUBECONFIG": "/k"}, want: "local"},
		{name: "--pre", args: []string{"--pre"}, want: "kube"},
		{name: "--proxy -n", args: []string{"--proxy", "-n", "faces"}, want: "kube"},
		{name: "--kubeconfig", args: []string{"--kubeconfig", "/k"}, env: map[string]string{"WEFT_STATE_DIR": "/s"}, want: "kube"},
		{name: "--context", args: []string{"--context", "prod"}, want: "kube"},
		{name: "--identity-dir", args: []string{"--identity-dir", "/i"}, env: map[string]string{"KUBECONFIG": "/k"}, want: "local"},
		{name: "--mode=kube", args: []string{"--mode", "kube"}, want: "kube"},
		{name: "--mode=local", args: []string{"--mode", "local"}, env: map[string]string{"KUBECONFIG": "/k"}, want: "local"},
		{name: "--mode=local --pre", args: []string{"--mode", "local", "--pre"}, wantErr: "--pre checks a cluster, not --mode=local"},
		{name: "--mode=kube --identity-dir", args: []string{"--mode", "kube", "--identity-dir", "/i"}, wantErr: "--identity-dir checks a local mesh"},
		{name: "both kinds of flags", args: []string{"--proxy", "--identity-dir", "/i"}, wantErr: "--proxy checks a cluster but --identity-dir a local mesh"},
		{name: "bad mode", args: []string{"--mode", "k8s"}, wantErr: `unknown --mode "k8s"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "WEFT_STATE_DIR"} {
				t.Setenv(k, tc.env[k])
			}
			var got string
			var gotErr error
			g := &Globals{Out: io.Discard, Err: io.Discard}
			root := &cobra.Command{Use: "weft"}
			root.PersistentFlags().StringVar(&g.StateDir, "state-dir", "", "")
			cmd := newCmdCheck(g)
			cmd.RunE = func(cmd *cobra.Command, _ []string) error {
				o := checkOptions{mode: cmd.Flags().Lookup("mode").Value.String()}
				got, gotErr = checkMode(cmd, &o)
				return nil
			}
			root.AddCommand(cmd)
			root.SetArgs(append([]string{"check"}, tc.args...))
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.wantErr != "":
				if gotErr == nil || !strings.Contains(gotErr.Error(), tc.wantErr) {
					t.Errorf("error %v, want one with %q", gotErr, tc.wantErr)
				}
			case gotErr != nil || got != tc.want:
				t.Errorf("mode %q, %v; want %q", got, gotErr, tc.want)
			}
		})
	}
}

func TestCheckImageTag(t *testing.T) {
	for _, tc := range []struct{ image, want string }{
		{"ghcr.io/weft-mesh/weft:v1.2.3", "v1.2.3"},
		{"ghcr.io/weft-mesh/weft", ""},
		{"localhost:5000/weft", ""},
		{"localhost:5000/weft:dev", "dev"},
		{"weft:dev@sha256:0123", "dev"},
		{"weft@sha256:0123", ""},
	} {
		if got := imageTag(tc.image); got != tc.want {
			t.Errorf("imageTag(%q) = %q, want %q", tc.image, got, tc.want)
		}
	}
}

func FuzzImageTag(f *testing.F) {
	for _, s := range []string{"ghcr.io/weft-mesh/weft:v1", "localhost:5000/weft", "weft@sha256:00", ":", "/:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, image string) {
		tag := imageTag(image)
		if strings.ContainsAny(tag, "/@") {
			t.Errorf("imageTag(%q) = %q: a tag has no / or @", image, tag)
		}
		if tag != "" && !strings.Contains(image, ":"+tag) {
			t.Errorf("imageTag(%q) = %q: not in the reference", image, tag)
		}
	})
}

// TestCheckHintsDocumented: every hint a check prints leads to a section
// (or an explicit anchor) of docs/checks.md.
func TestCheckHintsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "checks.md"))
	if err != nil {
		t.Fatal(err)
	}
	lists := [][]checker{checks(), clusterChecks(true, false), clusterChecks(false, true)}
	for _, list := range lists {
		for _, c := range list {
			if !bytes.Contains(doc, []byte("\n### "+c.hint+"\n")) && !bytes.Contains(doc, []byte(`<a id="`+c.hint+`"></a>`)) {
				t.Errorf("check %q: hint %s%s has no section in docs/checks.md", c.description, checkHintBase, c.hint)
			}
		}
	}
}

// TestCheckLocalHeader: --state-dir before the command (as scripts and
// the end-to-end tests put it) keeps a set $KUBECONFIG from switching to
// cluster mode, and the header says which mesh was checked.
func TestCheckLocalHeader(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "kubeconfig"))
	dir := t.TempDir()
	code, out, _ := runCLI(t, "--state-dir", dir, "check")
	if code != 1 || !strings.HasPrefix(out, "Checking the local mesh in "+dir+"\n\nweft-state\n") {
		t.Errorf("exit %d, want 1 (no mesh running) with the local header:\n%s", code, out)
	}
}

func TestCheckDeploymentProblem(t *testing.T) {
	two := int32(2)
	for _, tc := range []struct {
		name string
		d    appsv1.Deployment
		want string
	}{
		{"available", appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 3}, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 3, UpdatedReplicas: 2, AvailableReplicas: 2}}, ""},
		{"replicas default to one", appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 1},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 1, UpdatedReplicas: 1, AvailableReplicas: 1}}, ""},
		{"spec not observed", appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 1, UpdatedReplicas: 1, AvailableReplicas: 1}}, "the Deployment controller has not seen the latest spec yet"},
		{"rolling out", appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, UpdatedReplicas: 1, AvailableReplicas: 2}}, "1 of 2 replicas updated"},
		{"not available", appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 1}, Spec: appsv1.DeploymentSpec{Replicas: &two},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 1, UpdatedReplicas: 2, AvailableReplicas: 1}}, "1 of 2 replicas available"},
	} {
		if got := deploymentProblem(&tc.d); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCheckProxyNotReady(t *testing.T) {
	status := func(cs ...corev1.ContainerStatus) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: cs}}
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"ready", status(corev1.ContainerStatus{Name: "app"}, corev1.ContainerStatus{Name: inject.ProxyContainerName, Ready: true}), ""},
		{"no status", status(corev1.ContainerStatus{Name: "app", Ready: true}), "no status for weft-proxy yet (pod Pending)"},
		{"waiting", status(corev1.ContainerStatus{Name: inject.ProxyContainerName, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}), "waiting: ImagePullBackOff"},
		{"terminated", status(corev1.ContainerStatus{Name: inject.ProxyContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 2}}}), "terminated: Error (exit 2)"},
	} {
		if got := proxyNotReady(tc.pod); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCheckFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pre", "--proxy"}, "--pre checks a cluster before installing, --proxy one after"},
		{[]string{"-n", "faces"}, "-n chooses the namespace of the pods --proxy checks: add --proxy"},
		{[]string{"-o", "yaml"}, `unknown --output "yaml"`},
		{[]string{"--mode", "local", "--proxy"}, "--proxy checks a cluster, not --mode=local"},
	} {
		code, _, errOut := runCLI(t, append([]string{"check"}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("weft check %v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}
