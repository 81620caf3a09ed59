// Package proxyinit writes the iptables rules that make a pod's proxy
// transparent, as Linkerd's proxy-init does: in the nat table, inbound TCP
// (PREROUTING) is redirected to the proxy's inbound port and outbound TCP
// (OUTPUT) to its outbound port, except the proxy's own connections (by
// UID), loopback traffic and the skipped ports. The rules are applied in
// one iptables-restore transaction, so a pod never runs half-redirected.
package proxyinit

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/weft-mesh/weft/internal/inject"
)

// Chains Weft adds to the nat table.
const (
	InboundChain  = "WEFT_INBOUND"
	OutboundChain = "WEFT_OUTBOUND"
)

// maxMultiport is how many ports (a range counts two) one multiport match
// takes.
const maxMultiport = 15

// Config is what the init container's arguments say.
type Config struct {
	InboundPort  int // the proxy's inbound listener
	OutboundPort int // the proxy's outbound listener
	ProxyUID     int // connections of this UID are not redirected
	SkipInbound  []inject.PortRange
	SkipOutbound []inject.PortRange
}

// Validate checks the ports and UID.
func (c Config) Validate() error {
	for _, p := range []struct {
		flag string
		v    int
	}{{"--incoming-proxy-port", c.InboundPort}, {"--outgoing-proxy-port", c.OutboundPort}} {
		if p.v < 1 || p.v > 65535 {
			return fmt.Errorf("proxy-init: %s %d is not a port (1-65535)", p.flag, p.v)
		}
	}
	if c.ProxyUID < 0 {
		return fmt.Errorf("proxy-init: --proxy-uid %d is negative", c.ProxyUID)
	}
	return nil
}

// Rules returns the iptables-restore input for the nat table.
func Rules(c Config) string {
	var b strings.Builder
	b.WriteString("*nat\n")
	fmt.Fprintf(&b, ":%s - [0:0]\n:%s - [0:0]\n", InboundChain, OutboundChain)
	for _, m := range multiports(c.SkipInbound) {
		fmt.Fprintf(&b, "-A %s -p tcp -m multiport --dports %s -j RETURN\n", InboundChain, m)
	}
	fmt.Fprintf(&b, "-A %s -p tcp -j REDIRECT --to-ports %d\n", InboundChain, c.InboundPort)
	fmt.Fprintf(&b, "-A PREROUTING -j %s\n", InboundChain)
	// The proxy's own connections (to peers, to the control plane) leave
	// directly; redirecting them would loop.
	fmt.Fprintf(&b, "-A %s -m owner --uid-owner %d -j RETURN\n", OutboundChain, c.ProxyUID)
	// The app talking to itself (and to the proxy's admin port) over
	// loopback stays local.
	fmt.Fprintf(&b, "-A %s -o lo -j RETURN\n", OutboundChain)
	for _, m := range multiports(c.SkipOutbound) {
		fmt.Fprintf(&b, "-A %s -p tcp -m multiport --dports %s -j RETURN\n", OutboundChain, m)
	}
	fmt.Fprintf(&b, "-A %s -p tcp -j REDIRECT --to-ports %d\n", OutboundChain, c.OutboundPort)
	fmt.Fprintf(&b, "-A OUTPUT -j %s\n", OutboundChain)
	b.WriteString("COMMIT\n")
	return b.String()
}

// multiports groups ranges into multiport arguments ("25,4000:4100").
func multiports(rs []inject.PortRange) []string {
	var out, cur []string
	n := 0
	for _, r := range rs {
		item, cost := fmt.Sprint(r.Lo), 1
		if r.Hi != r.Lo {
			item, cost = fmt.Sprintf("%d:%d", r.Lo, r.Hi), 2
		}
		if n+cost > maxMultiport {
			out = append(out, strings.Join(cur, ","))
			cur, n = nil, 0
		}
		cur = append(cur, item)
		n += cost
	}
	if len(cur) > 0 {
		out = append(out, strings.Join(cur, ","))
	}
	return out
}

// Apply installs the rules with iptables-restore (restoreBin; "" means
// "iptables-restore" from PATH), adding to the table's existing rules
// (--noflush) in one transaction.
func Apply(ctx context.Context, restoreBin string, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if restoreBin == "" {
		restoreBin = "iptables-restore"
	}
	cmd := exec.CommandContext(ctx, restoreBin, "--noflush")
	cmd.Stdin = strings.NewReader(Rules(c))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("proxy-init: %s: %w: %s (the init container needs NET_ADMIN and NET_RAW)", restoreBin, err, strings.TrimSpace(out.String()))
	}
	return nil
}
