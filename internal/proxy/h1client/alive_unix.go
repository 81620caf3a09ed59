//go:build unix

package h1client

import (
	"net"
	"syscall"
)

// alive reports whether an idle connection is still open: no EOF, reset
// or unsolicited bytes waiting. One non-blocking peek (a syscall), made
// only before requests that could not be sent again on a fresh
// connection.
func alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Nothing to read means open and quiet; EOF, bytes nobody asked
		// for, or an error mean the connection is not reusable.
		ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return ok && err == nil
}
