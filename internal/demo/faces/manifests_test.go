package faces

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/internal/api"
)

func splitDocs(b []byte) [][]byte {
	var out [][]byte
	for _, d := range bytes.Split(b, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
	return out
}

func TestManifests(t *testing.T) {
	type id struct{ apiVersion, kind, name string }
	var got []id
	deps := map[string]appsv1.Deployment{}
	svcs := map[string]corev1.Service{}
	emissary := map[string]map[string]any{}
	for i, doc := range splitDocs(Manifests()) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		got = append(got, id{head.APIVersion, head.Kind, head.Metadata.Name})
		if head.Kind != "Namespace" && head.Metadata.Namespace != "faces" {
			t.Errorf("doc %d (%s %s) in namespace %q, want faces", i, head.Kind, head.Metadata.Name, head.Metadata.Namespace)
		}
		switch head.Kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict(doc, &d); err != nil {
				t.Fatalf("doc %d: %v", i, err)
			}
			deps[d.Name] = d
		case "Service":
			var s corev1.Service
			if err := yaml.UnmarshalStrict(doc, &s); err != nil {
				t.Fatalf("doc %d: %v", i, err)
			}
			svcs[s.Name] = s
		case "Listener", "Host", "Mapping":
			var m map[string]any
			if err := yaml.Unmarshal(doc, &m); err != nil {
				t.Fatalf("doc %d: %v", i, err)
			}
			emissary[head.Kind+"/"+head.Metadata.Name] = m["spec"].(map[string]any)
		}
	}
	want := []id{{"v1", "Namespace", "faces"}}
	for _, n := range []string{"faces-gui", "face", "smiley", "color"} {
		want = append(want, id{"v1", "Service", n}, id{"apps/v1", "Deployment", n})
	}
	const emissaryAPI = "getambassador.io/v3alpha1"
	want = append(want, id{emissaryAPI, "Listener", "http-listener"}, id{emissaryAPI, "Listener", "https-listener"}, id{emissaryAPI, "Host", "wildcard-host"})
	for _, n := range []string{"faces-gui", "face", "smiley", "color"} {
		want = append(want, id{emissaryAPI, "Mapping", n + "-mapping"})
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(id{})); diff != "" {
		t.Fatalf("documents (-want +got):\n%s", diff)
	}

	buckets := "0,5,10,15,20,50,200,500,1500"
	wantEnv := map[string]map[string]string{
		"faces-gui": {"FACES_SERVICE": "gui", "USER_HEADER_NAME": "X-Faces-User"},
		"face":      {"FACES_SERVICE": "face", "USER_HEADER_NAME": "X-Faces-User", "ERROR_FRACTION": "20"},
		"smiley":    {"FACES_SERVICE": "smiley", "USER_HEADER_NAME": "X-Faces-User", "ERROR_FRACTION": "20", "DELAY_BUCKETS": buckets},
		"color":     {"FACES_SERVICE": "color", "USER_HEADER_NAME": "X-Faces-User", "ERROR_FRACTION": "20", "DELAY_BUCKETS": buckets},
	}
	for name, env := range wantEnv {
		d, s := deps[name], svcs[name]
		sel := map[string]string{"service": name}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || !cmp.Equal(d.Spec.Selector.MatchLabels, sel) || !cmp.Equal(d.Spec.Template.Labels, sel) {
			t.Errorf("deployment %s: replicas/selector/labels wrong: %+v", name, d.Spec)
		}
		if len(d.Spec.Template.Spec.Containers) != 1 {
			t.Fatalf("deployment %s: %d containers", name, len(d.Spec.Template.Spec.Containers))
		}
		c := d.Spec.Template.Spec.Containers[0]
		image := "ghcr.io/buoyantio/faces-workload:1.4.1"
		if name == "faces-gui" {
			image = "ghcr.io/buoyantio/faces-gui:1.4.1"
		}
		if c.Image != image {
			t.Errorf("deployment %s: image %q, want %q", name, c.Image, image)
		}
		if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8000 || c.Ports[0].Name != "http" {
			t.Errorf("deployment %s: ports %+v", name, c.Ports)
		}
		gotEnv := map[string]string{}
		for _, e := range c.Env {
			gotEnv[e.Name] = e.Value
		}
		if diff := cmp.Diff(env, gotEnv); diff != "" {
			t.Errorf("deployment %s env (-want +got):\n%s", name, diff)
		}
		if !cmp.Equal(s.Spec.Selector, sel) || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != 80 || s.Spec.Ports[0].Name != "http" || s.Spec.Ports[0].TargetPort.IntValue() != 8000 {
			t.Errorf("service %s: %+v", name, s.Spec)
		}
		// The env must configure a working server of that role.
		cfg := ConfigFromEnv(Role(env["FACES_SERVICE"]), envMap(env))
		if _, err := New(cfg, Options{Logger: quietLogger()}); err != nil {
			t.Errorf("deployment %s: env does not make a server: %v", name, err)
		}
	}

	listener := emissary["Listener/http-listener"]
	if listener["port"] != float64(8080) || listener["protocol"] != "HTTP" || listener["securityModel"] != "XFP" {
		t.Errorf("http listener %v", listener)
	}
	if l := emissary["Listener/https-listener"]; l["port"] != float64(8443) || l["protocol"] != "HTTPS" {
		t.Errorf("https listener %v", l)
	}
	if h := emissary["Host/wildcard-host"]; h["hostname"] != "*" {
		t.Errorf("host %v", h)
	}
	mappings := map[string][3]any{ // prefix, service, rewrite-or-timeout
		"faces-gui-mapping": {"/faces/", "faces-gui.faces", nil},
		"face-mapping":      {"/face/", "face.faces", float64(0)},
		"smiley-mapping":    {"/smiley/", "smiley.faces", float64(0)},
		"color-mapping":     {"/color/", "color.faces", float64(0)},
	}
	for name, w := range mappings {
		m := emissary["Mapping/"+name]
		if m["prefix"] != w[0] || m["service"] != w[1] || m["timeout_ms"] != w[2] {
			t.Errorf("mapping %s = %v, want prefix %v service %v timeout_ms %v", name, m, w[0], w[1], w[2])
		}
	}
	if r := emissary["Mapping/faces-gui-mapping"]["rewrite"]; r != "/" {
		t.Errorf("faces-gui mapping rewrite = %v, want /", r)
	}
}

// TestManifestsDecode runs the manifests through Weft's strict decoder.
// The Emissary kinds are registered by the ingress package's api types; until
// they are, only the Kubernetes documents are checked.
func TestManifestsDecode(t *testing.T) {
	input := Manifests()
	want := 16
	if api.Lookup(api.Kind{Group: "getambassador.io", Kind: "Mapping"}) == nil {
		var keep []string
		for _, d := range splitDocs(input) {
			if !bytes.Contains(d, []byte("getambassador.io")) {
				keep = append(keep, string(d))
			}
		}
		input = []byte(strings.Join(keep, "\n---\n"))
		want = 9
		t.Log("Emissary kinds not registered yet: decoding the Kubernetes documents only")
	}
	objs, err := api.Decode(bytes.NewReader(input), "faces.Manifests()")
	if err != nil {
		t.Fatalf("api.Decode: %v", err)
	}
	if len(objs) != want {
		t.Errorf("decoded %d objects, want %d", len(objs), want)
	}
}
