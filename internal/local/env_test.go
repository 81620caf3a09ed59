package local

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "alpha", "PORT": "4100", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"$(A)", "alpha"},
		{"--port=$(PORT)", "--port=4100"},
		{"$(A)$(A)", "alphaalpha"},
		{"$(MISSING)", "$(MISSING)"},
		{"$$(A)", "$(A)"},
		{"$$$(A)", "$alpha"},
		{"$A", "$A"},
		{"$", "$"},
		{"x$", "x$"},
		{"$(A", "$(A"},
		{"$(EMPTY)x", "x"},
		{"$()", "$()"},
		{"a$$b", "a$b"},
	} {
		if got := Expand(tc.in, lookup); got != tc.want {
			t.Errorf("Expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"", "$(A)", "$$(A)", "$(", "a$b$(c)$$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		none := func(string) (string, bool) { return "", false }
		got := Expand(s, none)
		// With nothing defined only $$ escapes change the text, and each
		// shortens it by one byte.
		if len(got) > len(s) || len(got) < len(s)-strings.Count(s, "$$") {
			t.Fatalf("Expand(%q) = %q: unexpected length", s, got)
		}
		if !strings.Contains(s, "$") && got != s {
			t.Fatalf("Expand(%q) = %q: changed text without $", s, got)
		}
	})
}

func TestContainerEnv(t *testing.T) {
	c := &corev1.Container{
		Name: "web",
		Env: []corev1.EnvVar{
			{Name: "WEB_PORT", Value: "8080"},
			{Name: "OTHER_NUMBER", Value: "9999"},
			{Name: "ADDR", Value: ":$(WEB_PORT)"},
			{Name: "SELF", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}},
			{Name: "GREETING", Value: "hi from $(POD_NAME) on $(PORT)"},
			{Name: "POD_NAME", Value: "overridden"},
		},
	}
	pod := PodInfo{Name: "web-abc-xyz", Namespace: "shop", Labels: map[string]string{"app": "web"}}
	injected := []EnvVar{{"PORT", "41000"}, {"POD_NAME", "web-abc-xyz"}}
	secrets := func(ns, name, key string) (string, error) { return ns + "/" + name + "/" + key, nil }
	got, err := ContainerEnv(c, pod, injected, map[int32]int{8080: 41000}, secrets)
	if err != nil {
		t.Fatal(err)
	}
	want := []EnvVar{
		{"PORT", "41000"},
		{"POD_NAME", "overridden"},
		{"WEB_PORT", "41000"},
		{"OTHER_NUMBER", "9999"},
		{"ADDR", ":41000"},
		{"SELF", "web-abc-xyz"},
		{"APP", "web"},
		{"TOKEN", "shop/s/k"},
		{"GREETING", "hi from web-abc-xyz on 41000"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}
}

func TestContainerEnvRefusesUnsupported(t *testing.T) {
	c := &corev1.Container{Name: "x", Env: []corev1.EnvVar{{Name: "CM", ValueFrom: &corev1.EnvVarSource{
		ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Key: "k"}}}}}
	_, err := ContainerEnv(c, PodInfo{}, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "env CM") {
		t.Fatalf("err = %v, want an error naming env CM", err)
	}
	c = &corev1.Container{Name: "x", Env: []corev1.EnvVar{{Name: "F", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.phase"}}}}}
	if _, err := ContainerEnv(c, PodInfo{}, nil, nil, nil); err == nil {
		t.Fatal("unsupported fieldRef accepted")
	}
}

func TestResolveCommand(t *testing.T) {
	env := []EnvVar{{"PORT", "4100"}, {"FACES_SERVICE", "smiley"}}
	for _, tc := range []struct {
		name    string
		c       corev1.Container
		want    []string
		wantErr string
	}{
		{"weft means this binary", corev1.Container{Command: []string{"weft", "faces"}, Args: []string{"--port", "$(PORT)"}},
			[]string{"/bin/weft-test", "faces", "--port", "4100"}, ""},
		{"absolute path kept", corev1.Container{Command: []string{"/opt/app", "$(FACES_SERVICE)"}},
			[]string{"/opt/app", "smiley"}, ""},
		{"faces workload image", corev1.Container{Image: "ghcr.io/buoyantio/faces-workload:1.4.1"},
			[]string{"/bin/weft-test", "faces"}, ""},
		{"faces gui image", corev1.Container{Image: "ghcr.io/buoyantio/faces-gui:1.4.1", Args: []string{"x"}},
			[]string{"/bin/weft-test", "faces", "x"}, ""},
		{"unknown image", corev1.Container{Name: "db", Image: "postgres:16"}, nil, "needs a command"},
		{"missing program", corev1.Container{Command: []string{"no-such-program-weft-test"}}, nil, "no-such-program-weft-test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveCommand(&tc.c, "/bin/weft-test", env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("argv (-want +got):\n%s", d)
			}
		})
	}
}
