package tokenreview

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weft-mesh/weft/internal/control/identity"
	"github.com/weft-mesh/weft/internal/kubetest"
)

func TestServiceAccount(t *testing.T) {
	tests := []struct {
		in       string
		ns, name string
		ok       bool
	}{
		{"system:serviceaccount:faces:smiley", "faces", "smiley", true},
		{"system:serviceaccount:faces:", "", "", false},
		{"system:serviceaccount::smiley", "", "", false},
		{"system:serviceaccount:faces", "", "", false},
		{"system:serviceaccount:a:b:c", "", "", false},
		{"alice", "", "", false},
		{"", "", "", false},
	}
	for _, tc := range tests {
		ns, name, ok := serviceAccount(tc.in)
		if ns != tc.ns || name != tc.name || ok != tc.ok {
			t.Errorf("serviceAccount(%q) = %q, %q, %v; want %q, %q, %v", tc.in, ns, name, ok, tc.ns, tc.name, tc.ok)
		}
	}
}

func FuzzServiceAccount(f *testing.F) {
	f.Add("system:serviceaccount:faces:smiley")
	f.Add("system:serviceaccount::")
	f.Fuzz(func(t *testing.T, s string) {
		ns, name, ok := serviceAccount(s)
		if !ok {
			return
		}
		if ns == "" || name == "" || strings.Contains(name, ":") || strings.Contains(ns, ":") {
			t.Fatalf("serviceAccount(%q) = %q, %q accepted", s, ns, name)
		}
		if "system:serviceaccount:"+ns+":"+name != s {
			t.Fatalf("serviceAccount(%q) = %q, %q does not rebuild the input", s, ns, name)
		}
	})
}

// TestValidate reviews real tokens issued by a real API server.
func TestValidate(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "faces"}}, metav1.CreateOptions{}))
	must(admin.CoreV1().ServiceAccounts("faces").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "smiley"}}, metav1.CreateOptions{}))
	pod, err := admin.CoreV1().Pods("faces").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "smiley-5f8c9d-x7k2p"},
		Spec:       corev1.PodSpec{ServiceAccountName: "smiley", Containers: []corev1.Container{{Name: "app", Image: "example.com/smiley:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := func(audience string, bound bool) []byte {
		t.Helper()
		req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}}}
		if bound {
			req.Spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
		}
		res, err := admin.CoreV1().ServiceAccounts("faces").CreateToken(ctx, "smiley", req, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return []byte(res.Status.Token)
	}

	// The control plane's identity may create TokenReviews, as the
	// system:auth-delegator ClusterRole allows, and nothing else.
	must(admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "weft-identity-auth-delegator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "weft-identity"}},
	}, metav1.CreateOptions{}))
	c.WaitAllowed(t, authorizationv1.ResourceAttributes{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"}, "weft-identity")
	reviewer, err := kubernetes.NewForConfig(c.UserConfig(t, "weft-identity"))
	if err != nil {
		t.Fatal(err)
	}
	v := New(reviewer, "")

	got, err := v.Validate(ctx, append(token(Audience, true), '\n'))
	if err != nil {
		t.Fatalf("Validate(bound token for %s): %v", Audience, err)
	}
	if want := (identity.Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: pod.Name}); got != want {
		t.Fatalf("Validate = %+v, want %+v", got, want)
	}

	for _, tc := range []struct {
		name  string
		token []byte
		want  string
	}{
		{"token for the API server", token("https://kubernetes.default.svc.cluster.local", true), "refused"},
		{"token not bound to a pod", token(Audience, false), "not bound to a pod"},
		{"garbage", []byte("not-a-token"), "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Validate(ctx, tc.token)
			if !errors.Is(err, identity.ErrInvalidToken) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate err = %v; want an invalid token error mentioning %q", err, tc.want)
			}
		})
	}

	// Without permission the review itself fails: not the token's fault.
	stranger, err := kubernetes.NewForConfig(c.UserConfig(t, "stranger"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(stranger, "").Validate(ctx, token(Audience, true))
	if err == nil || errors.Is(err, identity.ErrInvalidToken) {
		t.Fatalf("Validate without RBAC: err = %v; want a review failure, not an invalid token", err)
	}
}
