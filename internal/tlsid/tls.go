package tlsid

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
)

// ALPN protocol names of the mesh transport. Servers offer both; a mesh
// client asks for ALPNMeshH2 first, and "h2" lets ordinary HTTP/2 stacks
// (which insist on it) connect too.
const (
	// ALPNMeshH2 is HTTP/2 between proxies (HTTP/1 requests ride it with
	// l5d-orig-proto).
	ALPNMeshH2 = "weft.mesh/h2"
	// ALPNH2 is plain HTTP/2 over TLS.
	ALPNH2 = "h2"
)

// MeshALPN is the server's and default client's ALPN list.
var MeshALPN = []string{ALPNMeshH2, ALPNH2}

// CertSource supplies this workload's current certificate on every
// handshake, so a renewed certificate is used by the next handshake while
// open connections keep going. *proxy/identity.Client implements it.
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// ServerConfig is the TLS configuration of a mesh server (a proxy's
// inbound): TLS 1.3 only, mesh ALPN, and a client certificate that is
// REQUIRED and must chain to anchors. After the handshake, PeerIdentity
// gives the client's identity.
func ServerConfig(anchors *x509.CertPool, getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		NextProtos:       MeshALPN,
		GetCertificate:   getCertificate,
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        anchors,
		VerifyConnection: verifyClientIdentity,
	}
}

// verifyClientIdentity refuses client certificates (already chained to the
// anchors by crypto/tls) that do not name exactly one identity.
func verifyClientIdentity(cs tls.ConnectionState) error {
	if _, err := leafIdentity(cs); err != nil {
		return fmt.Errorf("tlsid: client certificate: %w", err)
	}
	return nil
}

// ClientConfig is the TLS configuration a mesh client (a proxy's outbound)
// uses toward one peer: TLS 1.3 only, mesh ALPN, the server must chain to
// anchors AND its certificate must name exactly serverIdentity (the
// tls_identity Destination announced for the endpoint; it is also sent as
// SNI, which is how the peer's inbound knows the connection is meant for
// it). The client presents its own certificate from getClientCertificate.
func ClientConfig(anchors *x509.CertPool, serverIdentity string, getClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: MeshALPN,
		// ServerName makes crypto/tls verify the chain to RootCAs and the
		// name; VerifyConnection then insists on that name and no other
		// (a wildcard or a multi-name certificate is not an identity).
		ServerName:           serverIdentity,
		RootCAs:              anchors,
		GetClientCertificate: getClientCertificate,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := leafIdentity(cs)
			if err != nil {
				return fmt.Errorf("tlsid: server certificate: %w", err)
			}
			if id != serverIdentity {
				return fmt.Errorf("tlsid: server presented identity %q, want %q", id, serverIdentity)
			}
			return nil
		},
	}
}

// PeerIdentity returns the verified identity of a mesh connection's peer
// (client_id on the server side, server_id on the client side).
func PeerIdentity(cs tls.ConnectionState) (string, error) {
	return leafIdentity(cs)
}

func leafIdentity(cs tls.ConnectionState) (string, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", errors.New("no verified certificate")
	}
	leaf := cs.VerifiedChains[0][0]
	if len(leaf.DNSNames) != 1 {
		return "", fmt.Errorf("certificate %s has %d DNS names; a mesh identity has exactly one", Describe(leaf), len(leaf.DNSNames))
	}
	return leaf.DNSNames[0], nil
}

// Mesh builds and caches the TLS configurations of one workload: one
// server configuration and one client configuration per peer identity, so
// the hot path does not rebuild them per connection.
type Mesh struct {
	anchors *x509.CertPool
	certs   CertSource
	server  *tls.Config
	clients sync.Map // server identity -> *tls.Config
}

// NewMesh returns the configurations of a workload whose certificates come
// from certs and whose peers chain to anchors.
func NewMesh(anchors *x509.CertPool, certs CertSource) *Mesh {
	return &Mesh{anchors: anchors, certs: certs, server: ServerConfig(anchors, certs.GetCertificate)}
}

// Anchors returns the trust anchors.
func (m *Mesh) Anchors() *x509.CertPool { return m.anchors }

// Server returns the inbound TLS configuration (shared; do not modify).
func (m *Mesh) Server() *tls.Config { return m.server }

// Client returns the outbound TLS configuration toward a peer that must be
// serverIdentity (shared; do not modify; Clone it to change NextProtos).
func (m *Mesh) Client(serverIdentity string) *tls.Config {
	if c, ok := m.clients.Load(serverIdentity); ok {
		return c.(*tls.Config)
	}
	c, _ := m.clients.LoadOrStore(serverIdentity, ClientConfig(m.anchors, serverIdentity, m.certs.GetClientCertificate))
	return c.(*tls.Config)
}

// StaticCertSource serves one fixed certificate (tests, and workloads
// given a certificate by other means).
type StaticCertSource struct{ Cert *tls.Certificate }

func (s StaticCertSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.Cert, nil
}

func (s StaticCertSource) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.Cert, nil
}
