package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/control"
	"github.com/weft-mesh/weft/internal/inject"
	"github.com/weft-mesh/weft/internal/install"
	"github.com/weft-mesh/weft/internal/proxyinit"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// defaultInitImage is the Dockerfile's proxy-init target, tagged as the
// main image with a -proxy-init suffix.
func defaultInitImage() string { return install.DefaultImageRepo + "-proxy-init:" + VersionString() }

// manifestInput opens the manifests argument: "-" is stdin.
func manifestInput(g *Globals, arg string) (io.Reader, func(), error) {
	if arg == "-" {
		return g.In, func() {}, nil
	}
	f, err := os.Open(arg)
	if err != nil {
		return nil, nil, &ExitError{Code: 2, Err: fmt.Errorf("inject: %w", err)}
	}
	return f, func() { f.Close() }, nil
}

func newCmdInject(g *Globals) *cobra.Command {
	var (
		manual      bool
		cfg         inject.Config
		anchorsFile string
	)
	cmd := &cobra.Command{
		Use:   "inject FILE|-",
		Short: "Mesh the workloads in Kubernetes manifests (add the inject annotation, or with --manual the proxy itself)",
		Long: `Read Kubernetes manifests (a file, or - for stdin) and print them with
every workload's pod template (Deployments, StatefulSets, DaemonSets,
ReplicaSets, Jobs, CronJobs, Pods, and those in Lists) meshed, as
'linkerd inject' does. Other documents pass through unchanged.

By default the 'linkerd.io/inject: enabled' annotation is added, and the
control plane's admission webhook adds the proxy when the pods are created.
With --manual the proxy container ('weft proxy' in transparent mode) and the
'weft proxy-init' init container (iptables redirection honouring
config.linkerd.io/skip-inbound-ports and skip-outbound-ports) are added
here instead.`,
		Example: `  kubectl get deploy -n faces -o yaml | weft inject - | kubectl apply -f -
  weft inject --manual --identity-trust-anchors-file ca.crt app.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mode := inject.ModeAnnotate
			if manual {
				mode = inject.ModeManual
				if anchorsFile != "" {
					b, err := os.ReadFile(anchorsFile)
					if err != nil {
						return &ExitError{Code: 2, Err: fmt.Errorf("inject: --identity-trust-anchors-file: %w", err)}
					}
					cfg.TrustAnchors = b
				} else {
					fmt.Fprintln(g.Err, "warning: no --identity-trust-anchors-file: the injected proxies will not start until WEFT_PROXY_IDENTITY_TRUST_ANCHORS is set")
				}
			}
			in, done, err := manifestInput(g, args[0])
			if err != nil {
				return err
			}
			defer done()
			cfg.Version = VersionString()
			return inject.Transform(in, g.Out, g.Err, mode, cfg)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&manual, "manual", false, "add the proxy and init containers instead of the annotation")
	f.StringVar(&cfg.Image, "image", defaultImage(), "the weft image of the injected containers (--manual)")
	f.StringVar(&cfg.InitImage, "init-image", defaultInitImage(), "the image of the proxy-init container, with iptables (--manual)")
	f.StringVar(&cfg.ControlAddr, "control-addr", inject.DefaultControlAddr, "the control plane's gRPC address the proxies use (--manual)")
	f.StringVar(&anchorsFile, "identity-trust-anchors-file", "", "PEM trust anchors given to the proxies (--manual; 'kubectl get cm -n weft weft-identity-trust-roots')")
	return cmd
}

func newCmdUninject(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "uninject FILE|-",
		Short:   "Remove what 'weft inject' (with or without --manual) added to Kubernetes manifests",
		Example: `  kubectl get deploy -n faces -o yaml | weft uninject - | kubectl apply -f -`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, done, err := manifestInput(g, args[0])
			if err != nil {
				return err
			}
			defer done()
			return inject.Transform(in, g.Out, g.Err, inject.ModeUninject, inject.Config{})
		},
	}
}

// webhookFlags are 'weft control's flags for the proxy injector webhook.
type webhookFlags struct {
	addr, certFile, keyFile string
	proxyImage              string
	initImage               string
	controlAddr             string
}

func addWebhookFlags(f *pflag.FlagSet, o *webhookFlags) {
	f.StringVar(&o.addr, "webhook-addr", "", "serve the proxy injector (mutating admission webhook) over HTTPS here; empty serves none")
	f.StringVar(&o.certFile, "webhook-tls-cert-file", "", "PEM serving certificate of the webhook (the API server must trust its CA)")
	f.StringVar(&o.keyFile, "webhook-tls-key-file", "", "PEM key of the webhook's serving certificate")
	f.StringVar(&o.proxyImage, "proxy-image", defaultImage(), "the weft image the webhook injects")
	f.StringVar(&o.initImage, "proxy-init-image", defaultInitImage(), "the image of the injected proxy-init container (with iptables)")
	f.StringVar(&o.controlAddr, "proxy-control-addr", inject.DefaultControlAddr, "the control plane's gRPC address the injected proxies use")
}

// config builds the webhook from the flags, reading namespaces' inject
// annotations from st and giving proxies the control plane's trust anchors
// (its --identity-trust-anchors-file, else the identity directory's).
func (o webhookFlags) config(st store.Store, id control.IdentityConfig, logger *slog.Logger) (*control.WebhookConfig, error) {
	anchorsFile := id.Files.TrustAnchors
	if o.addr == "" {
		return nil, nil
	}
	if o.certFile == "" || o.keyFile == "" {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("control: --webhook-addr needs --webhook-tls-cert-file and --webhook-tls-key-file")}
	}
	cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
	if err != nil {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("control: webhook certificate: %w", err)}
	}
	var anchors []byte
	if anchorsFile != "" {
		if anchors, err = os.ReadFile(anchorsFile); err != nil {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("control: %w", err)}
		}
	}
	h := &inject.Webhook{
		TrustAnchorsFile: filepath.Join(id.Dir, tlsid.AnchorsFile),
		Config:           inject.Config{Image: o.proxyImage, InitImage: o.initImage, ControlAddr: o.controlAddr, Version: VersionString(), TrustAnchors: anchors},
		Logger:           logger,
		Namespaces: func(ctx context.Context, ns string) (map[string]string, error) {
			obj, err := st.Get(ctx, api.Ref{Kind: api.KindNamespace, Name: ns})
			if errors.Is(err, store.ErrNotFound) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return obj.GetAnnotations(), nil
		},
	}
	return &control.WebhookConfig{Addr: o.addr, Handler: h, TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}, nil
}

func newCmdProxyInit(g *Globals) *cobra.Command {
	var (
		cfg             proxyinit.Config
		skipIn, skipOut string
		restoreBin      string
		dryRun          bool
	)
	cmd := &cobra.Command{
		Use:   "proxy-init",
		Short: "Redirect the pod's TCP traffic to its proxy with iptables (the injected init container)",
		Long: `Install nat-table iptables rules, in one iptables-restore transaction, that
redirect inbound TCP to the proxy's inbound port and outbound TCP to its
outbound port, except connections of the proxy's UID, loopback traffic and
the skipped ports. 'weft inject --manual' and the webhook run it as the
init container 'weft-init', which needs NET_ADMIN and NET_RAW.`,
		Example: `  weft proxy-init --incoming-proxy-port=4143 --outgoing-proxy-port=4140 --proxy-uid=2102 \
    --inbound-ports-to-ignore=4191 --outbound-ports-to-ignore=25,587
  weft proxy-init --dry-run   # print the rules`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.SkipInbound, err = inject.ParsePorts(skipIn); err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("proxy-init: --inbound-ports-to-ignore: %w", err)}
			}
			if cfg.SkipOutbound, err = inject.ParsePorts(skipOut); err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("proxy-init: --outbound-ports-to-ignore: %w", err)}
			}
			if err := cfg.Validate(); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if dryRun {
				_, err := io.WriteString(g.Out, proxyinit.Rules(cfg))
				return err
			}
			return proxyinit.Apply(cmd.Context(), restoreBin, cfg)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.InboundPort, "incoming-proxy-port", inject.InboundPort, "the proxy's inbound port")
	f.IntVar(&cfg.OutboundPort, "outgoing-proxy-port", inject.OutboundPort, "the proxy's outbound port")
	f.IntVar(&cfg.ProxyUID, "proxy-uid", inject.ProxyUID, "UID the proxy runs as; its connections are not redirected")
	f.StringVar(&skipIn, "inbound-ports-to-ignore", "", "inbound ports and ranges not redirected (25,4000-4100)")
	f.StringVar(&skipOut, "outbound-ports-to-ignore", "", "outbound ports and ranges not redirected")
	f.StringVar(&restoreBin, "iptables-restore", "iptables-restore", "the iptables-restore binary")
	f.BoolVar(&dryRun, "dry-run", false, "print the rules instead of installing them")
	return cmd
}
