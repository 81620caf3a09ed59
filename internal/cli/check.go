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

	"github.com/weft-mesh/weft/internal/install"
	"github.com/weft-mesh/weft/internal/local"
	proxyidentity "github.com/weft-mesh/weft/internal/proxy/identity"
	"github.com/weft-mesh/weft/internal/tlsid"
)

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

// skipped is a check that did not run, reported as such (unlike errSkip,
// which leaves it out): the user should know it was not checked, and why.
type skipped struct{ error }

func skipf(format string, a ...any) error { return skipped{fmt.Errorf(format, a...)} }

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
	anchors []*x509.Certificate // the identity checks read these three
	issuer  *x509.Certificate
	inter   []*x509.Certificate

	// cluster is set in cluster mode.
	cluster *clusterState
}

// checks are the local mode's checks.
func checks() []checker {
	list := []checker{
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
			return checkControlHealth(ctx, s)
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
	}
	list = append(list, identityChecks()...)
	return append(list, checker{"weft-data-plane", "data plane proxies certificate match CA", "weft-data-plane-certs", false, checkProxyCertificates})
}

// identityChecks check the trust anchors and issuer that the check before
// them (from files locally, from the issuer Secret on a cluster) loaded.
func identityChecks() []checker {
	return []checker{
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
		return fmt.Errorf("%s %s expired on %s; proxies cannot get certificates: replace it", what, tlsid.Describe(c), c.NotAfter.UTC().Format(time.RFC3339))
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

// checkControlHealth asks the control plane at s.controlAddr for its gRPC
// health.
func checkControlHealth(ctx context.Context, s *checkState) error {
	return withControl(ctx, s, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			hint := "see 'weft status' and 'weft logs'"
			if s.cluster != nil {
				hint = "see 'kubectl -n " + s.cluster.namespace + " logs deploy/" + install.ControlName + "'"
			}
			return fmt.Errorf("control plane at %s does not answer: %w; %s", s.controlAddr, err, hint)
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("control plane at %s reports %s", s.controlAddr, resp.Status)
		}
		return nil
	})
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
	Result      string `json:"result"` // success, warning, error or skipped (Error says why)
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
			var sk skipped
			if errors.As(err, &sk) {
				out.Result = "skipped"
				out.Hint = ""
			} else if errors.As(err, &w) {
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
			case "skipped":
				fmt.Fprintf(w, "- %s (skipped)\n    %s\n", c.Description, c.Error)
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

// checkOptions are the flags of 'weft check'.
type checkOptions struct {
	output      string
	mode        string
	identityDir string
	files       tlsid.Files
	controlAddr string
	timeout     time.Duration

	// Cluster mode.
	pre, proxy     bool
	kubeconfig     string
	context        string
	proxyNamespace string
}

// checkMode decides what 'weft check' looks at. Flags that only make sense
// for one mode choose it (--pre, --proxy, --kubeconfig, --context,
// --namespace: the cluster; --state-dir, --identity-*: the local mesh);
// without any, a $KUBECONFIG (or running inside a pod) means the cluster,
// unless $WEFT_STATE_DIR names a local mesh. --mode overrides all of it.
func checkMode(cmd *cobra.Command, o *checkOptions) (string, error) {
	set := func(names ...string) []string {
		var out []string
		for _, n := range names {
			if f := cmd.Flags().Lookup(n); f != nil && f.Changed {
				out = append(out, "--"+n)
			}
		}
		return out
	}
	clusterFlags := set("pre", "proxy", "kubeconfig", "context", "namespace")
	localFlags := set("identity-dir", "identity-trust-anchors-file", "identity-issuer-certificate-file", "identity-issuer-key-file")
	switch o.mode {
	case "local":
		if len(clusterFlags) > 0 {
			return "", fmt.Errorf("check: %s checks a cluster, not --mode=local", strings.Join(clusterFlags, ", "))
		}
		return "local", nil
	case "kube":
		if len(localFlags) > 0 {
			return "", fmt.Errorf("check: %s checks a local mesh, not --mode=kube (the cluster's identity is read from its Secret)", strings.Join(localFlags, ", "))
		}
		return "kube", nil
	case "auto":
	default:
		return "", fmt.Errorf("check: unknown --mode %q: use auto, local or kube", o.mode)
	}
	switch {
	case len(clusterFlags) > 0 && len(localFlags) > 0:
		return "", fmt.Errorf("check: %s checks a cluster but %s a local mesh: give one or the other", strings.Join(clusterFlags, ", "), strings.Join(localFlags, ", "))
	case len(clusterFlags) > 0:
		return "kube", nil
	case len(localFlags) > 0 || len(set("state-dir")) > 0 || os.Getenv("WEFT_STATE_DIR") != "":
		return "local", nil
	case os.Getenv("KUBECONFIG") != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		return "kube", nil
	}
	return "local", nil
}

func newCmdCheck(g *Globals) *cobra.Command {
	o := checkOptions{output: "table", mode: "auto", timeout: 5 * time.Second}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that the mesh is healthy",
		Long: `Check the mesh as 'linkerd check' does. Each check prints a line: √
passed, ‼ warning, × failed (with a hint), - skipped (with the reason). The
command exits 1 if any check fails; warnings do not fail it.

A local mesh (weft up): the state directory and supervisor, the control plane
(gRPC health, the Identity service), the certificate authority (trust anchors
and issuer valid, chaining, and not expiring within 60 days) and the proxies'
certificates.

A Kubernetes cluster (found as 'weft control --store=kube' finds it:
--kubeconfig, else $KUBECONFIG, else the in-cluster configuration; --context
picks a kubeconfig context):
  --pre    before 'weft install': the API server answers and is recent
           enough, you may create what 'weft install' creates, namespace weft
           does not exist yet, and Pod Security lets proxy-init run.
  (none)   after: the CRDs of 'weft install --crds', the namespace, the
           Deployments (available) and Services, the identity Secret and
           ConfigMap, the proxy injector webhook and its certificate, and,
           with --control-addr (e.g. through 'kubectl port-forward'), the
           control plane's health and Destination service.
  --proxy  also the data plane (-n NAMESPACE, else every namespace): injected
           pods' proxies are ready, trust the cluster's anchors and run the
           control plane's version.

Which one is checked: --pre, --proxy, --kubeconfig, --context and -n mean the
cluster; --state-dir and the --identity-* flags the local mesh; otherwise a
set $KUBECONFIG (or running in a pod) means the cluster unless
$WEFT_STATE_DIR is set. --mode=local or --mode=kube decides explicitly. The
first line of the output says which was checked.`,
		Example: `  weft check
  weft check -o json
  weft check --pre --kubeconfig ~/.kube/config
  weft check --mode=kube --control-addr 127.0.0.1:8086
  weft check --proxy -n faces`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.output != "table" && o.output != "json" {
				return &ExitError{Code: 2, Err: fmt.Errorf("check: unknown --output %q: use table or json", o.output)}
			}
			mode, err := checkMode(cmd, &o)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if o.pre && o.proxy {
				return &ExitError{Code: 2, Err: errors.New("check: --pre checks a cluster before installing, --proxy one after: give one of them")}
			}
			if o.proxyNamespace != "" && !o.proxy {
				return &ExitError{Code: 2, Err: errors.New("check: -n chooses the namespace of the pods --proxy checks: add --proxy")}
			}
			s := &checkState{controlAddr: o.controlAddr, timeout: o.timeout, now: time.Now()}
			var list []checker
			var header string
			if mode == "kube" {
				c := &clusterState{namespace: install.DefaultNamespace, proxyNamespace: o.proxyNamespace}
				c.cfg, c.source, c.cfgErr = clusterConfig(o.kubeconfig, o.context)
				s.cluster = c
				list = clusterChecks(o.pre, o.proxy)
				what := "after install"
				switch {
				case o.pre:
					what = "before install (--pre)"
				case o.proxy:
					what = "with the data plane (--proxy)"
				}
				where := c.source
				if c.cfg != nil {
					where = c.cfg.Host + ", " + c.source
				}
				header = fmt.Sprintf("Checking the Kubernetes cluster %s (%s)", what, where)
			} else {
				dir := g.StateDirOrDefault()
				if o.files != (tlsid.Files{}) && (o.files.TrustAnchors == "" || o.files.IssuerCertificate == "" || o.files.IssuerKey == "") {
					return &ExitError{Code: 2, Err: errors.New("check: give all three of --identity-trust-anchors-file, --identity-issuer-certificate-file and --identity-issuer-key-file, or none")}
				}
				s.stateDir, s.identityDir, s.files = dir, o.identityDir, o.files
				if s.identityDir == "" {
					s.identityDir = identityDirOf(dir)
				}
				list = checks()
				header = "Checking the local mesh in " + dir
			}
			rep := runChecks(cmd.Context(), list, s)
			if o.output == "json" {
				enc := json.NewEncoder(g.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.Out, "%s\n\n", header)
				printCheckTable(g.Out, rep)
			}
			if !rep.Success {
				return &ExitError{Code: 1, Err: errors.New("check: some checks failed (see above)")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", o.output, "output format: table or json")
	f.StringVar(&o.mode, "mode", o.mode, "what to check: local (a 'weft up' mesh), kube (a cluster), or auto (see above)")
	f.StringVar(&o.identityDir, "identity-dir", "", "identity directory (local; default STATE_DIR/identity)")
	f.StringVar(&o.files.TrustAnchors, "identity-trust-anchors-file", "", "the trust anchors the mesh was started with (local; with the two other --identity-*-file flags)")
	f.StringVar(&o.files.IssuerCertificate, "identity-issuer-certificate-file", "", "the issuer certificate the mesh was started with (local)")
	f.StringVar(&o.files.IssuerKey, "identity-issuer-key-file", "", "the issuer key the mesh was started with (local)")
	f.StringVar(&o.controlAddr, "control-addr", "", "control plane gRPC address (default: the local mesh's, from STATE_DIR/mesh.json; on a cluster, none: those checks are skipped)")
	f.DurationVar(&o.timeout, "timeout", o.timeout, "how long to wait for the control plane (and each API request)")
	f.BoolVar(&o.pre, "pre", false, "check a cluster before 'weft install'")
	f.BoolVar(&o.proxy, "proxy", false, "also check the cluster's data plane (injected pods)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else the in-cluster configuration)")
	f.StringVar(&o.context, "context", "", "kubeconfig context (default its current context)")
	f.StringVarP(&o.proxyNamespace, "namespace", "n", "", "with --proxy: the namespace of the pods to check (default every namespace)")
	return cmd
}
