package tap

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	httppb "github.com/linkerd/linkerd2-proxy-api/go/http_types"
	netpb "github.com/linkerd/linkerd2-proxy-api/go/net"
	tappb "github.com/linkerd/linkerd2-proxy-api/go/tap"
)

// reqInfo is what matches look at; built only when someone taps.
type reqInfo struct {
	src, dst  netip.AddrPort
	dstLabels map[string]string
	method    string
	scheme    string
	authority string
	path      string
}

// matcher decides whether a stream taps a request.
type matcher func(*reqInfo) bool

func matchAll(*reqInfo) bool { return true }

// compile turns an ObserveRequest match into a matcher. A nil match taps
// everything. Malformed matches (an empty oneof, a netmask longer than the
// address, an inverted port range) are refused: a client would otherwise
// silently tap nothing or everything.
func compile(m *tappb.ObserveRequest_Match) (matcher, error) {
	if m == nil {
		return matchAll, nil
	}
	return compileOne(m, "match")
}

func compileOne(m *tappb.ObserveRequest_Match, at string) (matcher, error) {
	if m == nil {
		return nil, fmt.Errorf("%s: empty match", at)
	}
	switch v := m.GetMatch().(type) {
	case *tappb.ObserveRequest_Match_All:
		ms, err := compileSeq(v.All, at+".all")
		if err != nil {
			return nil, err
		}
		return func(r *reqInfo) bool {
			for _, m := range ms {
				if !m(r) {
					return false
				}
			}
			return true
		}, nil
	case *tappb.ObserveRequest_Match_Any:
		ms, err := compileSeq(v.Any, at+".any")
		if err != nil {
			return nil, err
		}
		return func(r *reqInfo) bool {
			for _, m := range ms {
				if m(r) {
					return true
				}
			}
			return false
		}, nil
	case *tappb.ObserveRequest_Match_Not:
		inner, err := compileOne(v.Not, at+".not")
		if err != nil {
			return nil, err
		}
		return func(r *reqInfo) bool { return !inner(r) }, nil
	case *tappb.ObserveRequest_Match_Source:
		f, err := compileTCP(v.Source, at+".source")
		if err != nil {
			return nil, err
		}
		return func(r *reqInfo) bool { return f(r.src) }, nil
	case *tappb.ObserveRequest_Match_Destination:
		f, err := compileTCP(v.Destination, at+".destination")
		if err != nil {
			return nil, err
		}
		return func(r *reqInfo) bool { return f(r.dst) }, nil
	case *tappb.ObserveRequest_Match_DestinationLabel:
		k, val := v.DestinationLabel.GetKey(), v.DestinationLabel.GetValue()
		if k == "" {
			return nil, fmt.Errorf("%s.destination_label: empty key", at)
		}
		return func(r *reqInfo) bool {
			got, ok := r.dstLabels[k]
			return ok && got == val
		}, nil
	case *tappb.ObserveRequest_Match_RouteLabel:
		// The proxy attaches no route labels to tap events yet, so no
		// request carries the label.
		return func(*reqInfo) bool { return false }, nil
	case *tappb.ObserveRequest_Match_Http_:
		return compileHTTP(v.Http, at+".http")
	default:
		return nil, fmt.Errorf("%s: empty match", at)
	}
}

func compileSeq(s *tappb.ObserveRequest_Match_Seq, at string) ([]matcher, error) {
	ms := make([]matcher, 0, len(s.GetMatches()))
	for i, m := range s.GetMatches() {
		c, err := compileOne(m, fmt.Sprintf("%s[%d]", at, i))
		if err != nil {
			return nil, err
		}
		ms = append(ms, c)
	}
	return ms, nil
}

func compileTCP(m *tappb.ObserveRequest_Match_Tcp, at string) (func(netip.AddrPort) bool, error) {
	switch v := m.GetMatch().(type) {
	case *tappb.ObserveRequest_Match_Tcp_Netmask_:
		ip, ok := pbIP(v.Netmask.GetIp())
		if !ok {
			return nil, fmt.Errorf("%s.netmask: missing ip", at)
		}
		bits := int(v.Netmask.GetMask())
		if bits > ip.BitLen() {
			return nil, fmt.Errorf("%s.netmask: mask /%d is longer than %s's %d bits", at, bits, ip, ip.BitLen())
		}
		prefix := netip.PrefixFrom(ip, bits).Masked()
		return func(a netip.AddrPort) bool { return a.IsValid() && prefix.Contains(a.Addr().Unmap()) }, nil
	case *tappb.ObserveRequest_Match_Tcp_Ports:
		lo, hi := v.Ports.GetMin(), v.Ports.GetMax()
		// One bound alone names a single port.
		if hi == 0 {
			hi = lo
		}
		if lo == 0 {
			lo = hi
		}
		if hi > 65535 || lo > hi {
			return nil, fmt.Errorf("%s.ports: bad range %d-%d (ports are 1-65535, min <= max)", at, v.Ports.GetMin(), v.Ports.GetMax())
		}
		return func(a netip.AddrPort) bool {
			p := uint32(a.Port())
			return a.IsValid() && p >= lo && p <= hi
		}, nil
	default:
		return nil, fmt.Errorf("%s: empty tcp match", at)
	}
}

func compileHTTP(m *tappb.ObserveRequest_Match_Http, at string) (matcher, error) {
	switch v := m.GetMatch().(type) {
	case *tappb.ObserveRequest_Match_Http_Scheme:
		want := schemeString(v.Scheme)
		if want == "" {
			return nil, fmt.Errorf("%s.scheme: empty", at)
		}
		return func(r *reqInfo) bool { return strings.EqualFold(r.scheme, want) }, nil
	case *tappb.ObserveRequest_Match_Http_Method:
		want := methodString(v.Method)
		if want == "" {
			return nil, fmt.Errorf("%s.method: empty", at)
		}
		return func(r *reqInfo) bool { return r.method == want }, nil
	case *tappb.ObserveRequest_Match_Http_Authority:
		f, err := compileString(v.Authority, at+".authority")
		if err != nil {
			return nil, err
		}
		return func(r *reqInfo) bool { return f(r.authority) }, nil
	case *tappb.ObserveRequest_Match_Http_Path:
		f, err := compileString(v.Path, at+".path")
		if err != nil {
			return nil, err
		}
		return func(r *reqInfo) bool { return f(r.path) }, nil
	default:
		return nil, fmt.Errorf("%s: empty http match", at)
	}
}

func compileString(m *tappb.ObserveRequest_Match_Http_StringMatch, at string) (func(string) bool, error) {
	switch v := m.GetMatch().(type) {
	case *tappb.ObserveRequest_Match_Http_StringMatch_Exact:
		return func(s string) bool { return s == v.Exact }, nil
	case *tappb.ObserveRequest_Match_Http_StringMatch_Prefix:
		return func(s string) bool { return strings.HasPrefix(s, v.Prefix) }, nil
	default:
		return nil, errors.New(at + ": empty string match (exact or prefix)")
	}
}

func methodString(m *httppb.HttpMethod) string {
	switch v := m.GetType().(type) {
	case *httppb.HttpMethod_Registered_:
		return v.Registered.String()
	case *httppb.HttpMethod_Unregistered:
		return v.Unregistered
	}
	return ""
}

func schemeString(s *httppb.Scheme) string {
	switch v := s.GetType().(type) {
	case *httppb.Scheme_Registered_:
		return strings.ToLower(v.Registered.String())
	case *httppb.Scheme_Unregistered:
		return v.Unregistered
	}
	return ""
}

// methodPB is the wire form of an HTTP method.
func methodPB(m string) *httppb.HttpMethod {
	if v, ok := httppb.HttpMethod_Registered_value[m]; ok {
		return &httppb.HttpMethod{Type: &httppb.HttpMethod_Registered_{Registered: httppb.HttpMethod_Registered(v)}}
	}
	return &httppb.HttpMethod{Type: &httppb.HttpMethod_Unregistered{Unregistered: m}}
}

// schemePB is the wire form of a URL scheme.
func schemePB(s string) *httppb.Scheme {
	switch s {
	case "http":
		return &httppb.Scheme{Type: &httppb.Scheme_Registered_{Registered: httppb.Scheme_HTTP}}
	case "https":
		return &httppb.Scheme{Type: &httppb.Scheme_Registered_{Registered: httppb.Scheme_HTTPS}}
	}
	return &httppb.Scheme{Type: &httppb.Scheme_Unregistered{Unregistered: s}}
}

func pbIP(ip *netpb.IPAddress) (netip.Addr, bool) {
	switch v := ip.GetIp().(type) {
	case *netpb.IPAddress_Ipv4:
		x := v.Ipv4
		return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}), true
	case *netpb.IPAddress_Ipv6:
		var b [16]byte
		for i := range 8 {
			b[i] = byte(v.Ipv6.GetFirst() >> (56 - 8*i))
			b[8+i] = byte(v.Ipv6.GetLast() >> (56 - 8*i))
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// tcpPB is the wire form of an address; nil when a is not valid.
func tcpPB(a netip.AddrPort) *netpb.TcpAddress {
	if !a.IsValid() {
		return nil
	}
	ip := a.Addr().Unmap()
	var pip *netpb.IPAddress
	if ip.Is4() {
		b := ip.As4()
		pip = &netpb.IPAddress{Ip: &netpb.IPAddress_Ipv4{Ipv4: uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])}}
	} else {
		b := ip.As16()
		var first, last uint64
		for i := range 8 {
			first = first<<8 | uint64(b[i])
			last = last<<8 | uint64(b[8+i])
		}
		pip = &netpb.IPAddress{Ip: &netpb.IPAddress_Ipv6{Ipv6: &netpb.IPv6{First: first, Last: last}}}
	}
	return &netpb.TcpAddress{Ip: pip, Port: uint32(a.Port())}
}
