package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/proxy"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// proxyOptions are the flags of 'weft proxy'.
type proxyOptions struct {
	controlAddr    string
	outboundAddr   string
	inbound        []string
	transparent    bool
	inboundAddr    string
	adminAddr      string
	tapAddr        string
	namespace      string
	pod            string
	deployment     string
	serviceAccount string
	shutdownGrace  time.Duration
	logLevel       string
	adminPprof     bool
	cores          int
	// identity
	disableIdentity bool
	tokenFile       string
	anchorsFile     string
	trustDomain     string
}

func newCmdProxy(g *Globals) *cobra.Command {
	o := proxyOptions{
		controlAddr:    "127.0.0.1:8086",
		outboundAddr:   "127.0.0.1:4140",
		adminAddr:      "127.0.0.1:4191",
		namespace:      "default",
		serviceAccount: "default",
		shutdownGrace:  30 * time.Second,
		logLevel:       "info",
		trustDomain:    tlsid.DefaultTrustDomain,
		cores:          proxy.DefaultRuntime.Procs,
	}
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run a sidecar proxy (normally started by 'weft up')",
		Long: `Run weft's sidecar proxy for one workload replica.

The app sends its outbound traffic through --outbound-addr (HTTP_PROXY and
HTTPS_PROXY point there); the proxy resolves authorities through the control
plane at --control-addr, balances requests over endpoints and speaks HTTP/2 to
peer proxies. Each --inbound LISTEN=APP accepts traffic for one app port.
With --transparent (Kubernetes, behind 'weft proxy-init' iptables rules)
the app needs no proxy settings: its outbound TCP, redirected to
--outbound-addr, goes where it was dialed (SO_ORIGINAL_DST), HTTP routed by
its Host when that names a mesh service; inbound TCP, redirected to
--inbound-addr, goes to 127.0.0.1 and the port the client dialed.
The admin server at --admin-addr serves /metrics, /ready and /live (and with
--admin-pprof Go's profiles at /debug/pprof/, for 'go tool pprof'); --tap-addr
serves live request taps (io.linkerd.proxy.tap.Tap) to 'weft viz tap'.

The proxy gets a short-lived certificate for its service account's identity
from the control plane's Identity service, proving who it is with the token
in $WEFT_PROXY_IDENTITY_TOKEN (or --identity-token-file) and checking it
against the trust anchors in $WEFT_PROXY_IDENTITY_TRUST_ANCHORS (or
--identity-trust-anchors-file); 'weft up' sets both. It is ready only once it
has a certificate, serves it at /identity.json, and speaks mutual TLS to every
meshed peer. --disable-identity runs it without (plaintext between proxies).`,
		Example: `  weft proxy --control-addr 127.0.0.1:8086 --outbound-addr 127.0.0.1:4140 \
    --inbound 127.0.0.1:4143=127.0.0.1:8080 --admin-addr 127.0.0.1:4191 \
    --namespace faces --pod smiley-5d8f-abcde --deployment smiley --service-account smiley`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			cfg := proxy.Config{
				ControlAddr:    o.controlAddr,
				OutboundAddr:   o.outboundAddr,
				AdminAddr:      o.adminAddr,
				TapAddr:        o.tapAddr,
				Namespace:      o.namespace,
				Pod:            o.pod,
				Deployment:     o.deployment,
				ServiceAccount: o.serviceAccount,
				Transparent:    o.transparent,
				InboundAddr:    o.inboundAddr,
				ShutdownGrace:  o.shutdownGrace,
				AdminPprof:     o.adminPprof,
				Logger:         slog.New(slog.NewTextHandler(g.Err, &slog.HandlerOptions{Level: level})),
			}
			for _, s := range o.inbound {
				in, err := proxy.ParseInbound(s)
				if err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				cfg.Inbound = append(cfg.Inbound, in)
			}
			if !o.disableIdentity {
				cfg.Identity = &proxy.IdentityConfig{
					TokenFile:   o.tokenFile,
					AnchorsFile: o.anchorsFile,
					Domain:      tlsid.Domain{TrustDomain: o.trustDomain},
				}
			}
			if err := cfg.Validate(); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if o.cores < 0 {
				return &ExitError{Code: 2, Err: fmt.Errorf("proxy: --cores %d: want 0 (every CPU) or more", o.cores)}
			}
			p, err := proxy.Listen(cfg)
			if err != nil {
				return err
			}
			// The whole process is the proxy from here on.
			rt := proxy.DefaultRuntime
			rt.Procs = o.cores // 0: Go's default, the CPUs or the container's CPU limit
			cfg.Logger.Info("go runtime", "settings", rt.Apply())
			// Give back the pages of the (all-roles) weft binary that
			// starting touched and a proxy does not use.
			if n, err := proxy.TrimExecutable(); err != nil {
				cfg.Logger.Debug("executable pages stay resident", "err", err)
			} else {
				cfg.Logger.Debug("executable pages trimmed", "mapped_bytes", n)
			}
			return p.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.controlAddr, "control-addr", o.controlAddr, "control plane (Destination) gRPC address")
	f.StringVar(&o.outboundAddr, "outbound-addr", o.outboundAddr, "outbound listener address (the app's HTTP_PROXY/HTTPS_PROXY)")
	f.StringArrayVar(&o.inbound, "inbound", nil, "inbound listener and the app address behind it, LISTEN=APP (repeatable, one per container port)")
	f.BoolVar(&o.transparent, "transparent", false, "transparent mode behind weft proxy-init's iptables rules (Linux): original destinations from SO_ORIGINAL_DST")
	f.StringVar(&o.inboundAddr, "inbound-addr", "", "transparent mode's inbound listener (redirected inbound traffic goes to 127.0.0.1 and the port the client dialed)")
	f.StringVar(&o.adminAddr, "admin-addr", o.adminAddr, "admin server address (/metrics, /ready, /live)")
	f.BoolVar(&o.adminPprof, "admin-pprof", false, "also serve Go's runtime profiles (CPU, heap, allocations, goroutines) at /debug/pprof/ on the admin server")
	f.IntVar(&o.cores, "cores", o.cores, "CPU cores the proxy's Go code may use at once (GOMAXPROCS; 0 means Go's default: every CPU, or the container's CPU limit; $GOMAXPROCS wins, as $GOGC and $GOMEMLIMIT do for the collector)")
	f.StringVar(&o.tapAddr, "tap-addr", "", "tap server address (io.linkerd.proxy.tap.Tap gRPC, for 'weft viz tap'); empty serves none")
	f.StringVar(&o.namespace, "namespace", o.namespace, "the workload's namespace (short service names resolve in it)")
	f.StringVar(&o.pod, "pod", "", "the workload's pod name")
	f.StringVar(&o.deployment, "deployment", "", "the workload's deployment name (metric label)")
	f.StringVar(&o.serviceAccount, "service-account", o.serviceAccount, "the workload's service account")
	f.DurationVar(&o.shutdownGrace, "shutdown-grace", o.shutdownGrace, "how long to drain in-flight requests on shutdown")
	f.StringVar(&o.logLevel, "log-level", o.logLevel, "log level: debug, info, warn or error")
	f.BoolVar(&o.disableIdentity, "disable-identity", false, "run without an identity: no certificate, plaintext to and from peers")
	f.StringVar(&o.tokenFile, "identity-token-file", "", "file holding the workload's identity token (default $WEFT_PROXY_IDENTITY_TOKEN)")
	f.StringVar(&o.anchorsFile, "identity-trust-anchors-file", "", "PEM trust anchors (default $WEFT_PROXY_IDENTITY_TRUST_ANCHORS)")
	f.StringVar(&o.trustDomain, "identity-trust-domain", o.trustDomain, "trust domain of the mesh's identities")
	return cmd
}
