package discovery

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"

	"github.com/weft-mesh/weft/internal/proxy/route"
)

// Profile returns the service's routes and retry budget as Destination's
// GetProfile last described them; nil until the first answer, which
// State waits for (and after a failed GetProfile: requests then go
// without routes).
func (w *Watch) Profile() *route.Profile { return w.profile.Load() }

// runProfile follows the GetProfile stream of w until ctx ends,
// reconnecting with backoff and keeping the last good profile meanwhile.
func (r *Resolver) runProfile(ctx context.Context, w *Watch) {
	log := r.log.With("path", w.Target.Path, "stream", "profile")
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := r.profileStream(ctx, w, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		// No profile yet: requests waiting for one go on without routes.
		w.profileSettled()
		log.Debug("profile stream ended; retrying", "err", err, "retry_in", backoff)
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

func (r *Resolver) profileStream(ctx context.Context, w *Watch, onMsg func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := r.cfg.Client.GetProfile(ctx, &pb.GetDestination{Scheme: "k8s", Path: w.Target.Path, ContextToken: r.token})
	if err != nil {
		return err
	}
	for {
		dp, err := s.Recv()
		if err != nil {
			return err
		}
		onMsg()
		if w.byAddr {
			// Before the profile counts as answered: WatchAddr's callers
			// wake up to it.
			w.setLogical(dp.GetFullyQualifiedName())
		}
		p, err := route.Compile(dp, nil)
		if err != nil {
			// Keep serving the last good profile.
			r.log.Warn("ignoring a profile the proxy cannot use", "path", w.Target.Path, "err", err)
			w.profileSettled()
			continue
		}
		w.profile.Store(p)
		w.profileSettled()
	}
}

// setLogical records the Service an address's profile names by its FQN
// ("" for none), keeping the cached lookup while the name stays the same.
func (w *Watch) setLogical(fqn string) {
	authority := ""
	if fqn != "" {
		authority = strings.TrimSuffix(fqn, ".") + ":" + strconv.Itoa(int(w.Target.Port))
	}
	if l := w.logical.Load(); l != nil && l.authority == authority {
		return
	}
	w.logical.Store(&logical{authority: authority})
}
