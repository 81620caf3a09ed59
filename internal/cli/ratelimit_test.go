package cli

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/ingress"
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
