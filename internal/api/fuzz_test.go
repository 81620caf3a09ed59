package api

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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
