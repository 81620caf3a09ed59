package discovery

import (
	"context"
	"math/rand/v2"
	"time"

	outboundpb "github.com/linkerd/linkerd2-proxy-api/go/outbound"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/internal/proxy/breaker"
)

// Accrual is a service's failure accrual from OutboundPolicies; Config nil
// means off. A new pointer is published on every change.
type Accrual struct{ Config *breaker.Config }

var accrualOff = &Accrual{}

// Accrual returns the service's failure accrual as the control plane last
// described it (off until it answers, or when it does not serve
// OutboundPolicies).
func (w *Watch) Accrual() *Accrual {
	if a := w.accrual.Load(); a != nil {
		return a
	}
	return accrualOff
}

// runPolicy follows the OutboundPolicies Watch stream of w until ctx ends.
// A control plane without the service (Unimplemented) is not asked again.
func (r *Resolver) runPolicy(ctx context.Context, w *Watch) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := r.policyStream(ctx, w, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil || status.Code(err) == codes.Unimplemented {
			return
		}
		r.log.Debug("outbound policy stream ended; retrying", "path", w.Target.Path, "err", err, "retry_in", backoff)
		jitter := time.Duration(rand.Int64N(int64(backoff)/2 + 1))
		t := time.NewTimer(backoff/2 + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, r.cfg.MaxBackoff)
	}
}

func (r *Resolver) policyStream(ctx context.Context, w *Watch, onMsg func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := r.cfg.Policies.Watch(ctx, &outboundpb.TrafficSpec{
		SourceWorkload: r.token,
		Target:         &outboundpb.TrafficSpec_Authority{Authority: w.Target.Path},
	})
	if err != nil {
		return err
	}
	for {
		p, err := s.Recv()
		if err != nil {
			return err
		}
		onMsg()
		w.accrual.Store(&Accrual{Config: accrualOf(p)})
	}
}

// accrualOf reads the HTTP failure accrual of a policy (consecutive
// failures; other kinds are not supported and mean off).
func accrualOf(p *outboundpb.OutboundPolicy) *breaker.Config {
	var fa *outboundpb.FailureAccrual
	switch k := p.GetProtocol().GetKind().(type) {
	case *outboundpb.ProxyProtocol_Detect_:
		fa = k.Detect.GetHttp1().GetFailureAccrual()
	case *outboundpb.ProxyProtocol_Http1_:
		fa = k.Http1.GetFailureAccrual()
	case *outboundpb.ProxyProtocol_Http2_:
		fa = k.Http2.GetFailureAccrual()
	case *outboundpb.ProxyProtocol_Grpc_:
		fa = k.Grpc.GetFailureAccrual()
	}
	cf := fa.GetConsecutiveFailures()
	if cf == nil {
		return nil
	}
	return &breaker.Config{
		MaxFailures: cf.GetMaxFailures(),
		MinPenalty:  cf.GetBackoff().GetMinBackoff().AsDuration(),
		MaxPenalty:  cf.GetBackoff().GetMaxBackoff().AsDuration(),
		JitterRatio: float64(cf.GetBackoff().GetJitterRatio()),
	}
}
