package cli

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/weft-mesh/weft/internal/control"
	"github.com/weft-mesh/weft/internal/store/kube"
	"github.com/weft-mesh/weft/internal/store/local"
	"github.com/weft-mesh/weft/internal/tlsid"
	"github.com/weft-mesh/weft/internal/tokenreview"
)

// controlOptions are the flags of 'weft control'.
type controlOptions struct {
	addr          string
	adminAddr     string
	store         storeFlags
	shutdownGrace time.Duration
	logLevel      string
	identity      control.IdentityConfig
	webhook       webhookFlags
	pprof         bool
}

func newCmdControl(g *Globals) *cobra.Command {
	o := controlOptions{
		addr:          control.DefaultAddr,
		adminAddr:     control.DefaultAdminAddr,
		shutdownGrace: control.DefaultShutdownGrace,
		logLevel:      "info",
		identity: control.IdentityConfig{
			TrustDomain:        tlsid.DefaultTrustDomain,
			IssuanceLifetime:   tlsid.DefaultLifetime,
			ClockSkewAllowance: tlsid.DefaultClockSkew,
		},
	}
	cmd := &cobra.Command{
		Use:   "control",
		Short: "Run the control plane (normally started by 'weft up')",
		Long: `Run weft's control plane: the Destination service proxies use to discover
endpoints and service profiles (io.linkerd.proxy.destination.Destination, the
Linkerd proxy API), served over gRPC at --addr from the resources in the
state directory, and the Identity service (io.linkerd.proxy.identity.Identity)
that signs the proxies' short-lived mTLS certificates.

The certificate authority (a trust anchor and an issuer) is generated into
--identity-dir (STATE_DIR/identity) on first start, or loaded from the
--identity-trust-anchors-file, --identity-issuer-certificate-file and
--identity-issuer-key-file files.

With --store=kube the resources are read from a Kubernetes API server instead
(--kubeconfig, else $KUBECONFIG, else the in-cluster configuration): Services,
EndpointSlices, Pods and the CRD kinds such as ServiceProfile, through
informers; the Identity service then checks proxies' tokens (their pods'
projected service account tokens, audience identity.l5d.io) with TokenReview.

The admin server at --admin-addr serves /ready (the store has been read),
/live and /metrics. On SIGINT or SIGTERM open streams end, so proxies
reconnect, and the process exits.`,
		Example: `  weft control --state-dir /tmp/mesh --addr 127.0.0.1:8086 --admin-addr 127.0.0.1:9996
  weft control --store=kube --kubeconfig ~/.kube/config --addr 0.0.0.0:8086`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("control: --log-level: %w", err)}
			}
			if err := o.store.validate("control"); err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(g.Err, &slog.HandlerOptions{Level: level}))
			dir := g.StateDirOrDefault()
			st, err := o.store.open("control", dir, logger, local.Options{}, kube.Options{})
			if err != nil {
				return err
			}
			defer st.Close()
			if st.Kube != nil {
				// Proxies present their pods' projected service
				// account tokens, checked with TokenReview.
				client, err := kubernetes.NewForConfig(st.Kube)
				if err != nil {
					return fmt.Errorf("control: %w", err)
				}
				o.identity.Validator = tokenreview.New(client, "")
			}
			if o.identity.Dir == "" {
				o.identity.Dir = filepath.Join(dir, "identity")
			}
			if o.identity.IssuanceLifetime <= 0 {
				return &ExitError{Code: 2, Err: fmt.Errorf("control: --identity-issuance-lifetime must be positive, got %s", o.identity.IssuanceLifetime)}
			}
			if o.identity.ClockSkewAllowance < 0 {
				return &ExitError{Code: 2, Err: fmt.Errorf("control: --identity-clock-skew-allowance must not be negative, got %s", o.identity.ClockSkewAllowance)}
			}
			if o.identity.ClockSkewAllowance == 0 {
				o.identity.ClockSkewAllowance = -1 // an explicit 0: no backdating (0 in the config means the default)
			}
			webhook, err := o.webhook.config(st.Store, o.identity, logger)
			if err != nil {
				return err
			}
			p, err := control.Listen(control.Config{
				Addr:          o.addr,
				AdminAddr:     o.adminAddr,
				Store:         st.Store,
				Logger:        logger,
				ShutdownGrace: o.shutdownGrace,
				Identity:      o.identity,
				Webhook:       webhook,
				Pprof:         o.pprof,
			})
			if err != nil {
				return err
			}
			return p.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", o.addr, "gRPC listen address (Destination)")
	f.StringVar(&o.adminAddr, "admin-addr", o.adminAddr, "admin server address (/ready, /live, /metrics)")
	addStoreFlags(f, &o.store)
	f.DurationVar(&o.shutdownGrace, "shutdown-grace", o.shutdownGrace, "how long to wait for RPCs to finish on shutdown")
	f.StringVar(&o.logLevel, "log-level", o.logLevel, "log level: debug, info, warn or error")
	f.StringVar(&o.identity.Dir, "identity-dir", "", "identity directory: trust anchor, issuer and token key, generated if absent (default STATE_DIR/identity)")
	f.StringVar(&o.identity.Files.TrustAnchors, "identity-trust-anchors-file", "", "PEM trust anchors (with the two other --identity-*-file flags, instead of the generated ones)")
	f.StringVar(&o.identity.Files.IssuerCertificate, "identity-issuer-certificate-file", "", "PEM issuer certificate (an intermediate CA chaining to the trust anchors)")
	f.StringVar(&o.identity.Files.IssuerKey, "identity-issuer-key-file", "", "PEM issuer private key")
	f.StringVar(&o.identity.TrustDomain, "identity-trust-domain", o.identity.TrustDomain, "trust domain of the identities")
	f.DurationVar(&o.identity.IssuanceLifetime, "identity-issuance-lifetime", o.identity.IssuanceLifetime, "lifetime of the certificates issued to proxies")
	f.DurationVar(&o.identity.ClockSkewAllowance, "identity-clock-skew-allowance", o.identity.ClockSkewAllowance, "how far back certificates' NotBefore is set, for peers whose clocks lag")
	f.BoolVar(&o.pprof, "enable-pprof", false, "serve Go's profiles at /debug/pprof/ on the admin server")
	addWebhookFlags(f, &o.webhook)
	return cmd
}
