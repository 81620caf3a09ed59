package kubetest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weft-mesh/weft/internal/api"
)

func TestRequiredVersion(t *testing.T) {
	tests := []struct {
		name, gomod, want string
		wantErr           bool
	}{
		{"pinned", "module x\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v1.36.1\n\nreplace (\n)\n", "v1.36.1", false},
		{"block form is not the pin", "module x\nrequire (\n\tk8s.io/kubernetes v1.36.1\n)\n", "", true},
		{"missing", "module x\n", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "go.mod")
			if err := os.WriteFile(p, []byte(tc.gomod), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := requiredVersion(p, f)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("requiredVersion() = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestPinnedVersionMatchesRepo checks that the harness finds the version
// build.sh builds, from a package directory.
func TestPinnedVersionMatchesRepo(t *testing.T) {
	v, err := PinnedVersion()
	if err != nil {
		t.Fatal(err)
	}
	if len(v) < 3 || v[:3] != "v1." {
		t.Fatalf("PinnedVersion() = %q, want a v1.x.y kubernetes version", v)
	}
}

// TestCluster exercises a real cluster: admin access, RBAC for other
// users, the kubeconfig file, CRDs, and data surviving an API server
// restart.
func TestCluster(t *testing.T) {
	c := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	admin, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	// The server reports the pinned version (build.sh stamps it), as
	// clients comparing versions need.
	v, err := admin.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if want, err := PinnedVersion(); err != nil || v.GitVersion != want || v.Major != "1" {
		t.Errorf("server version %s (major %q), want %s (%v); rebuild with hack/kube-apiserver/build.sh", v.GitVersion, v.Major, want, err)
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubetest"}}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin creating a namespace: %v", err)
	}

	// The kubeconfig file carries the same admin credentials.
	fromFile, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	fileClient, err := kubernetes.NewForConfig(fromFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fileClient.CoreV1().Namespaces().Get(ctx, "kubetest", metav1.GetOptions{}); err != nil {
		t.Fatalf("client from %s: %v", c.Kubeconfig, err)
	}

	// RBAC is on: a user with no bindings is refused until granted.
	user, err := kubernetes.NewForConfig(c.UserConfig(t, "alice", "dev"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := user.CoreV1().Secrets("kubetest").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("alice listing secrets without a binding: err = %v, want Forbidden", err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kubetest", Name: "secret-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}},
	}
	if _, err := admin.RbacV1().Roles("kubetest").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kubetest", Name: "dev-reads-secrets"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "secret-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "dev"}},
	}
	if _, err := admin.RbacV1().RoleBindings("kubetest").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.WaitAllowed(t, authorizationv1.ResourceAttributes{Namespace: "kubetest", Verb: "list", Resource: "secrets"}, "alice", "dev")
	if _, err := user.CoreV1().Secrets("kubetest").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("alice listing secrets with a binding: %v", err)
	}
	if _, err := user.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("alice listing secrets in another namespace: err = %v, want Forbidden", err)
	}

	// A CRD is served once InstallMinimalCRDs returns.
	c.InstallMinimalCRDs(t, api.KindServiceProfile)
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "linkerd.io", Version: "v1alpha2", Resource: "serviceprofiles"}
	if _, err := dyn.Resource(gvr).Namespace("kubetest").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("listing serviceprofiles after InstallMinimalCRDs: %v", err)
	}

	// ApplyYAML orders namespaces and CRDs before what needs them.
	applied := c.ApplyYAML(t, []byte(`apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, namespace: shop}
spec: {size: 3}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {color: blue}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
`))
	if len(applied) != 4 {
		t.Fatalf("ApplyYAML returned %d objects, want 4", len(applied))
	}
	w, err := dyn.Resource(schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}).Namespace("shop").Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the applied Widget: %v", err)
	}
	if size, _, _ := unstructured.NestedInt64(w.Object, "spec", "size"); size != 3 {
		t.Errorf("Widget spec.size = %d, want 3", size)
	}
	cm, err := admin.CoreV1().ConfigMaps("shop").Get(ctx, "settings", metav1.GetOptions{})
	if err != nil || cm.Data["color"] != "blue" {
		t.Errorf("the applied ConfigMap: %v, %v", cm.Data, err)
	}

	// etcd keeps the data across an API server restart.
	c.RestartAPIServer(t)
	if _, err := admin.CoreV1().Namespaces().Get(ctx, "kubetest", metav1.GetOptions{}); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestBinaryLookup(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "exe")
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		lookup  func() (string, error)
		want    string
		wantErr string
	}{
		{"apiserver from env", map[string]string{"WEFT_KUBE_APISERVER": exe}, APIServerPath, exe, ""},
		{"apiserver env not executable", map[string]string{"WEFT_KUBE_APISERVER": plain}, APIServerPath, "", "not an executable"},
		{"apiserver not built", map[string]string{"WEFT_KUBE_APISERVER": "", "WEFT_KUBE_CACHE": dir}, APIServerPath, "", "hack/kube-apiserver/build.sh"},
		{"etcd from env", map[string]string{"WEFT_ETCD": exe}, EtcdPath, exe, ""},
		{"etcd env missing file", map[string]string{"WEFT_ETCD": filepath.Join(dir, "nope")}, EtcdPath, "", "not an executable"},
		{"etcd not on PATH", map[string]string{"WEFT_ETCD": "", "PATH": dir}, EtcdPath, "", "apt-get install etcd-server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := tc.lookup()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
