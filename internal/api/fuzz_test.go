package api

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	sigsjson "sigs.k8s.io/json"
)

// FuzzDecode checks that Decode never panics, and that whatever it accepts
// survives Encode and Decode again unchanged, in both formats.
func FuzzDecode(f *testing.F) {
	if raw, err := os.ReadFile("testdata/valid-mesh.yaml"); err == nil {
		for _, doc := range strings.Split(string(raw), "\n---\n") {
			f.Add(doc)
		}
	}
	for _, s := range []string{
		"",
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
		`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}]}`,
		"apiVersion: v1\nkind: Service\nmetadata: {name: s, name: t}\nspec:\n  ports: [{port: 80, targetPort: [1]}]\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 1e3\n",
		"- a\n- b\n",
		"{\"a\":",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: \"!!\"}\n",
		"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: weft}\nspec: {controllerName: weft.io/gateway-controller, description: d}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		objs, err := Decode(strings.NewReader(in), "fuzz")
		if err != nil {
			if _, ok := err.(DecodeErrors); !ok {
				t.Fatalf("error is %T, want DecodeErrors", err)
			}
			return
		}
		want := reencode(t, objs)
		for _, format := range []string{FormatJSON, FormatYAML} {
			var buf bytes.Buffer
			if err := Encode(&buf, objs, format); err != nil {
				t.Fatalf("Encode(%s): %v", format, err)
			}
			back, err := Decode(bytes.NewReader(buf.Bytes()), "re-encoded")
			if err != nil {
				t.Fatalf("decoding Encode(%s) output: %v\ninput:\n%s\noutput:\n%s", format, err, in, buf.String())
			}
			if diff := cmp.Diff(want, reencode(t, back)); diff != "" {
				t.Fatalf("%s round trip changed objects (-want +got):\n%s", format, diff)
			}
		}
	})
}

// FuzzSchemaCheck compares the decoder's own schema walk with
// sigs.k8s.io/json's strict decoding: for every registered kind, the walk
// must find a problem exactly when the real decoder does, or it would
// refuse good manifests or let bad ones through to the backstop.
func FuzzSchemaCheck(f *testing.F) {
	for _, s := range []string{
		`{"metadata":{"name":"a","labels":{"x":"y"}},"spec":{"ports":[{"port":80,"targetPort":"http"}]}}`,
		`{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"a","ports":[{"containerPort":80}],"resources":{"limits":{"cpu":"100m"}}}]}}}}`,
		`{"spec":{"parentRefs":[{"name":"a","port":80}],"rules":[{"timeouts":{"request":"1s"},"backendRefs":[{"name":"b","weight":1}]}]}}`,
		`{"spec":{"port":"http","podSelector":{"matchLabels":{"a":"b"}}},"status":{"conditions":[{"lastTransitionTime":"2024-01-01T00:00:00Z"}]}}`,
		`{"spec":{"backends":[{"service":"a","weight":"500m"}]},"data":{"k":"aGVsbG8="}}`,
		`{"spec":{"dstOverrides":[{"authority":"a","weight":1}]},"metadata":{"creationTimestamp":null}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		tree, err := parseJSON([]byte(in))
		if err != nil || tree.kind != jsonObject {
			return
		}
		js, _ := tree.MarshalJSON()
		for _, ki := range Kinds() {
			var sc schemaChecker
			sc.check("", tree, typeOf(ki.New()))
			strict, err := sigsjson.UnmarshalStrict(js, ki.New(), sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
			real := err != nil || len(strict) > 0
			if ours := len(sc.problems) > 0; ours != real {
				t.Fatalf("%s: schema walk found %v, sigs.k8s.io/json found err=%v strict=%v for %s", ki.Kind, sc.problems, err, strict, js)
			}
		}
	})
}
