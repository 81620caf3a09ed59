//go:build linux

package tcp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// OriginalDst returns where a connection redirected by iptables (nat
// REDIRECT/DNAT) was originally going, read from conntrack with
// SO_ORIGINAL_DST (IP6T_SO_ORIGINAL_DST for IPv6). c must be the accepted
// connection itself (a *net.TCPConn). On a connection that was not
// redirected it returns the connection's own local address.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("tcp: original destination: %T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("tcp: original destination: %w", err)
	}
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	v6 := local.Addr().Is6() && !local.Addr().Is4In6()
	var (
		ap   netip.AddrPort
		serr error
	)
	err = raw.Control(func(fd uintptr) {
		if !v6 {
			// The kernel writes a struct sockaddr_in (16 bytes); the
			// 20-byte ip_mreqn buffer holds it.
			m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
			if err != nil {
				serr = err
				return
			}
			b := m.Multiaddr
			ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), binary.BigEndian.Uint16(b[2:4]))
			return
		}
		// A struct sockaddr_in6 (28 bytes) in the 32-byte ip6_mtuinfo buffer.
		m, err := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSoOriginalDst)
		if err != nil {
			serr = err
			return
		}
		var port [2]byte // sin6_port is in network byte order
		binary.NativeEndian.PutUint16(port[:], m.Addr.Port)
		ap = netip.AddrPortFrom(netip.AddrFrom16(m.Addr.Addr), binary.BigEndian.Uint16(port[:]))
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("tcp: original destination of the connection from %s: getsockopt SO_ORIGINAL_DST: %w (was it redirected by iptables?)", c.RemoteAddr(), err)
	}
	return ap, nil
}

// ip6tSoOriginalDst is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h),
// which x/sys/unix does not define.
const ip6tSoOriginalDst = 80
