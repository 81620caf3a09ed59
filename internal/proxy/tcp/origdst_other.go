//go:build !linux

package tcp

import (
	"errors"
	"net"
	"net/netip"
)

// OriginalDst needs Linux's conntrack (SO_ORIGINAL_DST): transparent mode
// (weft proxy --transparent, behind weft proxy-init's iptables rules) runs
// only on Linux.
func OriginalDst(net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("tcp: original destination: transparent mode needs Linux (SO_ORIGINAL_DST); run weft proxy without --transparent here")
}
