// Package destination serves io.linkerd.proxy.destination.Destination: it
// tells proxies which endpoints stand behind a service authority (Get) and
// what the service's routes, retry budget and timeouts are (GetProfile).
//
// Data flows watch -> publish -> translate -> stream. One goroutine (Run)
// watches the store; on each level-triggered notification it lists
// Services, EndpointSlices, Pods and ServiceProfiles into an immutable
// snapshot and publishes it. Each open stream has a translator subscribed to
// the publisher; the translator diffs the new snapshot against what its
// stream was last sent and pushes the messages onto the stream's bounded
// queue without blocking. The stream's own goroutine drains the queue to
// gRPC. A stream whose queue fills is closed (and counted), so the proxy
// reconnects and starts again from the current state.
package destination

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// DefaultQueueCapacity is how many snapshots' worth of updates a stream may
// have pending before it is closed as too slow.
const DefaultQueueCapacity = 100

// Config configures a Server.
type Config struct {
	// Store is where Services, EndpointSlices, Pods and ServiceProfiles are
	// read from. Required.
	Store store.Store
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// ClusterDomain is the DNS suffix of service names; "" means
	// DefaultClusterDomain ("cluster.local").
	ClusterDomain string
	// QueueCapacity bounds each stream's queue of pending updates; 0 means
	// DefaultQueueCapacity.
	QueueCapacity int
	// RetryInterval is how long to wait before reading the store again after
	// a failed read or a lost watch; 0 means one second.
	RetryInterval time.Duration
	// Identity, when set, is the mesh's identity domain: meshed endpoints
	// are announced with tls_identity Identity.Name(ns, serviceAccount),
	// so proxies reach them over mTLS. nil announces no identities
	// (plaintext between proxies).
	Identity *tlsid.Domain
	// Loaded, if set, is called once, in its own goroutine, after the
	// first snapshot is published: the store's initial load is behind it.
	Loaded func()
}

// Server implements the Destination gRPC service over a store.Store.
// Create it with New, start Run, and register it on a grpc.Server.
type Server struct {
	pb.UnimplementedDestinationServer

	cfg      Config
	log      *slog.Logger
	pub      *publisher
	metrics  *Metrics
	shutdown chan struct{} // closed when Run returns; ends every stream
	loaded   sync.Once
}

var _ pb.DestinationServer = (*Server)(nil)

// New validates cfg and returns a Server. It does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("destination: no store configured")
	}
	if cfg.QueueCapacity < 0 {
		return nil, fmt.Errorf("destination: queue capacity %d: must be positive", cfg.QueueCapacity)
	}
	if cfg.QueueCapacity == 0 {
		cfg.QueueCapacity = DefaultQueueCapacity
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = DefaultClusterDomain
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "destination"),
		pub:      newPublisher(),
		metrics:  &Metrics{},
		shutdown: make(chan struct{}),
	}, nil
}

// Register adds the Destination service to g.
func (s *Server) Register(g *grpc.Server) { pb.RegisterDestinationServer(g, s) }

// Metrics returns the server's counters.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Ready reports whether the server has read the store and can answer.
func (s *Server) Ready() bool {
	select {
	case <-s.shutdown:
		return false
	default:
	}
	return s.pub.ready()
}

// Run watches the store and publishes snapshots until ctx ends, then ends
// every open stream and returns nil. It survives store errors: a failed
// read or a lost watch is logged and retried. Call it once.
func (s *Server) Run(ctx context.Context) error {
	defer close(s.shutdown)
	for {
		ch, err := s.cfg.Store.Watch(ctx, watchedKinds...)
		if err != nil {
			s.log.Error("cannot watch the store; retrying", "err", err, "retry", s.cfg.RetryInterval)
		} else {
			s.follow(ctx, ch)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			s.log.Warn("store watch ended; watching again", "retry", s.cfg.RetryInterval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.RetryInterval):
		}
	}
}

// follow rebuilds and publishes a snapshot on each notification until ch
// closes or ctx ends. A failed build keeps the last good snapshot and
// retries after RetryInterval even without a new notification.
func (s *Server) follow(ctx context.Context, ch <-chan struct{}) {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-retry:
		}
		snap, err := buildSnapshot(ctx, s.cfg.Store, s.cfg.ClusterDomain, s.cfg.Identity, s.log)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.metrics.snapErrors.Add(1)
			s.log.Error("cannot read the store; keeping the last snapshot", "err", err, "retry", s.cfg.RetryInterval)
			retry = time.After(s.cfg.RetryInterval)
			continue
		}
		retry = nil
		s.metrics.snapshots.Add(1)
		s.pub.publish(snap)
		if s.cfg.Loaded != nil {
			// Not on this loop: the callback may take a while (a full
			// GC), and the next change must not wait for it.
			s.loaded.Do(func() { go s.cfg.Loaded() })
		}
	}
}

// Get streams the endpoints of the path's target. See the package comment
// and the Destination contract: the first message is an add or a
// no_endpoints, later ones are diffs.
func (s *Server) Get(req *pb.GetDestination, stream grpc.ServerStreamingServer[pb.Update]) error {
	tok := parseContextToken(req.GetContextToken())
	t, err := parseTarget(req.GetPath(), tok.NS, s.cfg.ClusterDomain)
	if err != nil {
		return status.Error(codes.InvalidArgument, "destination: "+err.Error())
	}
	log := s.log.With("rpc", "Get", "path", req.GetPath(), "target", t.String(), "pod", tok.Pod)
	tr := newEndpointTranslator(t, s.cfg.QueueCapacity, s.metrics)
	return serveStream(s, stream.Context(), log, rpcGet, tr, tr.q, func(batch []*pb.Update) error {
		for _, u := range batch {
			if err := stream.Send(u); err != nil {
				return err
			}
			s.metrics.updatesSent[rpcGet].Add(1)
		}
		return nil
	})
}

// GetProfile streams the profile of the path's target, again whenever it
// changes.
func (s *Server) GetProfile(req *pb.GetDestination, stream grpc.ServerStreamingServer[pb.DestinationProfile]) error {
	tok := parseContextToken(req.GetContextToken())
	t, err := parseTarget(req.GetPath(), tok.NS, s.cfg.ClusterDomain)
	if err != nil {
		return status.Error(codes.InvalidArgument, "destination: "+err.Error())
	}
	log := s.log.With("rpc", "GetProfile", "path", req.GetPath(), "target", t.String(), "pod", tok.Pod)
	tr := newProfileTranslator(t, tok.NS, s.cfg.ClusterDomain, s.cfg.QueueCapacity, s.metrics)
	return serveStream(s, stream.Context(), log, rpcGetProfile, tr, tr.q, func(p *pb.DestinationProfile) error {
		if err := stream.Send(p); err != nil {
			return err
		}
		s.metrics.updatesSent[rpcGetProfile].Add(1)
		return nil
	})
}

// serveStream subscribes l, then sends what arrives on q until the client
// goes away, the server shuts down, or the queue overflows.
func serveStream[T any](s *Server, ctx context.Context, log *slog.Logger, r rpc, l listener, q *queue[T], send func(T) error) error {
	s.metrics.streams[r].Add(1)
	s.metrics.streamsOpen[r].Add(1)
	defer s.metrics.streamsOpen[r].Add(-1)
	s.pub.subscribe(l)
	defer s.pub.unsubscribe(l)
	log.Debug("stream opened")
	for {
		// Check for the end first so a stream never sends past an overflow
		// or a shutdown it could have seen.
		select {
		case <-ctx.Done():
			log.Debug("stream closed by client")
			return nil
		case <-s.shutdown:
			return status.Error(codes.Unavailable, "destination: server shutting down")
		case <-q.overflowed:
			log.Warn("update queue full; closing the stream so the client reconnects", "capacity", cap(q.items))
			return status.Error(codes.Unavailable, "destination: stream fell behind; reconnect for a fresh snapshot")
		default:
		}
		select {
		case <-ctx.Done():
		case <-s.shutdown:
		case <-q.overflowed:
		case item := <-q.items:
			if err := send(item); err != nil {
				log.Debug("send failed", "err", err)
				return err
			}
		}
	}
}
