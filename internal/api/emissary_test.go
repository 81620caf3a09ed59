package api

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func decodeOne(t *testing.T, doc string) (Object, error) {
	t.Helper()
	objs, err := Decode(strings.NewReader(doc), "test.yaml")
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		t.Fatalf("Decode returned %d objects, want 1", len(objs))
	}
	return objs[0], nil
}

const facesRateLimitMapping = `
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name: face-mapping
  namespace: faces
spec:
  hostname: "*"
  prefix: /face/
  service: face.faces
  timeout_ms: 250
  retry_policy:
    retry_on: 5xx
    num_retries: 1
  labels:
    ambassador:
      - face-service-label-group:
        - generic_key:
            value: face-service
`

func TestDecodeFacesMapping(t *testing.T) {
	o, err := decodeOne(t, facesRateLimitMapping)
	if err != nil {
		t.Fatal(err)
	}
	m := o.(*Mapping)
	if m.Spec.Prefix != "/face/" || m.Spec.Service != "face.faces" || *m.Spec.TimeoutMS != 250 || m.Spec.Rewrite != nil {
		t.Errorf("unexpected spec: %+v", m.Spec)
	}
	g := m.Spec.Labels["ambassador"][0]["face-service-label-group"][0]
	if g.GenericKey == nil || g.GenericKey.Value != "face-service" || g.GenericKey.Key != "" {
		t.Errorf("generic_key = %+v", g.GenericKey)
	}
	if w := m.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() = %v, want none", w)
	}
}

func TestDecodeMappingFields(t *testing.T) {
	o, err := decodeOne(t, `
apiVersion: getambassador.io/v2
kind: Mapping
metadata: {name: m, namespace: ns}
spec:
  prefix: /api/
  service: http://api.other:8080
  rewrite: ""
  timeout_ms: 0
  ambassador_id: default
  add_request_headers:
    x-plain: hello
    x-obj: {value: v, append: false}
  remove_request_headers: x-drop
  remove_response_headers: [a, b]
  allow_upgrade: [websocket]
  cors: {origins: "http://a,http://b", max_age: "86400"}
`)
	if err != nil {
		t.Fatal(err)
	}
	s := o.(*Mapping).Spec
	if s.Rewrite == nil || *s.Rewrite != "" {
		t.Errorf("rewrite = %v, want pointer to empty", s.Rewrite)
	}
	if s.TimeoutMS == nil || *s.TimeoutMS != 0 {
		t.Errorf("timeout_ms = %v, want explicit 0", s.TimeoutMS)
	}
	if diff := cmp.Diff(AmbassadorID{"default"}, s.AmbassadorID); diff != "" {
		t.Errorf("ambassador_id: %s", diff)
	}
	if h := s.AddRequestHeaders["x-plain"]; h.Value != "hello" || !h.Appends() {
		t.Errorf("x-plain = %+v", h)
	}
	if h := s.AddRequestHeaders["x-obj"]; h.Value != "v" || h.Appends() {
		t.Errorf("x-obj = %+v", h)
	}
	if diff := cmp.Diff(StringOrList{"x-drop"}, s.RemoveRequestHeaders); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff(StringOrList{"a", "b"}, s.RemoveResponseHeaders); diff != "" {
		t.Error(diff)
	}
}

func TestDecodeEmissaryErrors(t *testing.T) {
	listener := func(spec string) string {
		return "apiVersion: getambassador.io/v3alpha1\nkind: Listener\nmetadata: {name: l, namespace: ns}\nspec:\n" + spec
	}
	mapping := func(spec string) string {
		return "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m, namespace: ns}\nspec:\n" + spec
	}
	host := func(spec string) string {
		return "apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: h, namespace: ns}\nspec:\n" + spec
	}
	for _, tc := range []struct {
		name, doc, path, reason string
	}{
		{"listener no port", listener("  protocol: HTTP\n  securityModel: XFP\n  hostBinding: {namespace: {from: ALL}}\n"), "spec.port", "required"},
		{"listener bad model", listener("  port: 8080\n  protocol: HTTP\n  securityModel: xfp\n  hostBinding: {namespace: {from: ALL}}\n"), "spec.securityModel", "unsupported value"},
		{"listener no model", listener("  port: 8080\n  protocol: HTTP\n  hostBinding: {namespace: {from: ALL}}\n"), "spec.securityModel", "required"},
		{"listener bad protocol", listener("  port: 8080\n  protocol: HTTP3\n  securityModel: XFP\n  hostBinding: {namespace: {from: ALL}}\n"), "spec.protocol", "unsupported"},
		{"listener no binding", listener("  port: 8080\n  protocol: HTTP\n  securityModel: XFP\n"), "spec.hostBinding", "required"},
		{"listener bad from", listener("  port: 8080\n  protocol: HTTP\n  securityModel: XFP\n  hostBinding: {namespace: {from: OTHER}}\n"), "spec.hostBinding.namespace.from", "SELF or ALL"},
		{"host bad action", host("  hostname: '*'\n  requestPolicy: {insecure: {action: redirect}}\n"), "spec.requestPolicy.insecure.action", "case-sensitive"},
		{"host bad glob", host("  hostname: 'a.*.com'\n"), "spec.hostname", "first or last"},
		{"mapping no prefix", mapping("  service: a\n"), "spec.prefix", "required"},
		{"mapping no service", mapping("  prefix: /a\n"), "spec.service", "required"},
		{"mapping bad service", mapping("  prefix: /a\n  service: ftp://a\n"), "spec.service", "scheme"},
		{"mapping bad port", mapping("  prefix: /a\n  service: a:99999\n"), "spec.service", "port"},
		{"mapping bad regex", mapping("  prefix: '/a('\n  prefix_regex: true\n  service: a\n"), "spec.prefix", "regular expression"},
		{"mapping relative prefix", mapping("  prefix: a\n  service: a\n"), "spec.prefix", "must start with '/'"},
		{"mapping negative timeout", mapping("  prefix: /a\n  service: a\n  timeout_ms: -1\n"), "spec.timeout_ms", "negative"},
		{"mapping weight", mapping("  prefix: /a\n  service: a\n  weight: 101\n"), "spec.weight", "between 0 and 100"},
		{"mapping retry_on", mapping("  prefix: /a\n  service: a\n  retry_policy: {retry_on: sometimes}\n"), "spec.retry_policy.retry_on", "unsupported"},
		{"mapping per_try no unit", mapping("  prefix: /a\n  service: a\n  retry_policy: {per_try_timeout: '10'}\n"), "spec.retry_policy.per_try_timeout", "unit"},
		{"mapping unknown field", mapping("  prefix: /a\n  service: a\n  prefixx: /b\n"), "spec.prefixx", "unknown field"},
		{"mapping header obj unknown", mapping("  prefix: /a\n  service: a\n  add_request_headers: {x: {value: v, apend: true}}\n"), "spec.add_request_headers[x]", "apend"},
		{"label unknown key", mapping("  prefix: /a\n  service: a\n  labels: {ambassador: [{g: [{generic_kee: {value: v}}]}]}\n"), "spec.labels.ambassador[0].g[0]", `unknown specifier "generic_kee"`},
		{"label unknown nested", mapping("  prefix: /a\n  service: a\n  labels: {ambassador: [{g: [{generic_key: {value: v, extra: 1}}]}]}\n"), "spec.labels.ambassador[0].g[0]", "extra"},
		{"label two keys", mapping("  prefix: /a\n  service: a\n  labels: {ambassador: [{g: [{generic_key: {value: v}, remote_address: {key: remote_address}}]}]}\n"), "spec.labels.ambassador[0].g[0]", "only one"},
		{"label header missing name", mapping("  prefix: /a\n  service: a\n  labels: {ambassador: [{g: [{request_headers: {key: k}}]}]}\n"), "spec.labels.ambassador[0].g[0].request_headers.header_name", "required"},
		{"rls v2", "apiVersion: getambassador.io/v3alpha1\nkind: RateLimitService\nmetadata: {name: r, namespace: ns}\nspec: {service: 'rls:8081', protocol_version: v2}\n", "spec.protocol_version", "set protocol_version: v3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeOne(t, tc.doc)
			var derrs DecodeErrors
			if !errors.As(err, &derrs) {
				t.Fatalf("Decode error = %v, want DecodeErrors", err)
			}
			for _, de := range derrs {
				if de.Path == tc.path && strings.Contains(de.Reason, tc.reason) {
					return
				}
			}
			t.Errorf("Decode errors = %v, want one at %q containing %q", err, tc.path, tc.reason)
		})
	}
}

// The Faces resilience workshop puts a null-valued key beside generic_key.
// Emissary reads only the generic_key; so do we, with a warning.
func TestLabelNullExtraAccepted(t *testing.T) {
	o, err := decodeOne(t, `
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: m, namespace: faces}
spec:
  prefix: /face/
  service: face
  labels:
    ambassador:
      - request_label_group:
        - x-emissary-test-allow: null
          generic_key:
            key: mykey
            value: myvalue
`)
	if err != nil {
		t.Fatal(err)
	}
	m := o.(*Mapping)
	sp := m.Spec.Labels["ambassador"][0]["request_label_group"][0]
	if sp.GenericKey == nil || sp.GenericKey.Key != "mykey" || sp.GenericKey.Value != "myvalue" {
		t.Errorf("generic_key = %+v", sp.GenericKey)
	}
	w := m.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], `"x-emissary-test-allow"`) || !strings.Contains(w[0], "spec.labels.ambassador[0].request_label_group[0]") {
		t.Errorf("Warnings() = %q", w)
	}
	// The ignored key survives a store round trip so the ingress can warn too.
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back Mapping
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m.Warnings(), back.Warnings()); diff != "" {
		t.Errorf("warnings after round trip (-want +got):\n%s", diff)
	}
}

func TestDecodeListenerHost(t *testing.T) {
	objs, err := Decode(strings.NewReader(`
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: http, namespace: weft}
spec:
  port: 8080
  protocol: HTTP
  securityModel: XFP
  hostBinding:
    namespace: {from: ALL}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: any, namespace: weft}
spec:
  hostname: "*"
  tlsSecret: {name: cert}
  requestPolicy:
    insecure: {action: Route, additionalPort: -1}
`), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := objs[0].(*Listener)
	if l.Spec.Port != 8080 || l.Spec.HostBinding.Namespace.From != "ALL" {
		t.Errorf("listener = %+v", l.Spec)
	}
	h := objs[1].(*Host)
	if !h.HasTLS() || h.InsecureAction() != "Route" {
		t.Errorf("host TLS=%v action=%q", h.HasTLS(), h.InsecureAction())
	}
	h.Spec.RequestPolicy = nil
	if h.InsecureAction() != "Redirect" {
		t.Errorf("default action with TLS = %q, want Redirect", h.InsecureAction())
	}
	h.Spec.TLSSecret = nil
	if h.InsecureAction() != "Route" {
		t.Errorf("default action without TLS = %q, want Route", h.InsecureAction())
	}
}

func TestParseMappingService(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ServiceAddr
		err  bool
	}{
		{in: "face", want: ServiceAddr{Host: "face"}},
		{in: "face.faces:8080", want: ServiceAddr{Host: "face.faces", Port: 8080}},
		{in: "https://face.faces.svc.cluster.local", want: ServiceAddr{Scheme: "https", Host: "face.faces.svc.cluster.local"}},
		{in: "127.0.0.1:9000", want: ServiceAddr{Host: "127.0.0.1", Port: 9000}},
		{in: "[::1]:80", want: ServiceAddr{Host: "::1", Port: 80}},
		{in: "face:0", err: true},
		{in: "face:http", err: true},
		{in: "face/path", err: true},
		{in: "http://", err: true},
		{in: "bad_-.x", err: true},
	} {
		got, err := ParseMappingService(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseMappingService(%q) error = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && got != tc.want {
			t.Errorf("ParseMappingService(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func FuzzDecodeMapping(f *testing.F) {
	f.Add([]byte(facesRateLimitMapping))
	f.Add([]byte("apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: /a, service: a, add_request_headers: {x: {value: v}}, labels: {d: [{g: [{x: null, generic_key: {value: v}}]}]}}\n"))
	f.Add([]byte("apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: '^/a.*$', prefix_regex: true, service: 'http://1.2.3.4:5'}\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		objs, err := Decode(strings.NewReader(string(doc)), "fuzz.yaml")
		if err != nil {
			return
		}
		for _, o := range objs {
			m, ok := o.(*Mapping)
			if !ok {
				continue
			}
			if m.Spec.Prefix == "" || m.Spec.Service == "" {
				t.Fatalf("accepted Mapping without prefix or service: %+v", m.Spec)
			}
			if _, err := ParseMappingService(m.Spec.Service); err != nil {
				t.Fatalf("accepted Mapping with bad service: %v", err)
			}
			// What was accepted must survive the store's JSON round trip.
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var back Mapping
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("round trip: %v\n%s", err, b)
			}
			if errs := validateMapping(&back); len(errs) > 0 {
				t.Fatalf("round-tripped Mapping no longer valid: %v\n%s", errs, b)
			}
		}
	})
}

func TestDecodeMappingCompatFields(t *testing.T) {
	o, err := decodeOne(t, `
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: m, namespace: ns}
spec:
  prefix: /old/
  service: https://new.example.com
  host_redirect: true
  prefix_redirect: /new/
  redirect_response_code: 308
  envoy_override: {per_filter_config: {x: 1}}
  error_response_overrides:
    - on_status_code: 404
      body: {text_format: "gone"}
  keepalive: {probes: 3}
`)
	if err != nil {
		t.Fatal(err)
	}
	s := o.(*Mapping).Spec
	if !s.HostRedirect || s.PrefixRedirect != "/new/" || *s.RedirectResponseCode != 308 || len(s.EnvoyOverride) == 0 || s.ErrorResponseOverrides[0].Body.TextFormat != "gone" {
		t.Errorf("spec = %+v", s)
	}
	_, err = decodeOne(t, `
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: m, namespace: ns}
spec: {prefix: /, service: x, host_redirect: true, redirect_response_code: 200}
`)
	if err == nil || !strings.Contains(err.Error(), "redirect_response_code") {
		t.Errorf("redirect_response_code 200: %v", err)
	}
}
