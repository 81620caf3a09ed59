package tap

import (
	"maps"
	"net/netip"
	"strings"
	"testing"

	netpb "github.com/linkerd/linkerd2-proxy-api/go/net"
	tappb "github.com/linkerd/linkerd2-proxy-api/go/tap"
	"google.golang.org/protobuf/proto"
)

type M = tappb.ObserveRequest_Match

func all(ms ...*M) *M {
	return &M{Match: &tappb.ObserveRequest_Match_All{All: &tappb.ObserveRequest_Match_Seq{Matches: ms}}}
}
func anyOf(ms ...*M) *M {
	return &M{Match: &tappb.ObserveRequest_Match_Any{Any: &tappb.ObserveRequest_Match_Seq{Matches: ms}}}
}
func not(m *M) *M { return &M{Match: &tappb.ObserveRequest_Match_Not{Not: m}} }
func httpM(h *tappb.ObserveRequest_Match_Http) *M {
	return &M{Match: &tappb.ObserveRequest_Match_Http_{Http: h}}
}
func method(m string) *M {
	return httpM(&tappb.ObserveRequest_Match_Http{Match: &tappb.ObserveRequest_Match_Http_Method{Method: methodPB(m)}})
}
func scheme(s string) *M {
	return httpM(&tappb.ObserveRequest_Match_Http{Match: &tappb.ObserveRequest_Match_Http_Scheme{Scheme: schemePB(s)}})
}
func pathPrefix(p string) *M {
	return httpM(&tappb.ObserveRequest_Match_Http{Match: &tappb.ObserveRequest_Match_Http_Path{Path: &tappb.ObserveRequest_Match_Http_StringMatch{
		Match: &tappb.ObserveRequest_Match_Http_StringMatch_Prefix{Prefix: p}}}})
}
func authority(a string) *M {
	return httpM(&tappb.ObserveRequest_Match_Http{Match: &tappb.ObserveRequest_Match_Http_Authority{Authority: &tappb.ObserveRequest_Match_Http_StringMatch{
		Match: &tappb.ObserveRequest_Match_Http_StringMatch_Exact{Exact: a}}}})
}
func label(k, v string) *M {
	return &M{Match: &tappb.ObserveRequest_Match_DestinationLabel{DestinationLabel: &tappb.ObserveRequest_Match_Label{Key: k, Value: v}}}
}
func srcNet(ip string, bits uint32) *M {
	return &M{Match: &tappb.ObserveRequest_Match_Source{Source: &tappb.ObserveRequest_Match_Tcp{
		Match: &tappb.ObserveRequest_Match_Tcp_Netmask_{Netmask: &tappb.ObserveRequest_Match_Tcp_Netmask{
			Ip: tcpPB(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)).GetIp(), Mask: bits}}}}}
}
func dstPorts(lo, hi uint32) *M {
	return &M{Match: &tappb.ObserveRequest_Match_Destination{Destination: &tappb.ObserveRequest_Match_Tcp{
		Match: &tappb.ObserveRequest_Match_Tcp_Ports{Ports: &tappb.ObserveRequest_Match_Tcp_PortRange{Min: lo, Max: hi}}}}}
}

func TestMatch(t *testing.T) {
	r := &reqInfo{
		src:       netip.MustParseAddrPort("10.1.2.3:40000"),
		dst:       netip.MustParseAddrPort("127.0.0.1:4143"),
		dstLabels: map[string]string{"deployment": "smiley", "namespace": "faces"},
		method:    "GET", scheme: "http", authority: "smiley:80", path: "/smiley/center",
	}
	for _, tc := range []struct {
		name string
		m    *M
		want bool
	}{
		{"nil taps all", nil, true},
		{"empty all", all(), true},
		{"empty any", anyOf(), false},
		{"method", method("GET"), true},
		{"other method", method("POST"), false},
		{"unregistered method", method("PURGE"), false},
		{"scheme", scheme("http"), true},
		{"scheme https", scheme("https"), false},
		{"path prefix", pathPrefix("/smiley"), true},
		{"path other", pathPrefix("/color"), false},
		{"authority exact", authority("smiley:80"), true},
		{"authority not prefix", authority("smiley"), false},
		{"label", label("deployment", "smiley"), true},
		{"label other value", label("deployment", "face"), false},
		{"label missing", label("pod", "x"), false},
		{"source netmask", srcNet("10.1.0.0", 16), true},
		{"source netmask miss", srcNet("10.2.0.0", 16), false},
		{"source /0", srcNet("0.0.0.0", 0), true},
		{"dst port range", dstPorts(4000, 4200), true},
		{"dst single port", dstPorts(4143, 0), true},
		{"dst other port", dstPorts(0, 80), false},
		{"all of", all(method("GET"), pathPrefix("/smiley"), label("namespace", "faces")), true},
		{"all fails on one", all(method("GET"), pathPrefix("/color")), false},
		{"any of", anyOf(method("POST"), pathPrefix("/smiley")), true},
		{"not", not(method("POST")), true},
		{"not not", not(not(method("POST"))), false},
		{"route label never", &M{Match: &tappb.ObserveRequest_Match_RouteLabel{RouteLabel: &tappb.ObserveRequest_Match_Label{Key: "route", Value: "x"}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := compile(tc.m)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			if got := m(r); got != tc.want {
				t.Errorf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompileRefusesMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, wantErr string
		m             *M
	}{
		{"empty oneof", "match: empty match", &M{}},
		{"nil in seq", "match.all[1]: empty match", all(method("GET"), nil)},
		{"empty not", "match.not: empty match", not(nil)},
		{"long mask", "longer than", srcNet("10.0.0.0", 33)},
		{"inverted ports", "bad range", dstPorts(90, 80)},
		{"port too big", "bad range", dstPorts(0, 70000)},
		{"empty string match", "empty string match", httpM(&tappb.ObserveRequest_Match_Http{Match: &tappb.ObserveRequest_Match_Http_Path{Path: &tappb.ObserveRequest_Match_Http_StringMatch{}}})},
		{"empty http", "empty http match", httpM(&tappb.ObserveRequest_Match_Http{})},
		{"empty label key", "empty key", label("", "x")},
		{"netmask without ip", "missing ip", &M{Match: &tappb.ObserveRequest_Match_Source{Source: &tappb.ObserveRequest_Match_Tcp{
			Match: &tappb.ObserveRequest_Match_Tcp_Netmask_{Netmask: &tappb.ObserveRequest_Match_Tcp_Netmask{}}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compile(tc.m)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("compile error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestIPv6RoundTrip(t *testing.T) {
	a := netip.MustParseAddrPort("[2001:db8::1:2]:8080")
	pb := tcpPB(a)
	got, ok := pbIP(pb.GetIp())
	if !ok || got != a.Addr() || pb.GetPort() != 8080 {
		t.Fatalf("round trip of %s = %v %v port %d", a, got, ok, pb.GetPort())
	}
	if _, ok := pb.GetIp().GetIp().(*netpb.IPAddress_Ipv6); !ok {
		t.Fatalf("want an IPv6 address, got %v", pb.GetIp())
	}
}

func TestParseLabels(t *testing.T) {
	for _, tc := range []struct {
		in    string
		strip bool
		want  map[string]string
		bad   bool
	}{
		{in: "", want: map[string]string{}},
		{in: `dst_deployment="smiley",dst_pod="smiley-1"`, strip: true, want: map[string]string{"deployment": "smiley", "pod": "smiley-1"}},
		{in: `tls="true",server_id="a.b"`, want: map[string]string{"tls": "true", "server_id": "a.b"}},
		{in: `a="x\"y\\z\nw"`, want: map[string]string{"a": "x\"y\\z\nw"}},
		{in: `a="b"c`, bad: true},
		{in: `a=b`, bad: true},
		{in: `a="b`, bad: true},
		{in: `="b"`, bad: true},
	} {
		got := map[string]string{}
		err := parseLabels(tc.in, got, tc.strip)
		if tc.bad {
			if err == nil {
				t.Errorf("parseLabels(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("parseLabels(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseLabels(f *testing.F) {
	f.Add(`dst_deployment="smiley",dst_pod="smiley-1"`)
	f.Add(`a="x\"y\\z\nw"`)
	f.Add(`a="`)
	f.Fuzz(func(t *testing.T, s string) {
		m := map[string]string{}
		if err := parseLabels(s, m, true); err != nil {
			return
		}
		// What parses re-renders to something that parses to the same.
		var b strings.Builder
		for k, v := range m {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(k + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v) + `"`)
		}
		again := map[string]string{}
		if err := parseLabels(b.String(), again, false); err != nil || !maps.Equal(m, again) {
			t.Fatalf("re-rendered %q: %v %v, want %v", b.String(), again, err, m)
		}
	})
}

// FuzzCompile feeds arbitrary ObserveRequest bytes: compiling and
// evaluating must never panic.
func FuzzCompile(f *testing.F) {
	for _, m := range []*M{all(method("GET"), pathPrefix("/x")), anyOf(not(srcNet("10.0.0.0", 8)), dstPorts(1, 2)), label("a", "b")} {
		b, _ := proto.Marshal(&tappb.ObserveRequest{Match: m, Limit: 3})
		f.Add(b)
	}
	r := &reqInfo{src: netip.MustParseAddrPort("[::1]:1"), method: "GET", path: "/"}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req tappb.ObserveRequest
		if proto.Unmarshal(b, &req) != nil {
			return
		}
		m, err := compile(req.GetMatch())
		if err != nil {
			return
		}
		m(r)
	})
}
