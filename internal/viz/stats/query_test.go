package stats

import (
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in, ns string
		want   Ref
		err    string
	}{
		{"deploy/web", "faces", Ref{Kind: Deployment, Namespace: "faces", Name: "web"}, ""},
		{"po/web-1", "x", Ref{Kind: PodKind, Namespace: "x", Name: "web-1"}, ""},
		{"ns/faces", "x", Ref{Kind: Namespace, Name: "faces"}, ""},
		{"au/web.faces.svc.cluster.local:80", "faces", Ref{Kind: Authority, Namespace: "faces", Name: "web.faces.svc.cluster.local:80"}, ""},
		{"web", "x", Ref{}, "want TYPE/NAME"},
		{"deploy/", "x", Ref{}, "want TYPE/NAME"},
		{"svc/web", "x", Ref{}, `unknown resource type "svc"`},
	} {
		got, err := ParseRef(tc.in, tc.ns)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRef(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if again, err := ParseRef(got.String(), tc.ns); err != nil || again != got {
			t.Errorf("ParseRef(%q.String()) = %+v, %v", tc.in, again, err)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"deploy/web", "po/x", "ns/faces", "au/a:80", "x", "/", "deploy//"} {
		f.Add(s, "faces")
	}
	f.Fuzz(func(t *testing.T, s, ns string) {
		r, err := ParseRef(s, ns)
		if err != nil {
			return
		}
		if r.Name == "" {
			t.Fatalf("ParseRef(%q) accepted an empty name", s)
		}
		again, err := ParseRef(r.String(), ns)
		if err != nil || again != r {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v, %v", s, r, r.String(), again, err)
		}
	})
}
