package cli

import (
	"crypto/tls"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/install"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// generatedIdentityValidity is how long a generated trust anchor and issuer
// last; users who rotate bring their own files.
const generatedIdentityValidity = 365 * 24 * time.Hour

func defaultImage() string { return install.DefaultImageRepo + ":" + VersionString() }

func newCmdInstall(g *Globals) *cobra.Command {
	var (
		crds                    bool
		image, initImage        string
		files                   tlsid.Files
		webhookCert, webhookKey string
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the Kubernetes manifests of the Weft control plane (or, with --crds, its CRDs)",
		Long: `Print manifests to apply to a Kubernetes cluster, as 'linkerd install' does.

With --crds: the CustomResourceDefinitions of every kind Weft reads that a
cluster may lack (ServiceProfile, the policy.linkerd.io kinds, Emissary's
Mapping/Listener/Host/RateLimitService, TrafficSplit, Link, ExternalWorkload,
and Gateway API's standard CRDs). Apply them first.

Without: namespace weft with the control plane (Destination, Identity and
Policy), the ingress and the rate limit service: ServiceAccounts, RBAC,
Deployments, Services, the identity trust anchor and issuer, and the rate
limit rules (ConfigMap weft-ratelimit-config, reloaded when edited). The
ingress reads the Kubernetes API (weft ingress --store=kube) and is meshed:
its pod carries the proxy and proxy-init exactly as 'weft inject --manual'
adds them (the injector skips namespace weft), and it dials services by
their cluster DNS names for that proxy to capture (--upstream=service). The
identity is generated unless the three --identity-*-file flags are given;
with the same files the output is byte-for-byte the same, so it can be kept
in git.`,
		Example: `  weft install --crds | kubectl apply -f -
  weft install | kubectl apply -f -
  weft install --identity-trust-anchors-file ca.crt \
    --identity-issuer-certificate-file issuer.crt --identity-issuer-key-file issuer.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if crds {
				return install.WriteCRDs(g.Out)
			}
			id, err := installIdentity(files)
			if err != nil {
				return err
			}
			wh, err := installWebhookTLS(webhookCert, webhookKey)
			if err != nil {
				return err
			}
			return install.WriteControlPlane(g.Out, install.Options{Image: image, InitImage: initImage, Identity: id, Webhook: wh, Version: VersionString()})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&crds, "crds", false, "print the CustomResourceDefinitions instead of the control plane")
	f.StringVar(&image, "image", defaultImage(), "the weft image the control plane, ingress and rate limit service run")
	f.StringVar(&initImage, "init-image", "", "the proxy-init image (with iptables) the injector adds (default: the --image repository with -proxy-init)")
	f.StringVar(&files.TrustAnchors, "identity-trust-anchors-file", "", "PEM trust anchors (with the two other --identity-*-file flags; default: generate)")
	f.StringVar(&files.IssuerCertificate, "identity-issuer-certificate-file", "", "PEM issuer certificate, chaining to the trust anchors")
	f.StringVar(&files.IssuerKey, "identity-issuer-key-file", "", "PEM issuer private key")
	f.StringVar(&webhookCert, "webhook-tls-cert-file", "", "PEM self-signed serving certificate of the proxy injector, for weft-proxy-injector.weft.svc (with --webhook-tls-key-file; default: generate)")
	f.StringVar(&webhookKey, "webhook-tls-key-file", "", "PEM key of the proxy injector's certificate")
	return cmd
}

// installWebhookTLS reads the injector's certificate and key, or generates
// them. A given certificate is also the CA bundle, so it must be
// self-signed (or a bundle ending in its CA).
func installWebhookTLS(certFile, keyFile string) (install.WebhookTLS, error) {
	if certFile == "" && keyFile == "" {
		w, err := install.GenerateWebhookTLS("", time.Now(), generatedIdentityValidity)
		if err != nil {
			return install.WebhookTLS{}, err
		}
		return w, nil
	}
	if certFile == "" || keyFile == "" {
		return install.WebhookTLS{}, &ExitError{Code: 2, Err: fmt.Errorf("install: give both --webhook-tls-cert-file and --webhook-tls-key-file, or neither to generate them")}
	}
	cert, err := os.ReadFile(certFile)
	if err != nil {
		return install.WebhookTLS{}, &ExitError{Code: 2, Err: fmt.Errorf("install: %w", err)}
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return install.WebhookTLS{}, &ExitError{Code: 2, Err: fmt.Errorf("install: %w", err)}
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return install.WebhookTLS{}, &ExitError{Code: 2, Err: fmt.Errorf("install: --webhook-tls-cert-file and --webhook-tls-key-file: %w", err)}
	}
	return install.WebhookTLS{CABundle: cert, Certificate: cert, Key: key}, nil
}

// installIdentity reads and checks the identity files, or generates a trust
// anchor and issuer when none are given.
func installIdentity(files tlsid.Files) (install.Identity, error) {
	given := 0
	for _, p := range []string{files.TrustAnchors, files.IssuerCertificate, files.IssuerKey} {
		if p != "" {
			given++
		}
	}
	switch given {
	case 0:
		gen, err := tlsid.Generate(tlsid.DefaultDomain, time.Now(), generatedIdentityValidity)
		if err != nil {
			return install.Identity{}, fmt.Errorf("install: generating the identity: %w", err)
		}
		key, err := tlsid.EncodeKey(gen.IssuerKey)
		if err != nil {
			return install.Identity{}, fmt.Errorf("install: %w", err)
		}
		return install.Identity{
			TrustAnchors:      tlsid.EncodeCertificates(gen.Anchor),
			IssuerCertificate: tlsid.EncodeCertificates(gen.Issuer),
			IssuerKey:         key,
		}, nil
	case 3:
	default:
		return install.Identity{}, &ExitError{Code: 2, Err: fmt.Errorf("install: give all three of --identity-trust-anchors-file, --identity-issuer-certificate-file and --identity-issuer-key-file, or none to generate them")}
	}
	a, err := tlsid.Load(files, tlsid.DefaultDomain)
	if err != nil {
		return install.Identity{}, &ExitError{Code: 2, Err: fmt.Errorf("install: reading the identity files: %w", err)}
	}
	if err := a.Validate(); err != nil {
		return install.Identity{}, &ExitError{Code: 2, Err: fmt.Errorf("install: the identity files do not form a valid issuer: %w", err)}
	}
	var id install.Identity
	for _, r := range []struct {
		path string
		dst  *[]byte
	}{{files.TrustAnchors, &id.TrustAnchors}, {files.IssuerCertificate, &id.IssuerCertificate}, {files.IssuerKey, &id.IssuerKey}} {
		b, err := os.ReadFile(r.path)
		if err != nil {
			return install.Identity{}, &ExitError{Code: 2, Err: fmt.Errorf("install: %w", err)}
		}
		*r.dst = b
	}
	return id, nil
}

func newCmdUninstall(g *Globals) *cobra.Command {
	var crds bool
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Print the Weft control plane objects to delete (for kubectl delete -f -)",
		Long: `Print, kind and name only, every object 'weft install' creates, as a
List that 'kubectl delete -f -' accepts. With --crds the CustomResourceDefinitions
of 'weft install --crds' are listed too; deleting them deletes every
ServiceProfile, Mapping, HTTPRoute... in the cluster.`,
		Example: `  weft uninstall | kubectl delete -f -`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return install.WriteUninstall(g.Out, install.Options{}, crds)
		},
	}
	cmd.Flags().BoolVar(&crds, "crds", false, "also list the CustomResourceDefinitions (and so every custom resource)")
	return cmd
}
