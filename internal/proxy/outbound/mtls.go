package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// Labels of plaintext hops, built once.
var (
	noTLSDisabled  = metrics.NoTLSLabels(metrics.NoTLSDisabled)
	noTLSDiscovery = metrics.NoTLSLabels(metrics.NoTLSFromDiscovery)
)

// meshPools holds one pool of mTLS connections per peer identity: an
// HTTP/2 transport (requests) and an HTTP/1.1 one (upgrades), each pooling
// by address, so a connection is keyed by address and identity: a new pod
// reusing a port under another service account never inherits a
// connection verified for the old one.
type meshPools struct {
	mesh           *tlsid.Mesh
	connectTimeout time.Duration
	log            *slog.Logger
	pools          sync.Map // identity -> *meshPool
}

// meshPool is the connections toward one peer identity.
type meshPool struct {
	identity string
	labels   metrics.Labels // tls="true",server_id=identity
	h2       *http2.Transport
	h1       *http.Transport
}

func (m *meshPools) get(identity string) *meshPool {
	if p, ok := m.pools.Load(identity); ok {
		return p.(*meshPool)
	}
	p := &meshPool{identity: identity, labels: metrics.TLSLabels("server_id", identity)}
	h2cfg := m.mesh.Client(identity)
	// HTTP/1.1 (upgrades) over mTLS: same verification, ALPN http/1.1.
	h1cfg := h2cfg.Clone()
	h1cfg.NextProtos = []string{"http/1.1"}
	p.h2 = &http2.Transport{
		// The URL scheme stays "http" (the hop is mTLS below HTTP); the
		// dialer does the TLS.
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			// The connection is shared by every request waiting for it:
			// the one that started the dial must not cancel it for all
			// (net/http's transport behaves so too). The connect and
			// handshake timeouts still bound it.
			c, err := m.dial(context.WithoutCancel(ctx), addr, identity, h2cfg)
			if err != nil {
				return nil, err
			}
			if np := c.ConnectionState().NegotiatedProtocol; np != tlsid.ALPNMeshH2 && np != tlsid.ALPNH2 {
				c.Close()
				return nil, &HandshakeError{Addr: addr, Identity: identity, Err: fmt.Errorf("peer negotiated ALPN %q, want %q", np, tlsid.ALPNMeshH2)}
			}
			return c, nil
		},
		DisableCompression: true,
		IdleConnTimeout:    90 * time.Second,
		ReadIdleTimeout:    10 * time.Second,
		PingTimeout:        5 * time.Second,
	}
	hp := new(http.Protocols)
	hp.SetHTTP1(true)
	p.h1 = &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return m.dial(ctx, addr, identity, h1cfg)
		},
		Protocols:           hp,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	actual, _ := m.pools.LoadOrStore(identity, p)
	return actual.(*meshPool)
}

// dial connects to addr and runs the mTLS handshake, in which the peer
// must prove identity.
func (m *meshPools) dial(ctx context.Context, addr, identity string, cfg *tls.Config) (*tls.Conn, error) {
	d := net.Dialer{Timeout: m.connectTimeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, m.connectTimeout+handshakeTimeout)
	defer cancel()
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(hctx); err != nil {
		raw.Close()
		if ctx.Err() == nil {
			m.log.Info("mTLS handshake failed", "addr", addr, "server_id", identity, "err", err)
		}
		return nil, &HandshakeError{Addr: addr, Identity: identity, Err: err}
	}
	return c, nil
}

// handshakeTimeout bounds an mTLS handshake beyond the connect timeout.
const handshakeTimeout = 5 * time.Second

// DialTLS connects to addr with mTLS, the peer proving identity (the
// opaque TCP path uses it; HTTP goes through the pools).
func (m *meshPools) DialTLS(ctx context.Context, addr, identity string) (net.Conn, error) {
	return m.dial(ctx, addr, identity, m.mesh.Client(identity))
}

func (m *meshPools) closeIdle() {
	m.pools.Range(func(_, v any) bool {
		p := v.(*meshPool)
		p.h2.CloseIdleConnections()
		p.h1.CloseIdleConnections()
		return true
	})
}

// HandshakeError is a failed mTLS handshake with a peer: nothing was sent,
// so the request may go to another endpoint.
type HandshakeError struct {
	Addr, Identity string
	Err            error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("mTLS handshake with %s (identity %s): %v", e.Addr, e.Identity, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

func isHandshakeError(err error) bool {
	var he *HandshakeError
	return errors.As(err, &he)
}
