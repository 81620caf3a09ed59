package ingress

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

// TLS termination.
//
// Certificates come from v1 Secrets (type kubernetes.io/tls, keys tls.crt
// and tls.key) named by a Host's tlsSecret or a Gateway listener's
// certificateRefs. They are part of the immutable Table: a listener's
// tls.Config asks the current table for the certificate on every handshake
// (GetCertificate), so a changed Secret takes effect at the next handshake
// without rebinding anything.

// sniCerts are the certificates one port serves, most specific hostname
// first.
type sniCerts struct {
	entries []sniEntry
}

type sniEntry struct {
	glob string // lower-case; "*" for any
	cert *tls.Certificate
	from api.Ref // the Host or Gateway that brought it, for logs
}

func (s *sniCerts) add(glob string, cert *tls.Certificate, from api.Ref) {
	if glob == "" {
		glob = "*"
	}
	s.entries = append(s.entries, sniEntry{glob: strings.ToLower(glob), cert: cert, from: from})
}

func (s *sniCerts) sort() {
	sort.SliceStable(s.entries, func(i, j int) bool {
		ci, li := globRank(s.entries[i].glob)
		cj, lj := globRank(s.entries[j].glob)
		if ci != cj {
			return ci < cj
		}
		return li > lj
	})
}

// pick chooses the certificate for a server name: the most specific
// hostname that matches it, else (no SNI, or an unknown name) the first
// certificate, as Envoy's default filter chain would.
func (s *sniCerts) pick(serverName string) *tls.Certificate {
	if s == nil || len(s.entries) == 0 {
		return nil
	}
	if serverName != "" {
		name := lower(strings.TrimSuffix(serverName, "."))
		for _, e := range s.entries {
			if globMatch(e.glob, name) {
				return e.cert
			}
		}
	}
	return s.entries[0].cert
}

// CertLoader returns the certificate in a Secret; Build calls it for every
// Secret a Host or Gateway refers to.
type CertLoader func(ref api.Ref) (*tls.Certificate, error)

// secretCerts loads certificates from the Secrets that Hosts and Gateways
// refer to, and only those: a store with thousands of unrelated Secrets
// costs nothing (Emissary issue #4543). The parsed certificate of a Secret
// whose content did not change since the last reload is reused, since
// parsing keys on every reload would cost CPU for nothing.
type secretCerts struct {
	mu    sync.Mutex
	cache map[api.Ref]cachedCert
	used  map[api.Ref]bool // by the table being built
}

type cachedCert struct {
	sum  [32]byte
	cert *tls.Certificate
	err  error
}

// loader returns a CertLoader that reads Secrets with get (nil and an
// error wrapping store.ErrNotFound for a missing one).
func (c *secretCerts) loader(get func(api.Ref) (*corev1.Secret, error)) CertLoader {
	c.mu.Lock()
	c.used = map[api.Ref]bool{}
	c.mu.Unlock()
	return func(ref api.Ref) (*tls.Certificate, error) {
		c.mu.Lock()
		c.used[ref] = true
		c.mu.Unlock()
		s, err := get(ref)
		if errors.Is(err, store.ErrNotFound) || (err == nil && s == nil) {
			return nil, fmt.Errorf("no Secret %s/%s: apply a kubernetes.io/tls Secret with tls.crt and tls.key", ref.Namespace, ref.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s/%s: %w", ref.Namespace, ref.Name, err)
		}
		crt, key, err := secretKeyPair(s)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		h.Write(crt)
		h.Write([]byte{0})
		h.Write(key)
		var sum [32]byte
		h.Sum(sum[:0])
		c.mu.Lock()
		defer c.mu.Unlock()
		if got, ok := c.cache[ref]; ok && got.sum == sum {
			return got.cert, got.err
		}
		cert, err := tls.X509KeyPair(crt, key)
		var out *tls.Certificate
		if err != nil {
			err = fmt.Errorf("bad certificate in Secret %s/%s: %w", ref.Namespace, ref.Name, err)
		} else {
			out = &cert
		}
		if c.cache == nil {
			c.cache = map[api.Ref]cachedCert{}
		}
		c.cache[ref] = cachedCert{sum: sum, cert: out, err: err}
		return out, err
	}
}

// prune forgets the certificates the last table built did not use.
func (c *secretCerts) prune() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ref := range c.cache {
		if !c.used[ref] {
			delete(c.cache, ref)
		}
	}
}

// storeSecrets reads Secrets from a store.
func storeSecrets(ctx context.Context, st store.Store) func(api.Ref) (*corev1.Secret, error) {
	return func(ref api.Ref) (*corev1.Secret, error) {
		o, err := st.Get(ctx, ref)
		if err != nil {
			return nil, err
		}
		s, ok := o.(*corev1.Secret)
		if !ok {
			return nil, fmt.Errorf("%s is a %T, not a Secret", ref, o)
		}
		return s, nil
	}
}

// secretKeyPair reads tls.crt and tls.key, from data or (for manifests that
// were never through an API server) stringData.
func secretKeyPair(s *corev1.Secret) (crt, key []byte, err error) {
	switch s.Type {
	case corev1.SecretTypeTLS, corev1.SecretTypeOpaque, "":
	default:
		return nil, nil, fmt.Errorf("the type of Secret %s/%s is %s; want kubernetes.io/tls", s.Namespace, s.Name, s.Type)
	}
	get := func(k string) []byte {
		if v, ok := s.Data[k]; ok {
			return v
		}
		if v, ok := s.StringData[k]; ok {
			return []byte(v)
		}
		return nil
	}
	crt, key = get(corev1.TLSCertKey), get(corev1.TLSPrivateKeyKey)
	if len(crt) == 0 || len(key) == 0 {
		return nil, nil, fmt.Errorf("the Secret %s/%s lacks %s or %s", s.Namespace, s.Name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	return crt, key, nil
}

// tlsConfig is the configuration of every listener that may terminate TLS:
// the certificate is looked up in the current table at each handshake.
func (rt *Router) tlsConfig(port int32) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c := rt.table.Load().certs[port].pick(hello.ServerName)
			if c == nil {
				return nil, fmt.Errorf("ingress: port %d has no certificate for %q (no Host with a tlsSecret, or its Secret is missing)", port, hello.ServerName)
			}
			return c, nil
		},
	}
}

// sniffListener serves TLS and cleartext on one port, as Emissary's HTTPS
// protocol does: a connection whose first byte starts a TLS handshake
// record (0x16) is wrapped in tls.Server; anything else is served as
// cleartext HTTP/1 or h2c. Each new connection is sniffed on its own
// goroutine so that a slow client cannot stall Accept for the others.
type sniffListener struct {
	net.Listener
	cfg     *tls.Config
	timeout time.Duration

	conns   chan net.Conn
	errc    chan error
	mu      sync.Mutex
	pending map[net.Conn]struct{} // being sniffed; closed by Close
	ctx     context.Context
	cancel  context.CancelFunc
	started sync.Once
}

// sniffTimeout bounds the wait for a new connection's first byte; it
// matches the listeners' ReadHeaderTimeout, so that preconnected but idle
// browser sockets are treated alike on every port.
const sniffTimeout = 30 * time.Second

func newSniffListener(ln net.Listener, cfg *tls.Config) *sniffListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &sniffListener{Listener: ln, cfg: cfg, timeout: sniffTimeout, conns: make(chan net.Conn), errc: make(chan error, 1), ctx: ctx, cancel: cancel, pending: map[net.Conn]struct{}{}}
}

func (l *sniffListener) loop() {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.ctx.Err() != nil {
				l.errc <- err
				return
			}
			// Out of file descriptors and the like: wait and retry, as
			// http.Server does, rather than stop serving the port.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-l.ctx.Done():
				l.errc <- net.ErrClosed
				return
			}
			continue
		}
		backoff = 0
		go l.sniff(c)
	}
}

func (l *sniffListener) sniff(c net.Conn) {
	l.mu.Lock()
	if l.ctx.Err() != nil {
		l.mu.Unlock()
		c.Close()
		return
	}
	l.pending[c] = struct{}{}
	l.mu.Unlock()
	_ = c.SetReadDeadline(time.Now().Add(l.timeout))
	var first [1]byte
	n, err := c.Read(first[:])
	_ = c.SetReadDeadline(time.Time{})
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
	if err != nil || n == 0 {
		c.Close()
		return
	}
	pc := &prefixConn{Conn: c, prefix: first[:n]}
	var out net.Conn = pc
	if looksLikeTLS(first[:n]) {
		out = tls.Server(pc, l.cfg)
	}
	select {
	case l.conns <- out:
	case <-l.ctx.Done():
		c.Close()
	}
}

// Accept returns the next sniffed connection: a *tls.Conn (http.Server
// then runs the handshake and ALPN) or a plain one.
func (l *sniffListener) Accept() (net.Conn, error) {
	l.started.Do(func() { go l.loop() })
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err
		return nil, err
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes the connections still being sniffed
// (they have sent nothing, so nothing is lost).
func (l *sniffListener) Close() error {
	l.mu.Lock()
	l.cancel()
	for c := range l.pending {
		c.Close()
	}
	l.mu.Unlock()
	return l.Listener.Close()
}

// prefixConn replays bytes already read from a connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// looksLikeTLS is the sniffing decision: a TLS handshake record (0x16)
// cannot start an HTTP/1 method or the h2c preface.
func looksLikeTLS(b []byte) bool { return len(b) > 0 && b[0] == 0x16 }
