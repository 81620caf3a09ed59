package tlsid

import (
	"strings"
	"testing"
)

func TestDomainNames(t *testing.T) {
	tests := []struct {
		d            Domain
		ns, sa       string
		name, spiffe string
	}{
		{Domain{}, "faces", "smiley", "smiley.faces.serviceaccount.identity.weft.cluster.local", "spiffe://cluster.local/ns/faces/sa/smiley"},
		{DefaultDomain, "default", "default", "default.default.serviceaccount.identity.weft.cluster.local", "spiffe://cluster.local/ns/default/sa/default"},
		{Domain{ControlNamespace: "linkerd", TrustDomain: "example.org"}, "emojivoto", "web", "web.emojivoto.serviceaccount.identity.linkerd.example.org", "spiffe://example.org/ns/emojivoto/sa/web"},
	}
	for _, tt := range tests {
		if got := tt.d.Name(tt.ns, tt.sa); got != tt.name {
			t.Errorf("Name(%q, %q) = %q, want %q", tt.ns, tt.sa, got, tt.name)
		}
		if got := tt.d.SPIFFE(tt.ns, tt.sa).String(); got != tt.spiffe {
			t.Errorf("SPIFFE(%q, %q) = %q, want %q", tt.ns, tt.sa, got, tt.spiffe)
		}
		ns, sa, err := tt.d.Parse(tt.name)
		if err != nil || ns != tt.ns || sa != tt.sa {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q", tt.name, ns, sa, err, tt.ns, tt.sa)
		}
	}
}

func TestDomainParseRefuses(t *testing.T) {
	for _, name := range []string{
		"",
		"smiley.faces.serviceaccount.identity.linkerd.cluster.local", // another control namespace
		"smiley.faces.serviceaccount.identity.weft.example.org",      // another trust domain
		"faces.serviceaccount.identity.weft.cluster.local",           // no service account
		".faces.serviceaccount.identity.weft.cluster.local",
		"a.b.faces.serviceaccount.identity.weft.cluster.local", // dotted service account
		"*.faces.serviceaccount.identity.weft.cluster.local",
		"Smiley.faces.serviceaccount.identity.weft.cluster.local",
		"-x.faces.serviceaccount.identity.weft.cluster.local",
		strings.Repeat("a", 64) + ".faces.serviceaccount.identity.weft.cluster.local",
	} {
		if ns, sa, err := DefaultDomain.Parse(name); err == nil {
			t.Errorf("Parse(%q) = %q, %q; want an error", name, ns, sa)
		}
	}
}

func TestDomainValidate(t *testing.T) {
	for _, tt := range []struct {
		d  Domain
		ok bool
	}{
		{Domain{}, true},
		{Domain{TrustDomain: "example.org"}, true},
		{Domain{TrustDomain: "example..org"}, false},
		{Domain{TrustDomain: "Example.org"}, false},
		{Domain{ControlNamespace: "a.b"}, false},
	} {
		if err := tt.d.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v.Validate() = %v, want ok=%v", tt.d, err, tt.ok)
		}
	}
}

func FuzzDomainParse(f *testing.F) {
	f.Add("smiley.faces.serviceaccount.identity.weft.cluster.local")
	f.Add("a.b.c.serviceaccount.identity.weft.cluster.local")
	f.Add("")
	f.Fuzz(func(t *testing.T, name string) {
		ns, sa, err := DefaultDomain.Parse(name)
		if err != nil {
			return
		}
		// Whatever parses must build back to the same name.
		if got := DefaultDomain.Name(ns, sa); got != name {
			t.Fatalf("Parse(%q) = %q, %q, which names %q", name, ns, sa, got)
		}
	})
}
