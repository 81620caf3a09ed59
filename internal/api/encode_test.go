package api

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// reencode returns objs as compact JSON, one line each, for comparison.
func reencode(t *testing.T, objs []Object) []string {
	t.Helper()
	var out []string
	for _, o := range objs {
		var buf bytes.Buffer
		if err := Encode(&buf, []Object{o}, FormatJSON); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.String())
	}
	return out
}

func TestEncodeRoundTrip(t *testing.T) {
	raw, err := os.ReadFile("testdata/valid-mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(bytes.NewReader(raw), "valid-mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := reencode(t, objs)
	for _, format := range []string{FormatYAML, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Encode(&buf, objs, format); err != nil {
				t.Fatal(err)
			}
			back, err := Decode(bytes.NewReader(buf.Bytes()), "encoded."+format)
			if err != nil {
				t.Fatalf("decoding Encode's output: %v\n%s", err, buf.String())
			}
			if diff := cmp.Diff(want, reencode(t, back)); diff != "" {
				t.Errorf("round trip changed objects (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncodeYAMLShape(t *testing.T) {
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "faces", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "faces"}} // no TypeMeta: filled from the registry
	var buf bytes.Buffer
	if err := Encode(&buf, []Object{svc, ns}, FormatYAML); err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: faces
  labels:
    app: web
spec:
  ports:
  - name: http
    port: 80
    targetPort: 0
---
apiVersion: v1
kind: Namespace
metadata:
  name: faces
spec: {}
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("YAML (-want +got):\n%s", diff)
	}
}

func TestEncodeKeepsNonEmptyStatus(t *testing.T) {
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "faces"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1"},
	}
	var buf bytes.Buffer
	if err := Encode(&buf, []Object{pod}, FormatYAML); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "status:\n  phase: Running\n  podIP: 127.0.0.1\n") {
		t.Errorf("status missing:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "creationTimestamp") {
		t.Errorf("null creationTimestamp printed:\n%s", buf.String())
	}
}

func TestEncodeJSONList(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, nil, FormatJSON); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(strings.Fields(buf.String()), ""); got != `{"apiVersion":"v1","kind":"List","items":[]}` {
		t.Errorf("empty list = %s", got)
	}
	if err := Encode(&buf, nil, "table"); err == nil || !strings.Contains(err.Error(), "use yaml or json") {
		t.Errorf("unknown format error = %v", err)
	}
}

// TestStoreRoundTrip decodes stored JSON the way the memory store does:
// New(kind) and plain encoding/json.
func TestStoreRoundTrip(t *testing.T) {
	objs := mustDecodeFile(t, "testdata/valid-mesh.yaml")
	want := reencode(t, objs)
	var got []Object
	for _, o := range objs {
		raw, err := json.Marshal(o)
		if err != nil {
			t.Fatalf("%s: %v", RefOf(o), err)
		}
		back := New(KindOf(o))
		if err := json.Unmarshal(raw, back); err != nil {
			t.Fatalf("%s: %v", RefOf(o), err)
		}
		got = append(got, back)
	}
	if diff := cmp.Diff(want, reencode(t, got)); diff != "" {
		t.Errorf("store round trip changed objects (-want +got):\n%s", diff)
	}
}
