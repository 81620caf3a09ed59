package promtext

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParse(t *testing.T) {
	in := `# HELP request_total Total count of HTTP requests.
# TYPE request_total counter
request_total{direction="inbound",authority="web:80",namespace="faces"} 12

response_latency_ms_bucket{le="+Inf" , status_code="200",} 3 1700000000000
tcp_open_connections 2.5
odd{v="a\"b\\c\nd"} -Inf
nan_metric NaN
`
	got, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("got %d samples, want 5: %+v", len(got), got)
	}
	want := []Sample{
		{Name: "request_total", Labels: map[string]string{"direction": "inbound", "authority": "web:80", "namespace": "faces"}, Value: 12},
		{Name: "response_latency_ms_bucket", Labels: map[string]string{"le": "+Inf", "status_code": "200"}, Value: 3},
		{Name: "tcp_open_connections", Value: 2.5},
		{Name: "odd", Labels: map[string]string{"v": "a\"b\\c\nd"}, Value: math.Inf(-1)},
	}
	if diff := cmp.Diff(want, got[:4], cmpopts.IgnoreUnexported(Sample{})); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	if !math.IsNaN(got[4].Value) {
		t.Errorf("nan_metric = %v, want NaN", got[4].Value)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"{a=\"b\"} 1", "line 1: expected a metric name"},
		{"ok 1\nx{a=\"b} 1", "line 2: x: label a: unterminated value"},
		{"x{a=b} 1", `label a: expected ="`},
		{"x{a=\"b\" c=\"d\"} 1", "expected , or }"},
		{"x 1 2 3", "expected a value and an optional timestamp"},
		{"x abc", `bad value "abc"`},
		{"x 1 1.5", "bad timestamp"},
		{"x{a=\"1\",a=\"2\"} 1", "label a repeated"},
		{"x{a=\"\\q\"} 1", `bad escape \q`},
		{"x{}1", "expected a space before the value"},
	} {
		_, err := Parse(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestKey(t *testing.T) {
	a := Sample{Name: "x", Labels: map[string]string{"b": "2", "a": "1"}}
	b := Sample{Name: "x", Labels: map[string]string{"a": "1", "b": "2"}}
	c := Sample{Name: "x", Labels: map[string]string{"a": "1,b=\"2"}}
	if a.Key() != b.Key() {
		t.Errorf("keys differ for the same series: %s vs %s", a.Key(), b.Key())
	}
	if a.Key() == c.Key() {
		t.Errorf("distinct series share key %s", a.Key())
	}
	if got := (Sample{Name: "y"}).Key(); got != "y" {
		t.Errorf("Key() = %q, want y", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("request_total{a=\"b\"} 1\n")
	f.Add("# HELP x y\nx 1 123\n")
	f.Add("x{a=\"\\\"\\n\\\\\",} +Inf\n")
	f.Add("x{le=\"0.5\"} NaN")
	f.Fuzz(func(t *testing.T, in string) {
		samples, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		// Whatever parses must survive a render and re-parse unchanged.
		var b strings.Builder
		for _, s := range samples {
			b.WriteString(s.Name)
			if len(s.Labels) > 0 {
				b.WriteByte('{')
				first := true
				for k, v := range s.Labels {
					if !first {
						b.WriteByte(',')
					}
					first = false
					b.WriteString(k + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v) + `"`)
				}
				b.WriteByte('}')
			}
			b.WriteString(" 0\n")
		}
		again, err := Parse(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", b.String(), err)
		}
		if len(again) != len(samples) {
			t.Fatalf("re-parse gave %d samples, want %d", len(again), len(samples))
		}
		for i := range samples {
			if samples[i].Name != again[i].Name || !cmp.Equal(samples[i].Labels, again[i].Labels, cmpopts.EquateEmpty()) {
				t.Fatalf("sample %d changed: %+v -> %+v", i, samples[i], again[i])
			}
		}
	})
}
