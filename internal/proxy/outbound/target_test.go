package outbound

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/internal/proxy/discovery"
)

func TestAuthorityOf(t *testing.T) {
	tests := []struct {
		name, raw, tunnel, want string
	}{
		{"absolute form", "GET http://smiley/center/ HTTP/1.1\r\nHost: other\r\n\r\n", "", "smiley"},
		{"absolute form with port", "GET http://smiley.faces:8080/ HTTP/1.1\r\n\r\n", "", "smiley.faces:8080"},
		{"origin form uses Host", "GET /x HTTP/1.1\r\nHost: smiley.faces\r\n\r\n", "", "smiley.faces"},
		{"tunnel target wins", "GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n", "smiley.faces:80", "smiley.faces:80"},
		{"connect", "CONNECT smiley.faces:443 HTTP/1.1\r\nHost: smiley.faces:443\r\n\r\n", "", "smiley.faces:443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tt.raw)))
			if err != nil {
				t.Fatal(err)
			}
			if tt.tunnel != "" {
				r = r.WithContext(context.WithValue(r.Context(), tunnelKey{}, tt.tunnel))
			}
			if got := authorityOf(r); got != tt.want {
				t.Errorf("authorityOf = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzRequestTarget feeds arbitrary request heads through the parsing the
// outbound side does (request line and Host, then the authority): it must
// never panic, an absolute-form target must win over Host, and a target the
// proxy accepts must give a dialable host:port.
func FuzzRequestTarget(f *testing.F) {
	for _, s := range []string{
		"GET http://smiley/center/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT smiley.faces:80 HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"GET http://a:b:c/ HTTP/1.1\r\n\r\n",
		"GET http://%31.2/ HTTP/1.0\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		a := authorityOf(r)
		if r.URL.Host != "" && a != r.URL.Host {
			t.Fatalf("authorityOf = %q, want the absolute-form host %q", a, r.URL.Host)
		}
		tg, err := discovery.ParseTarget(a, "ns")
		if err != nil {
			return
		}
		if _, err := discovery.ParseTarget(tg.Addr(), "ns"); err != nil {
			t.Fatalf("accepted %q but its address %q is refused: %v", a, tg.Addr(), err)
		}
	})
}
