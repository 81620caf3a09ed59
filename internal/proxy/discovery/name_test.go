package discovery

import (
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		authority string
		want      Target
		err       string
	}{
		{"smiley", Target{Host: "smiley", Port: 80, Path: "smiley.faces.svc.cluster.local:80"}, ""},
		{"smiley:8080", Target{Host: "smiley", Port: 8080, Path: "smiley.faces.svc.cluster.local:8080"}, ""},
		{"smiley.other", Target{Host: "smiley.other", Port: 80, Path: "smiley.other.svc.cluster.local:80"}, ""},
		{"Smiley.Faces.", Target{Host: "smiley.faces", Port: 80, Path: "smiley.faces.svc.cluster.local:80"}, ""},
		{"smiley.faces.svc", Target{Host: "smiley.faces.svc", Port: 80, Path: "smiley.faces.svc.cluster.local:80"}, ""},
		{"smiley.faces.svc.cluster.local:81", Target{Host: "smiley.faces.svc.cluster.local", Port: 81, Path: "smiley.faces.svc.cluster.local:81"}, ""},
		{"www.example.com", Target{Host: "www.example.com", Port: 80}, ""},
		{"127.0.0.1:9000", Target{Host: "127.0.0.1", Port: 9000}, ""},
		{"[::1]:9000", Target{Host: "::1", Port: 9000}, ""},
		{"[::1]", Target{Host: "::1", Port: 80}, ""},
		{"localhost:3000", Target{Host: "localhost", Port: 3000}, ""},
		{"", Target{}, "empty authority"},
		{"smiley:http", Target{}, "port must be a number"},
		{"smiley:0", Target{}, "port must be a number"},
		{"smiley:70000", Target{}, "port must be a number"},
		{":80", Target{}, "has no host"},
		{"a..b", Target{}, "not a valid DNS name"},
		{"sm iley", Target{}, "not a valid DNS name"},
		{"[::1:80", Target{}, "unclosed"},
		{"[zz]:80", Target{}, "bad IPv6"},
	}
	for _, tt := range tests {
		t.Run(tt.authority, func(t *testing.T) {
			got, err := ParseTarget(tt.authority, "faces")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseTarget(%q) error = %v, want one containing %q", tt.authority, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTarget(%q): %v", tt.authority, err)
			}
			if got != tt.want {
				t.Errorf("ParseTarget(%q) = %+v, want %+v", tt.authority, got, tt.want)
			}
		})
	}
}

// FuzzParseTarget checks that ParseTarget never panics and that what it
// accepts is consistent: a Path is a cluster-local name with the port, and
// Addr parses back to the same target.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"smiley", "smiley.faces:8080", "smiley.faces.svc.cluster.local", "[::1]:80", "10.0.0.1", "a:b:c", "[", "x.y.z.w"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, authority string) {
		tg, err := ParseTarget(authority, "ns")
		if err != nil {
			return
		}
		if tg.Port == 0 || tg.Host == "" {
			t.Fatalf("ParseTarget(%q) = %+v: empty host or port", authority, tg)
		}
		if tg.Path != "" && !strings.HasSuffix(strings.TrimSuffix(tg.Path, ":"+strings.Split(tg.Path, ":")[1]), "."+ClusterDomain) {
			t.Fatalf("ParseTarget(%q).Path = %q, not cluster-local", authority, tg.Path)
		}
		again, err := ParseTarget(tg.Addr(), "ns")
		if err != nil {
			t.Fatalf("ParseTarget(%q) ok but its Addr %q fails: %v", authority, tg.Addr(), err)
		}
		if again != tg {
			t.Fatalf("ParseTarget(%q) = %+v, but of its Addr %q = %+v", authority, tg, tg.Addr(), again)
		}
	})
}
