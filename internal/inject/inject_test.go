package inject

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/inject -update creates it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; -update if intended):\n%s", name, diff)
	}
}

var testConfig = Config{
	Image:        "ghcr.io/weft-mesh/weft:v0.0.0-test",
	Version:      "v0.0.0-test",
	TrustAnchors: []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
}

func transform(t *testing.T, in []byte, mode Mode) (out, report string) {
	t.Helper()
	var o, r bytes.Buffer
	if err := Transform(bytes.NewReader(in), &o, &r, mode, testConfig); err != nil {
		t.Fatal(err)
	}
	return o.String(), r.String()
}

// docs decodes multi-document YAML into generic objects.
func docs(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for d := range strings.SplitSeq(s, "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatal(err)
		}
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

func TestTransformGolden(t *testing.T) {
	in, err := os.ReadFile("testdata/input.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		mode Mode
	}{{"inject", ModeAnnotate}, {"inject-manual", ModeManual}} {
		out, report := transform(t, in, tt.mode)
		golden(t, tt.name+".golden", []byte(out))
		golden(t, tt.name+".stderr.golden", []byte(report))
		if !strings.Contains(out, "# comments survive in untouched documents") {
			t.Errorf("%s: the Service was not passed through verbatim", tt.name)
		}
		if !strings.Contains(out, "futureField: kept as written") {
			t.Errorf("%s: an unknown field was lost", tt.name)
		}
		// Injecting twice is the same as once.
		again, _ := transform(t, []byte(out), tt.mode)
		if again != out {
			t.Errorf("%s is not idempotent", tt.name)
		}
		// Uninject gives back the input (as objects; key order and
		// comments of rewritten documents aside).
		back, ureport := transform(t, []byte(out), ModeUninject)
		if diff := cmp.Diff(docs(t, string(in)), docs(t, back)); diff != "" {
			t.Errorf("uninject(%s) differs from the input (-want +got):\n%s", tt.name, diff)
		}
		if !strings.Contains(ureport, `deployment "nginx" uninjected`) {
			t.Errorf("uninject report: %q", ureport)
		}
	}
}

func TestManualDetails(t *testing.T) {
	in, _ := os.ReadFile("testdata/input.yaml")
	out, _ := transform(t, in, ModeManual)
	d := docs(t, out)[0]
	spec := d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	names := func(field string) []string {
		var n []string
		for _, c := range spec[field].([]any) {
			n = append(n, c.(map[string]any)["name"].(string))
		}
		return n
	}
	if got := names("containers"); !reflect.DeepEqual(got, []string{ProxyContainerName, "nginx"}) {
		t.Errorf("containers %v", got)
	}
	init := spec["initContainers"].([]any)[0].(map[string]any)
	args := strings.Join(toStrings(init["args"]), " ")
	for _, want := range []string{"proxy-init", "--proxy-uid=2102", "--inbound-ports-to-ignore=4191,9090", "--outbound-ports-to-ignore=25,587,4000-4100"} {
		if !strings.Contains(args, want) {
			t.Errorf("init args %q lack %q", args, want)
		}
	}
	vol := spec["volumes"].([]any)[0].(map[string]any)
	aud := vol["projected"].(map[string]any)["sources"].([]any)[0].(map[string]any)["serviceAccountToken"].(map[string]any)["audience"]
	if aud != TokenAudience {
		t.Errorf("token audience %v", aud)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}

func TestTransformErrors(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"bad skip port", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    metadata:
      annotations: {config.linkerd.io/skip-outbound-ports: "25,smtp"}
    spec: {containers: [{name: web, image: x}]}
`, `document 1: deployment "web": inject: annotation config.linkerd.io/skip-outbound-ports: "smtp"`},
		{"not yaml", "kind: [", "document 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Transform(strings.NewReader(tt.in), &out, &bytes.Buffer{}, ModeManual, testConfig)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParsePorts(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []PortRange
		err  bool
	}{
		{"", nil, false},
		{"25", []PortRange{{25, 25}}, false},
		{" 25 , 4000-4100", []PortRange{{25, 25}, {4000, 4100}}, false},
		{"0", nil, true},
		{"65536", nil, true},
		{"10-5", nil, true},
		{"a", nil, true},
		{"25,", nil, true},
		{"1-2-3", nil, true},
	} {
		got, err := ParsePorts(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParsePorts(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"25", "25,587", "4000-4100", " 1 - 2 ", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParsePorts(s)
		if err != nil {
			return
		}
		again, err := ParsePorts(FormatPorts(rs))
		if err != nil || !reflect.DeepEqual(again, rs) {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, rs, FormatPorts(rs), again, err)
		}
	})
}
