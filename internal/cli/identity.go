package cli

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	idpb "github.com/linkerd/linkerd2-proxy-api/go/identity"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/internal/local"
	proxyidentity "github.com/weft-mesh/weft/internal/proxy/identity"
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

// --- weft check ---

// expiryWarning is how long before expiry a certificate draws a warning.
const expiryWarning = 60 * 24 * time.Hour

// checkHintBase is where the checks' hints are documented.
const checkHintBase = "docs/checks.md#"

// checker is one line of 'weft check'. Adding a check (e.g. each proxy's
// certificate, once proxies expose it) is adding one entry to checks().
type checker struct {
	category    string
	description string
	hint        string // anchor in docs/checks.md
	// fatal: when it fails, the rest of its category is not run.
	fatal bool
	run   func(ctx context.Context, s *checkState) error
}

// errSkip leaves a check out of the report (what it needs is missing and
// an earlier check already said so).
var errSkip = errors.New("skipped")

// warning marks a check's error as a warning (‼), not a failure.
type warning struct{ error }

func warnf(format string, a ...any) error { return warning{fmt.Errorf(format, a...)} }

// checkState is what the checks learn and share as they run.
type checkState struct {
	stateDir    string
	identityDir string
	controlAddr string // from mesh.json, or --control-addr
	timeout     time.Duration
	now         time.Time

	// files, when set, are the CA files the mesh was started with
	// ('weft up --identity-*-file'), instead of identityDir's.
	files tlsid.Files

	mesh    *local.Mesh
	anchors []*x509.Certificate
	issuer  *x509.Certificate
	inter   []*x509.Certificate
}

func checks() []checker {
	return []checker{
		{"weft-state", "state directory exists", "weft-state-dir", true, func(_ context.Context, s *checkState) error {
			st, err := os.Stat(s.stateDir)
			if err != nil {
				return fmt.Errorf("state directory %s: %w; create a mesh with 'weft up' (or pass --state-dir)", s.stateDir, err)
			}
			if !st.IsDir() {
				return fmt.Errorf("%s is not a directory", s.stateDir)
			}
			return nil
		}},
		{"weft-state", "mesh is running", "weft-mesh-running", true, func(_ context.Context, s *checkState) error {
			m, err := local.ReadMesh(s.stateDir)
			if err != nil {
				if s.controlAddr != "" {
					return warnf("%v; checking the control plane at --control-addr %s anyway", err, s.controlAddr)
				}
				return err
			}
			s.mesh = m
			if s.controlAddr == "" {
				s.controlAddr = m.ControlAddr
			}
			return nil
		}},

		{"weft-control-plane", "control plane is reachable", "weft-control-reachable", true, func(ctx context.Context, s *checkState) error {
			if s.controlAddr == "" {
				return errSkip
			}
			return withControl(ctx, s, func(ctx context.Context, conn *grpc.ClientConn) error {
				resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
				if err != nil {
					return fmt.Errorf("control plane at %s does not answer: %w; see 'weft status' and 'weft logs'", s.controlAddr, err)
				}
				if resp.Status != healthpb.HealthCheckResponse_SERVING {
					return fmt.Errorf("control plane at %s reports %s", s.controlAddr, resp.Status)
				}
				return nil
			})
		}},
		{"weft-control-plane", "identity service is serving", "weft-identity-serving", false, func(ctx context.Context, s *checkState) error {
			if s.controlAddr == "" {
				return errSkip
			}
			return withControl(ctx, s, func(ctx context.Context, conn *grpc.ClientConn) error {
				// An empty request must be refused as invalid: that proves
				// the service is there without asking for a certificate.
				_, err := idpb.NewIdentityClient(conn).Certify(ctx, &idpb.CertifyRequest{})
				switch status.Code(err) {
				case codes.InvalidArgument, codes.Unauthenticated:
					return nil
				case codes.Unimplemented:
					return fmt.Errorf("the control plane at %s does not serve io.linkerd.proxy.identity.Identity; restart it with a current 'weft'", s.controlAddr)
				default:
					return fmt.Errorf("Identity/Certify at %s: %v", s.controlAddr, err)
				}
			})
		}},

		{"weft-identity", "certificate config is valid", "weft-identity-config", true, func(_ context.Context, s *checkState) error {
			files := tlsid.DirFiles(s.identityDir)
			if s.files != (tlsid.Files{}) {
				files = s.files
			}
			a, err := tlsid.Load(files, tlsid.DefaultDomain)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) && s.files == (tlsid.Files{}) {
					return fmt.Errorf("no certificate authority in %s (%w); it is generated when the control plane first starts (a mesh started with --identity-*-file flags: give 'weft check' the same flags)", s.identityDir, err)
				}
				return err
			}
			if !a.Issuer.IsCA || a.Issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
				return fmt.Errorf("issuer certificate %s is not a CA", tlsid.Describe(a.Issuer))
			}
			if pub, ok := a.Issuer.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(a.IssuerKey.Public()) {
				return fmt.Errorf("%s does not hold the key of the issuer certificate", tlsid.IssuerKeyFile)
			}
			s.anchors, s.issuer, s.inter = a.Anchors, a.Issuer, a.Intermediates
			return nil
		}},
		{"weft-identity", "trust anchors are using supported crypto algorithm", "weft-identity-anchors-algorithm", false, func(_ context.Context, s *checkState) error {
			for _, c := range s.anchors {
				if err := supportedKey(c); err != nil {
					return err
				}
			}
			return nil
		}},
		{"weft-identity", "trust anchors are within their validity period", "weft-identity-anchors-time-valid", false, func(_ context.Context, s *checkState) error {
			for _, c := range s.anchors {
				if err := timeValid(c, s.now, "trust anchor"); err != nil {
					return err
				}
			}
			return nil
		}},
		{"weft-identity", "trust anchors are valid for at least 60 days", "weft-identity-anchors-not-expiring-soon", false, func(_ context.Context, s *checkState) error {
			for _, c := range s.anchors {
				if err := notExpiringSoon(c, s.now, "trust anchor"); err != nil {
					return err
				}
			}
			return nil
		}},
		{"weft-identity", "issuer cert is using supported crypto algorithm", "weft-identity-issuer-algorithm", false, func(_ context.Context, s *checkState) error {
			return supportedKey(s.issuer)
		}},
		{"weft-identity", "issuer cert is within its validity period", "weft-identity-issuer-time-valid", false, func(_ context.Context, s *checkState) error {
			return timeValid(s.issuer, s.now, "issuer certificate")
		}},
		{"weft-identity", "issuer cert is valid for at least 60 days", "weft-identity-issuer-not-expiring-soon", false, func(_ context.Context, s *checkState) error {
			return notExpiringSoon(s.issuer, s.now, "issuer certificate")
		}},
		{"weft-identity", "issuer cert is issued by the trust anchor", "weft-identity-issuer-chains", false, func(_ context.Context, s *checkState) error {
			pool := x509.NewCertPool()
			for _, c := range s.anchors {
				pool.AddCert(c)
			}
			// Whether it chains, apart from whether it is current (checked
			// above): verify at a moment inside the issuer's validity.
			at := s.now
			if at.After(s.issuer.NotAfter) {
				at = s.issuer.NotAfter
			} else if at.Before(s.issuer.NotBefore) {
				at = s.issuer.NotBefore
			}
			_, err := tlsid.VerifyIssuer(s.issuer, s.inter, pool, at)
			return err
		}},

		{"weft-data-plane", "data plane proxies certificate match CA", "weft-data-plane-certs", false, checkProxyCertificates},
	}
}

// checkProxyCertificates asks every running proxy for its certificate
// (admin AdminPath) and verifies it against the trust anchors.
func checkProxyCertificates(ctx context.Context, s *checkState) error {
	if s.mesh == nil || len(s.anchors) == 0 {
		return errSkip
	}
	pool := x509.NewCertPool()
	for _, c := range s.anchors {
		pool.AddCert(c)
	}
	type result struct {
		name    string
		problem string // a failure
		silent  bool   // does not report its certificate
	}
	var comps []local.Component
	for _, c := range s.mesh.Components {
		if c.Kind == "Deployment" && !c.Terminated && c.Addresses["admin"] != "" {
			comps = append(comps, c)
		}
	}
	if len(comps) == 0 {
		return errSkip
	}
	results := make([]result, len(comps))
	client := &http.Client{Timeout: s.timeout}
	var wg sync.WaitGroup
	for i, c := range comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			r.name = c.Namespace + "/" + c.Name
			st, status, err := fetchProxyIdentity(ctx, client, c.Addresses["admin"])
			switch {
			case err != nil:
				r.problem = fmt.Sprintf("%s: %v", r.name, err)
			case status == http.StatusNotFound:
				r.silent = true
			case status != http.StatusOK:
				r.problem = fmt.Sprintf("%s: admin %s answered %d", r.name, proxyidentity.AdminPath, status)
			default:
				if err := verifyProxyCert(st, c.Namespace, pool, s.now); err != nil {
					r.problem = fmt.Sprintf("%s: %v", r.name, err)
				}
			}
		}()
	}
	wg.Wait()
	var problems, silent []string
	for _, r := range results {
		if r.problem != "" {
			problems = append(problems, r.problem)
		} else if r.silent {
			silent = append(silent, r.name)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d of %d proxies have no valid certificate:\n    * %s", len(problems), len(comps), strings.Join(problems, "\n    * "))
	}
	if len(silent) > 0 {
		return warnf("%d of %d proxies do not report their certificate (no %s on their admin server): %s", len(silent), len(comps), proxyidentity.AdminPath, strings.Join(silent, ", "))
	}
	return nil
}

func fetchProxyIdentity(ctx context.Context, client *http.Client, admin string) (proxyidentity.Status, int, error) {
	var st proxyidentity.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+proxyidentity.AdminPath, nil)
	if err != nil {
		return st, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, 0, fmt.Errorf("admin server unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, resp.StatusCode, nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return st, 0, fmt.Errorf("reading %s: %w", proxyidentity.AdminPath, err)
	}
	return st, resp.StatusCode, nil
}

func verifyProxyCert(st proxyidentity.Status, namespace string, anchors *x509.CertPool, now time.Time) error {
	if st.Certificate == "" {
		return fmt.Errorf("no certificate yet (%d failed attempts to get one from the control plane)", st.Failures)
	}
	certs, err := tlsid.ParseCertificates([]byte(st.Certificate))
	if err != nil {
		return fmt.Errorf("unreadable certificate: %w", err)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter, DNSName: st.Identity, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("certificate for %s does not verify against the trust anchors: %w", st.Identity, err)
	}
	ns, _, err := tlsid.DefaultDomain.Parse(st.Identity)
	if err == nil && ns != namespace {
		return fmt.Errorf("identity %s is not in the pod's namespace %s", st.Identity, namespace)
	}
	return nil
}

func supportedKey(c *x509.Certificate) error {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
	}
	return fmt.Errorf("certificate %s uses %s; use ECDSA P-256 (as generated)", tlsid.Describe(c), keyAlgorithm(c.PublicKey))
}

func timeValid(c *x509.Certificate, now time.Time, what string) error {
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%s %s is not valid before %s", what, tlsid.Describe(c), c.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("%s %s expired on %s; proxies cannot get certificates: replace it (see 'weft identity')", what, tlsid.Describe(c), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func notExpiringSoon(c *x509.Certificate, now time.Time, what string) error {
	if now.After(c.NotAfter) {
		return errSkip // the validity check says it
	}
	if c.NotAfter.Sub(now) < expiryWarning {
		return warnf("%s %s will expire on %s", what, tlsid.Describe(c), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func withControl(ctx context.Context, s *checkState, f func(context.Context, *grpc.ClientConn) error) error {
	conn, err := grpc.NewClient(s.controlAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("control plane address %q: %w", s.controlAddr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return f(ctx, conn)
}

// checkOutcome is one check's result, shaped as 'linkerd check -o json'.
type checkOutcome struct {
	Description string `json:"description"`
	Hint        string `json:"hint,omitempty"`
	Error       string `json:"error,omitempty"`
	Result      string `json:"result"` // success, warning or error
}

type checkCategory struct {
	Name   string         `json:"categoryName"`
	Checks []checkOutcome `json:"checks"`
}

type checkReport struct {
	Success    bool            `json:"success"`
	Categories []checkCategory `json:"categories"`
}

// runChecks runs the list in order.
func runChecks(ctx context.Context, list []checker, s *checkState) checkReport {
	rep := checkReport{Success: true}
	skipCategory := ""
	for _, c := range list {
		if c.category == skipCategory {
			continue
		}
		if n := len(rep.Categories); n == 0 || rep.Categories[n-1].Name != c.category {
			rep.Categories = append(rep.Categories, checkCategory{Name: c.category})
		}
		cat := &rep.Categories[len(rep.Categories)-1]
		err := c.run(ctx, s)
		if errors.Is(err, errSkip) {
			continue
		}
		out := checkOutcome{Description: c.description, Result: "success"}
		if err != nil {
			out.Error = err.Error()
			out.Hint = checkHintBase + c.hint
			var w warning
			if errors.As(err, &w) {
				out.Result = "warning"
			} else {
				out.Result = "error"
				rep.Success = false
				if c.fatal {
					skipCategory = c.category
				}
			}
		}
		cat.Checks = append(cat.Checks, out)
	}
	// Drop categories whose every check was skipped.
	kept := rep.Categories[:0]
	for _, c := range rep.Categories {
		if len(c.Checks) > 0 {
			kept = append(kept, c)
		}
	}
	rep.Categories = kept
	return rep
}

func printCheckTable(w io.Writer, rep checkReport) {
	for i, cat := range rep.Categories {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, cat.Name)
		fmt.Fprintln(w, strings.Repeat("-", len(cat.Name)))
		for _, c := range cat.Checks {
			switch c.Result {
			case "success":
				fmt.Fprintf(w, "√ %s\n", c.Description)
			case "warning":
				fmt.Fprintf(w, "‼ %s\n    %s\n    see %s for hints\n", c.Description, c.Error, c.Hint)
			default:
				fmt.Fprintf(w, "× %s\n    %s\n    see %s for hints\n", c.Description, c.Error, c.Hint)
			}
		}
	}
	fmt.Fprintln(w)
	if rep.Success {
		fmt.Fprintln(w, "Status check results are √")
	} else {
		fmt.Fprintln(w, "Status check results are ×")
	}
}

func newCmdCheck(g *Globals) *cobra.Command {
	var (
		output      string
		identityDir string
		files       tlsid.Files
		controlAddr string
		timeout     = 5 * time.Second
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that the mesh is healthy",
		Long: `Check the local mesh as 'linkerd check' does: the state directory and
supervisor, the control plane (gRPC health, the Identity service), and the
certificate authority (trust anchors and issuer valid, chaining, and not
expiring within 60 days). Each check prints a line: √ passed, ‼ warning,
× failed (with a hint). The command exits 1 if any check fails.`,
		Example: `  weft check
  weft check -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return &ExitError{Code: 2, Err: fmt.Errorf("check: unknown --output %q: use table or json", output)}
			}
			dir := g.StateDirOrDefault()
			if files != (tlsid.Files{}) && (files.TrustAnchors == "" || files.IssuerCertificate == "" || files.IssuerKey == "") {
				return &ExitError{Code: 2, Err: errors.New("check: give all three of --identity-trust-anchors-file, --identity-issuer-certificate-file and --identity-issuer-key-file, or none")}
			}
			s := &checkState{stateDir: dir, identityDir: identityDir, files: files, controlAddr: controlAddr, timeout: timeout, now: time.Now()}
			if s.identityDir == "" {
				s.identityDir = identityDirOf(dir)
			}
			rep := runChecks(cmd.Context(), checks(), s)
			if output == "json" {
				enc := json.NewEncoder(g.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printCheckTable(g.Out, rep)
			}
			if !rep.Success {
				return &ExitError{Code: 1, Err: errors.New("check: some checks failed (see above)")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.StringVar(&identityDir, "identity-dir", "", "identity directory (default STATE_DIR/identity)")
	f.StringVar(&files.TrustAnchors, "identity-trust-anchors-file", "", "the trust anchors the mesh was started with (with the two other --identity-*-file flags)")
	f.StringVar(&files.IssuerCertificate, "identity-issuer-certificate-file", "", "the issuer certificate the mesh was started with")
	f.StringVar(&files.IssuerKey, "identity-issuer-key-file", "", "the issuer key the mesh was started with")
	f.StringVar(&controlAddr, "control-addr", "", "control plane gRPC address (default: the running mesh's, from STATE_DIR/mesh.json)")
	f.DurationVar(&timeout, "timeout", timeout, "how long to wait for the control plane")
	return cmd
}
