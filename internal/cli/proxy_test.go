package cli

import (
	"strings"
	"testing"
)

// 'weft proxy' joins the mesh with an identity: without a token and
// anchors it refuses to start and says where they come from.
func TestProxyNeedsIdentity(t *testing.T) {
	t.Setenv("WEFT_PROXY_IDENTITY_TOKEN", "")
	t.Setenv("WEFT_PROXY_IDENTITY_TRUST_ANCHORS", "")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no anchors", nil, "$WEFT_PROXY_IDENTITY_TRUST_ANCHORS"},
		{"missing anchors file", []string{"--identity-trust-anchors-file", "/nonexistent/ca.crt"}, "/nonexistent/ca.crt"},
		{"bad trust domain", []string{"--identity-trust-domain", "Bad..Domain"}, "trust domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"proxy", "--namespace", "faces", "--outbound-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, tc.args...)
			code, _, errOut := runCLI(t, args...)
			if code == 0 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "--disable-identity") {
				t.Errorf("exit %d, stderr %q; want a failure naming %q and --disable-identity", code, errOut, tc.want)
			}
		})
	}
}

func TestProxyCoresFlag(t *testing.T) {
	code, _, errOut := runCLI(t, "proxy", "--namespace", "faces", "--disable-identity", "--cores", "-1",
		"--outbound-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	if code != 2 || !strings.Contains(errOut, "--cores -1") {
		t.Errorf("exit %d, stderr %q; want exit 2 naming --cores -1", code, errOut)
	}
}
