package outbound

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
)

// Transparent mode: iptables (weft proxy-init) redirects the app's
// outbound TCP to the outbound listener, and the connection's original
// destination (Config.OriginalDst) says where it was going.

type origDstKey struct{}

// origDstConn is a redirected connection on its way to the HTTP server;
// its requests carry the original destination in their context.
type origDstConn struct {
	net.Conn
	dst netip.AddrPort
}

func (c *origDstConn) Unwrap() net.Conn { return c.Conn }

// origDstOf returns the original destination of the connection a request
// arrived on, if it was redirected.
func origDstOf(ctx context.Context) (netip.AddrPort, bool) {
	dst, ok := ctx.Value(origDstKey{}).(netip.AddrPort)
	return dst, ok
}

// transparentAuthority is where a request on a redirected connection
// goes: its Host (or :authority) when that is a name, so that mesh
// services are discovered by name (a Host without a port takes the
// original destination's port: the app dialed that port), else the
// original destination itself. Names Destination does not know are then
// sent to the original destination (Transport.RoundTrip).
func transparentAuthority(r *http.Request, dst netip.AddrPort) string {
	host := r.Host
	if host == "" {
		return dst.String()
	}
	h, _, err := net.SplitHostPort(host)
	if err != nil { // no port
		h = host
		if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
			h = h[1 : len(h)-1]
		}
		if _, err := netip.ParseAddr(h); err == nil {
			return dst.String()
		}
		return net.JoinHostPort(h, strconv.Itoa(int(dst.Port())))
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return dst.String()
	}
	return host
}

// redirected reports whether dst, the original destination of c, differs
// from the listener's own address: an app that dials the outbound port
// directly (HTTP_PROXY) is served as an explicit proxy.
func redirected(c net.Conn, dst netip.AddrPort) bool {
	local, err := netip.ParseAddrPort(c.LocalAddr().String())
	return err != nil || local.Addr().Unmap() != dst.Addr().Unmap() || local.Port() != dst.Port()
}
