package tap

import (
	"context"
	"errors"
	"fmt"
	"net"

	tappb "github.com/linkerd/linkerd2-proxy-api/go/tap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Observe streams the events of the requests req matches until the client
// goes away, or, with a limit, until that many requests have ended.
func (t *Tapper) Observe(req *tappb.ObserveRequest, stream tappb.Tap_ObserveServer) error {
	m, err := compile(req.GetMatch())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "tap: bad ObserveRequest: %v", err)
	}
	headers := req.GetExtract().GetHttp().GetHeaders() != nil
	w := newWatcher(t, m, headers, req.GetLimit())
	if !t.add(w) {
		return status.Errorf(codes.ResourceExhausted, "tap: %d taps are already open on this proxy; try again later", t.cfg.MaxTaps)
	}
	defer t.remove(w)
	t.log.Debug("tap opened", "limit", req.GetLimit(), "headers", headers)
	ctx := stream.Context()
	for {
		select {
		case ev := <-w.ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-w.done:
			// The limit is reached and every tapped exchange has ended:
			// flush what is queued, then end the stream.
			for {
				select {
				case ev := <-w.ch:
					if err := stream.Send(ev); err != nil {
						return err
					}
				default:
					return nil
				}
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// Serve serves the Tap gRPC service (cleartext) on ln until ctx ends; open
// Observe streams end with it.
func (t *Tapper) Serve(ctx context.Context, ln net.Listener) error {
	s := grpc.NewServer()
	tappb.RegisterTapServer(s, t)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	select {
	case <-ctx.Done():
		// Tap streams never end on their own: a graceful stop would wait
		// for the clients.
		s.Stop()
		<-errc
		return nil
	case err := <-errc:
		if err == nil || errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return fmt.Errorf("tap: serve on %s: %w", ln.Addr(), err)
	}
}
