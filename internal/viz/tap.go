package viz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	httppb "github.com/linkerd/linkerd2-proxy-api/go/http_types"
	netpb "github.com/linkerd/linkerd2-proxy-api/go/net"
	tappb "github.com/linkerd/linkerd2-proxy-api/go/tap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-mesh/weft/internal/viz/stats"
)

// AnnotationTapAddr names a pod's tap server: io.linkerd.proxy.tap.Tap over
// gRPC (cleartext, loopback in local mode). Pods without it cannot be
// tapped.
const AnnotationTapAddr = "weft.io/tap-addr"

// TapFilter selects the requests to tap, as 'weft viz tap' flags do.
type TapFilter struct {
	// Method is an HTTP method (GET, POST...); "" matches any.
	Method string `json:"method,omitempty"`
	// Path is a path prefix; "" matches any.
	Path string `json:"path,omitempty"`
	// Authority is an exact authority; "" matches any.
	Authority string `json:"authority,omitempty"`
	// To keeps requests to this resource (destination labels).
	To *stats.Ref `json:"to,omitempty"`
	// Limit is how many requests each proxy reports; 0 means no limit.
	Limit uint32 `json:"limit,omitempty"`
}

// Request builds the Observe request for f.
func (f TapFilter) Request() *tappb.ObserveRequest {
	var all []*tappb.ObserveRequest_Match
	http := func(m *tappb.ObserveRequest_Match_Http) {
		all = append(all, &tappb.ObserveRequest_Match{Match: &tappb.ObserveRequest_Match_Http_{Http: m}})
	}
	if f.Method != "" {
		http(&tappb.ObserveRequest_Match_Http{Match: &tappb.ObserveRequest_Match_Http_Method{Method: methodPB(f.Method)}})
	}
	if f.Path != "" {
		http(&tappb.ObserveRequest_Match_Http{Match: &tappb.ObserveRequest_Match_Http_Path{Path: &tappb.ObserveRequest_Match_Http_StringMatch{
			Match: &tappb.ObserveRequest_Match_Http_StringMatch_Prefix{Prefix: f.Path}}}})
	}
	if f.Authority != "" {
		http(&tappb.ObserveRequest_Match_Http{Match: &tappb.ObserveRequest_Match_Http_Authority{Authority: &tappb.ObserveRequest_Match_Http_StringMatch{
			Match: &tappb.ObserveRequest_Match_Http_StringMatch_Exact{Exact: f.Authority}}}})
	}
	if f.To != nil {
		label := func(k, v string) {
			all = append(all, &tappb.ObserveRequest_Match{Match: &tappb.ObserveRequest_Match_DestinationLabel{
				DestinationLabel: &tappb.ObserveRequest_Match_Label{Key: k, Value: v}}})
		}
		key := map[stats.Kind]string{stats.Deployment: "deployment", stats.PodKind: "pod", stats.Namespace: "namespace"}[f.To.Kind]
		if key != "" {
			label(key, f.To.Name)
		}
		if f.To.Kind != stats.Namespace && f.To.Namespace != "" {
			label("namespace", f.To.Namespace)
		}
	}
	req := &tappb.ObserveRequest{Limit: f.Limit,
		Match: &tappb.ObserveRequest_Match{Match: &tappb.ObserveRequest_Match_All{All: &tappb.ObserveRequest_Match_Seq{Matches: all}}}}
	return req
}

func methodPB(m string) *httppb.HttpMethod {
	if v, ok := httppb.HttpMethod_Registered_value[strings.ToUpper(m)]; ok {
		return &httppb.HttpMethod{Type: &httppb.HttpMethod_Registered_{Registered: httppb.HttpMethod_Registered(v)}}
	}
	return &httppb.HttpMethod{Type: &httppb.HttpMethod_Unregistered{Unregistered: m}}
}

func methodString(m *httppb.HttpMethod) string {
	if m == nil {
		return ""
	}
	if u := m.GetUnregistered(); u != "" {
		return u
	}
	return m.GetRegistered().String()
}

// TapLine is one tap event, structured and as Linkerd's tap prints it.
type TapLine struct {
	Pod       string `json:"pod"`
	Type      string `json:"type"` // req, rsp or end
	ID        string `json:"id"`
	Proxy     string `json:"proxy"` // in or out
	Src       string `json:"src"`
	Dst       string `json:"dst"`
	SrcName   string `json:"srcName,omitempty"` // src pod, when known
	DstName   string `json:"dstName,omitempty"`
	TLS       string `json:"tls"`
	Method    string `json:"method,omitempty"`
	Authority string `json:"authority,omitempty"`
	Path      string `json:"path,omitempty"`
	Status    int    `json:"status,omitempty"`
	// LatencyUs is the time to the response headers (rsp), DurationUs the
	// time from the response headers to its end (end).
	LatencyUs   int64  `json:"latencyUs,omitempty"`
	DurationUs  int64  `json:"durationUs,omitempty"`
	Bytes       uint64 `json:"bytes,omitempty"`
	GRPCStatus  string `json:"grpcStatus,omitempty"`
	ResetError  *int   `json:"resetError,omitempty"`
	Line        string `json:"line"`
	sinceReqEnd time.Duration
}

// TCPAddr formats a proxy API address as ip:port.
func TCPAddr(a *netpb.TcpAddress) string {
	if a == nil {
		return ""
	}
	ip := IPAddr(a.GetIp())
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return ip + ":" + strconv.FormatUint(uint64(a.GetPort()), 10)
}

// IPAddr formats a proxy API IP address.
func IPAddr(ip *netpb.IPAddress) string {
	if ip == nil {
		return ""
	}
	if v6 := ip.GetIpv6(); v6 != nil {
		var b [16]byte
		for i := range 8 {
			b[i] = byte(v6.GetFirst() >> (56 - 8*i))
			b[8+i] = byte(v6.GetLast() >> (56 - 8*i))
		}
		return netip.AddrFrom16(b).String()
	}
	v4 := ip.GetIpv4()
	return netip.AddrFrom4([4]byte{byte(v4 >> 24), byte(v4 >> 16), byte(v4 >> 8), byte(v4)}).String()
}

// NewTapLine describes ev, seen by pod's proxy.
func NewTapLine(pod string, ev *tappb.TapEvent) (TapLine, bool) {
	h := ev.GetHttp()
	if h == nil {
		return TapLine{}, false
	}
	l := TapLine{Pod: pod, Src: TCPAddr(ev.GetSource()), Dst: TCPAddr(ev.GetDestination()), Proxy: "in",
		SrcName: ev.GetSourceMeta().GetLabels()["pod"], DstName: ev.GetDestinationMeta().GetLabels()["pod"]}
	if ev.GetProxyDirection() == tappb.TapEvent_OUTBOUND {
		l.Proxy = "out"
	}
	l.TLS = ev.GetSourceMeta().GetLabels()["tls"]
	if l.TLS == "" {
		l.TLS = ev.GetDestinationMeta().GetLabels()["tls"]
	}
	if l.TLS == "" {
		l.TLS = "false"
	}
	id := func(s *tappb.TapEvent_Http_StreamId) string {
		return fmt.Sprintf("%d:%d", s.GetBase(), s.GetStream())
	}
	head := func() string {
		return fmt.Sprintf("%s id=%s proxy=%s src=%s dst=%s tls=%s", l.Type, l.ID, l.Proxy, l.Src, l.Dst, l.TLS)
	}
	switch e := h.GetEvent().(type) {
	case *tappb.TapEvent_Http_RequestInit_:
		r := e.RequestInit
		l.Type, l.ID = "req", id(r.GetId())
		l.Method, l.Authority, l.Path = methodString(r.GetMethod()), r.GetAuthority(), r.GetPath()
		l.Line = fmt.Sprintf("%s :method=%s :authority=%s :path=%s", head(), l.Method, l.Authority, l.Path)
	case *tappb.TapEvent_Http_ResponseInit_:
		r := e.ResponseInit
		l.Type, l.ID = "rsp", id(r.GetId())
		l.Status = int(r.GetHttpStatus())
		l.LatencyUs = r.GetSinceRequestInit().AsDuration().Microseconds()
		l.Line = fmt.Sprintf("%s :status=%d latency=%dµs", head(), l.Status, l.LatencyUs)
	case *tappb.TapEvent_Http_ResponseEnd_:
		r := e.ResponseEnd
		l.Type, l.ID = "end", id(r.GetId())
		l.DurationUs = r.GetSinceResponseInit().AsDuration().Microseconds()
		l.sinceReqEnd = r.GetSinceRequestInit().AsDuration()
		l.Bytes = r.GetResponseBytes()
		end := ""
		switch eos := r.GetEos().GetEnd().(type) {
		case *tappb.Eos_GrpcStatusCode:
			l.GRPCStatus = grpcCodeName(eos.GrpcStatusCode)
			end = " grpc-status=" + l.GRPCStatus
		case *tappb.Eos_ResetErrorCode:
			c := int(eos.ResetErrorCode)
			l.ResetError = &c
			end = fmt.Sprintf(" reset-error=%d", c)
		}
		l.Line = fmt.Sprintf("%s%s duration=%dµs response-length=%dB", head(), end, l.DurationUs, l.Bytes)
	default:
		return TapLine{}, false
	}
	return l, true
}

func grpcCodeName(c uint32) string {
	names := []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
		"PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
		"Internal", "Unavailable", "DataLoss", "Unauthenticated"}
	if int(c) < len(names) {
		return names[c]
	}
	return strconv.FormatUint(uint64(c), 10)
}

// TapTargets returns the pods of res (a deployment, pod or namespace).
func TapTargets(pods []stats.Pod, res stats.Ref) []stats.Pod {
	var out []stats.Pod
	for _, p := range pods {
		switch {
		case res.Kind == stats.Namespace && p.Namespace == res.Name,
			res.Kind == stats.Deployment && p.Namespace == res.Namespace && p.Deployment == res.Name,
			res.Kind == stats.PodKind && p.Namespace == res.Namespace && p.Name == res.Name:
			out = append(out, p)
		}
	}
	return out
}

// Tap streams the events of every pod's proxy matching f to fn (one call at
// a time) until ctx ends or every stream has ended. It fails with
// ErrTapUnavailable when no pod has a tap server.
func Tap(ctx context.Context, pods []stats.Pod, f TapFilter, fn func(TapLine)) error {
	var targets []stats.Pod
	for _, p := range pods {
		if p.TapAddr != "" {
			targets = append(targets, p)
		}
	}
	if len(targets) == 0 {
		return ErrTapUnavailable
	}
	req := f.Request()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	for _, p := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := observe(ctx, p, req, func(l TapLine) {
				mu.Lock()
				defer mu.Unlock()
				fn(l)
			})
			if err != nil && ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("viz: tap of %s/%s at %s: %w", p.Namespace, p.Name, p.TapAddr, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) == len(targets) {
		return errors.Join(errs...)
	}
	return nil
}

func observe(ctx context.Context, p stats.Pod, req *tappb.ObserveRequest, fn func(TapLine)) error {
	cc, err := grpc.NewClient(p.TapAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	stream, err := tappb.NewTapClient(cc).Observe(ctx, req)
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if l, ok := NewTapLine(p.Name, ev); ok {
			fn(l)
		}
	}
}

// TopFromTap turns tap lines into Top rows: a request counts when its
// stream ends, with its response latency and whether it succeeded (HTTP
// status below 500 and gRPC status OK, when present).
type TopFromTap struct {
	Top
	open map[string]*pending
}

type pending struct {
	src, dst, method, path string
	status                 int
	latency                time.Duration
}

// Add feeds one tap line.
func (t *TopFromTap) Add(l TapLine) {
	if t.open == nil {
		t.open = map[string]*pending{}
	}
	k := l.Pod + "/" + l.ID
	switch l.Type {
	case "req":
		// Peers without a name are shown by IP, as Linkerd's top does: the
		// port changes with every connection and would split the rows.
		src, dst := l.SrcName, l.DstName
		if src == "" {
			src = hostOnly(l.Src)
		}
		if dst == "" {
			dst = hostOnly(l.Dst)
		}
		if l.Proxy == "in" && l.DstName == "" {
			dst = l.Pod
		}
		if l.Proxy == "out" && l.SrcName == "" {
			src = l.Pod
		}
		t.open[k] = &pending{src: src, dst: dst, method: l.Method, path: l.Path}
	case "rsp":
		if p := t.open[k]; p != nil {
			p.status = l.Status
			p.latency = time.Duration(l.LatencyUs) * time.Microsecond
		}
	case "end":
		p := t.open[k]
		if p == nil {
			return
		}
		delete(t.open, k)
		ok := p.status != 0 && p.status < 500 && (l.GRPCStatus == "" || l.GRPCStatus == "OK") && l.ResetError == nil
		t.Top.Add(TapEvent{Source: p.src, Destination: p.dst, Method: p.method, Path: p.path, Latency: p.latency, Success: ok})
	}
}

// hostOnly returns the IP of an ip:port address (a as is otherwise).
func hostOnly(a string) string {
	if h, _, err := net.SplitHostPort(a); err == nil {
		return h
	}
	return a
}
