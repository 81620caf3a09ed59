package destination

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	svc := func(name, ns string, port uint32) target {
		return target{kind: targetService, name: name, namespace: ns, port: port}
	}
	ext := func(port uint32) target { return target{kind: targetExternal, port: port} }
	ip := func(s string) target {
		ap := netip.MustParseAddrPort(s)
		return target{kind: targetIP, ip: ap, port: uint32(ap.Port())}
	}
	tests := []struct {
		path, ns string
		want     target
	}{
		{"web", "emojivoto", svc("web", "emojivoto", 80)},
		{"web:8080", "emojivoto", svc("web", "emojivoto", 8080)},
		{"web", "", ext(80)},
		{"web.other", "emojivoto", svc("web", "other", 80)},
		{"web.other.svc", "", svc("web", "other", 80)},
		{"web.other.svc.cluster", "", svc("web", "other", 80)},
		{"web.other.svc.cluster.local", "", svc("web", "other", 80)},
		{"web.other.svc.cluster.local.:443", "", svc("web", "other", 443)},
		{"WEB.Other.SVC.Cluster.Local", "", svc("web", "other", 80)},
		{"web.other.svc.cluster.local.extra", "", ext(80)},
		{"pod-0.web.other.svc.cluster.local", "", ext(80)},
		{"www.example.com:443", "", ext(443)},
		{"10.1.2.3:4143", "", ip("10.1.2.3:4143")},
		{"10.1.2.3", "", ip("10.1.2.3:80")},
		{"[fd00::1]:4143", "", ip("[fd00::1]:4143")},
		{"[fd00::1]", "", ip("[fd00::1]:80")},
		{"fd00::1", "", ip("[fd00::1]:80")},
		{"[::ffff:10.1.2.3]:99", "", ip("10.1.2.3:99")},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			got, err := parseTarget(tc.path, tc.ns, DefaultClusterDomain)
			if err != nil {
				t.Fatalf("parseTarget(%q) error = %v", tc.path, err)
			}
			if got != tc.want {
				t.Errorf("parseTarget(%q) = %+v, want %+v", tc.path, got, tc.want)
			}
		})
	}
}

func TestParseTargetErrors(t *testing.T) {
	tests := map[string]string{
		"":                  "empty",
		":80":               "no host",
		"web:":              "port must be",
		"web:http":          "port must be",
		"web:0":             "port must be",
		"web:65536":         "port must be",
		"web..ns":           "empty DNS label",
		".web":              "empty DNS label",
		"a:b:c":             "too many colons",
		"[fd00::1":          "unclosed",
		"[fe80::1%eth0]:80": "zoned",
	}
	for path, want := range tests {
		t.Run(path, func(t *testing.T) {
			_, err := parseTarget(path, "ns", DefaultClusterDomain)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("parseTarget(%q) error = %v, want one containing %q", path, err, want)
			}
		})
	}
}

func TestParseContextToken(t *testing.T) {
	if got := parseContextToken(`{"ns":"faces","nodeName":"localhost","pod":"face-1"}`); got != (contextToken{NS: "faces", NodeName: "localhost", Pod: "face-1"}) {
		t.Errorf("parseContextToken() = %+v", got)
	}
	for _, bad := range []string{"", "faces", `{"ns": 3}`} {
		if got := parseContextToken(bad); got != (contextToken{}) {
			t.Errorf("parseContextToken(%q) = %+v, want zero", bad, got)
		}
	}
}

// FuzzParseTarget checks that any path either fails cleanly or yields a
// target whose canonical form parses back to the same target.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"web", "web:80", "web.ns", "web.ns.svc.cluster.local:8080", "10.0.0.1:4143", "[::1]:1", "fd00::1", "a..b", "x:y:z", "[", "]:"} {
		f.Add(s, "ns")
	}
	f.Fuzz(func(t *testing.T, path, ns string) {
		got, err := parseTarget(path, ns, DefaultClusterDomain)
		if err != nil {
			return
		}
		if got.port == 0 || got.port > 65535 {
			t.Fatalf("parseTarget(%q) port = %d", path, got.port)
		}
		var canon string
		switch got.kind {
		case targetService:
			if got.name == "" || got.namespace == "" {
				t.Fatalf("parseTarget(%q) = %+v: empty name or namespace", path, got)
			}
			if strings.ContainsAny(got.name, ".:") {
				t.Fatalf("parseTarget(%q) = %+v: name is not one DNS label", path, got)
			}
			if strings.ContainsAny(got.namespace, ".:") {
				return // a namespace from the token is taken as given
			}
			canon = got.fqn(DefaultClusterDomain) + ":" + strconv.FormatUint(uint64(got.port), 10)
		case targetIP:
			canon = got.ip.String()
		default:
			return
		}
		again, err := parseTarget(canon, "", DefaultClusterDomain)
		if err != nil || again != got {
			t.Fatalf("parseTarget(%q) = %+v, but its canonical form %q parses to %+v, %v", path, got, canon, again, err)
		}
	})
}
