package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/ingress"
	"github.com/weft-mesh/weft/internal/ratelimit"
)

// ratelimitOptions are the flags of 'weft ratelimit'.
type ratelimitOptions struct {
	addr          string
	adminAddr     string
	configs       []string
	workshop      bool
	redis         string
	redisTimeout  time.Duration
	keyPrefix     string
	shadowMode    bool
	headers       bool
	strict        bool
	shutdownGrace time.Duration
	logLevel      string
}

func newCmdRatelimit(g *Globals) *cobra.Command {
	o := ratelimitOptions{
		addr:          ratelimit.DefaultAddr,
		adminAddr:     ratelimit.DefaultAdminAddr,
		redisTimeout:  250 * time.Millisecond,
		shutdownGrace: ratelimit.DefaultShutdownGrace,
		logLevel:      "info",
	}
	cmd := &cobra.Command{
		Use:   "ratelimit",
		Short: "Run the rate limit service (normally started by 'weft up')",
		Long: `Run weft's rate limit service: Envoy's rate limit protocol v3
(envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) at --addr, the
service an ingress RateLimitService (protocol_version: v3) points at.

Limits are configured in envoyproxy/ratelimit's YAML format, one domain per
file: --config takes files and directories (every *.yaml and *.yml in it) and
may be repeated. Files are watched: an edit takes effect at once, and a bad
edit is logged and ignored, keeping the last good configuration. --workshop
adds the Faces workshop's rule (domain emissary, descriptor mykey=myvalue,
8 requests per second).

Counters live in memory, or in Redis with --redis host:port so that several
replicas share one limit. If Redis is lost, each request gets an error (the
ingress then lets it through, or answers 500 with failure_mode_deny) until
Redis is back.

The admin server at --admin-addr serves /ready (configuration loaded and,
with --redis, Redis answering), /live and /metrics.`,
		Example: `  weft ratelimit --config ./ratelimit.d --addr 127.0.0.1:8081
  weft ratelimit --workshop --redis 127.0.0.1:6379`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("ratelimit: --log-level: %w", err)}
			}
			logger := slog.New(slog.NewTextHandler(g.Err, &slog.HandlerOptions{Level: level}))
			var builtin map[string][]byte
			if o.workshop {
				builtin = map[string][]byte{"(built-in workshop config)": ratelimit.WorkshopConfig()}
			}
			if len(o.configs) == 0 && !o.workshop {
				return &ExitError{Code: 2, Err: fmt.Errorf("ratelimit: no configuration: give --config FILE|DIR (envoyproxy/ratelimit YAML) or --workshop")}
			}
			s, err := ratelimit.Listen(ratelimit.ServerConfig{
				Addr:            o.addr,
				AdminAddr:       o.adminAddr,
				ConfigPaths:     o.configs,
				Builtin:         builtin,
				RedisAddr:       o.redis,
				RedisTimeout:    o.redisTimeout,
				KeyPrefix:       o.keyPrefix,
				ShadowMode:      o.shadowMode,
				ResponseHeaders: o.headers,
				StrictDomains:   o.strict,
				ShutdownGrace:   o.shutdownGrace,
				Logger:          logger,
			})
			if err != nil {
				return err
			}
			return s.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", o.addr, "gRPC listen address (RateLimitService)")
	f.StringVar(&o.adminAddr, "admin-addr", o.adminAddr, "admin server address (/ready, /live, /metrics)")
	f.StringArrayVar(&o.configs, "config", nil, "envoyproxy/ratelimit YAML file or directory (repeatable)")
	f.BoolVar(&o.workshop, "workshop", false, "add the Faces workshop's rule: domain emissary, mykey=myvalue, 8 requests per second")
	f.StringVar(&o.redis, "redis", "", "keep counters in Redis at host:port (shared by replicas) instead of in memory")
	f.DurationVar(&o.redisTimeout, "redis-timeout", o.redisTimeout, "bound on each Redis operation")
	f.StringVar(&o.keyPrefix, "key-prefix", "", "prefix of every counter key (to share one Redis)")
	f.BoolVar(&o.shadowMode, "shadow-mode", false, "count but answer OK to everything")
	f.BoolVar(&o.headers, "response-headers", false, "add RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset to answers (sent with the ingress's 429)")
	f.BoolVar(&o.strict, "strict-domains", false, "answer requests for an unconfigured domain with an error (NOT_FOUND) instead of OK")
	f.DurationVar(&o.shutdownGrace, "shutdown-grace", o.shutdownGrace, "how long to wait for RPCs to finish on shutdown")
	f.StringVar(&o.logLevel, "log-level", o.logLevel, "log level: debug, info, warn or error")
	return cmd
}

// ingressRateLimiter lets the ingress call rate limit services through a
// ratelimit.Pool: it satisfies ingress.RateLimiter. The ingress applies the
// RateLimitService's timeout_ms to the context itself, so the clients add
// no timeout of their own.
type ingressRateLimiter struct {
	pool *ratelimit.Pool
	addr string
}

var _ ingress.RateLimiter = ingressRateLimiter{}

// newIngressRateLimiter returns the ingress's rate limit client; close
// returns its connections. addr, when set, is where the rate limit service
// really is (in local mode, the address the supervisor gave 'weft
// ratelimit'), used whatever the RateLimitService's spec.service says (a
// cluster name such as ratelimit.emissary:8081 that does not resolve on a
// laptop); "" dials spec.service as written.
func newIngressRateLimiter(addr string) (limiter ingress.RateLimiter, close func() error) {
	p := ratelimit.NewPool(ratelimit.ClientOptions{Timeout: -1})
	return ingressRateLimiter{pool: p, addr: addr}, p.Close
}

func (l ingressRateLimiter) ShouldRateLimit(ctx context.Context, req ingress.RateLimitRequest) (ingress.RateLimitResponse, error) {
	descs := make([]ratelimit.Descriptor, len(req.Descriptors))
	for i, d := range req.Descriptors {
		es := make(ratelimit.Descriptor, len(d))
		for j, e := range d {
			es[j] = ratelimit.Entry{Key: e.Key, Value: e.Value}
		}
		descs[i] = es
	}
	addr := req.Service
	if l.addr != "" {
		addr = l.addr
	}
	dec, err := l.pool.Check(ctx, addr, req.Domain, descs)
	if err != nil {
		return ingress.RateLimitResponse{}, err
	}
	return ingress.RateLimitResponse{OverLimit: dec.Limited, ResponseHeaders: dec.Headers, Body: dec.Body}, nil
}
