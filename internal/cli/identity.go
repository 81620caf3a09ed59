package cli

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/tlsid"
)

// identityDirOf is where the control plane keeps the CA by default.
func identityDirOf(stateDir string) string { return filepath.Join(stateDir, "identity") }

func newCmdIdentity(g *Globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Show the mesh's trust anchors and issuer certificate",
		Long: `Show the certificate authority the control plane signs proxies'
certificates with: the trust anchors (roots every proxy trusts) and the
issuer (the intermediate CA that signs), with their validity and SHA-256
fingerprints. They live in STATE_DIR/identity, generated on the control
plane's first start.`,
		Example: `  weft identity
  weft identity --identity-dir /path/to/identity`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if dir == "" {
				dir = identityDirOf(g.StateDirOrDefault())
			}
			files := tlsid.DirFiles(dir)
			anchors, err := tlsid.LoadCertificates(files.TrustAnchors)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("identity: no trust anchors in %s: they are generated when the control plane first starts ('weft up')", dir)
				}
				return fmt.Errorf("identity: %w", err)
			}
			issuer, err := tlsid.LoadCertificates(files.IssuerCertificate)
			if err != nil {
				return fmt.Errorf("identity: %w", err)
			}
			now := time.Now()
			fmt.Fprintf(g.Out, "Trust anchors (%s)\n", files.TrustAnchors)
			for _, c := range anchors {
				printCert(g.Out, c, now)
			}
			fmt.Fprintf(g.Out, "\nIssuer (%s)\n", files.IssuerCertificate)
			for _, c := range issuer {
				printCert(g.Out, c, now)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "identity-dir", "", "identity directory (default STATE_DIR/identity)")
	return cmd
}

func printCert(w io.Writer, c *x509.Certificate, now time.Time) {
	left := c.NotAfter.Sub(now)
	var state string
	switch {
	case now.Before(c.NotBefore):
		state = "not yet valid"
	case left < 0:
		state = fmt.Sprintf("EXPIRED %d days ago", int(-left.Hours()/24))
	default:
		state = fmt.Sprintf("%d days left", int(left.Hours()/24))
	}
	fmt.Fprintf(w, "  Subject:      %s\n", c.Subject)
	fmt.Fprintf(w, "  Issuer:       %s\n", c.Issuer)
	fmt.Fprintf(w, "  Serial:       %s\n", c.SerialNumber.Text(16))
	fmt.Fprintf(w, "  Not before:   %s\n", c.NotBefore.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  Not after:    %s (%s)\n", c.NotAfter.UTC().Format(time.RFC3339), state)
	fmt.Fprintf(w, "  Key:          %s\n", keyAlgorithm(c.PublicKey))
	fmt.Fprintf(w, "  Fingerprint:  SHA256 %s\n", tlsid.Fingerprint(c))
}

func keyAlgorithm(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", pub)
	}
}
