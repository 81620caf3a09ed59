package identity

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/weft-mesh/weft/internal/tlsid"
)

// AnchorsEnv is the environment variable that may carry the trust anchors
// as PEM (Linkerd's LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS) when the proxy
// is given no anchors file.
const AnchorsEnv = "WEFT_PROXY_IDENTITY_TRUST_ANCHORS"

// Options are what 'weft proxy' knows from its flags.
type Options struct {
	// Conn reaches the control plane. Required.
	Conn grpc.ClientConnInterface
	// Namespace and ServiceAccount of the pod (--namespace,
	// --service-account; "" means "default").
	Namespace, ServiceAccount string
	// Domain of the mesh's identities (zero value: weft / cluster.local).
	Domain tlsid.Domain
	// TokenFile holds the workload token; "" means $WEFT_PROXY_IDENTITY_TOKEN.
	TokenFile string
	// AnchorsFile holds the PEM trust anchors (STATE_DIR/identity/ca.crt in
	// local mode); "" means $WEFT_PROXY_IDENTITY_TRUST_ANCHORS.
	AnchorsFile string
	// MinRefresh is the shortest renewal delay; 0 means DefaultMinRefresh
	// (tests with lifetimes of seconds lower it).
	MinRefresh time.Duration
	// Logger receives logs; nil means slog.Default().
	Logger *slog.Logger
}

// Setup builds the proxy's certificate client and the TLS configurations
// that use it. Start the client with go client.Run(ctx), report ready
// after <-client.Ready(), and use mesh.Server() on the inbound side and
// mesh.Client(tlsIdentity) toward each meshed endpoint.
func Setup(o Options) (*Client, *tlsid.Mesh, error) {
	if o.Namespace == "" {
		return nil, nil, errors.New("identity: the proxy has no namespace (--namespace)")
	}
	if o.ServiceAccount == "" {
		o.ServiceAccount = "default"
	}
	if err := o.Domain.Validate(); err != nil {
		return nil, nil, fmt.Errorf("identity: %w", err)
	}
	anchors, err := loadAnchors(o.AnchorsFile)
	if err != nil {
		return nil, nil, err
	}
	var tok TokenSource
	if o.TokenFile != "" {
		tok = TokenFile(o.TokenFile)
		if _, err := tok(); err != nil {
			return nil, nil, err
		}
	} else if tok, err = TokenFromEnv(""); err != nil {
		return nil, nil, err
	}
	c, err := New(Config{
		Conn: o.Conn, Name: o.Domain.Name(o.Namespace, o.ServiceAccount),
		Token: tok, Anchors: anchors, Logger: o.Logger, MinRefresh: o.MinRefresh,
	})
	if err != nil {
		return nil, nil, err
	}
	return c, tlsid.NewMesh(anchors, c), nil
}

func loadAnchors(path string) (*x509.CertPool, error) {
	if path != "" {
		p, err := tlsid.LoadAnchors(path)
		if err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		return p, nil
	}
	pemText := os.Getenv(AnchorsEnv)
	if pemText == "" {
		return nil, fmt.Errorf("identity: no trust anchors: give an anchors file or set $%s", AnchorsEnv)
	}
	p, err := tlsid.ParseAnchors([]byte(pemText))
	if err != nil {
		return nil, fmt.Errorf("identity: $%s: %w", AnchorsEnv, err)
	}
	return p, nil
}

// AdminPath is where the proxy's admin server should mount the Client
// (it serves Status as JSON); 'weft check' reads it to verify every
// proxy's certificate.
const AdminPath = "/identity.json"

// Status is what a proxy reports about its certificate: public material
// only, never the key.
type Status struct {
	Identity string `json:"identity"`
	// Certificate is the leaf and its chain as PEM; "" before the first.
	Certificate string  `json:"certificate,omitempty"`
	NotAfter    string  `json:"notAfter,omitempty"`
	Refreshes   uint64  `json:"refreshes"`
	Failures    uint64  `json:"failures"`
	Expiration  float64 `json:"expirationTimestampSeconds"`
}

// Status returns the client's current state.
func (c *Client) Status() Status {
	st := Status{Identity: c.cfg.Name, Refreshes: c.RefreshCount(), Failures: c.FailureCount(), Expiration: c.ExpirationTimestampSeconds()}
	if cert := c.cert.Load(); cert != nil {
		var b []byte
		for _, der := range cert.Certificate {
			b = append(b, pemCert(der)...)
		}
		st.Certificate = string(b)
		st.NotAfter = cert.Leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z")
	}
	return st
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ServeHTTP serves Status as JSON (mount it at AdminPath).
func (c *Client) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(c.Status())
}
