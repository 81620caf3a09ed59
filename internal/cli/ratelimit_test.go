package cli

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/ingress"
	"github.com/weft-mesh/weft/internal/ratelimit"
	"github.com/weft-mesh/weft/internal/store"
)

func TestRatelimitCommandServesTheIngress(t *testing.T) {
	addr, admin := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"ratelimit", "--workshop", "--addr", addr, "--admin-addr", admin}, strings.NewReader(""), io.Discard, &errOut)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("weft ratelimit never became ready: %v\n%s", err, errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The ingress's view: its RateLimiter, asked as it asks for the
	// workshop's face Mapping. 20 quick requests span at most two
	// one-second windows of 8, so some must be limited, and at least 8
	// must pass.
	lim, closeLim := newIngressRateLimiter("")
	defer closeLim()
	req := ingress.RateLimitRequest{Service: addr, Domain: "emissary", Descriptors: []ingress.Descriptor{{{Key: "mykey", Value: "myvalue"}}}}
	var ok, over int
	for range 20 {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := lim.ShouldRateLimit(rctx, req)
		rcancel()
		if err != nil {
			t.Fatal(err)
		}
		if resp.OverLimit {
			over++
		} else {
			ok++
		}
	}
	if over == 0 || ok < 8 || ok > 16 {
		t.Fatalf("%d passed and %d were limited, want 8-16 passing and some limited", ok, over)
	}
	// Another domain is not limited.
	req.Domain = "ambassador"
	if resp, err := lim.ShouldRateLimit(ctx, req); err != nil || resp.OverLimit {
		t.Fatalf("unknown domain: %+v %v", resp, err)
	}
	// A fixed address wins over a spec.service that only resolves in a
	// cluster.
	fixed, closeFixed := newIngressRateLimiter(addr)
	defer closeFixed()
	if _, err := fixed.ShouldRateLimit(ctx, ingress.RateLimitRequest{Service: "ratelimit.emissary.invalid:8081", Domain: "emissary", Descriptors: req.Descriptors}); err != nil {
		t.Fatalf("fixed address: %v", err)
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit code %d: %s", c, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("weft ratelimit did not stop")
	}
	// With the service gone the limiter fails (the ingress then fails
	// open, or closed under failure_mode_deny).
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer rcancel()
	if _, err := lim.ShouldRateLimit(rctx, req); err == nil {
		t.Fatal("no error with the service stopped")
	}
}

func TestRatelimitCommandErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ratelimit", "--addr", "127.0.0.1:0"}, 2, "no configuration: give --config"},
		{[]string{"ratelimit", "--config", "/nonexistent/rl.yaml", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, 1, "--config /nonexistent/rl.yaml"},
		{[]string{"ratelimit", "--workshop", "--log-level", "loud"}, 2, "--log-level"},
	}
	for _, tc := range tests {
		var errOut syncBuffer
		c := Run(context.Background(), tc.args, strings.NewReader(""), io.Discard, &errOut)
		if c != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want exit %d and %q", tc.args, c, errOut.String(), tc.code, tc.want)
		}
	}
}

// TestIngressWithRatelimit runs the workshop's last step in one process: a
// real ingress with the workshop's face Mapping and RateLimitService, the
// ingress's RateLimiter from this file, and a real rate limit service with
// the built-in workshop rule (on a fixed clock, so the window cannot turn
// mid-test).
func TestIngressWithRatelimit(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "face") }))
	defer backend.Close()
	now := time.Unix(1_800_000_000, 0)
	rls, err := ratelimit.Listen(ratelimit.ServerConfig{
		Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Builtin: map[string][]byte{"workshop": ratelimit.WorkshopConfig()},
		Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stopRLS := context.WithCancel(context.Background())
	rlsDone := make(chan error, 1)
	go func() { rlsDone <- rls.Run(rctx) }()
	defer func() { stopRLS(); <-rlsDone }()

	objs, err := api.Decode(strings.NewReader(`
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: http, namespace: emissary}
spec: {port: 8080, protocol: HTTP, securityModel: XFP, hostBinding: {namespace: {from: ALL}}}
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimitService
metadata: {name: ratelimit, namespace: emissary}
spec:
  service: ratelimit.emissary:8081
  protocol_version: v3
  domain: emissary
  timeout_ms: 5000
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: face-mapping, namespace: faces}
spec:
  hostname: "*"
  prefix: /face/
  service: http://`+backend.Listener.Addr().String()+`
  labels:
    emissary:
      - request_label_group:
        - x-emissary-test-allow: null
          generic_key: {key: mykey, value: myvalue}
`), "workshop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory()
	if err := st.Apply(context.Background(), objs...); err != nil {
		t.Fatal(err)
	}
	lim, closeLim := newIngressRateLimiter(rls.Addr().String())
	defer closeLim()
	in, err := ingress.New(ingress.Config{
		Store: st, Transport: ingress.NewTransport(nil), PortMap: map[int32]int{8080: 0}, AdminAddr: "127.0.0.1:0",
		RateLimiter: lim, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ictx, stopIngress := context.WithCancel(context.Background())
	inDone := make(chan error, 1)
	go func() { inDone <- in.Run(ictx) }()
	defer func() { stopIngress(); <-inDone }()

	get := func() (int, http.Header) {
		t.Helper()
		resp, err := http.Get("http://" + in.Addrs()[8080] + "/face/")
		if err != nil {
			return 0, nil
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	// Wait for the route; the probe itself counts against the limit, so
	// count what passed.
	passed := 0
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get(); code == 200 {
			passed++
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ingress never routed /face/")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for passed < 8 {
		if code, _ := get(); code != 200 {
			t.Fatalf("request %d: %d, want 200", passed+1, code)
		}
		passed++
	}
	code, h := get()
	if code != http.StatusTooManyRequests || h.Get("X-Envoy-Ratelimited") != "true" {
		t.Fatalf("9th request in the second: %d %v, want 429 with x-envoy-ratelimited", code, h)
	}
	// The service gone, the ingress fails open (no failure_mode_deny).
	stopRLS()
	<-rlsDone
	rlsDone <- nil
	if code, _ := get(); code != 200 {
		t.Fatalf("with the rate limit service down: %d, want 200 (fail open)", code)
	}
}
