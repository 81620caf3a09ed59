package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Counter in a Redis server, so that several rate limit
// service replicas (behind several ingress replicas) share one limit. Each
// request's hits go in one pipeline: INCRBY and PEXPIRE per counter, the
// expiry set to the window's end (plus a margin for clock skew between
// replicas), so Redis drops closed windows by itself.
type Redis struct {
	addr   string
	client *redis.Client
	now    func() time.Time
}

// RedisOptions configures a Redis counter store.
type RedisOptions struct {
	// Addr is host:port.
	Addr string
	// Timeout bounds each dial, read and write; 0 means 250ms. A rate
	// limit answer is worth little after its caller's own deadline (20ms
	// by default), so this stays short.
	Timeout time.Duration
	// PoolSize is the number of connections; 0 means go-redis's default.
	PoolSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// expiryMargin keeps a counter a little past its window's end, for replicas
// whose clocks run behind.
const expiryMargin = time.Second

// NewRedis returns a Redis counter store. It does not connect until used:
// a Redis that is down at start, or later, makes each request fail with a
// clear error until it is back.
func NewRedis(o RedisOptions) *Redis {
	if o.Timeout <= 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	quietRedisLog.Do(func() { redis.SetLogger(slogRedis{}) })
	c := redis.NewClient(&redis.Options{
		Addr:         o.Addr,
		DialTimeout:  o.Timeout,
		ReadTimeout:  o.Timeout,
		WriteTimeout: o.Timeout,
		PoolSize:     o.PoolSize,
		// A down Redis should fail the request now, not after a series of
		// dials: the caller has a 20ms budget and its own failure mode.
		DialerRetries: 1,
		// Retrying would double count: INCRBY is not idempotent.
		MaxRetries: -1,
		// Identify ourselves without the HELLO round trip quirks of old
		// servers.
		Protocol:              2,
		DisableIdentity:       true,
		ContextTimeoutEnabled: true,
	})
	return &Redis{addr: o.Addr, client: c, now: o.Now}
}

// Add implements Counter.
func (r *Redis) Add(ctx context.Context, hits []Hit, after []uint64) error {
	if len(hits) == 0 {
		return nil
	}
	now := r.now()
	cmds := make([]*redis.IntCmd, len(hits))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, h := range hits {
			n := int64(h.N)
			if h.Refund {
				n = -n
			}
			cmds[i] = p.IncrBy(ctx, h.Key, n)
			p.PExpire(ctx, h.Key, h.End.Sub(now)+expiryMargin)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ratelimit: redis %s: %w", r.addr, err)
	}
	for i, c := range cmds {
		v := c.Val()
		if v < 0 { // refunds past zero
			v = 0
		}
		after[i] = uint64(v)
	}
	return nil
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ratelimit: redis %s: %w", r.addr, err)
	}
	return nil
}

// Close closes the connections.
func (r *Redis) Close() error { return r.client.Close() }

// quietRedisLog routes go-redis's own (process-wide) log lines, such as
// every failed dial while Redis is down, to slog at debug level: the
// failures already reach the operator as request errors and /ready.
var quietRedisLog sync.Once

type slogRedis struct{}

func (slogRedis) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "ratelimit: go-redis: "+fmt.Sprintf(format, v...))
}
