package proxyinit

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/inject"
)

func TestRules(t *testing.T) {
	var many []inject.PortRange
	for p := 1000; p < 1016; p++ {
		many = append(many, inject.PortRange{Lo: p, Hi: p})
	}
	got := Rules(Config{InboundPort: 4143, OutboundPort: 4140, ProxyUID: 2102,
		SkipInbound:  []inject.PortRange{{Lo: 4191, Hi: 4191}, {Lo: 9000, Hi: 9100}},
		SkipOutbound: many})
	for _, want := range []string{
		"-A WEFT_INBOUND -p tcp -m multiport --dports 4191,9000:9100 -j RETURN\n",
		"-A WEFT_INBOUND -p tcp -j REDIRECT --to-ports 4143\n",
		"-A WEFT_OUTBOUND -m owner --uid-owner 2102 -j RETURN\n",
		// 16 ports: two multiport rules of at most 15.
		"--dports 1000,1001,1002,1003,1004,1005,1006,1007,1008,1009,1010,1011,1012,1013,1014 -j RETURN\n",
		"--dports 1015 -j RETURN\n",
		"-A WEFT_OUTBOUND -p tcp -j REDIRECT --to-ports 4140\n",
		"-A OUTPUT -j WEFT_OUTBOUND\nCOMMIT\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rules lack %q:\n%s", want, got)
		}
	}
	if err := (Config{InboundPort: 0, OutboundPort: 4140}).Validate(); err == nil {
		t.Error("port 0 accepted")
	}
}

// The helper runs inside a network namespace, re-executed by the test.
func TestMain(m *testing.M) {
	switch os.Getenv("WEFT_PROXYINIT_HELPER") {
	case "apply":
		in, _ := inject.ParsePorts(os.Getenv("SKIP_IN"))
		out, _ := inject.ParsePorts(os.Getenv("SKIP_OUT"))
		if err := Apply(context.Background(), "", Config{InboundPort: 4143, OutboundPort: 4140, ProxyUID: 2102, SkipInbound: in, SkipOutbound: out}); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		os.Exit(0)
	case "pod":
		podHelper()
		os.Exit(0)
	case "client":
		for _, a := range strings.Split(os.Getenv("DIAL"), ",") {
			fmt.Println(dial(a))
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func dial(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return "dial " + addr + " err"
	}
	c.Close()
	return "dial " + addr + " ok"
}

// podHelper is the "proxy" (listeners on the proxy ports, reporting each
// connection's original destination) and the "app" dialing out.
func podHelper() {
	lines := make(chan string, 16)
	for _, l := range []struct{ dir, addr string }{{"out", ":4140"}, {"in", ":4143"}} {
		ln, err := net.Listen("tcp4", l.addr)
		if err != nil {
			fmt.Println("listen:", err)
			return
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				lines <- "accept " + l.dir + " " + originalDst(c.(*net.TCPConn))
				c.Close()
			}
		}()
	}
	go func() {
		for l := range lines {
			fmt.Println(l)
		}
	}()
	fmt.Println("ready")
	for _, a := range strings.Split(os.Getenv("DIAL"), ",") {
		lines <- dial(a)
	}
	// As the proxy: its own connections are not redirected.
	if err := syscall.Setuid(2102); err != nil {
		lines <- "setuid: " + err.Error()
	}
	lines <- "as-proxy " + dial(os.Getenv("DIAL_AS_PROXY"))
	bufio.NewReader(os.Stdin).ReadString('\n') // until the test is done
}

// originalDst reads SO_ORIGINAL_DST (IPv4), as the transparent proxy will.
func originalDst(c *net.TCPConn) string {
	raw, err := c.SyscallConn()
	if err != nil {
		return err.Error()
	}
	var addr string
	raw.Control(func(fd uintptr) {
		const soOriginalDst = 80
		m, err := syscall.GetsockoptIPv6Mreq(int(fd), syscall.IPPROTO_IP, soOriginalDst)
		if err != nil {
			addr = err.Error()
			return
		}
		port := binary.BigEndian.Uint16(m.Multiaddr[2:4])
		addr = fmt.Sprintf("%d.%d.%d.%d:%d", m.Multiaddr[4], m.Multiaddr[5], m.Multiaddr[6], m.Multiaddr[7], port)
	})
	return addr
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestInNetworkNamespace applies the rules for real in a network namespace
// (root, ip and iptables-restore needed): the app's outbound connections
// and a client's inbound ones reach the proxy's listeners with their
// original destinations, while skipped ports and the proxy's own UID pass.
func TestInNetworkNamespace(t *testing.T) {
	_, ipErr := exec.LookPath("ip")
	_, iptErr := exec.LookPath("iptables-restore")
	if os.Geteuid() != 0 || ipErr != nil || iptErr != nil {
		if os.Getenv("WEFT_REQUIRE_NETNS") == "1" {
			t.Fatal("needs root, ip and iptables-restore")
		}
		t.Skip("needs root, ip (iproute2) and iptables-restore (iptables); WEFT_REQUIRE_NETNS=1 makes this a failure")
	}
	pod, client := fmt.Sprintf("weft-pod-%d", os.Getpid()), fmt.Sprintf("weft-cli-%d", os.Getpid())
	run(t, "ip", "netns", "add", pod)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", pod).Run() })
	run(t, "ip", "netns", "add", client)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", client).Run() })
	in := func(ns string, args ...string) { run(t, append([]string{"ip", "netns", "exec", ns}, args...)...) }
	in(pod, "ip", "link", "set", "lo", "up")
	in(client, "ip", "link", "set", "lo", "up")
	// A veth link to a client, and a "service network" the app dials out
	// to routed over it (the client does not forward: nothing answers).
	run(t, "ip", "link", "add", "wp"+fmt.Sprint(os.Getpid()%10000), "netns", pod, "type", "veth", "peer", "name", "wc", "netns", client)
	in(pod, "ip", "addr", "add", "10.98.0.1/24", "dev", "wp"+fmt.Sprint(os.Getpid()%10000))
	in(pod, "ip", "link", "set", "wp"+fmt.Sprint(os.Getpid()%10000), "up")
	in(client, "ip", "addr", "add", "10.98.0.2/24", "dev", "wc")
	in(client, "ip", "link", "set", "wc", "up")
	in(pod, "ip", "route", "add", "10.99.0.0/24", "via", "10.98.0.2")

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	apply := exec.Command("ip", "netns", "exec", pod, self)
	apply.Env = append(os.Environ(), "WEFT_PROXYINIT_HELPER=apply", "SKIP_IN=4191,9090", "SKIP_OUT=25,4000-4100")
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("proxy-init in the namespace: %v: %s", err, out)
	}

	ph := exec.Command("ip", "netns", "exec", pod, self)
	ph.Env = append(os.Environ(), "WEFT_PROXYINIT_HELPER=pod", "DIAL=10.99.0.2:80,10.99.0.2:25,10.99.0.2:4050", "DIAL_AS_PROXY=10.99.0.2:81")
	stdin, _ := ph.StdinPipe()
	stdout, _ := ph.StdoutPipe()
	if err := ph.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); ph.Wait() }()
	got := make(chan string, 32)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			got <- sc.Text()
		}
		close(got)
	}()
	seen := map[string]bool{}
	waitFor := func(line string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !seen[line] {
			select {
			case l, ok := <-got:
				if !ok {
					t.Fatalf("helper exited before %q (saw %v)", line, seen)
				}
				seen[l] = true
			case <-deadline:
				t.Fatalf("no %q (saw %v)", line, seen)
			}
		}
	}
	waitFor("ready")
	cl := exec.Command("ip", "netns", "exec", client, self)
	cl.Env = append(os.Environ(), "WEFT_PROXYINIT_HELPER=client", "DIAL=10.98.0.1:8080,10.98.0.1:9090")
	out, err := cl.CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v: %s", err, out)
	}
	// Inbound: 8080 reaches the proxy's inbound port; 9090 is skipped and
	// refused (nothing listens on it).
	if want := "dial 10.98.0.1:8080 ok\ndial 10.98.0.1:9090 err\n"; string(out) != want {
		t.Errorf("client dials:\n%s\nwant:\n%s", out, want)
	}
	waitFor("accept in 10.98.0.1:8080")
	// Outbound: captured with the original destination; skipped ports and
	// ranges go to the (silent) network.
	waitFor("accept out 10.99.0.2:80")
	waitFor("dial 10.99.0.2:80 ok")
	waitFor("dial 10.99.0.2:25 err")
	waitFor("dial 10.99.0.2:4050 err")
	waitFor("as-proxy dial 10.99.0.2:81 err")
	for l := range seen {
		if strings.Contains(l, ":9090") && strings.HasPrefix(l, "accept") || strings.Contains(l, "accept out 10.99.0.2:25") ||
			strings.Contains(l, "accept out 10.99.0.2:4050") || strings.Contains(l, "accept out 10.99.0.2:81") {
			t.Errorf("skipped traffic reached the proxy: %s", l)
		}
	}
}
