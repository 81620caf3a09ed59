package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"google.golang.org/grpc"

	"github.com/weft-mesh/weft/internal/inject"
	"github.com/weft-mesh/weft/internal/proxy"
	"github.com/weft-mesh/weft/internal/proxy/proxytest"
	"github.com/weft-mesh/weft/internal/proxyinit"
)

// Addresses of the network namespace test: the pod (10.98.0.1) and a peer
// (10.98.0.2) on a veth pair; 10.99.0.5 is a "service address" routed to
// the peer, where nothing answers: only the proxy can make it work.
const (
	tpPodIP     = "10.98.0.1"
	tpPeerIP    = "10.98.0.2"
	tpService   = "10.99.0.5"
	tpClusterIP = "10.99.0.6" // Service web's ClusterIP, unanswered too
	tpUID       = 2102
)

// clusterIPDestination is proxytest's Destination plus GetProfile, which
// names the Service behind a ClusterIP:port (fqn) as the control plane
// does, and gives other paths an empty profile.
type clusterIPDestination struct {
	*proxytest.Destination
	fqn map[string]string
}

func (d *clusterIPDestination) GetProfile(req *pb.GetDestination, s pb.Destination_GetProfileServer) error {
	if err := s.Send(&pb.DestinationProfile{FullyQualifiedName: d.fqn[req.GetPath()]}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// TestTransparentHelper is the processes of TestTransparentInNetworkNamespace,
// re-executed inside its network namespaces; it does nothing otherwise.
func TestTransparentHelper(t *testing.T) {
	switch os.Getenv("WEFT_TRANSPARENT_HELPER") {
	case "":
		t.Skip("helper process of TestTransparentInNetworkNamespace")
	case "peer":
		tpPeer(t)
	case "pod":
		tpPod(t)
	case "get":
		// GET URL with Host; prints the body or the error.
		c := &http.Client{Timeout: 3 * time.Second}
		req, _ := http.NewRequest("GET", os.Getenv("URL"), nil)
		req.Host = os.Getenv("HOST")
		resp, err := c.Do(req)
		if err != nil {
			fmt.Println("result: error")
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("result: %d %s\n", resp.StatusCode, b)
	case "echo":
		// Opaque: send a line, print the answer.
		c, err := net.DialTimeout("tcp", os.Getenv("ADDR"), time.Second)
		if err != nil {
			fmt.Println("result: dial error")
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintln(c, "hello")
		l, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Println("result: read error")
			return
		}
		fmt.Println("result: " + strings.TrimSpace(l))
	}
}

// tpPeer serves, on the peer: HTTP on 8080 (the mesh service's endpoint)
// and 8081, and a line echo on 9000 and 9001.
func tpPeer(t *testing.T) {
	for _, port := range []string{"8080", "8081"} {
		ln, err := net.Listen("tcp4", ":"+port)
		if err != nil {
			t.Fatal(err)
		}
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "peer:%s host=%s", port, r.Host)
		}))
	}
	for _, port := range []string{"9000", "9001"} {
		lineEcho(t, "0.0.0.0:"+port, "echo:"+port)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // until the test is done
}

// tpPod runs, in the pod: a Destination server, the app (HTTP on 8080 and
// 9090, answering with the client's address) and, as the proxy's UID,
// the transparent proxy.
func tpPod(t *testing.T) {
	dst := &clusterIPDestination{Destination: proxytest.NewDestination(), fqn: map[string]string{
		tpClusterIP + ":80":   "web.ns.svc.cluster.local",
		tpClusterIP + ":9000": "web.ns.svc.cluster.local",
	}}
	dst.Set("web.ns.svc.cluster.local:80", proxytest.Endpoint{Addr: tpPeerIP + ":8080"})
	dst.Set("web.ns.svc.cluster.local:9000", proxytest.Endpoint{Addr: tpPeerIP + ":9000"})
	// Original destinations are looked up too (nothing listens on these).
	dst.Set(tpPeerIP+":8082", proxytest.Endpoint{Addr: tpPeerIP + ":8080"})
	dst.Set(tpPeerIP+":9002", proxytest.Endpoint{Addr: tpPeerIP + ":9000"})
	dstLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	pb.RegisterDestinationServer(g, dst)
	go g.Serve(dstLn)
	defer g.Stop()
	dstAddr := dstLn.Addr().String()
	for _, port := range []string{"8080", "9090"} {
		ln, err := net.Listen("tcp4", ":"+port)
		if err != nil {
			t.Fatal(err)
		}
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			fmt.Fprintf(w, "app:%s from=%s", port, host)
		}))
	}
	// The proxy-init rules let this UID's connections out untouched.
	if err := syscall.Setuid(tpUID); err != nil {
		t.Fatal(err)
	}
	p, err := proxy.Listen(proxy.Config{
		ControlAddr: dstAddr, Transparent: true,
		InboundAddr: "0.0.0.0:4143", OutboundAddr: "127.0.0.1:4140", AdminAddr: "127.0.0.1:4191",
		Namespace: "ns", Pod: "app-0", ServiceAccount: "default",
		ShutdownGrace: time.Second, DetectTimeout: 500 * time.Millisecond, DiscoveryTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "proxy ready", func() error {
		resp, err := http.Get("http://127.0.0.1:4191/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// TestTransparentInNetworkNamespace runs weft proxy-init's rules and the
// transparent proxy (as the proxy's UID) in a pod network namespace
// (root, ip and Debian's iptables needed): the app's connections to a
// service address nothing listens on reach the service's endpoint through
// the proxy (HTTP by Host), to other addresses their original destination
// (HTTP and opaque; a filter rule rejects the app's direct connections,
// so these can only succeed through the proxy), skipped ports bypass it,
// and a peer's connections to the app's port reach the app from the proxy.
func TestTransparentInNetworkNamespace(t *testing.T) {
	if os.Getenv("WEFT_TRANSPARENT_HELPER") != "" {
		t.Skip("helper process")
	}
	_, ipErr := exec.LookPath("ip")
	_, iptErr := exec.LookPath("iptables-restore")
	if os.Geteuid() != 0 || ipErr != nil || iptErr != nil {
		if os.Getenv("WEFT_REQUIRE_NETNS") == "1" {
			t.Fatal("needs root, ip and iptables-restore")
		}
		t.Skip("needs root, ip (iproute2) and iptables (iptables-restore); WEFT_REQUIRE_NETNS=1 makes this a failure")
	}
	run := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	id := os.Getpid() % 100000
	pod, peer := fmt.Sprintf("weft-tp-pod-%d", id), fmt.Sprintf("weft-tp-peer-%d", id)
	for _, ns := range []string{pod, peer} {
		run("", "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run("", "ip", "-n", ns, "link", "set", "lo", "up")
	}
	veth := fmt.Sprintf("wtp%d", id)
	run("", "ip", "link", "add", veth, "netns", pod, "type", "veth", "peer", "name", "wtq", "netns", peer)
	run("", "ip", "-n", pod, "addr", "add", tpPodIP+"/24", "dev", veth)
	run("", "ip", "-n", pod, "link", "set", veth, "up")
	run("", "ip", "-n", peer, "addr", "add", tpPeerIP+"/24", "dev", "wtq")
	run("", "ip", "-n", peer, "link", "set", "wtq", "up")
	run("", "ip", "-n", pod, "route", "add", "10.99.0.0/24", "via", tpPeerIP)

	skipIn, _ := inject.ParsePorts("4191,9090")
	skipOut, _ := inject.ParsePorts("9001")
	rules := proxyinit.Rules(proxyinit.Config{InboundPort: 4143, OutboundPort: 4140, ProxyUID: tpUID, SkipInbound: skipIn, SkipOutbound: skipOut})
	run(rules, "ip", "netns", "exec", pod, "iptables-restore", "--noflush")
	// Redirected connections leave nat OUTPUT addressed to 127.0.0.1; any
	// other new connection of the app to the peer (but the skipped port)
	// is refused, so a success proves the proxy carried it.
	run("", "ip", "netns", "exec", pod, "iptables", "-A", "OUTPUT", "-d", tpPeerIP, "-p", "tcp", "!", "--dport", "9001",
		"-m", "conntrack", "--ctstate", "NEW", "-m", "owner", "!", "--uid-owner", fmt.Sprint(tpUID), "-j", "REJECT")

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := func(ns, mode string, env ...string) *exec.Cmd {
		cmd := exec.Command("ip", "netns", "exec", ns, self, "-test.run=^TestTransparentHelper$")
		cmd.Env = append(append(os.Environ(), "WEFT_TRANSPARENT_HELPER="+mode), env...)
		return cmd
	}
	start := func(ns, mode string) {
		t.Helper()
		cmd := helper(ns, mode)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			stdin.Close()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s helper stderr:\n%s", mode, stderr.String())
			}
		})
		ready := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if sc.Text() == "ready" {
					ready <- true
				}
			}
			close(ready)
		}()
		select {
		case ok := <-ready:
			if !ok {
				t.Fatalf("%s helper exited before ready", mode)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s helper not ready", mode)
		}
	}
	start(peer, "peer")
	start(pod, "pod")

	result := func(ns, mode string, env ...string) string {
		t.Helper()
		out, err := helper(ns, mode, env...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v: %s", mode, env, err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if r, ok := strings.CutPrefix(l, "result: "); ok {
				return r
			}
		}
		t.Fatalf("%s %v: no result in %s", mode, env, out)
		return ""
	}
	for _, c := range []struct {
		name, ns, mode string
		env            []string
		want           string
	}{
		{"HTTP to a service address, routed by Host", pod, "get",
			[]string{"URL=http://" + tpService + "/x", "HOST=web.ns.svc.cluster.local"}, "200 peer:8080 host=web.ns.svc.cluster.local"},
		{"HTTP to an IP, to the original destination", pod, "get",
			[]string{"URL=http://" + tpPeerIP + ":8081/", "HOST="}, "200 peer:8081 host=" + tpPeerIP + ":8081"},
		{"HTTP with an unknown name, to the original destination", pod, "get",
			[]string{"URL=http://" + tpPeerIP + ":8081/", "HOST=example.com"}, "200 peer:8081 host=example.com"},
		{"HTTP to an IP Destination knows, to its endpoint", pod, "get",
			[]string{"URL=http://" + tpPeerIP + ":8082/", "HOST="}, "200 peer:8080 host=" + tpPeerIP + ":8082"},
		{"HTTP to a ClusterIP with an IP Host, to the Service's endpoint", pod, "get",
			[]string{"URL=http://" + tpClusterIP + "/", "HOST="}, "200 peer:8080 host=" + tpClusterIP},
		{"opaque TCP to a ClusterIP, to the Service's endpoint", pod, "echo",
			[]string{"ADDR=" + tpClusterIP + ":9000"}, "echo:9000 hello"},
		{"opaque TCP to an IP Destination knows, to its endpoint", pod, "echo",
			[]string{"ADDR=" + tpPeerIP + ":9002"}, "echo:9000 hello"},
		{"opaque TCP, to the original destination", pod, "echo",
			[]string{"ADDR=" + tpPeerIP + ":9000"}, "echo:9000 hello"},
		{"skipped outbound port bypasses the proxy (reaches the peer)", pod, "echo",
			[]string{"ADDR=" + tpPeerIP + ":9001"}, "echo:9001 hello"},
		{"skipped outbound port bypasses the proxy (service address unanswered)", pod, "echo",
			[]string{"ADDR=" + tpService + ":9001"}, "dial error"},
		{"inbound to the app's port, through the proxy", peer, "get",
			[]string{"URL=http://" + tpPodIP + ":8080/", "HOST="}, "200 app:8080 from=127.0.0.1"},
		{"skipped inbound port, straight to the app", peer, "get",
			[]string{"URL=http://" + tpPodIP + ":9090/", "HOST="}, "200 app:9090 from=" + tpPeerIP},
	} {
		if got := result(c.ns, c.mode, c.env...); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
