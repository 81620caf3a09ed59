package viz

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	httppb "github.com/linkerd/linkerd2-proxy-api/go/http_types"
	netpb "github.com/linkerd/linkerd2-proxy-api/go/net"
	tappb "github.com/linkerd/linkerd2-proxy-api/go/tap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weft-mesh/weft/internal/viz/stats"
)

func addr(a, b, c, d byte, port uint32) *netpb.TcpAddress {
	return &netpb.TcpAddress{Ip: &netpb.IPAddress{Ip: &netpb.IPAddress_Ipv4{Ipv4: uint32(a)<<24 | uint32(b)<<16 | uint32(c)<<8 | uint32(d)}}, Port: port}
}

// tapRequest returns the req, rsp and end events of one request.
func tapRequest(stream uint64, method httppb.HttpMethod_Registered, path string, status uint32, latency time.Duration, eos *tappb.Eos) []*tappb.TapEvent {
	id := &tappb.TapEvent_Http_StreamId{Base: 1, Stream: stream}
	base := func(h *tappb.TapEvent_Http) *tappb.TapEvent {
		return &tappb.TapEvent{
			Source: addr(127, 0, 0, 1, 50000), Destination: addr(127, 0, 0, 1, 4143),
			SourceMeta:      &tappb.TapEvent_EndpointMeta{Labels: map[string]string{"pod": "face-1", "tls": "true"}},
			DestinationMeta: &tappb.TapEvent_EndpointMeta{Labels: map[string]string{"pod": "smiley-1"}},
			ProxyDirection:  tappb.TapEvent_INBOUND,
			Event:           &tappb.TapEvent_Http_{Http: h},
		}
	}
	return []*tappb.TapEvent{
		base(&tappb.TapEvent_Http{Event: &tappb.TapEvent_Http_RequestInit_{RequestInit: &tappb.TapEvent_Http_RequestInit{
			Id: id, Method: &httppb.HttpMethod{Type: &httppb.HttpMethod_Registered_{Registered: method}}, Authority: "smiley.faces.svc.cluster.local:80", Path: path}}}),
		base(&tappb.TapEvent_Http{Event: &tappb.TapEvent_Http_ResponseInit_{ResponseInit: &tappb.TapEvent_Http_ResponseInit{
			Id: id, SinceRequestInit: durationpb.New(latency), HttpStatus: status}}}),
		base(&tappb.TapEvent_Http{Event: &tappb.TapEvent_Http_ResponseEnd_{ResponseEnd: &tappb.TapEvent_Http_ResponseEnd{
			Id: id, SinceRequestInit: durationpb.New(latency + time.Millisecond), SinceResponseInit: durationpb.New(time.Millisecond), ResponseBytes: 42, Eos: eos}}}),
	}
}

func TestTapLine(t *testing.T) {
	evs := tapRequest(7, httppb.HttpMethod_GET, "/smiley", 200, 1234*time.Microsecond, &tappb.Eos{End: &tappb.Eos_GrpcStatusCode{GrpcStatusCode: 0}})
	want := []string{
		"req id=1:7 proxy=in src=127.0.0.1:50000 dst=127.0.0.1:4143 tls=true :method=GET :authority=smiley.faces.svc.cluster.local:80 :path=/smiley",
		"rsp id=1:7 proxy=in src=127.0.0.1:50000 dst=127.0.0.1:4143 tls=true :status=200 latency=1234µs",
		"end id=1:7 proxy=in src=127.0.0.1:50000 dst=127.0.0.1:4143 tls=true grpc-status=OK duration=1000µs response-length=42B",
	}
	for i, ev := range evs {
		l, ok := NewTapLine("smiley-1", ev)
		if !ok || l.Line != want[i] {
			t.Errorf("event %d: %q, want %q", i, l.Line, want[i])
		}
	}
	reset := tapRequest(8, httppb.HttpMethod_POST, "/x", 200, time.Millisecond, &tappb.Eos{End: &tappb.Eos_ResetErrorCode{ResetErrorCode: 2}})[2]
	reset.ProxyDirection = tappb.TapEvent_OUTBOUND
	reset.SourceMeta = nil
	if l, _ := NewTapLine("p", reset); l.Line != "end id=1:8 proxy=out src=127.0.0.1:50000 dst=127.0.0.1:4143 tls=false reset-error=2 duration=1000µs response-length=42B" {
		t.Errorf("reset end = %q", l.Line)
	}
	v6 := &netpb.TcpAddress{Ip: &netpb.IPAddress{Ip: &netpb.IPAddress_Ipv6{Ipv6: &netpb.IPv6{First: 0x20010db800000000, Last: 1}}}, Port: 80}
	if got := TCPAddr(v6); got != "[2001:db8::1]:80" {
		t.Errorf("TCPAddr(v6) = %q", got)
	}
}

// fakeTap is a tap server: for every Observe it sends its script's
// requests whose path has the requested prefix, up to the limit, then ends
// the stream (as a proxy does when the limit is reached).
type fakeTap struct {
	tappb.UnimplementedTapServer
	script [][]*tappb.TapEvent

	mu   sync.Mutex
	reqs []*tappb.ObserveRequest
}

func (f *fakeTap) Observe(req *tappb.ObserveRequest, stream grpc.ServerStreamingServer[tappb.TapEvent]) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	prefix := ""
	for _, m := range req.GetMatch().GetAll().GetMatches() {
		if p := m.GetHttp().GetPath().GetPrefix(); p != "" {
			prefix = p
		}
	}
	sent := uint32(0)
	for _, evs := range f.script {
		if !strings.HasPrefix(evs[0].GetHttp().GetRequestInit().GetPath(), prefix) {
			continue
		}
		if req.GetLimit() > 0 && sent == req.GetLimit() {
			return nil
		}
		sent++
		for _, ev := range evs {
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
	if req.GetLimit() > 0 {
		return nil
	}
	<-stream.Context().Done()
	return nil
}

// startTap serves a fakeTap on 127.0.0.1 and returns it and its address.
func startTap(t *testing.T) (*fakeTap, string) {
	t.Helper()
	ok := &tappb.Eos{End: &tappb.Eos_GrpcStatusCode{GrpcStatusCode: 0}}
	f := &fakeTap{script: [][]*tappb.TapEvent{
		tapRequest(1, httppb.HttpMethod_GET, "/smiley", 200, 2*time.Millisecond, nil),
		tapRequest(2, httppb.HttpMethod_GET, "/color", 200, 1*time.Millisecond, nil),
		tapRequest(3, httppb.HttpMethod_GET, "/smiley", 500, 9*time.Millisecond, nil),
		tapRequest(4, httppb.HttpMethod_GET, "/smiley", 200, 4*time.Millisecond, ok),
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	tappb.RegisterTapServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return f, ln.Addr().String()
}

func TestTap(t *testing.T) {
	f, addr := startTap(t)
	pods := []stats.Pod{
		{Namespace: "faces", Name: "smiley-1", Deployment: "smiley", TapAddr: addr},
		{Namespace: "faces", Name: "color-1", Deployment: "color"},
	}
	filter := TapFilter{Method: "GET", Path: "/smiley", To: &stats.Ref{Kind: stats.Deployment, Namespace: "faces", Name: "smiley"}, Limit: 2}
	var lines []TapLine
	err := Tap(context.Background(), TapTargets(pods, stats.Ref{Kind: stats.Deployment, Namespace: "faces", Name: "smiley"}), filter, func(l TapLine) {
		lines = append(lines, l)
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, l.Type+" "+l.ID+" "+l.Path)
	}
	if want := "req 1:1 /smiley,rsp 1:1 ,end 1:1 ,req 1:3 /smiley,rsp 1:3 ,end 1:3 "; strings.Join(got, ",") != want {
		t.Errorf("events = %q, want %q", strings.Join(got, ","), want)
	}
	// The proxy was asked for exactly the filter.
	m := f.reqs[0].GetMatch().GetAll().GetMatches()
	if len(m) != 4 || m[0].GetHttp().GetMethod().GetRegistered() != httppb.HttpMethod_GET || m[1].GetHttp().GetPath().GetPrefix() != "/smiley" ||
		m[2].GetDestinationLabel().GetKey() != "deployment" || m[2].GetDestinationLabel().GetValue() != "smiley" ||
		m[3].GetDestinationLabel().GetKey() != "namespace" || f.reqs[0].GetLimit() != 2 {
		t.Errorf("observe request = %v", f.reqs[0])
	}

	if err := Tap(context.Background(), pods[1:], filter, func(TapLine) {}); err != ErrTapUnavailable {
		t.Errorf("tap without tap servers: %v, want ErrTapUnavailable", err)
	}
	bad := []stats.Pod{{Namespace: "faces", Name: "x", TapAddr: "127.0.0.1:1"}}
	if err := Tap(context.Background(), bad, filter, func(TapLine) {}); err == nil || !strings.Contains(err.Error(), "tap of faces/x at 127.0.0.1:1") {
		t.Errorf("tap of a dead server: %v", err)
	}
}

func TestTopFromTap(t *testing.T) {
	_, addr := startTap(t)
	var top TopFromTap
	err := Tap(context.Background(), []stats.Pod{{Namespace: "faces", Name: "smiley-1", TapAddr: addr}}, TapFilter{Limit: 4}, top.Add)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	RenderTop(&b, top.Rows(), 0)
	want := "" +
		"Source  Destination  Method  Path     Count  Best  Worst  Last  Success Rate\n" +
		"face-1  smiley-1     GET     /smiley  3      2ms   9ms    4ms   66.67%\n" +
		"face-1  smiley-1     GET     /color   1      1ms   1ms    1ms   100.00%\n"
	if b.String() != want {
		t.Errorf("top:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestTapAPI(t *testing.T) {
	_, addr := startTap(t)
	m := newSimMesh(t)
	p := m.add("faces", "smiley")
	_ = p
	// Give the simulated pod a tap server.
	objs, _ := PodsFromStore(context.Background(), m.store)
	c := m.collector()
	c.Pods = func(context.Context) ([]stats.Pod, error) {
		objs[0].TapAddr = addr
		return objs, nil
	}
	base := "http://" + serve(t, c)
	var info Info
	deadline := time.Now().Add(10 * time.Second)
	for !info.Tap {
		getJSON(t, base+"/api/v1/info", &info)
		if time.Now().After(deadline) {
			t.Fatal("the API never reported tap")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/tap?resource=deploy/smiley&namespace=faces&path=/color", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var got []TapLine
	for len(got) < 3 && sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var l TapLine
		if err := json.Unmarshal([]byte(data), &l); err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	if len(got) != 3 || got[0].Path != "/color" || got[1].Status != 200 || got[2].Type != "end" || !strings.HasPrefix(got[0].Line, "req id=1:2 proxy=in") {
		t.Errorf("tap events = %+v", got)
	}
}

// TestServeEndsTapStreams checks a dashboard shutting down ends open tap
// streams instead of waiting for them.
func TestServeEndsTapStreams(t *testing.T) {
	_, addr := startTap(t)
	pods := []stats.Pod{{Namespace: "faces", Name: "smiley-1", Deployment: "smiley", TapAddr: addr}}
	c := &Collector{Pods: func(context.Context) ([]stats.Pod, error) { return pods, nil }, Interval: time.Hour}
	if err := c.ScrapeOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, c, "", nil) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/api/v1/tap?resource=deploy/smiley&namespace=faces")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("no tap event: %v", err)
	}
	// Without ending the stream, Shutdown would time out and Serve fail.
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v, want a clean shutdown", err)
	}
}

// TestTopUnnamedPeersByIP: sources without a pod name are grouped by IP,
// not by connection (the port).
func TestTopUnnamedPeersByIP(t *testing.T) {
	var top TopFromTap
	for i, port := range []string{"40001", "40002"} {
		id := fmt.Sprintf("0:%d", i+1)
		top.Add(TapLine{Pod: "face-1", Type: "req", ID: id, Proxy: "in", Src: "127.0.0.1:" + port, Dst: "127.0.0.1:4143", Method: "GET", Path: "/"})
		top.Add(TapLine{Pod: "face-1", Type: "rsp", ID: id, Proxy: "in", Status: 200, LatencyUs: 1000})
		top.Add(TapLine{Pod: "face-1", Type: "end", ID: id, Proxy: "in"})
	}
	rows := top.Rows()
	if len(rows) != 1 || rows[0].Source != "127.0.0.1" || rows[0].Destination != "face-1" || rows[0].Count != 2 {
		t.Errorf("rows = %+v, want one row 127.0.0.1 -> face-1 with 2 requests", rows)
	}
}
