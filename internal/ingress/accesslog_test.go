package ingress

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
)

// syncBuffer is a bytes.Buffer safe for the ingress's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAccessLog(t *testing.T) {
	backend := newBackend(t)
	var buf syncBuffer
	h := newHarnessWith(t, false, func(c *Config) { c.AccessLog = &buf },
		newMapping("ns", "echo", api.MappingSpec{Prefix: "/echo/", Service: "http://" + backendAuthority(t, backend)}))
	resp, body := h.get("/echo/x?y=1", http.Header{"X-Request-Id": {"client-chosen"}})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	h.get("/nothing", nil)
	// Websocket: the upgrade is logged as 101 once the tunnel ends.
	up := newMapping("ns", "ws", api.MappingSpec{Prefix: "/ws/", Service: "http://" + backendAuthority(t, backend), AllowUpgrade: []string{"websocket"}})
	h.apply(up)
	h.waitRoute("/ws/", "ns/ws")
	req, _ := http.NewRequest("GET", h.url("/ws/"), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	wsResp, err := h.httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	wsResp.Body.Close()

	var lines []AccessLogEntry
	waitFor(t, "three access log lines", func() bool {
		lines = lines[:0]
		sc := bufio.NewScanner(strings.NewReader(buf.String()))
		for sc.Scan() {
			var l AccessLogEntry
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
			}
			lines = append(lines, l)
		}
		return len(lines) >= 3
	})
	ok := lines[0]
	if ok.Method != "GET" || ok.Path != "/echo/x?y=1" || ok.Status != 200 || ok.Route != "ns/echo" ||
		ok.Upstream != backendAuthority(t, backend) || ok.Bytes != int64(len(body)) || ok.DurationMS <= 0 ||
		ok.Authority != h.in.Addrs()[8080] || !strings.HasPrefix(ok.Client, "127.0.0.1:") || ok.Time.IsZero() {
		t.Errorf("routed request logged as %+v", ok)
	}
	// The edge mints the request id; the log names the one sent upstream.
	if ok.RequestID != e.Header.Get("X-Request-Id") || !uuidRE.MatchString(ok.RequestID) {
		t.Errorf("request id %q, upstream saw %q", ok.RequestID, e.Header.Get("X-Request-Id"))
	}
	nf := lines[1]
	if nf.Status != 404 || nf.Route != "" || nf.Upstream != "" || nf.Bytes == 0 {
		t.Errorf("404 logged as %+v", nf)
	}
	if ws := lines[2]; ws.Status != 101 || ws.Route != "ns/ws" {
		t.Errorf("upgrade logged as %+v", ws)
	}
}

func TestAccessLogOffByDefault(t *testing.T) {
	h := newHarness(t, false)
	if h.in.Router().access != nil {
		t.Fatal("access log on without Config.AccessLog")
	}
	resp, _ := h.get("/", nil)
	_, _ = io.Copy(io.Discard, resp.Body)
}

func TestAccessLogGatewayRoute(t *testing.T) {
	var buf syncBuffer
	route := newHTTPRoute("ns", "r", []gatewayv1.ParentReference{parentGW("gw", "edge")}, nil, gatewayv1.HTTPRouteRule{
		BackendRefs: []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)},
	})
	h := newGWHarness(t, func(c *Config) { c.AccessLog = &buf }, route)
	h.waitMatch("/", "r#0.0")
	if resp, _ := h.do("POST", "/x", nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var l AccessLogEntry
	waitFor(t, "the access log line", func() bool {
		for _, line := range strings.Split(buf.String(), "\n") {
			if strings.Contains(line, `"method":"POST"`) {
				return json.Unmarshal([]byte(line), &l) == nil
			}
		}
		return false
	})
	if l.Route != "httproute:ns/r" || l.Upstream != "echo.ns.svc.cluster.local:8080" || l.Status != 200 || l.Path != "/x" || !uuidRE.MatchString(l.RequestID) {
		t.Errorf("Gateway request logged as %+v", l)
	}
}
