package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	httppb "github.com/linkerd/linkerd2-proxy-api/go/http_types"
	tappb "github.com/linkerd/linkerd2-proxy-api/go/tap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-mesh/weft/internal/proxy/proxytest"
	"github.com/weft-mesh/weft/internal/viz"
)

// startTapProxy runs a proxy with a tap server.
func startTapProxy(t testing.TB, dstAddr, ns, pod string, apps ...string) *running {
	t.Helper()
	cfg := testConfig(dstAddr, ns, pod, apps...)
	cfg.TapAddr = "127.0.0.1:0"
	return runProxy(t, cfg)
}

// observe opens a tap on p and waits until the proxy has registered it.
func observe(t *testing.T, p *running, req *tappb.ObserveRequest) (tappb.Tap_ObserveClient, context.CancelFunc) {
	t.Helper()
	before := p.Tap().Active()
	cc, err := grpc.NewClient(p.TapAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	stream, err := tappb.NewTapClient(cc).Observe(ctx, req)
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	waitFor(t, "tap registered", func() error {
		if p.Tap().Active() <= before {
			return fmt.Errorf("%d taps active", p.Tap().Active())
		}
		return nil
	})
	return stream, cancel
}

// recvUntilEnd reads events until the ResponseEnd of a request to path.
func recvUntilEnd(t *testing.T, s tappb.Tap_ObserveClient, path string) []*tappb.TapEvent {
	t.Helper()
	var evs []*tappb.TapEvent
	var id uint64
	for {
		ev, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv after %d events: %v", len(evs), err)
		}
		evs = append(evs, ev)
		h := ev.GetHttp()
		if ri := h.GetRequestInit(); ri != nil && ri.GetPath() == path {
			id = ri.GetId().GetStream()
		}
		if re := h.GetResponseEnd(); re != nil && id != 0 && re.GetId().GetStream() == id {
			return evs
		}
	}
}

func tapLines(pod string, evs []*tappb.TapEvent) []string {
	var out []string
	for _, ev := range evs {
		l, ok := viz.NewTapLine(pod, ev)
		if ok {
			out = append(out, l.Line)
		}
	}
	return out
}

// TestTapThroughPeerHop taps a real request on both proxies of a peer hop:
// only matching requests are reported, with Linkerd's fields.
func TestTapThroughPeerHop(t *testing.T) {
	dst, dstAddr := destination(t)
	app := backend(t, "smiley-1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Answer", "42")
		io.WriteString(w, "smile")
	})
	server := startTapProxy(t, dstAddr, "faces", "smiley-1", app)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true,
		Labels: map[string]string{"deployment": "smiley", "pod": "smiley-1", "namespace": "faces"}})
	client := startTapProxy(t, dstAddr, "faces", "gui-1")
	c := proxyClient(client)
	get(t, c, "http://smiley/warm") // resolve before tapping

	// The client taps GET /smiley... to deployment smiley; the server
	// everything, with headers.
	match := viz.TapFilter{Method: "GET", Path: "/smiley", To: nil}.Request()
	match.Match.GetAll().Matches = append(match.Match.GetAll().Matches, &tappb.ObserveRequest_Match{
		Match: &tappb.ObserveRequest_Match_DestinationLabel{DestinationLabel: &tappb.ObserveRequest_Match_Label{Key: "deployment", Value: "smiley"}}})
	out, _ := observe(t, client, match)
	in, _ := observe(t, server, &tappb.ObserveRequest{Extract: &tappb.ObserveRequest_Extract{
		Extract: &tappb.ObserveRequest_Extract_Http_{Http: &tappb.ObserveRequest_Extract_Http{
			Extract: &tappb.ObserveRequest_Extract_Http_Headers_{Headers: &tappb.ObserveRequest_Extract_Http_Headers{}}}}}})

	get(t, c, "http://smiley/other")
	req, _ := http.NewRequest("POST", "http://smiley/smiley", strings.NewReader("x"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	get(t, c, "http://smiley/smiley/center")

	// The outbound tap saw only GET /smiley/center.
	evs := recvUntilEnd(t, out, "/smiley/center")
	if len(evs) != 3 {
		t.Fatalf("outbound tap: %d events, want 3 (only the matching request):\n%s", len(evs), strings.Join(tapLines("gui-1", evs), "\n"))
	}
	ri := evs[0].GetHttp().GetRequestInit()
	if evs[0].GetProxyDirection() != tappb.TapEvent_OUTBOUND || ri.GetMethod().GetRegistered() != httppb.HttpMethod_GET ||
		ri.GetAuthority() != "smiley" || ri.GetPath() != "/smiley/center" {
		t.Errorf("outbound RequestInit = %v", evs[0])
	}
	if got := viz.TCPAddr(evs[0].GetDestination()); got != server.InboundAddrs()[0] {
		t.Errorf("outbound destination = %s, want the peer's inbound %s", got, server.InboundAddrs()[0])
	}
	if l := evs[0].GetDestinationMeta().GetLabels(); l["deployment"] != "smiley" || l["pod"] != "smiley-1" || l["tls"] != "not_provided_by_service_discovery" {
		t.Errorf("outbound destination labels = %v", l)
	}
	if l := evs[0].GetSourceMeta().GetLabels(); l["pod"] != "gui-1" || l["namespace"] != "faces" {
		t.Errorf("outbound source labels = %v", l)
	}
	if rsp := evs[1].GetHttp().GetResponseInit(); rsp.GetHttpStatus() != 200 || rsp.GetSinceRequestInit().AsDuration() <= 0 {
		t.Errorf("outbound ResponseInit = %v", evs[1])
	}
	if end := evs[2].GetHttp().GetResponseEnd(); end.GetResponseBytes() != uint64(len("smile")) || end.GetEos() != nil {
		t.Errorf("outbound ResponseEnd = %v", evs[2])
	}
	lines := tapLines("gui-1", evs)
	wantPrefix := []string{
		fmt.Sprintf("req id=0:%d proxy=out src=", ri.GetId().GetStream()),
		fmt.Sprintf("rsp id=0:%d proxy=out ", ri.GetId().GetStream()),
		fmt.Sprintf("end id=0:%d proxy=out ", ri.GetId().GetStream()),
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, wantPrefix[i]) {
			t.Errorf("line %d = %q, want prefix %q", i, l, wantPrefix[i])
		}
	}
	if !strings.Contains(lines[0], " tls=not_provided_by_service_discovery :method=GET :authority=smiley :path=/smiley/center") ||
		!strings.Contains(lines[1], ":status=200 latency=") || !strings.HasSuffix(lines[2], "response-length=5B") {
		t.Errorf("tap lines:\n%s", strings.Join(lines, "\n"))
	}

	// The inbound tap saw all three, with headers.
	evs = recvUntilEnd(t, in, "/smiley/center")
	var paths []string
	for _, ev := range evs {
		if ri := ev.GetHttp().GetRequestInit(); ri != nil {
			paths = append(paths, methodOf(ri)+" "+ri.GetPath())
			if ev.GetProxyDirection() != tappb.TapEvent_INBOUND || ev.GetDestinationMeta().GetLabels()["pod"] != "smiley-1" ||
				viz.TCPAddr(ev.GetDestination()) != server.InboundAddrs()[0] || ev.GetSourceMeta().GetLabels()["tls"] != "disabled" {
				t.Errorf("inbound RequestInit = %v", ev)
			}
			if !hasHeader(ri.GetHeaders(), "L5d-Orig-Proto") && !hasHeader(ri.GetHeaders(), "User-Agent") {
				t.Errorf("inbound RequestInit lacks request headers: %v", ri.GetHeaders())
			}
		}
		if rsp := ev.GetHttp().GetResponseInit(); rsp != nil && !hasHeader(rsp.GetHeaders(), "X-Answer") {
			t.Errorf("inbound ResponseInit lacks response headers: %v", rsp.GetHeaders())
		}
	}
	if want := "GET /other,POST /smiley,GET /smiley/center"; strings.Join(paths, ",") != want {
		t.Errorf("inbound tap requests = %v, want %s", paths, want)
	}
}

func methodOf(ri *tappb.TapEvent_Http_RequestInit) string {
	if u := ri.GetMethod().GetUnregistered(); u != "" {
		return u
	}
	return ri.GetMethod().GetRegistered().String()
}

func hasHeader(h *httppb.Headers, name string) bool {
	for _, x := range h.GetHeaders() {
		if strings.EqualFold(x.GetName(), name) {
			return true
		}
	}
	return false
}

// TestTapLimitAndSlowClient: a limited tap ends after its requests; a tap
// whose client never reads does not hold requests back, and with no tap
// open nothing is built.
func TestTapLimitAndSlowClient(t *testing.T) {
	dst, dstAddr := destination(t)
	app := backend(t, "smiley-1", nil)
	server := startTapProxy(t, dstAddr, "faces", "smiley-1", app)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true})
	client := startProxy(t, dstAddr, "faces", "gui-1")
	c := proxyClient(client)

	for range 5 {
		get(t, c, "http://smiley/untapped")
	}
	if n := server.Tap().Built(); n != 0 {
		t.Fatalf("built %d tap exchanges with no tap open", n)
	}

	limited, _ := observe(t, server, &tappb.ObserveRequest{Limit: 2})
	// Never read: this client is as slow as a client can be.
	observe(t, server, &tappb.ObserveRequest{})
	const n = 400
	for i := range n {
		if resp, _ := get(t, c, fmt.Sprintf("http://smiley/r/%d", i)); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	if server.Tap().Dropped() == 0 {
		t.Errorf("no event dropped for a tap client that never reads")
	}
	count := 0
	for {
		_, err := limited.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("limited tap: %v", err)
		}
		count++
	}
	if count != 6 {
		t.Errorf("limited tap delivered %d events, want 6 (2 requests)", count)
	}
}
