package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/weft-mesh/weft/internal/proxy/tcp"
)

// originalDst is the outbound listener's source of original destinations:
// the configured one, else SO_ORIGINAL_DST in transparent mode, else none.
func originalDst(cfg Config) func(net.Conn) (netip.AddrPort, error) {
	switch {
	case cfg.OriginalDst != nil:
		return cfg.OriginalDst
	case cfg.Transparent:
		return tcp.OriginalDst
	}
	return nil
}

// transparentApp gives a redirected inbound connection its app address:
// the port the client dialed on the pod's IP, reached over loopback (the
// proxy-init rules let loopback through, so this is not redirected again).
func transparentApp(c net.Conn) (string, error) {
	dst, err := tcp.OriginalDst(c)
	if err != nil {
		return "", fmt.Errorf("proxy: transparent inbound: %w", err)
	}
	if local, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil && local.Port() == dst.Port() && local.Addr().Unmap() == dst.Addr().Unmap() {
		return "", fmt.Errorf("proxy: transparent inbound: connection from %s dialed the proxy's inbound port %s itself, not an app port", c.RemoteAddr(), local)
	}
	return "127.0.0.1:" + strconv.Itoa(int(dst.Port())), nil
}
